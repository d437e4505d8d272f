"""Several processes on one PostgreSQL: two servers with their own data dirs (as on two hosts) —
what one ingests, the other retrieves with the very same rankings, following each new version —
and two API processes with two ingest workers sharing the work, surviving a worker killed mid-job,
each with a data dir of its own (file bytes come from the database)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import psutil
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
    database = new_database()
    queries = ("compressibility of air flow", "information retrieval systems", "library catalog indexing")
    api_only = {"LLAMAEVAL_INGEST": "0"}
    log = open(tmp_path / "workers.log", "ab")
    # every process has a data dir of its own, as on four hosts: the workers read uploads from the database
    workers = [_start_worker(database, tmp_path / f"worker{n}", log) for n in range(2)]
    try:
        with EmbeddedServer(data_dir=tmp_path / "api1", database=database, settings=api_only) as one, \
                EmbeddedServer(data_dir=tmp_path / "api2", database=database, settings=api_only,
                               api_key=one.api_key) as two, \
                api(one) as a, api(two) as b:
            project = a.post("/projects", json={"name": "team"}).json()["id"]
            ids = [upload((a, b)[n % 2], project, f"adi{d['_id']}.txt", f"{d['title']}\n\n{d['text']}".encode()
                          ).json()["id"] for n, d in enumerate(adi_corpus[:60])]  # through either API process
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
            for folder in ("api1", "api2", "worker0", "worker1"):  # no file's bytes on any host's disk
                assert not any((tmp_path / folder / "files").iterdir()), folder
    finally:
        for w in workers:
            if w.poll() is None:
                w.terminate()
                w.wait(15)
        log.close()


def _owner_of_connection(processes: list, server_port: int, client_port: int) -> int | None:
    """The pid of the process among ``processes`` holding the server end of a TCP connection."""
    for proc in processes:
        try:
            for conn in proc.net_connections(kind="tcp"):
                if conn.laddr and conn.raddr and conn.laddr.port == server_port and conn.raddr.port == client_port:
                    return proc.pid
        except psutil.NoSuchProcess:
            continue
    return None


def test_serve_workers_runs_api_processes_on_one_port_replaces_a_killed_one_and_stops_on_sigterm(
        tmp_path, new_database, capsys):
    from llamaeval.cli import main

    assert main(["serve", "--data-dir", str(tmp_path / "lite"), "--workers", "2"]) == 2  # SQLite: refused
    assert "--workers 2 needs a PostgreSQL --database" in capsys.readouterr().err
    assert main(["serve", "--data-dir", str(tmp_path / "lite"), "--workers", "0"]) == 2
    assert "--workers must be at least 1, got 0" in capsys.readouterr().err
    database = new_database()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "LLAMAEVAL_INGEST": "0", "OMP_NUM_THREADS": "1"}
    log = open(tmp_path / "serve.log", "ab")
    serve = subprocess.Popen([sys.executable, "-m", "llamaeval", "serve", "--database", database, "--data-dir",
                              str(tmp_path / "srv"), "--port", str(port), "--workers", "2"],
                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    held: list[socket.socket] = []
    try:
        parent = psutil.Process(serve.pid)
        deadline = time.monotonic() + 60
        while (tmp_path / "serve.log").read_text().count("Application startup complete") < 2:
            assert serve.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.1)
        children = parent.children(recursive=True)
        answered: dict[int, int] = {}  # pid -> connections it answered
        while len(answered) < 2 and sum(answered.values()) < 200:  # the kernel hands connections to either
            client = socket.create_connection(("127.0.0.1", port), timeout=10)
            held.append(client)  # kept open, so the server's end can be found
            client.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert client.recv(4096).startswith(b"HTTP/1.1 200"), "no answer"
            pid = _owner_of_connection(children, port, client.getsockname()[1])
            assert pid is not None and pid != serve.pid
            answered[pid] = answered.get(pid, 0) + 1
        assert len(answered) == 2, answered  # two API processes answer the one port
        for client in held:
            client.close()
        victim = next(iter(answered))
        os.kill(victim, signal.SIGKILL)  # an API process dies: the other keeps answering ...
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
                client.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
                assert client.recv(4096).startswith(b"HTTP/1.1 200")
        while (tmp_path / "serve.log").read_text().count("Application startup complete") < 3:  # ... it is replaced
            assert time.monotonic() < deadline + 60, (tmp_path / "serve.log").read_text()
            time.sleep(0.1)
        children = parent.children(recursive=True)
        assert victim not in {p.pid for p in children}
        serve.send_signal(signal.SIGTERM)  # stops them all
        assert serve.wait(30) == 0
        # helpers of the process pool (e.g. multiprocessing's resource tracker) exit when they see
        # the parent gone, a moment after it: wait for them, bounded, rather than sample once
        _, alive = psutil.wait_procs(children, timeout=15)
        assert not [(p.pid, p.cmdline()) for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    finally:
        for client in held:
            client.close()
        if serve.poll() is None:
            serve.kill()
            serve.wait()
        log.close()


def test_the_server_answers_again_after_postgresql_restarts(tmp_path, new_database, pg_cluster, adi_corpus):
    from pgserver._commands import pg_ctl

    database = new_database()

    def started_at():
        with psycopg.connect(database) as conn:
            return conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]

    with EmbeddedServer(data_dir=tmp_path / "srv", database=database) as srv, api(srv) as c:
        project = c.post("/projects", json={"name": "before"}).json()["id"]
        before = started_at()
        ids = [upload(c, project, f"adi{d['_id']}.txt", f"{d['title']}\n\n{d['text']}".encode()).json()["id"]
               for d in adi_corpus[:4]]
        pg_ctl(["-w", "-m", "fast", "-l", str(pg_cluster.log), "restart"], pgdata=pg_cluster.pgdata,
               user=pg_cluster.system_user, timeout=60)  # every connection of the server is cut
        assert started_at() > before
        assert c.get(f"/projects/{project}").json()["name"] == "before"  # reconnected
        pipeline = c.post("/pipelines", json={"name": "after", "project_id": project}).json()["id"]
        c.put(f"/pipelines/{pipeline}/files", json=[{"file_id": i} for i in ids]).raise_for_status()
        job = wait_job(c, pipeline, c.post(f"/pipelines/{pipeline}/sync").json()["id"])  # the queue's pool too
        assert job["status"] == "completed", job
        hits = c.post(f"/pipelines/{pipeline}/retrieve", json={"query": "information retrieval", "top_k": 4})
        assert hits.status_code == 200 and len(hits.json()["results"]) == 4
