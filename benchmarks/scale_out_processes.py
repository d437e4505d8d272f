"""Processes on one PostgreSQL: ingest throughput with 1 and 2 `llamaeval worker`s, retrieve
throughput with 1 and 2 API processes (`llamaeval serve`, LLAMAEVAL_INGEST=0).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/scale_out_processes.py [--docs 240] [--seconds 20] \
        [--clients 8] [--out benchmarks/results/scale_out_processes.md]

A throw-away PostgreSQL 16 + pgvector (pgserver wheel). Ingest: the first ``--docs`` cranfield
documents as uploaded .txt files, split over two pipelines synced at once; seconds from the sync
requests to both jobs completed, each run on a fresh database and data dir (no embedding cache
carried over). Retrieve: ``--clients`` threads send `fast` top-10 queries (cranfield's test
queries, in turn) for ``--seconds`` to one API process, then spread over two; queries per second.
Every process is limited to one BLAS/onnxruntime thread.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llamaeval.server import EmbeddedServer  # noqa: E402

DATASETS = Path(os.environ.get("LLAMAEVAL_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def new_database(admin: str) -> str:
    import uuid

    import psycopg

    name = f"b_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return admin.replace("/postgres?", f"/{name}?", 1)


def start_worker(database: str, data_dir: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "llamaeval", "worker", "--database", database, "--data-dir",
                             str(data_dir)], stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=env)


def client(server: EmbeddedServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=120)


def wait_jobs(c: httpx.Client, jobs: list[tuple[str, str]]) -> None:
    while True:
        states = [c.get(f"/pipelines/{p}/jobs/{j}").json()["status"] for p, j in jobs]
        if all(s in ("completed", "failed") for s in states):
            if any(s == "failed" for s in states):
                raise SystemExit(f"a sync failed: {states}")
            return
        time.sleep(0.2)


def ingest_run(admin: str, docs: list[dict], n_workers: int, work: Path) -> tuple[float, str, str, str, Path]:
    """Seconds to sync ``docs`` in two pipelines with ``n_workers`` workers; (s, database, key, pipeline, dir)."""
    database, data_dir = new_database(admin), work / f"ingest-{n_workers}"
    workers = [start_worker(database, data_dir, work / f"worker-{n_workers}-{i}.log") for i in range(n_workers)]
    try:
        with EmbeddedServer(data_dir=data_dir, database=database, settings={"LLAMAEVAL_INGEST": "0"}) as api:
            with client(api, api.api_key) as c:
                project = c.post("/projects", json={"name": "bench"}).json()["id"]
                ids = []
                for d in docs:
                    r = c.post("/files", params={"project_id": project},
                               files={"file": (f"{d['_id']}.txt", f"{d.get('title', '')}\n\n{d['text']}".encode(),
                                               "text/plain")})
                    ids.append(r.json()["id"])
                pipelines = [c.post("/pipelines", json={"name": f"p{n}", "project_id": project}).json()["id"]
                             for n in range(2)]
                half = len(ids) // 2
                for pipeline, part in zip(pipelines, (ids[:half], ids[half:])):
                    c.put(f"/pipelines/{pipeline}/files", json=[{"file_id": i} for i in part]).raise_for_status()
                time.sleep(3)  # the workers have loaded their model
                t = time.perf_counter()
                jobs = [(p, c.post(f"/pipelines/{p}/sync").json()["id"]) for p in pipelines]
                wait_jobs(c, jobs)
                return time.perf_counter() - t, database, api.api_key, pipelines[0], data_dir
    finally:
        for w in workers:
            w.terminate()
            w.wait(30)


def retrieve_run(database: str, key: str, pipeline: str, data_dir: Path, n_api: int, queries: list[str],
                 seconds: float, clients: int) -> float:
    """Queries per second of ``clients`` threads over ``n_api`` API processes."""
    servers = [EmbeddedServer(data_dir=data_dir, database=database, api_key=key,
                              settings={"LLAMAEVAL_INGEST": "0"}).start() for _ in range(n_api)]
    try:
        pool = [client(s, key) for s in servers for _ in range(clients)]
        for c in pool[:n_api]:
            c.post(f"/pipelines/{pipeline}/retrieve", json={"query": queries[0], "top_k": 10}).raise_for_status()
        count = [0] * clients
        stop = time.perf_counter() + seconds

        def run(i: int) -> None:
            c = pool[(i % n_api) * clients + i]
            for q in itertools.cycle(queries[i::clients] or queries):
                if time.perf_counter() >= stop:
                    return
                c.post(f"/pipelines/{pipeline}/retrieve", json={"query": q, "top_k": 10,
                                                                "mode": "fast"}).raise_for_status()
                count[i] += 1

        threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        elapsed = time.perf_counter() - t
        for c in pool:
            c.close()
        return sum(count) / elapsed
    finally:
        for s in servers:
            s.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=240)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scale_out_processes.md")
    args = ap.parse_args()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        import pgserver
    docs = read_jsonl(DATASETS / "cranfield" / "corpus.jsonl")[:args.docs]
    queries = [q["text"] for q in read_jsonl(DATASETS / "cranfield" / "queries.jsonl")][:100]
    folder, work = tempfile.mkdtemp(prefix="llamaeval-pg-bench-"), Path(tempfile.mkdtemp(prefix="llamaeval-so-"))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        cluster = pgserver.get_server(folder, cleanup_mode="stop")
        admin = cluster.get_uri()
    try:
        ingest = {}
        for n in (1, 2):
            ingest[n] = ingest_run(admin, docs, n, work)
            print(f"ingest with {n} worker(s): {ingest[n][0]:.1f} s", file=sys.stderr)
        _, database, key, pipeline, data_dir = ingest[2]
        qps = {}
        for n in (1, 2):
            qps[n] = retrieve_run(database, key, pipeline, data_dir, n, queries, args.seconds, args.clients)
            print(f"retrieve with {n} API process(es): {qps[n]:.1f} q/s", file=sys.stderr)
    finally:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
            cluster.cleanup()
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    cores = os.cpu_count()
    lines = [
        "# Scale-out: processes on one PostgreSQL",
        "",
        f"`OMP_NUM_THREADS=1 .venv/bin/python benchmarks/scale_out_processes.py --docs {args.docs} "
        f"--seconds {args.seconds:g} --clients {args.clients}` ({platform.machine()}, {cores} cores shared with "
        "other jobs during the run, Python " + platform.python_version() + ", PostgreSQL 16.2 from pgserver). "
        "Each process: one BLAS/onnxruntime thread. What the ratios say depends on the cores: one API "
        "process already runs one search per core at once (its search slots), so on a machine with few "
        "cores a second API process adds contention, not throughput; one worker runs one job at a time on "
        "one core, so a second worker can use a second core. A real deployment's speed-up comes from each "
        "process (host) bringing its own cores; measure it there with this script.",
        "",
        "| what | 1 process | 2 processes | ratio |",
        "|---|---|---|---|",
        f"| ingest: {len(docs)} cranfield documents in two pipelines synced at once (seconds, lower is better) "
        f"| {ingest[1][0]:.1f} | {ingest[2][0]:.1f} | {ingest[1][0] / ingest[2][0]:.2f}x |",
        f"| retrieve: `fast` top 10, {args.clients} client threads for {args.seconds:g} s (queries/s) "
        f"| {qps[1]:.1f} | {qps[2]:.1f} | {qps[2] / qps[1]:.2f}x |",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
