"""Every API operation through BOTH clients against the real local server on loopback.

One scenario (written once, awaiting only what is awaitable) runs with LlamaCloud and
with AsyncLlamaCloud: two tiny text files, one sync each. Directory data sources need a
server started with a sources root, so those operations also run on a small server of
our own (no sync needed there).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from llamaeval import AsyncLlamaCloud, BadRequestError, ConfigurationError, LlamaCloud, NotFoundError
from llamaeval.client import DataSource, File, Pipeline, PipelineJob, Project, RetrievalResult

WINGS = "Wings produce lift when air flows faster over the upper surface of the aerofoil."
ENGINES = "Jet engines compress air, burn fuel with it and push the exhaust out to make thrust."
CLIENTS = {"sync": LlamaCloud, "async": AsyncLlamaCloud}


async def _v(value: Any) -> Any:
    """Await what the async client returns; pass the sync client's results through."""
    return await value if inspect.isawaitable(value) else value


async def _close(lc: Any) -> None:
    await _v(lc.aclose() if isinstance(lc, AsyncLlamaCloud) else lc.close())


async def _scenario(lc: Any, tag: str, tmp_path: Path, sources_enabled: bool) -> None:
    health = await _v(lc.health())
    assert health["status"] == "ok"

    # Projects: createProject, listProjects, getProject
    project = await _v(lc.projects.create(f"client-{tag}"))
    assert isinstance(project, Project) and project.created_at.tzinfo is not None
    projects = await _v(lc.projects.list())
    assert project.id in set(projects["id"])
    assert str(projects["created_at"].dtype) == "datetime64[us, UTC]"
    assert (await _v(lc.projects.get(project.id))).name == f"client-{tag}"

    # Files: uploadFile, from a path and from bytes
    path = tmp_path / f"wings-{tag}.txt"
    path.write_text(WINGS, encoding="utf-8")
    wings = await _v(lc.files.upload(path, project_id=project.id))
    engines = await _v(lc.files.upload(ENGINES.encode(), project_id=project, name="engines.md"))
    assert isinstance(wings, File) and wings.name == path.name and wings.file_size == len(WINGS)
    assert engines.project_id == project.id and engines.file_size == len(ENGINES)

    # Pipelines: createPipeline, listPipelines, getPipeline
    pipe = await _v(lc.pipelines.create(f"pipe-{tag}", project.id, chunking_config={"chunk_size": 128}))
    assert isinstance(pipe, Pipeline) and pipe.status == "idle"
    assert pipe.chunking_config["chunk_size"] == 128 and pipe.retrieval_config
    pipes = await _v(lc.pipelines.list(project.id))
    assert list(pipes["id"]) == [pipe.id]
    assert isinstance(pipes["status"].dtype, pd.CategoricalDtype)
    assert (await _v(lc.pipelines.get(pipe))).name == f"pipe-{tag}"

    # Pipeline files: addFilesToPipeline, listPipelineFiles (metadata flattened)
    added = await _v(lc.pipelines.files.add(pipe.id, [
        {"file_id": wings.id, "metadata": {"doc_id": "wings", "year": 1903}},
        {"file_id": engines.id, "metadata": {"doc_id": "engines", "year": 1939}},
    ]))
    assert set(added["file_id"]) == {wings.id, engines.id}
    files = await _v(lc.pipelines.files.list(pipe.id))
    doc_ids = dict(zip(files["file_id"], files["metadata.doc_id"], strict=True))
    assert doc_ids == {wings.id: "wings", engines.id: "engines"}
    assert str(files["metadata.year"].dtype) == "Int64"

    # Sync: syncPipeline, wait (listPipelineJobs), jobs list
    job = await _v(lc.pipelines.sync(pipe.id))
    assert isinstance(job, PipelineJob) and job.status in ("pending", "running")
    done = await _v(lc.pipelines.wait_for_sync(pipe.id, timeout=180.0, poll_interval=0.1, progress=True))
    assert done.id == job.id and done.status == "completed" and done.duration_s >= 0
    jobs = await _v(lc.pipelines.jobs.list(pipe.id))
    assert job.id in set(jobs["id"])
    assert jobs.loc[jobs["id"] == job.id, "status"].iloc[0] == "completed"
    assert (await _v(lc.pipelines.files.list(pipe.id)))["status"].tolist() == ["completed", "completed"]

    # Sinks and sources of the pipeline; project data sources
    sinks = await _v(lc.pipelines.data_sinks.list(pipe.id))
    assert len(sinks) >= 1 and sinks["sink_type"].notna().all()
    assert len(await _v(lc.pipelines.data_sources.list(pipe.id))) == 0
    assert len(await _v(lc.data_sources.list(project.id))) == 0
    if not sources_enabled:
        with pytest.raises(BadRequestError) as info:  # this server has no sources root
            await _v(lc.data_sources.create("docs", "directory", {"path": "docs"}, project_id=project.id))
        assert "sources" in info.value.message

    # Retrieval: runSearch
    result = await _v(lc.pipelines.retrieve(pipe.id, "how do wings make lift", top_k=2))
    assert isinstance(result, RetrievalResult) and result.status_code == 200
    frame = result.frame
    assert list(frame.columns[:8]) == ["rank", "score", "text", "file_id", "file_name", "chunk_id",
                                       "chunk_index", "doc_id"]
    assert frame["rank"].tolist() == [1, 2] and frame["doc_id"].iloc[0] == "wings"
    assert frame["score"].is_monotonic_decreasing
    assert set(frame["pipeline_id"]) == {pipe.id}
    assert result.request == {"pipeline_id": pipe.id, "query": "how do wings make lift", "mode": "fast", "top_k": 2}
    assert result.server_timing["total"] > 0 and result.latency_s >= result.server_timing["total"]
    accurate = await _v(lc.pipelines.retrieve(pipe.id, "thrust from jet engines", mode="accurate", top_k=1))
    assert accurate.frame["doc_id"].tolist() == ["engines"]
    with pytest.raises(ConfigurationError):
        lc.pipelines.retrieve(pipe.id, "x", mode="fastest")

    # deletePipeline, then it is gone
    await _v(lc.pipelines.delete(pipe.id))
    with pytest.raises(NotFoundError) as info:
        await _v(lc.pipelines.get(pipe.id))
    assert info.value.status_code == 404


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_every_operation_on_the_live_server(live_server, tmp_path, kind):
    lc = CLIENTS[kind](api_key=live_server.api_key, base_url=live_server.base_url + "/api/v1")
    try:
        await _scenario(lc, kind, tmp_path, getattr(live_server, "sources_root", None) is not None)
    finally:
        await _close(lc)


@pytest.fixture(scope="module")
def sources_server(tmp_path_factory):
    """A second small server with a sources root, for directory data sources."""
    from llamaeval.server import EmbeddedServer

    root = tmp_path_factory.mktemp("sources")
    (root / "docs").mkdir()
    (root / "docs" / "a.txt").write_text(WINGS, encoding="utf-8")
    with EmbeddedServer(data_dir=tmp_path_factory.mktemp("sources-srv"), sources_root=root) as server:
        yield server


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_data_source_operations(sources_server, kind):
    lc = CLIENTS[kind](api_key=sources_server.api_key, base_url=sources_server.base_url)
    try:
        project = await _v(lc.projects.create(f"sources-{kind}"))
        source = await _v(lc.data_sources.create("docs", "directory", {"path": "docs"}, project_id=project.id))
        assert isinstance(source, DataSource) and source.source_type == "directory"
        assert source.config["path"] == "docs"
        listed = await _v(lc.data_sources.list(project.id))
        assert list(listed["id"]) == [source.id]
        pipe = await _v(lc.pipelines.create("from-folder", project.id))
        attached = await _v(lc.pipelines.data_sources.add(pipe.id, [source]))
        assert list(attached["id"]) == [source.id]
        created = await _v(lc.pipelines.data_sources.add(
            pipe.id, [{"name": "more", "source_type": "directory", "config": {"path": "docs"}}]))
        assert created["name"].tolist() == ["more"]
        on_pipe = await _v(lc.pipelines.data_sources.list(pipe.id))
        assert set(on_pipe["id"]) == {source.id, created["id"].iloc[0]}
        with pytest.raises(BadRequestError) as info:
            await _v(lc.data_sources.create("bad", "s3", project_id=project.id))
        assert "directory" in info.value.message  # the server names what it supports
    finally:
        await _close(lc)
