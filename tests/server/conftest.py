"""Server test fixtures: one real server on loopback (own data dir, sources root, small upload limit)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from server_helpers import MAX_UPLOAD_MB, api, load_corpus, upload, wait_job

from llamaeval.server import EmbeddedServer


@pytest.fixture(scope="session")
def sources_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sources")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, sources_root: Path):
    """The server most tests share (state persists across tests: use fresh projects)."""
    with EmbeddedServer(data_dir=tmp_path_factory.mktemp("srv"), sources_root=sources_root,
                        max_upload_mb=MAX_UPLOAD_MB, shared_sources_root=False) as srv:  # as `serve` by default
        yield srv


@pytest.fixture(scope="session")
def account_sources(server: EmbeddedServer, sources_root: Path) -> Path:
    """The folder the default key's ``directory`` data sources resolve under (per account)."""
    folder = sources_root / server.account_id
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture()
def c(server: EmbeddedServer):
    with api(server) as client:
        yield client


@pytest.fixture()
def project(c: httpx.Client) -> str:
    r = c.post("/projects", json={"name": "test"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.fixture(scope="session")
def adi_corpus(shared_datasets: Path) -> list[dict[str, str]]:
    return load_corpus(shared_datasets / "adi")


@pytest.fixture(scope="session")
def adi_synced(server: EmbeddedServer, adi_corpus: list[dict[str, str]]) -> dict[str, Any]:
    """adi uploaded one file per document (doc_id metadata), synced: ids and the first job."""
    with api(server) as c:
        project_id = c.post("/projects", json={"name": "adi"}).json()["id"]
        files = []
        for doc in adi_corpus:
            r = upload(c, project_id, f"adi-{doc['_id']}.txt", f"{doc['title']}\n\n{doc['text']}".encode())
            assert r.status_code == 200, r.text
            files.append({"file_id": r.json()["id"], "metadata": {"doc_id": doc["_id"]}})
        pipeline = c.post("/pipelines", json={"name": "adi", "project_id": project_id}).json()
        r = c.put(f"/pipelines/{pipeline['id']}/files", json=files)
        assert r.status_code == 200, r.text
        job = c.post(f"/pipelines/{pipeline['id']}/sync").json()
        done = wait_job(c, pipeline["id"], job["id"])
        assert done["status"] == "completed", done
        return {"project_id": project_id, "pipeline_id": pipeline["id"], "job": done, "files": files}
