"""HTTP overhead (issue 17, part "Search"): what a retrieve request over HTTP costs on top of the
same ``fast`` search in process, in both dialects, at 1.8k to 50k chunks, before and after a change.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/http_overhead.py [--before 0d73287] [--replicas 1,6,27]
        [--queries 150] [--data-dir DIR] [--out benchmarks/results/http_overhead.md]

Corpus: the bundled Cranfield collection (1,400 documents, 1,838 chunks) uploaded ``max(replicas)``
times (each copy its own files, same text) into one project of a real server of the working tree;
one pipeline per entry of ``--replicas`` holds that many copies (1: 1,838 chunks, 6: ~11k, 27:
~50k). The copies' chunks are embedded once (the server's content-keyed embedding cache), and
their search costs what a corpus of that size costs: BM25 posting lists and the dense matrix
grow with the copies (the rankings have ties, which no figure here reads). ``--data-dir`` reuses
an earlier run's ingest (a dir with ``info.json`` and ``data/``).

Servers: three uvicorn processes on copies of that data dir, "before" (the ``llamaeval`` package of
``--before``, exported with ``git archive``), "after" (the working tree) and "floor" (a bare ASGI
app running the same search and answering the same bytes, see ``_FLOOR_LAUNCH``); all with
uvicorn's httptools parser and one onnxruntime thread, as this process. Per query, in an order rotating
per query: for every pipeline, the simplified dialect's ``fast`` retrieve (top 10) and the real
dialect's retrieve with ``enable_reranking: false`` (30 nodes), against each server, and the same
two engine requests in process on the same index (``Index.load`` of the pipeline's index).

Figures (p50 over the queries): wall ms the client waited; CPU ms of the server process (all its
threads, ``/proc/PID/task/*/schedstat``) and of the client thread (``time.thread_time``); in
process: CPU of the search itself (onnxruntime's one thread runs in the caller). The overhead is
(server CPU + client CPU) / in-process CPU — CPU is much less sensitive than wall time to the
other jobs on this shared machine — and wall HTTP / wall in process. The client is raw httpx
on a kept-alive connection. Last, throughput: 1, 2 and 4 clients at once against before and after
(the smallest pipeline; see ``concurrent_throughput``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from search_overhead import p50_ms  # noqa: E402

_LAUNCH = """
import sys, uvicorn
from pathlib import Path
from llamaeval.server import create_app, ServerConfig
app = create_app(ServerConfig(data_dir=Path(sys.argv[1]), onnx_threads=1))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), http=sys.argv[3], access_log=False, log_level="warning")
"""

def old_package(rev: str, tmp: Path) -> Path:
    """The ``llamaeval`` package of ``rev`` exported (read-only git) into ``tmp/old``."""
    out = tmp / "old"
    out.mkdir()
    archive = subprocess.run(["git", "archive", rev, "llamaeval"], cwd=ROOT, check=True, capture_output=True).stdout
    archive_path = tmp / "old.tar"
    archive_path.write_bytes(archive)
    with tarfile.open(archive_path) as tar:
        tar.extractall(out, filter="data")
    return out

def process_cpu(pid: int) -> float:
    """CPU seconds all live threads of process ``pid`` have run (``/proc/PID/task/*/schedstat``, ns)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as fh:
                total += int(fh.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that ended meanwhile
    return total / 1e9

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: The floor of the stack: a bare ASGI app (no framework, no key check, no body checks, no
#: database) on the same uvicorn + httptools, running the same engine search on the same index and
#: answering the same JSON (the package's own answer shapes, orjson) — what any Python server
#: built on this stack pays at least.
_FLOOR_LAUNCH = """
import sys, json, orjson, uvicorn
from pathlib import Path
from threadpoolctl import threadpool_limits
from llamaeval.engine import Embedder, Index, SearchRequest
from llamaeval.server._config import DataLayout
from llamaeval.server._simplified import _result_out
from llamaeval.server._llamacloud import _retrieve as R, _shapes as W
threadpool_limits(limits=1)
layout, embedder = DataLayout(Path(sys.argv[1])), Embedder(num_threads=1)
indexes = {pid: Index.load(max(layout.indexes_dir(pid).iterdir(), key=lambda p: p.stat().st_mtime), embedder)
           for pid in sys.argv[3].split(",")}
params = R.effective_params({"enable_reranking": False}, None)
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        m = await receive()
        body += m.get("body", b"")
        if not m.get("more_body"):
            break
    path = scope["path"]
    if path == "/health":
        out = b'{"status":"ok"}'
    else:
        pid = path.split("/")[-2]
        index, q = indexes[pid], json.loads(body)["query"]
        if path.startswith("/cloud/"):
            r = index.search(R.search_request(q, params, index.config))
            out = orjson.dumps({"pipeline_id": pid, "retrieval_nodes": [W.node_out(
                h.entry, float(h.score), pid, h.entry.file_id,
                extra={"scores": {k: float(v) for k, v in h.stage_scores.items()}}) for h in r.hits]})
        else:
            r = index.search(SearchRequest.preset("fast", q, 10, index.config))
            out = orjson.dumps({"results": [_result_out(h, pid) for h in r.hits], "mode": "fast", "top_k": 10,
                                "retrieval_config": index.config_summary})
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": out})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), http="httptools", access_log=False, log_level="warning")
"""

DIALECTS = (("simplified", "simplified `/api/v1` (fast, top 10)"),
            ("real", "real `/cloud/api/v1` (no reranking, 30 nodes)"))
TARGET = 1.2
#: What the working tree changed over the default ``--before`` revision (the report's last line).
CHANGES = ("a well-formed retrieve request is answered by the retrieve lane right after the gatekeeper "
           "(`llamaeval/server/_retrieve_lane.py`: the route's own answer function, without FastAPI's routing, "
           "dependencies and second body parse); the gatekeeper waits for body messages with `asyncio.timeout` "
           "instead of `wait_for` (a task and a loop turn per message); the scheduler's once-a-second look decodes "
           "only pipelines with a `sync_interval`; the real dialect reads the pipeline's index head once.")


def ingest(data_dir: Path, replicas: list[int]) -> dict[str, Any]:
    """Cranfield uploaded ``max(replicas)`` times and one synced pipeline per replica count:
    the API key and ``{replicas: pipeline id}``."""
    import httpx

    from llamaeval import load_queryset
    from llamaeval.server import EmbeddedServer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        corpus = load_queryset("cranfield").corpus
    docs = [(str(r.doc_id), f"{r.title}\n\n{r.text}" if r.title else str(r.text)) for r in corpus.itertuples()]
    with EmbeddedServer(data_dir=data_dir) as srv, httpx.Client(
            base_url=srv.api_url, timeout=600.0, headers={"Authorization": f"Bearer {srv.api_key}"}) as c:
        project = c.post("/projects", json={"name": "http-overhead"}).json()["id"]

        def upload(item: tuple[int, str, str]) -> dict[str, Any] | None:
            copy, doc_id, text = item
            r = c.post("/files", params={"project_id": project},
                       files={"file": (f"c{copy}-{doc_id}.txt", text.encode("utf-8"), "text/plain")})
            if r.status_code != 200:  # a few Cranfield documents are empty: refused, as they should be
                return None
            return {"file_id": r.json()["id"], "metadata": {"doc_id": doc_id, "copy": copy}}

        docs = [d for d in docs if d[1].strip()]
        work = [(k, d, t) for k in range(max(replicas)) for d, t in docs]
        with ThreadPoolExecutor(4) as pool:
            items = [item for item in pool.map(upload, work) if item is not None]
        pipelines: dict[int, str] = {}
        for n in replicas:
            pid = c.post("/pipelines", json={"name": f"cranfield x{n}", "project_id": project}).json()["id"]
            chosen = items[: n * len(docs)]
            for i in range(0, len(chosen), 1000):
                c.put(f"/pipelines/{pid}/files", json=chosen[i:i + 1000]).raise_for_status()
            job = c.post(f"/pipelines/{pid}/sync").json()
            while job["status"] not in ("completed", "failed"):
                time.sleep(1)
                job = c.get(f"/pipelines/{pid}/jobs/{job['id']}").json()
            if job["status"] != "completed":
                raise SystemExit(f"ingest of x{n} failed: {job['error']}")
            print(f"[ingest] x{n}: pipeline {pid} synced", file=sys.stderr)
            pipelines[n] = pid
        return {"api_key": srv.api_key, "pipelines": pipelines}


def measure(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import httpx
    from threadpoolctl import threadpool_limits

    from llamaeval.engine import Embedder, Index, SearchRequest
    from llamaeval.server._config import DataLayout
    from llamaeval.server._llamacloud import _retrieve as R
    from modes import load_qrels, load_queries

    replicas = [int(x) for x in args.replicas.split(",")]
    source = args.data_dir or tmp / "ingested"
    info_path = source / "info.json"
    if not info_path.exists():
        info_path.parent.mkdir(parents=True, exist_ok=True)
        info_path.write_text(json.dumps(ingest(source / "data", replicas)))
    info = json.loads(info_path.read_text())
    pipelines = {int(n): pid for n, pid in info["pipelines"].items() if int(n) in replicas}
    servers = {"before": (old_package(args.before, tmp), _LAUNCH, "httptools"), "after": (ROOT, _LAUNCH, "httptools"),
               "floor": (ROOT, _FLOOR_LAUNCH, ",".join(pipelines.values()))}
    procs: dict[str, subprocess.Popen] = {}
    clients: dict[str, httpx.Client] = {}
    try:
        for name, (package, launch, extra) in servers.items():
            data = tmp / f"server-{name}"
            shutil.copytree(source / "data", data)
            port = free_port()
            env = {**os.environ, "PYTHONPATH": str(package), "OMP_NUM_THREADS": "1"}
            procs[name] = subprocess.Popen([sys.executable, "-c", launch, str(data), str(port), extra],
                                           env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            clients[name] = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120.0,
                                         headers={"Authorization": f"Bearer {info['api_key']}"})
        for c in clients.values():
            for _ in range(600):
                try:
                    if c.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
        embedder = Embedder(num_threads=1)
        layout = DataLayout(source / "data")
        params = R.effective_params({"enable_reranking": False}, None)
        runs: dict[str, Callable[[str], Any]] = {}
        server_of: dict[str, str | None] = {}
        chunks: dict[int, int] = {}
        for n, pid in pipelines.items():
            index = Index.load(max(layout.indexes_dir(pid).iterdir(), key=lambda p: p.stat().st_mtime), embedder)
            chunks[n] = index.num_chunks
            runs[f"{n} simplified in-process"] = (
                lambda ix: lambda q: ix.search(SearchRequest.preset("fast", q, 10, ix.config)))(index)
            runs[f"{n} real in-process"] = (
                lambda ix: lambda q: ix.search(R.search_request(q, params, ix.config)))(index)
            server_of[f"{n} simplified in-process"] = server_of[f"{n} real in-process"] = None
            for name, c in clients.items():
                runs[f"{n} simplified {name}"] = (lambda cl, p: lambda q: cl.post(
                    f"/api/v1/pipelines/{p}/retrieve", json={"query": q, "mode": "fast", "top_k": 10}
                ).raise_for_status())(c, pid)
                runs[f"{n} real {name}"] = (lambda cl, p: lambda q: cl.post(
                    f"/cloud/api/v1/pipelines/{p}/retrieve", json={"query": q, "enable_reranking": False}
                ).raise_for_status())(c, pid)
                server_of[f"{n} simplified {name}"] = server_of[f"{n} real {name}"] = name
        queries = list(load_queries("cranfield", load_qrels("cranfield")).values())[: args.queries]
        with threadpool_limits(limits=1):
            for q in queries[:20]:  # warm-up: indexes loaded, match data cached, connections open
                for run in runs.values():
                    run(q)
            wall: dict[str, list[float]] = {k: [] for k in runs}
            cpu: dict[str, list[float]] = {k: [] for k in runs}
            client: dict[str, list[float]] = {k: [] for k in runs}
            names = list(runs)
            for i, q in enumerate(queries):
                for name in names[i % len(names):] + names[: i % len(names)]:
                    pid_ = procs[server_of[name]].pid if server_of[name] else None
                    c0 = process_cpu(pid_) if pid_ else 0.0
                    t0 = time.thread_time()
                    t = time.perf_counter()
                    runs[name](q)
                    wall[name].append(time.perf_counter() - t)
                    client[name].append(time.thread_time() - t0)
                    cpu[name].append(process_cpu(pid_) - c0 if pid_ else client[name][-1])
            throughput = concurrent_throughput(clients, info["api_key"], pipelines[min(pipelines)], queries,
                                               args.throughput_queries)
        return {"chunks": chunks, "queries": len(queries),
                "p50_ms": {k: p50_ms(v) for k, v in wall.items()},
                "cpu_p50_ms": {k: p50_ms(v) for k, v in cpu.items()},
                "client_cpu_p50_ms": {k: p50_ms(v) for k, v in client.items()},
                "throughput": throughput, "throughput_chunks": chunks[min(pipelines)]}
    finally:
        for c in clients.values():
            c.close()
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            p.wait()


CLIENT_COUNTS = (1, 2, 4)


def concurrent_throughput(clients: dict[str, Any], api_key: str, pipeline: str, queries: list[str],
                          per_client: int) -> dict[str, dict[int, float]]:
    """Queries per second of ``fast`` retrieves (simplified dialect) from 1, 2 and 4 clients at once,
    each on its own connection sending ``per_client`` queries back to back; before and after, in
    alternating order per client count. Checks that running a lone request's search inline does
    not cost throughput when clients take turns."""
    import httpx

    out: dict[str, dict[int, float]] = {"before": {}, "after": {}}
    for n in CLIENT_COUNTS:
        for name in (("before", "after") if n % 2 else ("after", "before")):
            base = str(clients[name].base_url)
            own = [httpx.Client(base_url=base, timeout=120.0, headers={"Authorization": f"Bearer {api_key}"})
                   for _ in range(n)]
            try:
                for c in own:  # open the connections
                    c.get("/health")

                def send(k: int) -> None:
                    for i in range(per_client):
                        q = queries[(k * per_client + i) % len(queries)]
                        own[k].post(f"/api/v1/pipelines/{pipeline}/retrieve",
                                    json={"query": q, "mode": "fast", "top_k": 10}).raise_for_status()

                t = time.perf_counter()
                with ThreadPoolExecutor(n) as pool:
                    list(pool.map(send, range(n)))
                out[name][n] = n * per_client / (time.perf_counter() - t)
            finally:
                for c in own:
                    c.close()
    return out


def report(args: argparse.Namespace, r: dict[str, Any], seconds: float) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    p, cpu, client = r["p50_ms"], r["cpu_p50_ms"], r["client_cpu_p50_ms"]
    lines = ["# HTTP overhead over in-process `fast` (issue 17)", "",
             f"`OMP_NUM_THREADS=1 .venv/bin/python benchmarks/http_overhead.py --before {args.before} "
             f"--replicas {args.replicas} --queries {args.queries}` — {now}; {platform.machine()}, "
             f"{os.cpu_count()} cores shared with other jobs (load average {os.getloadavg()[0]:.1f} at the end), "
             f"Python {platform.python_version()}; {seconds / 60:.1f} min. Before = `{args.before}`, after = the "
             f"working tree, in the same run, interleaved per query (order rotating); p50 over {r['queries']} "
             "Cranfield test queries. Method: see the module docstring.", "",
             "CPU ms: server process (all threads) + client thread per request vs the search's own CPU in "
             "process. Wall ms: what the client waited.", "",
             "| chunks | dialect | server | CPU in process | CPU server | CPU client | CPU HTTP / in process | "
             "wall in process | wall HTTP | wall HTTP / in process |",
             "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    summary = []
    for n, chunks in r["chunks"].items():
        for dialect, label in DIALECTS:
            base, base_wall = cpu[f"{n} {dialect} in-process"], p[f"{n} {dialect} in-process"]
            for server in ("before", "after", "floor"):
                k = f"{n} {dialect} {server}"
                both = cpu[k] + client[k]
                shown = "floor (bare ASGI)" if server == "floor" else server
                lines.append(f"| {chunks:,} | {label} | {shown} | {base:.2f} | {cpu[k]:.2f} | {client[k]:.2f} | "
                             f"{both / base:.2f}× (+{both - base:.2f} ms) | {base_wall:.2f} | {p[k]:.2f} | "
                             f"{p[k] / base_wall:.2f}× |")
                if server != "before":
                    summary.append((chunks, dialect, server, both / base, p[k] / base_wall))
    lines += ["", f"Target: ≤ {TARGET}×. After (and the stack's floor), CPU / wall:", ""]
    after = {(c, d): (r, w) for c, d, srv, r, w in summary if srv == "after"}
    floor = {(c, d): (r, w) for c, d, srv, r, w in summary if srv == "floor"}
    lines += [f"- {c:,} chunks, {d}: {r:.2f}× / {w:.2f}× ({'met' if max(r, w) <= TARGET else 'not met'}; "
              f"floor {floor[c, d][0]:.2f}× / {floor[c, d][1]:.2f}×)" for (c, d), (r, w) in after.items()]
    lines += ["", "The floor row is a bare ASGI app on the same uvicorn + httptools with the same engine search "
              "and the same answer bytes, and no framework, key check, body checks or database: what any "
              "Python server on this stack costs at least (the httpx client alone is ~1.4 ms CPU of it). "
              "Where the floor itself is above the target, no change to this server's code reaches it."]
    tp = r["throughput"]
    lines += ["", f"## Throughput with concurrent clients ({r['throughput_chunks']:,} chunks, `fast`, simplified)",
              "", f"Queries per second, {args.throughput_queries} queries per client, each client on its own "
              "connection (client threads in this process; before and after alternate):", "",
              "| clients | before q/s | after q/s | after / before |", "|---:|---:|---:|---:|"]
    lines += [f"| {n} | {tp['before'][n]:.1f} | {tp['after'][n]:.1f} | {tp['after'][n] / tp['before'][n]:.2f}× |"
              for n in CLIENT_COUNTS]
    lines += ["", f"Changed in `after` (since `{args.before}`): " + CHANGES, ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="0d73287", help="git revision of the 'before' code")
    parser.add_argument("--replicas", default="1,6,27", help="copies of Cranfield per pipeline (comma-separated)")
    parser.add_argument("--queries", type=int, default=150)
    parser.add_argument("--throughput-queries", type=int, default=60, help="queries per client (throughput)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="reuse (or keep) the ingest: a dir with info.json and data/")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "http_overhead.md")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="http-overhead-") as tmp:
        results = measure(args, Path(tmp))
    args.out.write_text(report(args, results, time.perf_counter() - t0), encoding="utf-8")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
