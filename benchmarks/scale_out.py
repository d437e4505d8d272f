"""pgvector against the in-memory index on a real collection: HNSW recall@100 vs exact search, and
dense / fast-mode latency (p50) of each path.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/scale_out.py [--collection cranfield] \
        [--out benchmarks/results/scale_out.md]

The collection's documents become chunks exactly as the server makes them (benchmarks/modes.py:
256/32-token chunks, MiniLM int8 vectors, cached under $LLAMAEVAL_CACHE). A throw-away PostgreSQL
16 + pgvector 0.6.2 (the pgserver wheel) holds the chunks (``llamaeval.server._vectors.ChunkVectors``,
migration 002). For every judged test query: the exact top 100 by inner product (numpy, the
engine's dense stage), pgvector's exact top 100 (sequential scan) and pgvector's HNSW top 100
(m=16, ef_construction=64, ef_search 100 and 200). recall@100 = |HNSW top 100 ∩ exact top 100| / 100,
averaged over queries. Latencies are wall-clock seconds per query on one thread, the query vector
given (embedding excluded) except for ``fast`` (Index.search, embedding included).
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from modes import (  # noqa: E402
    ROOT, ChunkingConfig, Embedder, Index, RetrievalConfig, cached_embeddings, cached_query_vectors,
    collection_entries, load_qrels, load_queries,
)

from llamaeval.engine import build_index  # noqa: E402
from llamaeval.server._vectors import ChunkVectors  # noqa: E402

K = 100


def p50_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--collection", default="cranfield")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scale_out.md")
    args = ap.parse_args()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        import pgserver
    import psycopg

    name = args.collection
    embedder = Embedder(num_threads=1)
    entries = collection_entries(name, embedder, ChunkingConfig())
    vectors = cached_embeddings(name, entries, embedder).astype(np.float32)
    queries = load_queries(name, load_qrels(name))
    qvec = cached_query_vectors(name, queries, embedder)
    print(f"[{name}] {len(entries)} chunks, {len(queries)} queries", file=sys.stderr)

    folder = tempfile.mkdtemp(prefix="llamaeval-pg-bench-")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        cluster = pgserver.get_server(folder, cleanup_mode="stop")
        admin = cluster.get_uri()
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        store = ChunkVectors(admin.replace("/postgres?", "/bench?", 1))
        t = time.perf_counter()
        store.store("p", "v1", entries, vectors)
        store_s = time.perf_counter() - t
        t = time.perf_counter()
        store.build_ann("p", "v1")
        ann_s = time.perf_counter() - t
        if not store.uses_ann("p", "v1"):
            raise SystemExit("the approximate queries do not use the HNSW index: nothing to measure")

        t = time.perf_counter()  # what a retrieval host does for a version it did not build
        loaded, loaded_vectors = store.load("p", "v1")
        with tempfile.TemporaryDirectory() as rebuild_dir:
            build_index(loaded, loaded_vectors, RetrievalConfig(), Path(rebuild_dir))
        rebuild_s = time.perf_counter() - t
        if loaded != entries or not np.array_equal(loaded_vectors, vectors):
            raise SystemExit("the chunks read back differ from the chunks stored")

        exact_mem, exact_pg, approx = {}, {}, {100: {}, 200: {}}
        t_mem, t_pg, t_ann = [], [], {100: [], 200: []}
        for qid, v in qvec.items():
            t = time.perf_counter()
            scores = vectors @ v
            top = np.argpartition(-scores, K)[:K]
            exact_mem[qid] = set(top[np.argsort(-scores[top])].tolist())
            t_mem.append(time.perf_counter() - t)
            t = time.perf_counter()
            exact_pg[qid] = {p for p, _ in store.nearest("p", "v1", v, K, exact=True)}
            t_pg.append(time.perf_counter() - t)
            for ef in (100, 200):
                t = time.perf_counter()
                approx[ef][qid] = {p for p, _ in store.nearest("p", "v1", v, K, ef_search=ef)}
                t_ann[ef].append(time.perf_counter() - t)
        same_exact = statistics.mean(len(exact_mem[q] & exact_pg[q]) / K for q in qvec)
        recall = {ef: statistics.mean(len(exact_mem[q] & approx[ef][q]) / K for q in qvec) for ef in approx}
        worst = {ef: min(len(exact_mem[q] & approx[ef][q]) / K for q in qvec) for ef in approx}

        index = Index(entries, vectors, RetrievalConfig(), embedder)
        for text in list(queries.values())[:5]:
            index.search(text, "fast", 10)  # warm
        t_fast = []
        for text in queries.values():
            t = time.perf_counter()
            index.search(text, "fast", 10)
            t_fast.append(time.perf_counter() - t)
    finally:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
            cluster.cleanup()
        shutil.rmtree(folder, ignore_errors=True)

    lines = [
        "# Scale-out: pgvector vs the in-memory index",
        "",
        f"`OMP_NUM_THREADS=1 .venv/bin/python benchmarks/scale_out.py --collection {name}` "
        f"({platform.processor() or platform.machine()}, {platform.python_version()}, PostgreSQL 16.2 + "
        "pgvector 0.6.2 from the pgserver wheel, Unix socket, one client thread; the machine was shared "
        "with other jobs, so latencies are indicative, ratios within this run are what counts).",
        "",
        f"Collection **{name}**: {len(entries)} chunks (256/32 MiniLM tokens), {len(queries)} judged test "
        f"queries. COPY of the chunks into `chunks`: {store_s:.2f} s; HNSW build (m=16, ef_construction=64): "
        f"{ann_s:.2f} s. The approximate queries go through that HNSW index (checked with EXPLAIN). "
        f"A retrieval host that did not build the version reads it back (identical entries and float32 "
        f"vectors) and rebuilds the index in {rebuild_s:.2f} s.",
        "",
        "## Recall of pgvector's HNSW against exact search",
        "",
        "| dense top 100 from | recall@100 vs exact (mean) | worst query |",
        "|---|---|---|",
        f"| pgvector exact scan | {same_exact:.4f} | - |",
    ]
    for ef in sorted(recall):
        lines.append(f"| pgvector HNSW, ef_search={ef} | {recall[ef]:.4f} | {worst[ef]:.2f} |")
    lines += [
        "",
        "## Latency per query (p50, milliseconds; query vector given unless stated)",
        "",
        "| path | p50 ms |",
        "|---|---|",
        f"| in-memory exact dense (numpy, the engine's dense stage) | {p50_ms(t_mem):.2f} |",
        f"| pgvector exact scan (SQL round trip included) | {p50_ms(t_pg):.2f} |",
        f"| pgvector HNSW ef_search=100 | {p50_ms(t_ann[100]):.2f} |",
        f"| pgvector HNSW ef_search=200 | {p50_ms(t_ann[200]):.2f} |",
        f"| in-memory `fast` mode, top 10 (embedding + BM25 + dense + fusion) | {p50_ms(t_fast):.2f} |",
        "",
        "At 100k-1M chunks, `fast` on the pgvector path vs the in-memory path (p50/p95, HNSW build time and "
        "size, recall@100, load time): [scale_out_pgvector.md](scale_out_pgvector.md) "
        "(`benchmarks/scale_out_pgvector.py`).",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
