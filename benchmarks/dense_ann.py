"""Approximate dense search (HNSW, usearch) vs exact: recall@100 and `fast` latency at 10k, 100k, 1M chunks.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dense_ann.py [--sizes 10000,100000,1000000]
        [--queries 100] [--rounds 3] [--out benchmarks/results/dense_ann.md]

Data. Embedding a million chunks costs ~16 h here, so the corpus is built from real material:
the chunks of the seven shared collections (scifact, adi, cf, cisi, cosqa, cranfield, med; ~22.5k
chunks) with their real MiniLM vectors (embedded once by ``Embedder``, cached under
$LLAMAEVAL_ANN_CACHE, default /work/cache/ann). Sizes up to the number of real chunks use them as
they are; past it, chunk i is a variation of a random real chunk a mixed with another b: its text
is a's, its BM25 terms a's minus a random 15% plus 10% of b's, its vector
normalise(v_a + w v_b + noise), w ~ U(0, 0.5), Gaussian noise of norm ~0.35. Queries are real
queries of the same collections, embedded live by ``Index.search`` (the ``embed`` stage).

Measured per size, on one corpus: the exact index (``ann_threshold`` above the size) and the
approximate one (``ann_threshold=1``), same entries, vectors and BM25 postings. Recall@100: the
dense search's top 100 (graph candidates rescored exactly) against the exact top 100, per query.
Latency: ``Index.search(query, "fast", 10)`` in-process, the two indexes interleaved query by
query (alternating which goes first), ``--rounds`` rounds; p50/p95 per round and their median.
BLAS single-threaded (as in a search); the graph is built with every core.
"""

from __future__ import annotations

import argparse
import fcntl
import gc
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

os.environ.setdefault("LLAMAEVAL_CACHE", os.environ.get("LLAMAEVAL_ANN_CACHE", "/work/cache/ann"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from modes import (  # noqa: E402
    ROOT, ChunkingConfig, Embedder, Index, IndexEntry, RetrievalConfig, cached_embeddings, cached_query_vectors,
    collection_entries, load_qrels, load_queries,
)

from llamaeval.engine._analyze import Analyzer  # noqa: E402
from llamaeval.engine._dense import DenseConfig, DenseSearch, exact_top  # noqa: E402
from llamaeval.engine._index import _build_bm25  # noqa: E402

COLLECTIONS = ("scifact", "adi", "cf", "cisi", "cosqa", "cranfield", "med")
NOISE = 0.35


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


def real_material(embedder: Embedder) -> tuple[list[IndexEntry], np.ndarray, list[list[str]], list[str], np.ndarray]:
    """Real chunks, their vectors and analysed terms; real queries (texts) and their vectors."""
    entries: list[IndexEntry] = []
    vectors = []
    q_texts: list[str] = []
    q_vecs = []
    for name in COLLECTIONS:
        ents = collection_entries(name, embedder, ChunkingConfig())
        vectors.append(cached_embeddings(name, ents, embedder))
        entries.extend(replace(e, chunk_id=f"{name}:{e.chunk_id}", file_id=f"{name}:{e.file_id}") for e in ents)
        queries = load_queries(name, load_qrels(name))
        qv = cached_query_vectors(name, queries, embedder)
        q_texts.extend(queries.values())
        q_vecs.extend(qv[q] for q in queries)
    analyzer = Analyzer()
    terms = analyzer.analyze_many([e.text for e in entries])
    return entries, np.vstack(vectors).astype(np.float32), terms, q_texts, np.vstack(q_vecs).astype(np.float32)


def corpus(n: int, entries: list[IndexEntry], vectors: np.ndarray, terms: list[list[str]],
           rng: np.random.Generator, vectors_only: bool = False) -> tuple[list[IndexEntry], np.ndarray, list[list[str]]]:
    """``n`` chunks: the real ones first, then variations of them (see the module docstring)."""
    r = min(n, len(entries))
    out_e = list(entries[:r])
    out_t = list(terms[:r])
    emb = np.empty((n, vectors.shape[1]), dtype=np.float32)
    emb[:r] = vectors[:r]
    if n > r:
        a = rng.integers(0, len(entries), n - r)
        b = rng.integers(0, len(entries), n - r)
        for start in range(0, n - r, 100_000):
            sl = slice(start, min(n - r, start + 100_000))
            m = sl.stop - sl.start
            w = rng.uniform(0.0, 0.5, (m, 1)).astype(np.float32)
            noise = rng.standard_normal((m, vectors.shape[1]), dtype=np.float32) * np.float32(NOISE / np.sqrt(vectors.shape[1]))
            v = vectors[a[sl]] + w * vectors[b[sl]] + noise
            emb[r + sl.start:r + sl.stop] = v / np.linalg.norm(v, axis=1, keepdims=True)
        if vectors_only:  # the same vectors as a full corpus of the same seed (terms are drawn after them)
            return out_e, emb, out_t
        keep_draws = rng.random(sum(len(terms[i]) for i in a)) >= 0.15
        at = 0
        for j, (ia, ib) in enumerate(zip(a.tolist(), b.tolist())):
            ta, tb = terms[ia], terms[ib]
            kept = [t for t, k in zip(ta, keep_draws[at:at + len(ta)]) if k]
            at += len(ta)
            kept.extend(tb[: max(1, len(tb) // 10)])
            out_t.append(kept)
            src = entries[ia]
            i = r + j
            out_e.append(IndexEntry(chunk_id=f"v{i}", file_id=f"v{i}", file_name=src.file_name, chunk_index=0,
                                    start_char=src.start_char, end_char=src.end_char, text=src.text, title=src.title,
                                    metadata=src.metadata))
    return out_e, emb, out_t


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) * 1e3


def measure(n: int, material, embedder: Embedder, args, rng: np.random.Generator) -> dict:
    entries, vectors, terms, q_texts, q_vecs = material
    gc.collect()
    t = time.perf_counter()
    ents, emb, toks = corpus(n, entries, vectors, terms, rng)
    gen_s = time.perf_counter() - t
    t = time.perf_counter()
    bm25 = _build_bm25(toks, RetrievalConfig())
    bm25_s = time.perf_counter() - t
    del toks
    gc.collect()
    exact = Index(ents, emb, RetrievalConfig(ann_threshold=2**40), embedder, bm25=bm25)
    approx = Index(ents, emb, RetrievalConfig(ann_threshold=1), embedder, bm25=bm25)
    before = rss_mb()
    t = time.perf_counter()
    graph = approx._dense.graph()
    build_s = time.perf_counter() - t
    graph_rss = rss_mb() - before
    graph_bytes = graph.memory_bytes()
    with tempfile.TemporaryDirectory(dir=os.environ["LLAMAEVAL_CACHE"]) as tmp:
        t = time.perf_counter()
        approx._dense.save(Path(tmp))  # the on-disk route: build_index saves, Index.load reads
        save_s = time.perf_counter() - t
        file_bytes = (Path(tmp) / "dense.usearch").stat().st_size
        t = time.perf_counter()
        loaded = approx._dense.__class__(emb, DenseConfig(threshold=1))
        ok = loaded.load(Path(tmp))
        load_s = time.perf_counter() - t
        del loaded
    print(f"n={n:,}: corpus {gen_s:.0f} s, bm25 {bm25_s:.0f} s, graph {build_s:.0f} s "
          f"({graph_bytes / n:.0f} B/chunk usearch, RSS +{graph_rss:.0f} MB), file {file_bytes / n:.0f} B/chunk, "
          f"load {load_s:.1f} s ({ok})", file=sys.stderr, flush=True)
    # recall@100 of the dense search, and its own latency
    recall, dense_ms, exact_ms = [], [], []
    for qv in q_vecs[: args.recall_queries]:
        t = time.perf_counter()
        truth, _ = exact_top(emb, qv, 100)
        exact_ms.append(time.perf_counter() - t)
        t = time.perf_counter()
        got, _ = approx._dense.search(qv, 100)
        dense_ms.append(time.perf_counter() - t)
        recall.append(len(np.intersect1d(truth, got)) / 100)
    # fast through Index.search, interleaved
    queries = q_texts[:: max(1, len(q_texts) // args.queries)][: args.queries]
    for q in queries[:5]:
        exact.search(q, "fast", 10)
        approx.search(q, "fast", 10)
    rounds = []
    overlap = []
    for rnd in range(args.rounds):
        lat = {"exact": [], "approx": []}
        parts = {k: {s: [] for s in ("embed", "bm25", "dense", "fuse")} for k in lat}
        for i, q in enumerate(queries):
            order = (("exact", exact), ("approx", approx)) if (i + rnd) % 2 == 0 else (("approx", approx), ("exact", exact))
            hits = {}
            for name, index in order:
                t = time.perf_counter()
                r = index.search(q, "fast", 10)
                lat[name].append(time.perf_counter() - t)
                for s in parts[name]:
                    parts[name][s].append(r.timings.get(s, 0.0))
                hits[name] = [h.entry.chunk_id for h in r.hits]
            if rnd == 0:
                overlap.append(len(set(hits["exact"]) & set(hits["approx"])) / max(1, len(hits["exact"])))
        rounds.append({k: {"p50": pct(v, 50), "p95": pct(v, 95),
                           "no_embed_p50": pct([a - e for a, e in zip(v, parts[k]["embed"])], 50),
                           "parts": {s: pct(x, 50) for s, x in parts[k].items()}} for k, v in lat.items()})
        print(f"  round {rnd}: exact p50 {rounds[-1]['exact']['p50']:.1f} ms, approx p50 "
              f"{rounds[-1]['approx']['p50']:.1f} ms", file=sys.stderr, flush=True)
    out = {"n": n, "gen_s": gen_s, "bm25_s": bm25_s, "build_s": build_s, "save_s": save_s,
           "load_s": load_s, "graph_bytes_per_chunk": graph_bytes / n, "graph_rss_mb": graph_rss,
           "file_bytes_per_chunk": file_bytes / n, "recall_mean": float(np.mean(recall)),
           "recall_min": float(np.min(recall)), "recall_p10": float(np.percentile(recall, 10)),
           "recall_queries": len(recall), "dense_ann_ms": pct(dense_ms, 50), "dense_exact_ms": pct(exact_ms, 50),
           "top10_overlap": float(np.mean(overlap)), "rounds": rounds, "queries": len(queries)}
    del exact, approx, graph, bm25, ents, emb
    gc.collect()
    return out


def med(rounds: list[dict], kind: str, key: str) -> float:
    return float(np.median([r[kind][key] for r in rounds]))


def report(rows: list[dict], args) -> str:
    cfg = DenseConfig()
    lines = [
        "# Approximate dense search (HNSW) vs exact, 10k–1M chunks",
        "",
        f"Generated by `benchmarks/dense_ann.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
        f"{platform.machine()}, {os.cpu_count()} cores shared with other jobs (load average at the end "
        f"{os.getloadavg()[0]:.1f}), so absolute times are inflated and noisy — the ratios (exact and "
        "approximate interleaved query by query in one run) and the growth with size are the point. "
        "BLAS single-threaded; the query is embedded live (onnxruntime, 1 thread) in every search.",
        "",
        "**Data (synthetic scale, real material).** Embedding 1M chunks would take ~16 h here, so the "
        "corpus is built from the ~22.5k real chunks of the seven shared collections with their real "
        "MiniLM vectors; past that, each chunk is a variation of a real chunk a mixed with another b "
        "(text of a; BM25 terms of a minus 15% plus 10% of b's; vector normalise(v_a + w·v_b + noise), "
        f"w ~ U(0, 0.5), noise norm ~{NOISE}). Queries are real queries of the same collections. "
        "This preserves real vector neighbourhoods and term statistics, but it is not a real 1M corpus: "
        "recall on a real one should be checked with the same script's method.",
        "",
        f"Approximate index: usearch HNSW, metric inner product, vectors stored as {cfg.quantization}, "
        f"M={cfg.connectivity}, ef_construction={cfg.expansion_add}, ef_search={cfg.expansion_search} "
        f"(raised to the number of candidates asked), {cfg.oversample}× oversampling: the graph proposes "
        f"{cfg.oversample * 100} candidates for a top 100, their cosine is recomputed from the float32 vectors and the best 100 "
        "kept. BM25 candidates come from the postings (chunks with a positive score); the union is fused "
        "exactly as below the threshold.",
        "",
        "## Recall of the dense top 100 and build cost",
        "",
        "| chunks | recall@100 mean | p10 | min | queries | dense search ms p50 (ANN / exact) | graph build s | "
        "graph B/chunk (memory) | file B/chunk | load s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['n']:,} | {r['recall_mean']:.4f} | {r['recall_p10']:.2f} | {r['recall_min']:.2f} | "
                     f"{r['recall_queries']} | {r['dense_ann_ms']:.2f} / {r['dense_exact_ms']:.1f} | "
                     f"{r['build_s']:.0f} | {r['graph_bytes_per_chunk']:.0f} | {r['file_bytes_per_chunk']:.0f} | "
                     f"{r['load_s']:.1f} |")
    lines += [
        "",
        "Graph memory is usearch's own accounting (quantised vectors + links); the float32 vectors "
        "(1,536 B/chunk) stay in memory as before, for the exact rescoring and the second stage. "
        "Build time: every core (2, shared), a fresh graph per size.",
        "",
        f"## `fast` through `Index.search` (in-process, top 10; {rows[0]['queries'] if rows else 0} queries × "
        f"{args.rounds} rounds, interleaved)",
        "",
        "| chunks | exact p50 ms | exact p95 | ANN p50 ms | ANN p95 | ANN / exact p50 | ANN p50 without embed | "
        "ANN stages p50 ms (embed / bm25 / dense / fuse) | top-10 overlap with exact |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rs = r["rounds"]
        ex, ap = med(rs, "exact", "p50"), med(rs, "approx", "p50")
        parts = " / ".join(f"{np.median([x['approx']['parts'][s] for x in rs]):.1f}"
                           for s in ("embed", "bm25", "dense", "fuse"))
        per_round = ", ".join(f"{x['approx']['p50']:.1f}" for x in rs)
        lines.append(f"| {r['n']:,} | {ex:.1f} | {med(rs, 'exact', 'p95'):.1f} | {ap:.1f} (rounds: {per_round}) | "
                     f"{med(rs, 'approx', 'p95'):.1f} | {ap / ex:.2f} | {med(rs, 'approx', 'no_embed_p50'):.1f} | "
                     f"{parts} | {r['top10_overlap']:.3f} |")
    by_n = {r["n"]: r for r in rows}
    if 100_000 in by_n and 1_000_000 in by_n:
        a, b = by_n[100_000]["rounds"], by_n[1_000_000]["rounds"]
        g = med(b, "approx", "p50") / med(a, "approx", "p50")
        g2 = med(b, "approx", "no_embed_p50") / med(a, "approx", "no_embed_p50")
        ge = med(b, "exact", "p50") / med(a, "exact", "p50")
        def stage(rs: list[dict], s: str) -> float:
            return float(np.median([x["approx"]["parts"][s] for x in rs]))

        lines += [
            "",
            f"Growth from 100k to 1M chunks (10× the chunks): ANN `fast` p50 ×{g:.2f} (×{g2:.2f} without the "
            f"query embedding); exact `fast` p50 ×{ge:.2f}. ANN `fast` p50 at 1M: "
            f"{med(b, 'approx', 'p50'):.1f} ms (target ≤ 20 ms). Caveat: sizes may run in separate processes "
            f"(`--sizes`), and the machine's load differed between them — the query embedding alone took "
            f"{stage(a, 'embed'):.1f} ms at 100k and {stage(b, 'embed'):.1f} ms at 1M — so this growth is "
            "indicative only; the ratios within a row (ANN / exact, interleaved) are the reliable figures. "
            f"The stages that scale with the index: bm25 {stage(a, 'bm25'):.1f} → {stage(b, 'bm25'):.1f} ms "
            f"(postings: linear), fuse (graph search + sparse pool + fusion) {stage(a, 'fuse'):.1f} → "
            f"{stage(b, 'fuse'):.1f} ms.",
        ]
    sweep_path = Path(args.raw).with_name("dense_ann_sweep.json")
    if sweep_path.is_file():
        sw = json.loads(sweep_path.read_text())
        lines += [
            "",
            f"## Search breadth at {sw[0]['n']:,} chunks, graph M={sw[0].get('connectivity', cfg.connectivity)}, "
            f"ef_construction={sw[0].get('expansion_add', cfg.expansion_add)}",
            "",
            "Same vectors and queries as above; the dense search alone (graph proposals + exact rescoring), "
            f"graph built in {sw[0]['build_s']:.0f} s (`--sweep {sw[0]['n']}`). With M=16 (the first default "
            "tried) recall at 1M stalled near 0.94 however wide the search: the corpus holds ~44 variations of "
            "each real chunk, tight clusters that a 16-link graph connects poorly (more oversampling did not "
            "help, so int8 storage was not the cause). The same cluster density at 100k (2,252 real vectors × "
            "44) reproduces it: recall@100 0.937 with M=16 (0.935 with float16 storage), 0.996 with M=32 "
            "(build 21 s vs 25 s) — hence the default M=32.",
            "",
            "| oversample | ef | recall@100 mean | p10 | min | dense search ms p50 | p95 |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in sw:
            lines.append(f"| {r['oversample']} | {r['ef']} | {r['recall_mean']:.4f} | {r['recall_p10']:.2f} | "
                         f"{r['recall_min']:.2f} | {r['ms_p50']:.2f} | {r['ms_p95']:.2f} |")
    lines += [
        "",
        "## Where the threshold sits",
        "",
        f"`RetrievalConfig.ann_threshold` (default {cfg.threshold:,} chunks) decides: smaller indexes keep exact "
        "search — every bundled collection is far below it, so their rankings are unchanged — and larger ones "
        "build the graph at `build_index` (saved as `dense.usearch`, loaded by `Index.load`). "
        "`ann_expansion` (default ef_search) trades recall for speed per pipeline.",
    ]
    return "\n".join(lines) + "\n"


def merge(raw: Path, row: dict | None) -> list[dict]:
    """Every size measured so far (``row`` replacing an older one of its size), by size."""
    raw.parent.mkdir(parents=True, exist_ok=True)
    with open(raw.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = {r["n"]: r for r in (json.loads(raw.read_text()) if raw.is_file() else [])}
        if row is not None:
            rows[row["n"]] = row
        out = [rows[n] for n in sorted(rows)]
        raw.write_text(json.dumps(out, indent=1))
    return out


def sweep(n: int, material, args) -> list[dict]:
    """Recall@100 and dense-search latency at ``n`` chunks for several search breadths (ef) and
    oversampling factors over one graph built with the default build parameters."""
    entries, vectors, terms, q_texts, q_vecs = material
    _, emb, _ = corpus(n, entries, vectors, terms, np.random.default_rng(args.seed), vectors_only=True)
    t = time.perf_counter()
    search = DenseSearch(emb, DenseConfig(threshold=1))
    search.graph()
    build_s = time.perf_counter() - t
    print(f"sweep n={n:,}: graph {build_s:.0f} s", file=sys.stderr, flush=True)
    qs = q_vecs[: args.recall_queries]
    truth = [exact_top(emb, qv, 100)[0] for qv in qs]
    out = []
    for ov, ef in [(int(a), int(b)) for a, b in (x.split(":") for x in args.sweep_grid.split(","))]:
        s = DenseSearch(emb, DenseConfig(threshold=1, oversample=ov, expansion_search=ef))
        s._graph = search.graph()
        rec, lat = [], []
        for qv, tr in zip(qs, truth):
            t = time.perf_counter()
            got, _ = s.search(qv, 100)
            lat.append(time.perf_counter() - t)
            rec.append(np.intersect1d(tr, got).size / 100)
        out.append({"n": n, "connectivity": s.config.connectivity, "expansion_add": s.config.expansion_add,
                    "oversample": ov, "ef": max(ef, ov * 100), "recall_mean": float(np.mean(rec)),
                    "recall_p10": float(np.percentile(rec, 10)), "recall_min": float(np.min(rec)),
                    "ms_p50": pct(lat, 50), "ms_p95": pct(lat, 95), "build_s": build_s})
        print(f"  oversample {ov}, ef {max(ef, ov * 100)}: recall {np.mean(rec):.4f} (min {np.min(rec):.2f}), "
              f"{pct(lat, 50):.2f} ms", file=sys.stderr, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--recall-queries", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "dense_ann.md"))
    ap.add_argument("--raw", default=str(Path(os.environ["LLAMAEVAL_CACHE"]) / "dense_ann.json"),
                    help="measurements by size, merged across runs (sizes may run in separate processes)")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--sweep", type=int, default=0, help="chunks: sweep the search breadth at this size instead")
    ap.add_argument("--sweep-grid", default="4:128,4:800,8:800,4:1600,8:1600,16:1600")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.report_only:
        Path(args.out).write_text(report(merge(Path(args.raw), None), args), encoding="utf-8")
        return
    from threadpoolctl import threadpool_limits

    Path(os.environ["LLAMAEVAL_CACHE"]).mkdir(parents=True, exist_ok=True)
    embedder = Embedder(num_threads=1).load()
    t = time.perf_counter()
    material = real_material(embedder)
    print(f"real material: {len(material[0]):,} chunks, {len(material[3])} queries "
          f"({time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)
    rng = np.random.default_rng(args.seed)
    order = np.random.default_rng(1).permutation(len(material[3]))  # queries of every collection
    material = (*material[:3], [material[3][i] for i in order], material[4][order])
    rows = []
    if args.sweep:
        with threadpool_limits(limits=1, user_api="blas"):
            out = sweep(args.sweep, material, args)
        Path(args.raw).with_name("dense_ann_sweep.json").write_text(json.dumps(out, indent=1))
        return
    with threadpool_limits(limits=1, user_api="blas"):
        for n in [int(x) for x in args.sizes.split(",")]:
            rows = merge(Path(args.raw), measure(n, material, embedder, args, rng))
            Path(args.out).write_text(report(rows, args), encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
