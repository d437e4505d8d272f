"""The pipeline explorer against a real local server: select, refresh, see the tables follow."""

from __future__ import annotations

import uuid

from llamaeval import widgets


def _option_ids(dropdown):
    return [value for _label, value in dropdown.options]


def test_explorer_browses_projects_pipelines_and_tables(client, adi_pipeline):
    pipeline = client.pipelines.get(adi_pipeline)
    explorer = widgets.pipeline_explorer(client, project_id=pipeline.project_id)
    assert explorer.project.value == pipeline.project_id
    assert adi_pipeline in _option_ids(explorer.pipeline)
    explorer.pipeline.value = adi_pipeline
    assert "num_files" in explorer.details.value and ">82<" in explorer.details.value
    assert explorer.tables["files"].value.startswith("<p>82 files</p>")
    assert "metadata.doc_id" in explorer.tables["files"].value
    assert "completed" in explorer.tables["jobs"].value
    assert explorer.status.value == ""


def test_explorer_follows_project_change_and_refresh(client, adi_pipeline):
    pipeline = client.pipelines.get(adi_pipeline)
    explorer = widgets.pipeline_explorer(client, project_id=pipeline.project_id)
    name = f"empty-{uuid.uuid4().hex[:6]}"
    empty = client.projects.create(name)
    assert empty.id not in _option_ids(explorer.project)  # not yet loaded
    explorer.refresh.click()
    assert empty.id in _option_ids(explorer.project)
    assert explorer.project.value == pipeline.project_id  # refresh keeps the selection
    explorer.project.value = empty.id
    assert explorer.pipeline.options == ()
    assert "no pipeline in this project" in explorer.details.value
    assert all(t.value == "" for t in explorer.tables.values())
    explorer.project.value = pipeline.project_id
    assert explorer.pipeline.value in _option_ids(explorer.pipeline)
    assert "files</p>" in explorer.tables["files"].value


def test_explorer_reports_api_errors_instead_of_raising(live_server):
    from llamaeval import LlamaCloud

    with LlamaCloud(api_key="wrong-key", base_url=live_server.base_url, max_retries=0) as bad:
        explorer = widgets.pipeline_explorer(bad)
    assert "AuthenticationError" in explorer.status.value
    assert explorer.project.options == ()
