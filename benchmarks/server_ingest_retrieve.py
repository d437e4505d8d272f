"""Server benchmark: ingest throughput and retrieve latency per mode, through HTTP on loopback.

    python benchmarks/server_ingest_retrieve.py [--dataset scifact] [--limit-docs N]
        [--queries 300] [--warmup 10] [--out benchmarks/results/server.md]

Starts a fresh ``EmbeddedServer`` (a real ``llamaeval serve`` subprocess), uploads every
corpus document as one ``.txt`` file (title + text) with ``doc_id`` metadata, adds them
to a pipeline, syncs and waits; then sends each judged test query once per mode,
sequentially (the three modes interleaved per query), with raw httpx. Reports:

- upload rate (docs/s, client wall), sync throughput (docs/s and chunks/s from the job's
  started_at..completed_at, i.e. parse + chunk + embed + index build), end-to-end ingest;
- retrieve latency p50/p95/mean per mode, client wall (monotonic) and server total
  (``Server-Timing``), in milliseconds; plus nDCG@10 over documents (chunks collapsed to
  their best rank) as a sanity check that the latencies are of a working index.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np

from llamaeval._keys import MODES  # noqa: E402


def _ndcg10(ranked_docs: list[str], relevant: dict[str, int]) -> float:
    seen: list[str] = []
    for d in ranked_docs:
        if d not in seen:
            seen.append(d)
    dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(seen[:10]))
    ideal = sorted(relevant.values(), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="scifact", help="query set name or path (load_queryset)")
    parser.add_argument("--limit-docs", type=int, default=None, help="ingest only the first N documents")
    parser.add_argument("--queries", type=int, default=300, help="judged test queries to send per mode")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured queries per mode first")
    parser.add_argument("--top-k", default="10,100",
                        help="comma-separated top_k values (chunks) to request; nDCG@10 is over documents")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "server.md")
    args = parser.parse_args(argv)

    from llamaeval import load_queryset
    from llamaeval.client import parse_server_timing
    from llamaeval.server import EmbeddedServer

    qs = load_queryset(args.dataset)
    corpus = qs.corpus if args.limit_docs is None else qs.corpus.head(args.limit_docs)
    judged = qs.judged_queries().head(args.queries)
    rel: dict[str, dict[str, int]] = {}
    for row in qs.qrels.itertuples(index=False):
        rel.setdefault(str(row.query_id), {})[str(row.doc_id)] = int(row.relevance)

    # reference: the bare embedder in this process on the same kind of text, before the server works
    from llamaeval.engine import Embedder

    sample = [f"{r.title}\n\n{r.text}" for r in corpus.head(64).itertuples(index=False)]
    bare = Embedder()
    bare.embed_passages(sample[:2])
    t = time.monotonic()
    bare.embed_passages(sample)
    bare_rate = len(sample) / (time.monotonic() - t)
    del bare

    load_before = os.getloadavg()
    with EmbeddedServer() as srv, httpx.Client(base_url=srv.api_url, timeout=600.0,
                                               headers={"Authorization": f"Bearer {srv.api_key}"}) as c:
        project = c.post("/projects", json={"name": "bench"}).json()["id"]
        t0 = time.monotonic()
        items = []
        for row in corpus.itertuples(index=False):
            text = f"{row.title}\n\n{row.text}" if row.title else str(row.text)
            r = c.post("/files", params={"project_id": project},
                       files={"file": (f"{row.doc_id}.txt", text.encode("utf-8"), "text/plain")})
            if r.status_code != 200:  # e.g. an empty document: skipped, as a user would
                continue
            items.append({"file_id": r.json()["id"], "metadata": {"doc_id": str(row.doc_id)}})
        upload_s = time.monotonic() - t0
        pipeline = c.post("/pipelines", json={"name": "bench", "project_id": project}).json()
        pid = pipeline["id"]
        for i in range(0, len(items), 1000):
            c.put(f"/pipelines/{pid}/files", json=items[i:i + 1000]).raise_for_status()
        t1 = time.monotonic()
        job = c.post(f"/pipelines/{pid}/sync").json()
        while job["status"] not in ("completed", "failed"):
            time.sleep(0.5)
            job = c.get(f"/pipelines/{pid}/jobs/{job['id']}").json()
        sync_wall_s = time.monotonic() - t1
        if job["status"] != "completed":
            print(f"sync failed: {job['error']}", file=sys.stderr)
            return 1
        started = datetime.fromisoformat(job["started_at"].replace("Z", "+00:00"))
        completed = datetime.fromisoformat(job["completed_at"].replace("Z", "+00:00"))
        job_s = (completed - started).total_seconds()
        ingest_s = time.monotonic() - t0
        n_docs, n_chunks = job["num_processed"] - job["num_failed"], job["num_chunks"]

        queries = list(judged.itertuples(index=False))
        ks = [int(k) for k in args.top_k.split(",")]
        configs = [(m, k) for m in MODES for k in ks]
        for mode in MODES:
            for q in queries[: args.warmup]:
                c.post(f"/pipelines/{pid}/retrieve", json={"query": q.text, "mode": mode, "top_k": ks[0]})
        # configurations interleaved per query (rotating order), so load changes hit every one alike
        wall: dict[tuple[str, int], list[float]] = {cf: [] for cf in configs}
        server: dict[tuple[str, int], list[float]] = {cf: [] for cf in configs}
        ndcg: dict[tuple[str, int], list[float]] = {cf: [] for cf in configs}
        for i, q in enumerate(queries):
            shift = i % len(configs)
            for mode, k in configs[shift:] + configs[:shift]:
                t = time.monotonic()
                r = c.post(f"/pipelines/{pid}/retrieve", json={"query": q.text, "mode": mode, "top_k": k})
                wall[mode, k].append((time.monotonic() - t) * 1000)
                r.raise_for_status()
                server[mode, k].append(parse_server_timing(r.headers.get("server-timing")).get("total", math.nan) * 1000)
                docs = [x["metadata"]["doc_id"] for x in r.json()["results"]]
                ndcg[mode, k].append(_ndcg10(docs, rel.get(str(q.query_id), {})))
        rows = [(m, k, len(queries), np.percentile(wall[m, k], 50), np.percentile(wall[m, k], 95),
                 statistics.mean(wall[m, k]), np.percentile(server[m, k], 50), np.percentile(server[m, k], 95),
                 statistics.mean(ndcg[m, k])) for m, k in configs]
    load_after = os.getloadavg()

    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Server: ingest throughput and retrieve latency",
        "",
        f"`python benchmarks/server_ingest_retrieve.py --dataset {args.dataset}` — {now}; "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after (the cores are shared with "
        "other jobs: latencies are upper bounds, throughputs lower bounds of an idle machine's).",
        "",
        f"Collection **{qs.name}**: {len(items)} documents uploaded as one `.txt` file each, default "
        f"pipeline config (chunk_size {pipeline['chunking_config']['chunk_size']}, overlap "
        f"{pipeline['chunking_config']['chunk_overlap']} word pieces; {pipeline['embedding_model']}).",
        "",
        "## Ingest",
        "",
        "| stage | seconds | docs/s | chunks/s |",
        "|---|---:|---:|---:|",
        f"| upload ({len(items)} POST /files, sequential) | {upload_s:.1f} | {len(items) / upload_s:.1f} | |",
        f"| sync job (parse + chunk + embed + index build) | {job_s:.1f} | {n_docs / job_s:.1f} | "
        f"{n_chunks / job_s:.1f} |",
        f"| sync as seen by the client (incl. polling) | {sync_wall_s:.1f} | {n_docs / sync_wall_s:.1f} | "
        f"{n_chunks / sync_wall_s:.1f} |",
        f"| end to end (upload + add + sync) | {ingest_s:.1f} | {n_docs / ingest_s:.1f} | "
        f"{n_chunks / ingest_s:.1f} |",
        "",
        f"{n_docs} documents indexed as {n_chunks} chunks ({job['num_failed']} files failed). "
        f"Reference: the bare embedder, in the benchmark process just before the run, embedded "
        f"{bare_rate:.1f} passages/s (64 documents, one call) — the sync is bound by embedding.",
        "",
        f"## Retrieve (top_k {args.top_k} chunks, one request at a time, configurations interleaved per "
        f"query, after {args.warmup} warm-up queries per mode)",
        "",
        "| mode | top_k | queries | client p50 ms | client p95 ms | client mean ms | server p50 ms "
        "| server p95 ms | nDCG@10 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, k, n, p50, p95, mean, s50, s95, nd in rows:
        lines.append(f"| {mode} | {k} | {n} | {p50:.1f} | {p95:.1f} | {mean:.1f} | {s50:.1f} | {s95:.1f} "
                     f"| {nd:.3f} |")
    lines += ["", "Client latency is wall time around the HTTP request (monotonic clock) on loopback; "
              "server latency is the `total` of the `Server-Timing` header (search + response building). "
              "nDCG@10 is over documents (chunks collapsed to their best rank), judged test queries only: "
              "top_k counts chunks, so top_k 10 can hold fewer than 10 distinct documents; accurate and "
              "advanced rank every document's best chunk first (`documents_first`), fast ranks chunks "
              "independently.", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
