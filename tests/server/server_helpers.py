"""Helpers shared by the server tests (imported as ``server_helpers``; pytest puts this folder on sys.path)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from llamaeval.server import EmbeddedServer

SPEC_PATH = Path(__file__).parent / "data" / "llamacloud-openapi.yml"
MAX_UPLOAD_MB = 0.25  # small, so the 413 test sends little


def api(server: EmbeddedServer, key: str | None = None) -> httpx.Client:
    """An httpx client on ``server``'s /api/v1 with ``key`` (default: the server's key)."""
    return httpx.Client(base_url=server.api_url, headers={"Authorization": f"Bearer {key or server.api_key}"},
                        timeout=60.0)


def wait_job(c: httpx.Client, pipeline_id: str, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
    """Poll a job until completed/failed; returns its JSON."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = c.get(f"/pipelines/{pipeline_id}/jobs/{job_id}").json()
        if job["status"] in ("completed", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def upload(c: httpx.Client, project_id: str, name: str, data: bytes, content_type: str = "text/plain") -> httpx.Response:
    return c.post("/files", params={"project_id": project_id}, files={"file": (name, data, content_type)})


def synced_pipeline(c: httpx.Client, docs: dict[str, str]) -> str:
    """A new project and pipeline holding ``docs`` (file name -> text), synced: the pipeline id
    (``c`` on a server's /api/v1)."""
    project = c.post("/projects", json={"name": "p"}).json()["id"]
    ids = [upload(c, project, name, text.encode()).json()["id"] for name, text in docs.items()]
    pipeline = c.post("/pipelines", json={"name": "p", "project_id": project}).json()["id"]
    assert c.put(f"/pipelines/{pipeline}/files", json=[{"file_id": i} for i in ids]).status_code == 200
    job = wait_job(c, pipeline, c.post(f"/pipelines/{pipeline}/sync").json()["id"])
    assert job["status"] == "completed", job
    return pipeline


def database_for(backend: str, request: Any) -> str | None:
    """The ``--database`` of a server on ``backend``: None (SQLite in its data dir) or the URL of a
    fresh PostgreSQL database (fixture ``new_database`` of conftest)."""
    return request.getfixturevalue("new_database")() if backend == "postgres" else None


def load_corpus(folder: Path) -> list[dict[str, str]]:
    with open(folder / "corpus.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
