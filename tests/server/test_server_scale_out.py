"""Several processes on one PostgreSQL: two servers with their own data dirs (as on two hosts) —
what one ingests, the other retrieves with the very same rankings, following each new version —
and two API processes with two ingest workers sharing the work, surviving a worker killed mid-job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psycopg
from server_helpers import api, upload, wait_job

from llamaeval.server import EmbeddedServer


def _ranking(c, pipeline: str, query: str) -> list[tuple[str, float]]:
    r = c.post(f"/pipelines/{pipeline}/retrieve", json={"query": query, "mode": "fast", "top_k": 10})
    assert r.status_code == 200, r.text
    return [(x["metadata"]["chunk_id"], round(x["score"], 6)) for x in r.json()["results"]]


def test_an_index_built_on_one_host_is_searched_on_another(tmp_path, new_database, adi_corpus):
    database = new_database()
    queries = ("compressibility of air flow", "information retrieval systems", "library catalog indexing")
    with EmbeddedServer(data_dir=tmp_path / "ingest", database=database) as ingest, \
            EmbeddedServer(data_dir=tmp_path / "search", database=database, api_key="unused",
                           settings={"LLAMAEVAL_INGEST": "0"}) as search:  # its disk has no uploads
        with api(ingest) as a, api(search, ingest.api_key) as b:  # one database: the same accounts and keys
            project = a.post("/projects", json={"name": "shared"}).json()["id"]
            ids = [upload(a, project, f"adi{d['_id']}.txt", f"{d['title']}\n\n{d['text']}".encode()).json()["id"]
                   for d in adi_corpus[:12]]
            pipeline = a.post("/pipelines", json={"name": "p", "project_id": project}).json()["id"]
            a.put(f"/pipelines/{pipeline}/files", json=[{"file_id": i} for i in ids[:8]]).raise_for_status()
            assert wait_job(a, pipeline, a.post(f"/pipelines/{pipeline}/sync").json()["id"])["status"] == "completed"
            first = {q: _ranking(a, pipeline, q) for q in queries}
            assert not (tmp_path / "search" / "pipelines" / pipeline).exists()  # nothing of it on that host
            assert {q: _ranking(b, pipeline, q) for q in queries} == first
            assert (tmp_path / "search" / "pipelines" / pipeline / "indexes").is_dir()  # rebuilt from the database
            # a new version on the ingest host: the other follows it
            a.put(f"/pipelines/{pipeline}/files", json=[{"file_id": i} for i in ids[8:]]).raise_for_status()
            assert wait_job(a, pipeline, a.post(f"/pipelines/{pipeline}/sync").json()["id"])["status"] == "completed"
            second = {q: _ranking(a, pipeline, q) for q in queries}
            assert second != first and {q: _ranking(b, pipeline, q) for q in queries} == second
            assert b.get(f"/pipelines/{pipeline}").json()["num_chunks"] == \
                a.get(f"/pipelines/{pipeline}").json()["num_chunks"]
    with psycopg.connect(database) as conn:  # the database keeps the current and the previous version only
        versions = conn.execute("SELECT COUNT(DISTINCT index_version) FROM chunks WHERE pipeline_id = %s",
                                (pipeline,)).fetchone()[0]
        assert versions == 2


def _start_worker(database: str, data_dir, log) -> subprocess.Popen:
    env = {**os.environ, "LLAMAEVAL_JOB_LEASE_S": "2", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "llamaeval", "worker", "--database", database, "--data-dir",
                             str(data_dir)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)


def _job_row(database: str, job_id: str) -> tuple[str, str | None, int]:
    with psycopg.connect(database) as conn:
        return conn.execute("SELECT status, lease_owner, attempts FROM jobs WHERE id = %s", (job_id,)).fetchone()


def test_two_api_processes_and_two_workers_share_the_work_and_survive_a_killed_worker(tmp_path, new_database,
                                                                                        adi_corpus):
    database, shared = new_database(), tmp_path / "shared"  # one data dir on one host: the workers read uploads
    queries = ("compressibility of air flow", "information retrieval systems", "library catalog indexing")
    api_only = {"LLAMAEVAL_INGEST": "0"}
    log = open(tmp_path / "workers.log", "ab")
    workers = [_start_worker(database, shared, log) for _ in range(2)]
    try:
        with EmbeddedServer(data_dir=shared, database=database, settings=api_only) as one, \
                EmbeddedServer(data_dir=shared, database=database, settings=api_only, api_key=one.api_key) as two, \
                api(one) as a, api(two) as b:
            project = a.post("/projects", json={"name": "team"}).json()["id"]
            ids = [upload(a, project, f"adi{d['_id']}.txt", f"{d['title']}\n\n{d['text']}".encode()).json()["id"]
                   for d in adi_corpus[:60]]
            pipelines = [a.post("/pipelines", json={"name": f"p{n}", "project_id": project}).json()["id"]
                         for n in range(2)]
            for n, pipeline in enumerate(pipelines):
                b.put(f"/pipelines/{pipeline}/files", json=[{"file_id": i} for i in ids[n * 10:n * 10 + 10]]
                      ).raise_for_status()
            jobs = [c.post(f"/pipelines/{p}/sync").json()["id"] for c, p in zip((a, b), pipelines)]  # both at once
            assert [wait_job(b, p, j)["status"] for p, j in zip(pipelines, jobs)] == ["completed", "completed"]
            for pipeline in pipelines:
                assert {q: _ranking(a, pipeline, q) for q in queries} == {q: _ranking(b, pipeline, q) for q in queries}
            # a worker killed in the middle of a job: the other one claims it when its lease expires
            a.put(f"/pipelines/{pipelines[0]}/files", json=[{"file_id": i} for i in ids[20:]]).raise_for_status()
            job = a.post(f"/pipelines/{pipelines[0]}/sync").json()["id"]
            deadline = time.monotonic() + 60
            while (row := _job_row(database, job))[1] is None and time.monotonic() < deadline:
                time.sleep(0.02)
            status, owner, attempts = row
            assert status == "running" and owner is not None and attempts == 1, row
            victim = next(w for w in workers if f":{w.pid}:" in owner)
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            done = wait_job(b, pipelines[0], job)
            assert done["status"] == "completed", done
            assert _job_row(database, job)[2] == 2  # claimed twice: by the killed worker, then the other
            assert b.get(f"/pipelines/{pipelines[0]}").json()["num_files"] == 50
            assert {q: _ranking(a, pipelines[0], q) for q in queries} == \
                {q: _ranking(b, pipelines[0], q) for q in queries}
            hits = b.post(f"/pipelines/{pipelines[0]}/retrieve", json={"query": "x", "top_k": 100}).json()["results"]
            assert len({h["metadata"]["file_id"] for h in hits}) > 10  # files of the retried job are searchable
    finally:
        for w in workers:
            if w.poll() is None:
                w.terminate()
                w.wait(15)
        log.close()
