"""Restart keeps everything searchable; a failed or killed sync never exposes a half-built index."""

from __future__ import annotations

import time

import httpx
import pytest
from server_helpers import api, database_for, upload, wait_job

from llamaeval.server import EmbeddedServer

pytestmark = pytest.mark.both_backends

DOCS = {
    "wing.txt": b"Swept wings delay the onset of compressibility drag at high subsonic speeds.",
    "engine.txt": b"Turbofan engines bypass most of the air around the core for efficiency.",
    "landing.txt": b"Landing gear absorbs the energy of touchdown with oleo struts.",
}


def _retrieve(c, pipeline: str, query: str, k: int = 3) -> list[tuple[str, float]]:
    r = c.post(f"/pipelines/{pipeline}/retrieve", json={"query": query, "top_k": k})
    assert r.status_code == 200, r.text
    return [(x["metadata"]["file_name"], round(x["score"], 6)) for x in r.json()["results"]]


def _setup(c) -> tuple[str, str]:
    project = c.post("/projects", json={"name": "persist"}).json()["id"]
    ids = [upload(c, project, name, data).json()["id"] for name, data in DOCS.items()]
    pipeline = c.post("/pipelines", json={"name": "p", "project_id": project, "sync_interval": 3600}).json()["id"]
    c.put(f"/pipelines/{pipeline}/files", json=[{"file_id": i, "metadata": {"doc_id": f"d{n}"}}
                                               for n, i in enumerate(ids)]).raise_for_status()
    job = c.post(f"/pipelines/{pipeline}/sync").json()
    assert wait_job(c, pipeline, job["id"])["status"] == "completed"
    return project, pipeline


@pytest.fixture()
def own_server(tmp_path, sources_root, backend, request):
    srv = EmbeddedServer(data_dir=tmp_path / "data", sources_root=sources_root, shared_sources_root=False,
                         database=database_for(backend, request),
                         settings={"LLAMAEVAL_JOB_LEASE_S": "2"} if backend == "postgres" else None)
    srv.start()
    yield srv
    srv.stop()


def _snapshot(c, project: str, pipeline: str) -> dict:
    p = c.get(f"/pipelines/{pipeline}").json()
    return {
        "projects": c.get("/projects").json(),
        "project": c.get(f"/projects/{project}").json(),
        "pipelines": c.get("/pipelines", params={"project_id": project}).json(),
        "files": c.get(f"/pipelines/{pipeline}/files").json(),
        "jobs": c.get(f"/pipelines/{pipeline}/jobs").json(),
        "sinks": c.get(f"/pipelines/{pipeline}/data-sinks").json(),
        "pipeline": p,
    }


def test_restart_keeps_everything_searchable(own_server):
    with api(own_server) as c:
        project, pipeline = _setup(c)
        before = _snapshot(c, project, pipeline)
        results = {q: _retrieve(c, pipeline, q) for q in ("swept wing drag", "landing gear struts")}
    own_server.restart()
    with api(own_server) as c:
        assert _snapshot(c, project, pipeline) == before
        for q, expected in results.items():
            assert _retrieve(c, pipeline, q) == expected
        assert _retrieve(c, pipeline, "turbofan bypass", 1)[0][0] == "engine.txt"


def test_killed_sync_keeps_the_last_completed_index(own_server, adi_corpus, backend):
    with api(own_server) as c:
        project, pipeline = _setup(c)
        baseline = _retrieve(c, pipeline, "turbofan engines bypass air", 3)
        more = [upload(c, project, f"adi{d['_id']}.txt", f"{d['title']}\n{d['text']}".encode()).json()["id"]
                for d in adi_corpus[:40]]
        c.put(f"/pipelines/{pipeline}/files", json=[{"file_id": i} for i in more]).raise_for_status()
        job = c.post(f"/pipelines/{pipeline}/sync").json()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = c.get(f"/pipelines/{pipeline}/jobs/{job['id']}").json()
            if state["status"] == "running":
                break
            time.sleep(0.01)
        assert state["status"] == "running" and state["num_processed"] < len(more), state
        # while the sync runs, retrieval answers from the previous index
        assert _retrieve(c, pipeline, "turbofan engines bypass air", 3) == baseline
    own_server.kill()
    own_server.start()
    if backend == "postgres":  # the job queue: a killed worker's job is claimed again once its lease expires
        with api(own_server) as c:
            done = wait_job(c, pipeline, job["id"])
            assert done["status"] == "completed", done
            p = c.get(f"/pipelines/{pipeline}").json()
            assert p["status"] == "active" and p["num_files"] == len(DOCS) + len(more) and p["error"] is None
            assert p["num_chunks"] > len(DOCS)
            assert {f["status"] for f in c.get(f"/pipelines/{pipeline}/files").json()} == {"completed"}
            assert _retrieve(c, pipeline, "turbofan engines bypass air", 1)[0] == baseline[0]
            indexes = own_server.data_dir / "pipelines" / pipeline / "indexes"
            assert not [d for d in indexes.iterdir() if d.name.startswith(".build")]  # the killed build is gone
        return
    with api(own_server) as c:
        killed = c.get(f"/pipelines/{pipeline}/jobs/{job['id']}").json()
        assert killed["status"] == "failed" and "interrupted" in killed["error"]
        p = c.get(f"/pipelines/{pipeline}").json()
        # it still serves its previous index: active, with what happened in error (not status error)
        assert p["status"] == "active" and p["num_chunks"] == len(DOCS)
        assert p["error"].startswith("interrupted") and "previous index" in p["error"], p
        real = httpx.get(f"{own_server.base_url}/cloud/api/v1/pipelines/{pipeline}/status", timeout=30,
                         headers={"Authorization": f"Bearer {own_server.api_key}"}).json()
        assert real["status"] == "CANCELLED" and "interrupted" in real["error"][-1]["message"], real
        assert _retrieve(c, pipeline, "turbofan engines bypass air", 3) == baseline
        statuses = {f["status"] for f in c.get(f"/pipelines/{pipeline}/files").json()}
        assert "processing" not in statuses
        indexes = own_server.data_dir / "pipelines" / pipeline / "indexes"
        assert not [d for d in indexes.iterdir() if d.name.startswith(".build")]
        # the next sync finishes the work
        again = c.post(f"/pipelines/{pipeline}/sync").json()
        done = wait_job(c, pipeline, again["id"])
        assert done["status"] == "completed" and done["num_files"] < len(more) + len(DOCS)
        assert c.get(f"/pipelines/{pipeline}").json()["num_files"] == len(DOCS) + len(more)
        assert c.get(f"/pipelines/{pipeline}").json()["status"] == "active"


def test_failed_sync_keeps_the_last_completed_index(own_server, sources_root):
    folder = sources_root / own_server.account_id / "failing"
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("Oleo struts absorb the energy of touchdown.")
    with api(own_server) as c:
        project = c.post("/projects", json={"name": "f"}).json()["id"]
        pipeline = c.post("/pipelines", json={"name": "p", "project_id": project}).json()["id"]
        c.put(f"/pipelines/{pipeline}/data-sources", json=[{"name": "d", "source_type": "directory",
                                                            "config": {"path": "failing"}}]).raise_for_status()
        assert wait_job(c, pipeline, c.post(f"/pipelines/{pipeline}/sync").json()["id"])["status"] == "completed"
        baseline = _retrieve(c, pipeline, "oleo struts", 3)
        # the only document turns into something that cannot be parsed: this sync fails
        (folder / "notes.txt").write_bytes(b"\x00\x01\x02 binary junk \xff\xfe\x00" * 50)
        job = wait_job(c, pipeline, c.post(f"/pipelines/{pipeline}/sync").json()["id"])
        assert job["status"] == "failed" and "no file could be indexed" in job["error"], job
        p = c.get(f"/pipelines/{pipeline}").json()
        assert p["status"] == "error" and p["error"] == job["error"] and p["num_chunks"] == 1
        assert c.get(f"/pipelines/{pipeline}/files").json()[0]["status"] == "error"
        assert _retrieve(c, pipeline, "oleo struts", 3) == baseline  # the last completed index


def test_damaged_chunks_on_disk_are_processed_again(own_server):
    with api(own_server) as c:
        project, pipeline = _setup(c)
        baseline = _retrieve(c, pipeline, "oleo struts", 3)
        for chunk_json in (own_server.data_dir / "pipelines" / pipeline / "chunks").glob("*.json"):
            chunk_json.write_text("{not json")
        # a sync reads an unchanged file's chunks only when its index segment is gone too
        for segment in (own_server.data_dir / "pipelines" / pipeline / "indexes").glob("*/segments/*.seg"):
            segment.unlink()
        extra = upload(c, project, "rotor.txt", b"Helicopter rotors change pitch cyclically.").json()["id"]
        c.put(f"/pipelines/{pipeline}/files", json=[{"file_id": extra}]).raise_for_status()
        job = wait_job(c, pipeline, c.post(f"/pipelines/{pipeline}/sync").json()["id"])
        assert job["status"] == "completed", job
        assert job["num_files"] == 1 + len(DOCS)  # the new file and the damaged ones
        assert c.get(f"/pipelines/{pipeline}").json()["num_chunks"] == len(DOCS) + 1
        assert _retrieve(c, pipeline, "oleo struts", 3)[0] == baseline[0]
        assert _retrieve(c, pipeline, "helicopter rotor pitch", 1)[0][0] == "rotor.txt"
        # an unchanged pipeline whose index is current is not rebuilt ...
        version = c.get(f"/pipelines/{pipeline}/data-sinks").json()[0]["config"]["index_version"]
        again = wait_job(c, pipeline, c.post(f"/pipelines/{pipeline}/sync").json()["id"])
        assert again["num_files"] == 0
        assert c.get(f"/pipelines/{pipeline}/data-sinks").json()[0]["config"]["index_version"] == version
        # ... but one whose index does not record the current inputs is
        (own_server.data_dir / "pipelines" / pipeline / "indexes" / version / "inputs.sha256").unlink()
        again = wait_job(c, pipeline, c.post(f"/pipelines/{pipeline}/sync").json()["id"])
        assert again["status"] == "completed" and again["num_files"] == 0
        assert c.get(f"/pipelines/{pipeline}/data-sinks").json()[0]["config"]["index_version"] != version
        assert _retrieve(c, pipeline, "helicopter rotor pitch", 1)[0][0] == "rotor.txt"
