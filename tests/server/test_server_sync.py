"""Sync jobs: unparseable files end in error while others complete, incremental syncs,
directory data sources, scheduled syncs, statuses."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from server_helpers import api, upload, wait_job


def _sync(c, pipeline: str) -> dict:
    r = c.post(f"/pipelines/{pipeline}/sync")
    assert r.status_code == 200, r.text
    assert r.json()["status"] in ("pending", "running")
    return wait_job(c, pipeline, r.json()["id"])


def _files(c, pipeline: str) -> dict[str, dict]:
    return {f["name"]: f for f in c.get(f"/pipelines/{pipeline}/files").json()}


def _top_names(c, pipeline: str, query: str, k: int = 3) -> list[str]:
    r = c.post(f"/pipelines/{pipeline}/retrieve", json={"query": query, "top_k": k})
    assert r.status_code == 200, r.text
    return [x["metadata"]["file_name"] for x in r.json()["results"]]


def test_unparseable_file_ends_in_error_with_reason_others_complete(c, project):
    ids = [upload(c, project, name, data).json()["id"] for name, data in [
        ("good.md", b"# Wind tunnels\n\nWind tunnel testing of swept wings at transonic speed."),
        ("broken.pdf", b"%PDF-1.4 this is not really a pdf"),
        ("latin1.txt", "caf\xe9 cr\xe8me".encode("latin-1") + bytes(range(128, 160))),
        ("data.json", b'{"title": "Boundary layers", "body": "Laminar boundary layer separation."}'),
    ]]
    pipeline = c.post("/pipelines", json={"name": "mixed", "project_id": project}).json()["id"]
    c.put(f"/pipelines/{pipeline}/files", json=[{"file_id": i} for i in ids]).raise_for_status()
    job = _sync(c, pipeline)
    assert job["status"] == "completed", job
    assert job["num_files"] == 4 and job["num_failed"] >= 1
    files = _files(c, pipeline)
    assert files["good.md"]["status"] == "completed" and files["good.md"]["num_chunks"] >= 1
    assert files["data.json"]["status"] == "completed"
    assert files["broken.pdf"]["status"] == "error" and "pdf" in files["broken.pdf"]["error"].lower()
    assert job["num_failed"] == sum(f["status"] == "error" for f in files.values())
    for f in files.values():
        assert (f["error"] is None) == (f["status"] == "completed")
    assert _top_names(c, pipeline, "swept wings in a wind tunnel", 1) == ["good.md"]
    assert c.get(f"/pipelines/{pipeline}").json()["status"] == "active"
    # an unchanged failed file is not retried by the next sync, unless it is added again
    assert _sync(c, pipeline)["num_files"] == 0
    c.put(f"/pipelines/{pipeline}/files", json=[{"file_id": ids[1]}]).raise_for_status()
    assert _files(c, pipeline)["broken.pdf"]["status"] == "pending"
    again = _sync(c, pipeline)
    assert again["num_files"] == 1 and again["num_failed"] == 1
    assert _files(c, pipeline)["broken.pdf"]["status"] == "error"


def test_a_pipeline_whose_files_all_fail_ends_in_error(c, project):
    bad = upload(c, project, "bad.pdf", b"%PDF-1.4 nothing here").json()["id"]
    pipeline = c.post("/pipelines", json={"name": "bad", "project_id": project}).json()["id"]
    c.put(f"/pipelines/{pipeline}/files", json=[{"file_id": bad}]).raise_for_status()
    job = _sync(c, pipeline)
    assert job["status"] == "failed" and "no file could be indexed" in job["error"]
    p = c.get(f"/pipelines/{pipeline}").json()
    assert p["status"] == "error" and p["error"] == job["error"]
    r = c.post(f"/pipelines/{pipeline}/retrieve", json={"query": "x"})
    assert r.status_code == 400


def test_second_sync_processes_only_new_and_changed_files(c, project):
    first = [upload(c, project, f"doc{i}.txt", f"document number {i} about topic {i}".encode()).json()["id"]
             for i in range(3)]
    pipeline = c.post("/pipelines", json={"name": "inc", "project_id": project}).json()["id"]
    c.put(f"/pipelines/{pipeline}/files", json=[{"file_id": i, "metadata": {"doc_id": str(n)}}
                                               for n, i in enumerate(first)]).raise_for_status()
    assert _sync(c, pipeline)["num_files"] == 3
    unchanged = _sync(c, pipeline)
    assert unchanged["status"] == "completed" and unchanged["num_files"] == 0
    new = upload(c, project, "doc3.txt", b"an added document about propellers").json()["id"]
    c.put(f"/pipelines/{pipeline}/files", json=[{"file_id": new, "metadata": {"doc_id": "3"}}]).raise_for_status()
    assert _files(c, pipeline)["doc3.txt"]["status"] == "pending"
    assert _files(c, pipeline)["doc0.txt"]["status"] == "completed"
    job = _sync(c, pipeline)
    assert job["num_files"] == 1 and job["num_processed"] == 1
    assert c.get(f"/pipelines/{pipeline}").json()["num_files"] == 4
    assert _top_names(c, pipeline, "propellers", 1) == ["doc3.txt"]
    # a metadata change is picked up by the next sync (without re-embedding the others)
    c.put(f"/pipelines/{pipeline}/files", json=[{"file_id": new, "metadata": {"doc_id": "D3"}}]).raise_for_status()
    job = _sync(c, pipeline)
    assert job["num_files"] == 1
    r = c.post(f"/pipelines/{pipeline}/retrieve", json={"query": "propellers", "top_k": 1}).json()
    assert r["results"][0]["metadata"]["doc_id"] == "D3"
    jobs = c.get(f"/pipelines/{pipeline}/jobs").json()
    assert [j["status"] for j in jobs] == ["completed"] * 4


def test_directory_data_source_sync_add_change_remove(c, project, account_sources):
    folder = account_sources / "manuals"
    (folder / "sub").mkdir(parents=True)
    (folder / "engines.md").write_text("# Engines\n\nJet engines compress air before combustion.")
    (folder / "sub" / "wings.txt").write_text("Wings generate lift from pressure differences.")
    (folder / ".hidden.txt").write_text("should be skipped")
    (folder / "image.png").write_bytes(b"\x89PNG")
    pipeline = c.post("/pipelines", json={"name": "ds", "project_id": project}).json()["id"]
    r = c.put(f"/pipelines/{pipeline}/data-sources",
              json=[{"name": "manuals", "source_type": "directory", "config": {"path": "manuals"}}])
    assert r.status_code == 200, r.text
    ds = r.json()[0]
    assert ds["project_id"] == project and ds["config"] == {"path": "manuals"}
    job = _sync(c, pipeline)
    assert job["status"] == "completed", job
    files = _files(c, pipeline)
    assert set(files) == {"engines.md", "sub/wings.txt"}
    assert all(f["data_source_id"] == ds["id"] and f["status"] == "completed" for f in files.values())
    assert files["sub/wings.txt"]["metadata"]["source_path"] == "sub/wings.txt"
    assert _top_names(c, pipeline, "jet engine combustion", 1) == ["engines.md"]

    (folder / "sub" / "wings.txt").write_text("Wings of gliders are long and thin for low induced drag.")
    (folder / "rudder.txt").write_text("The rudder controls yaw.")
    job = _sync(c, pipeline)
    assert job["num_files"] == 2  # the changed and the new file only
    assert _top_names(c, pipeline, "glider induced drag", 1) == ["sub/wings.txt"]

    (folder / "engines.md").unlink()
    job = _sync(c, pipeline)
    assert job["status"] == "completed" and job["num_files"] == 0
    assert set(_files(c, pipeline)) == {"sub/wings.txt", "rudder.txt"}
    assert "engines.md" not in _top_names(c, pipeline, "jet engine combustion", 3)


def test_sync_interval_triggers_scheduled_syncs(c, project):
    fid = upload(c, project, "s.txt", b"scheduled content about rotors").json()["id"]
    r = c.post("/pipelines", json={"name": "sched", "project_id": project, "sync_interval": 1})
    assert r.status_code == 201 and r.json()["sync_interval"] == 1
    pipeline = r.json()["id"]
    c.put(f"/pipelines/{pipeline}/files", json=[{"file_id": fid}]).raise_for_status()
    deadline = time.monotonic() + 30
    jobs: list = []
    while time.monotonic() < deadline:
        jobs = c.get(f"/pipelines/{pipeline}/jobs").json()
        if any(j["status"] == "completed" for j in jobs):
            break
        time.sleep(0.2)
    assert jobs and jobs[0]["trigger"] == "schedule", jobs
    assert any(j["status"] == "completed" for j in jobs)
    assert _top_names(c, pipeline, "rotors", 1) == ["s.txt"]


def test_statuses_move_and_sync_while_syncing_queues_one_job(c, project, adi_corpus):
    ids = [upload(c, project, f"a{d['_id']}.txt", d["text"].encode()).json()["id"] for d in adi_corpus[:30]]
    pipeline = c.post("/pipelines", json={"name": "st", "project_id": project}).json()["id"]
    c.put(f"/pipelines/{pipeline}/files", json=[{"file_id": i} for i in ids]).raise_for_status()
    first = c.post(f"/pipelines/{pipeline}/sync").json()
    second = c.post(f"/pipelines/{pipeline}/sync").json()
    third = c.post(f"/pipelines/{pipeline}/sync").json()
    assert third["id"] in (first["id"], second["id"])  # at most one job waits behind a running one
    seen_pipeline, seen_files = set(), set()
    while True:
        p = c.get(f"/pipelines/{pipeline}").json()
        seen_pipeline.add(p["status"])
        seen_files |= {f["status"] for f in c.get(f"/pipelines/{pipeline}/files").json()}
        if all(j["status"] in ("completed", "failed") for j in c.get(f"/pipelines/{pipeline}/jobs").json()):
            break
        time.sleep(0.02)
    assert "syncing" in seen_pipeline
    assert seen_files & {"pending", "processing"}
    assert c.get(f"/pipelines/{pipeline}").json()["status"] == "active"
    assert {f["status"] for f in c.get(f"/pipelines/{pipeline}/files").json()} == {"completed"}


def test_concurrent_retrieves_during_a_sync_all_succeed(server, c, project, adi_synced, adi_corpus):
    ids = [upload(c, project, f"b{d['_id']}.txt", d["text"].encode()).json()["id"] for d in adi_corpus[:20]]
    other = c.post("/pipelines", json={"name": "busy", "project_id": project}).json()["id"]
    c.put(f"/pipelines/{other}/files", json=[{"file_id": i} for i in ids]).raise_for_status()
    job = c.post(f"/pipelines/{other}/sync").json()

    def ask(i: int) -> tuple[int, int]:
        with api(server) as client:
            r = client.post(f"/pipelines/{adi_synced['pipeline_id']}/retrieve",
                            json={"query": adi_corpus[i]["title"], "mode": ("fast", "accurate", "advanced")[i % 3],
                                  "top_k": 5})
            return r.status_code, len(r.json().get("results", []))

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(24)))
    assert answers == [(200, 5)] * 24
    assert wait_job(c, other, job["id"])["status"] == "completed"
