"""Fuzz both dialects from the OpenAPI documents the server serves: no generated request gets a 5xx.

schemathesis generates valid and invalid requests for every operation (bounded per operation,
derandomised and database-free, so a run is reproducible). Each dialect is fuzzed twice: with
the generated ids (which mostly end in 404), and with the real ids of a ready (synced)
pipeline, its project, file, document, job, data source and sink filled in, so requests reach
the handlers and the engine. Deleting operations get ids of throwaway objects, so the ready
pipeline stays ready; after the fuzz it still answers, and the server logged no internal error."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from llamaeval.server import EmbeddedServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

FUZZ = settings(max_examples=12, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
#: path/query parameter names of each dialect -> key of the real ids
ID_PARAMS = {"projectId": "project", "pipelineId": "pipeline", "fileId": "file", "jobId": "job",
             "project_id": "project", "pipeline_id": "pipeline", "file_id": "file", "document_id": "document",
             "data_source_id": "data_source", "data_sink_id": "data_sink"}


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("fuzz-sources")
    with EmbeddedServer(data_dir=tmp_path_factory.mktemp("fuzz"), max_upload_mb=0.25, sources_root=root,
                        shared_sources_root=False) as srv:
        (root / srv.account_id / "docs").mkdir(parents=True)
        (root / srv.account_id / "docs" / "note.txt").write_text("Ornithopters flap their wings to fly.")
        yield srv


def _objects(server: EmbeddedServer, tag: str, sync: bool) -> dict[str, str]:
    """A project, file, pipeline (synced when ``sync``), document, job, data source and sink."""
    auth = {"Authorization": f"Bearer {server.api_key}"}
    with httpx.Client(base_url=server.base_url, headers=auth, timeout=60) as c:
        project = c.post("/api/v1/projects", json={"name": f"fuzz-{tag}"}).json()["id"]
        file = c.post("/api/v1/files", params={"project_id": project},
                      files={"file": ("wings.txt", b"Swept wings delay the drag rise at transonic speed.",
                                      "text/plain")}).json()["id"]
        pipeline = c.post("/api/v1/pipelines", json={"name": f"fuzz-{tag}", "project_id": project}).json()["id"]
        c.put(f"/api/v1/pipelines/{pipeline}/files", json=[{"file_id": file, "metadata": {"doc_id": "w"}}]
              ).raise_for_status()
        c.post(f"/cloud/api/v1/pipelines/{pipeline}/documents",
               json=[{"id": "doc-1", "text": "Canards are small forward wings.", "metadata": {"doc_id": "c"}}]
               ).raise_for_status()  # starts a sync
        source = c.post("/api/v1/data-sources", json={"name": "docs", "source_type": "directory",
                                                      "project_id": project, "config": {"path": "docs"}}).json()["id"]
        sink = c.post("/cloud/api/v1/data-sinks", params={"project_id": project},
                      json={"name": "sink", "sink_type": "QDRANT", "component": {}}).json()["id"]
        deadline = time.monotonic() + 120
        jobs: list[dict[str, Any]] = []
        while sync and time.monotonic() < deadline:
            jobs = c.get(f"/api/v1/pipelines/{pipeline}/jobs").json()
            if jobs and all(j["status"] in ("completed", "failed") for j in jobs):
                break
            time.sleep(0.1)
        if sync:
            assert jobs[-1]["status"] == "completed", jobs
            assert c.post(f"/api/v1/pipelines/{pipeline}/retrieve", json={"query": "wings"}).status_code == 200
        jobs = c.get(f"/api/v1/pipelines/{pipeline}/jobs").json()
    return {"project": project, "file": file, "pipeline": pipeline, "document": "doc-1",
            "job": jobs[0]["id"], "data_source": source, "data_sink": sink}


@pytest.fixture(scope="module")
def real_ids(fuzz_server) -> dict[str, dict[str, str]]:
    """Ids of a ready pipeline (and its objects), and of throwaway ones for deleting operations."""
    return {"ready": _objects(fuzz_server, "ready", sync=True), "victim": _objects(fuzz_server, "victim", sync=False)}


def _fuzz(server: EmbeddedServer, root: str, ids: dict[str, dict[str, str]] | None = None) -> int:
    """Every operation of the document served under ``root``; returns how many were fuzzed."""
    raw = httpx.get(f"{server.base_url}{root}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(raw)
    failures: list[str] = []
    n = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        n += 1
        chosen = None if ids is None else ids["victim" if operation.method.upper() == "DELETE" else "ready"]

        @FUZZ
        @given(case=operation.as_strategy())
        def no_server_error(case) -> None:
            if chosen is not None:  # real ids, so the request reaches the handler
                for name in list(case.path_parameters or {}):
                    if name in ID_PARAMS:
                        case.path_parameters[name] = chosen[ID_PARAMS[name]]
                if case.query and "project_id" in case.query:
                    case.query["project_id"] = chosen["project"]
            response = case.call(base_url=server.base_url + root, timeout=60,
                                 headers={"Authorization": f"Bearer {server.api_key}"})
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}")

        try:
            no_server_error()
        except AssertionError as exc:
            failures.append(str(exc).splitlines()[0])
    assert not failures, "\n".join(failures)
    return n


def _still_ready(server: EmbeddedServer, pipeline: str) -> None:
    auth = {"Authorization": f"Bearer {server.api_key}"}
    with httpx.Client(base_url=server.base_url, headers=auth, timeout=60) as c:
        assert c.post(f"/api/v1/pipelines/{pipeline}/retrieve", json={"query": "wings"}).status_code == 200
        assert c.post(f"/cloud/api/v1/pipelines/{pipeline}/retrieve", json={"query": "wings"}).status_code == 200
    log = server.log_path.read_text("utf-8", errors="replace")
    assert "internal error" not in log and "Exception in ASGI application" not in log, log[-3000:]


def test_simplified_api_has_no_5xx(fuzz_server):
    assert _fuzz(fuzz_server, "") >= 18


def test_real_dialect_has_no_5xx(fuzz_server):
    assert _fuzz(fuzz_server, "/cloud") >= 40


def test_simplified_api_with_real_ids_has_no_5xx(fuzz_server, real_ids):
    assert _fuzz(fuzz_server, "", real_ids) >= 18
    _still_ready(fuzz_server, real_ids["ready"]["pipeline"])


def test_real_dialect_with_real_ids_has_no_5xx(fuzz_server, real_ids):
    assert _fuzz(fuzz_server, "/cloud", real_ids) >= 40
    _still_ready(fuzz_server, real_ids["ready"]["pipeline"])
