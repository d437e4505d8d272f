"""Search overhead (issue 17, part "Search"): what ``accurate`` / ``advanced`` cost over the floor,
before and after this work, in process. (What HTTP adds to a ``fast`` search is measured by
``benchmarks/http_overhead.py``; the HTTP section of ``results/search_overhead.md`` is the record of
this script's earlier HTTP phase.)

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/search_overhead.py [--before b4fdb25] [--replicas 11,27]
        [--queries 150] [--out benchmarks/results/search_overhead.md]

"Before" is the code of ``--before`` (a git revision), run side by side with the working tree in the
same process run: its ``llamaeval/engine/_index.py`` is loaded from ``git show`` as a temporary
module. Nothing of it ships.

In-process ``Index.search`` of the bundled Cranfield collection (1,838 chunks, real MiniLM vectors)
and of replicated ones (Cranfield's chunks ``--replicas`` times, each copy its own files, vectors =
the real ones plus Gaussian noise of 0.02 per dimension, re-normalised: real text and realistic
vector geometry at 10k-50k chunks). Each query runs the floor, then fast/accurate/advanced before
and after, in an order rotating per query; every one embeds the query itself (the real embedder,
one onnxruntime thread; BLAS limited to one thread). The floor: the query embedding, ``bm25s``
scores of the analysed query over the same corpus, exact dense scores (one matrix-vector product)
and the top 100 of each. A first pass over the same queries on fresh indexes is timed on its own
(per-chunk match data cached as chunks are first used); the interleaved pass after it is the
steady state. Relevance: every query's top 100 chunk ids and scores before vs after (identical
ranking and scores = identical nDCG).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
MODES = ("fast", "accurate", "advanced")


def git_file(rev: str, path: str) -> str:
    return subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout


def old_index_module(rev: str, tmp: Path) -> Any:
    """``llamaeval/engine/_index.py`` of ``rev`` as a module of its own (same helpers as today)."""
    path = tmp / "old_index.py"
    path.write_text(git_file(rev, "llamaeval/engine/_index.py"), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("search_overhead_old_index", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module
    spec.loader.exec_module(module)
    return module


def p50_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


# -- engine phase -------------------------------------------------------------------------------------

def replicated(entries: list[Any], vectors: np.ndarray, replicas: int) -> tuple[list[Any], np.ndarray]:
    if replicas <= 1:
        return entries, vectors
    rng = np.random.default_rng(0)
    out, vecs = [], []
    for r in range(replicas):
        out += [replace(e, chunk_id=f"{e.chunk_id}@{r}", file_id=f"{e.file_id}@{r}", file_name=f"{r}-{e.file_name}")
                for e in entries]
        v = vectors + (rng.standard_normal(vectors.shape).astype(np.float32) * 0.02 if r else 0.0)
        vecs.append(v / np.linalg.norm(v, axis=1, keepdims=True))
    return out, np.vstack(vecs).astype(np.float32)


class Floor:
    """The bare floor: query embedding + bm25s scores + exact dense scores + the top 100 of each."""

    def __init__(self, entries: list[Any], vectors: np.ndarray, embedder: Any) -> None:
        from llamaeval.engine import RetrievalConfig
        from llamaeval.engine._analyze import Analyzer
        from llamaeval.engine._index import _build_bm25

        config = RetrievalConfig()
        self.analyzer = Analyzer(config.stemmer, config.stopwords)
        self.bm25 = _build_bm25(self.analyzer.analyze_many([e.text for e in entries]), config)
        self.vectors, self.embedder = vectors, embedder

    def search(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        qv = self.embedder.embed_query(query)
        sparse = self.bm25.get_scores([t for t in self.analyzer(query) if t in self.bm25.vocab_dict])
        dense = self.vectors @ qv
        return np.argpartition(-sparse, 100)[:100], np.argpartition(-dense, 100)[:100]


def engine_phase(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    from llamaeval.engine import ChunkingConfig, Embedder, Index, RetrievalConfig
    from modes import cached_embeddings, collection_entries, load_qrels, load_queries

    old = old_index_module(args.before, tmp)
    embedder = Embedder(num_threads=1)
    base_entries = collection_entries("cranfield", embedder, ChunkingConfig())
    base_vectors = cached_embeddings("cranfield", base_entries, embedder)
    queries = list(load_queries("cranfield", load_qrels("cranfield")).values())[: args.queries]
    results: dict[str, Any] = {}
    for replicas in [1] + [int(r) for r in args.replicas.split(",")]:
        entries, vectors = replicated(base_entries, base_vectors, replicas)
        t = time.perf_counter()
        after = Index(entries, vectors, RetrievalConfig(), embedder)
        before = old.Index(entries, vectors, RetrievalConfig(), embedder, bm25=None)
        floor = Floor(entries, vectors, embedder)
        print(f"[engine] {len(entries)} chunks: indexes built in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        runs: dict[str, Callable[[str], Any]] = {"floor": floor.search}
        for mode in MODES:
            runs[f"{mode} before"] = (lambda m: lambda q: before.search(q, m, 100))(mode)
            runs[f"{mode} after"] = (lambda m: lambda q: after.search(q, m, 100))(mode)
        same, worst, compared = 0, 0.0, 0
        with threadpool_limits(limits=1):
            first: dict[str, list[float]] = {k: [] for k in runs}  # the first pass: caches filling
            for i, q in enumerate(queries):  # warm-up pass, and the relevance comparison
                t = time.perf_counter()
                floor.search(q)
                first["floor"].append(time.perf_counter() - t)
                for mode in MODES:
                    pair: dict[str, Any] = {}
                    for side, index in ((("before", before), ("after", after)) if i % 2 else
                                        (("after", after), ("before", before))):
                        t = time.perf_counter()
                        pair[side] = index.search(q, mode, 100)
                        first[f"{mode} {side}"].append(time.perf_counter() - t)
                    a, b = pair["before"], pair["after"]
                    compared += 1
                    if [h.entry.chunk_id for h in a.hits] == [h.entry.chunk_id for h in b.hits]:
                        same += 1
                        worst = max([worst] + [abs(x.score - y.score) for x, y in zip(a.hits, b.hits)])
            wall: dict[str, list[float]] = {k: [] for k in runs}
            names = list(runs)
            for i, q in enumerate(queries):
                for name in names[i % len(names):] + names[: i % len(names)]:
                    t = time.perf_counter()
                    runs[name](q)
                    wall[name].append(time.perf_counter() - t)
        results[str(len(entries))] = {"p50_ms": {k: p50_ms(v) for k, v in wall.items()},
                                      "first_pass_p50_ms": {k: p50_ms(v) for k, v in first.items()},
                                      "same_ranking": same, "compared": compared, "max_score_diff": worst,
                                      "queries": len(queries)}
        print(f"[engine] {len(entries)}: " + ", ".join(f"{k} {p50_ms(v):.2f}" for k, v in wall.items()),
              file=sys.stderr)
        runs.clear()  # the next size's indexes replace these
    return results


# -- http phase ---------------------------------------------------------------------------------------

# -- report -------------------------------------------------------------------------------------------

def report(args: argparse.Namespace, results: dict[str, Any], seconds: float) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# Search overhead: HTTP vs in process, accurate/advanced vs the floor (issue 17)", "",
             f"`OMP_NUM_THREADS=1 .venv/bin/python benchmarks/search_overhead.py --before {args.before} "
             f"--replicas {args.replicas} --queries {args.queries}` — {now}; {platform.machine()}, "
             f"{os.cpu_count()} cores shared with other jobs (load average {os.getloadavg()[0]:.1f} at the end), "
             f"Python {platform.python_version()}; {seconds / 60:.1f} min. Before = `{args.before}`, after = the "
             "working tree, in the same run, interleaved per query (order rotating); p50 wall ms of "
             f"{args.queries} Cranfield test queries. Method: see the module docstring.", ""]
    eng = results.get("engine")
    if eng:
        lines += ["## accurate / advanced vs the floor (in process)", "",
                  "Steady state (every chunk's match data cached by the warm-up pass), interleaved:", "",
                  "| chunks | floor | fast before | fast after | accurate before | accurate after | "
                  "advanced before | advanced after | accurate / floor before → after | "
                  "advanced / floor before → after | target |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for n, r in eng.items():
            p = r["p50_ms"]
            fl = p["floor"]
            lines.append(
                f"| {int(n):,} | {fl:.2f} | {p['fast before']:.2f} | {p['fast after']:.2f} | "
                f"{p['accurate before']:.2f} | {p['accurate after']:.2f} | {p['advanced before']:.2f} | "
                f"{p['advanced after']:.2f} | "
                f"{p['accurate before'] / fl:.2f}× → **{p['accurate after'] / fl:.2f}×** | "
                f"{p['advanced before'] / fl:.2f}× → **{p['advanced after'] / fl:.2f}×** | ≤ 1.6× / ≤ 2.0× |")
        lines += ["", "The first pass over the queries on freshly loaded indexes (each chunk's cached match data "
                  "is filled on its first use; before: the chunk's text analysed then, after: its term ids "
                  "taken from the index's stored segments), same queries and order:", "",
                  "| chunks | floor | accurate before | accurate after | advanced before | advanced after | "
                  "accurate / floor before → after | advanced / floor before → after |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for n, r in eng.items():
            p = r["first_pass_p50_ms"]
            fl = p["floor"]
            lines.append(
                f"| {int(n):,} | {fl:.2f} | {p['accurate before']:.2f} | {p['accurate after']:.2f} | "
                f"{p['advanced before']:.2f} | {p['advanced after']:.2f} | "
                f"{p['accurate before'] / fl:.2f}× → **{p['accurate after'] / fl:.2f}×** | "
                f"{p['advanced before'] / fl:.2f}× → **{p['advanced after'] / fl:.2f}×** |")
        lines += ["", "Relevance: " + "; ".join(
            f"{int(n):,} chunks: {r['same_ranking']}/{r['compared']} (query, mode) top-100 rankings identical "
            f"before vs after, largest score difference {r['max_score_diff']:.1e}" for n, r in eng.items())
            + " (identical rankings: every nDCG@10 unchanged).", ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="b4fdb25", help="git revision of the 'before' code")
    parser.add_argument("--replicas", default="11,27",
                        help="copies of Cranfield in the large indexes (comma-separated)")
    parser.add_argument("--queries", type=int, default=150)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "search_overhead.md")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="search-overhead-") as tmp:
        results["engine"] = engine_phase(args, Path(tmp))
    args.out.write_text(report(args, results, time.perf_counter() - t0), encoding="utf-8")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
