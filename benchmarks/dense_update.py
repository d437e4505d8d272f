"""A sync past ``ann_threshold``: the HNSW graph updated (chunks of removed or changed files taken
out, new ones added) vs built again from every vector, and what a long chain of updates does to
recall.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dense_update.py [--size 100000] [--file-chunks 60]
        [--chain 30] [--queries 200] [--out benchmarks/results/dense_update.md]

Vectors: ``benchmarks/dense_ann.py``'s corpus (the seven shared collections' real MiniLM vectors,
then normalised variations of them; cached under $LLAMAEVAL_ANN_CACHE) — ``--size`` of them, the
last ``chain x file-chunks`` held back as the chunks that changed files bring. A "file" is
``--file-chunks`` consecutive chunks. Syncs, each from the previous version's graph, as the server
runs them (``DenseSearch.update`` with the kept-chunk mapping ``Index.load`` computes): add one
file at the end; change one file in the middle (its chunks out, the new version's in at the end);
remove one file. Each is timed against building the graph of the same vectors from scratch
(``DenseSearch.graph()``, every core). Then ``--chain`` successive one-file changes, and the
recall@100 of the dense search (graph candidates rescored exactly) against exact search on real
queries, after the chain vs a graph built fresh on the same final vectors.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

os.environ.setdefault("LLAMAEVAL_CACHE", os.environ.get("LLAMAEVAL_ANN_CACHE", "/work/cache/ann"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from llamaeval.engine import Embedder  # noqa: E402
from llamaeval.engine._dense import DenseConfig, DenseSearch, exact_top  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def recall(search: DenseSearch, emb: np.ndarray, queries: np.ndarray, k: int = 100) -> float:
    got = []
    for qv in queries:
        truth, _ = exact_top(emb, qv, k)
        ids, _ = search.search(qv, k)
        got.append(np.intersect1d(truth, ids).size / k)
    return float(np.mean(got))


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    from dense_ann import corpus, real_material

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--file-chunks", type=int, default=60)
    parser.add_argument("--chain", type=int, default=30)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--no-rebuild", action="store_true",
                        help="time no rebuild per sync (the first full build is the reference; for 1M chunks)")
    parser.add_argument("--append", action="store_true", help="append the table to --out instead of replacing it")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "dense_update.md")
    args = parser.parse_args()
    t_start = time.perf_counter()
    f = args.file_chunks
    entries, vectors, terms, _, q_vecs = real_material(Embedder(num_threads=1))
    spare = (args.chain + 2) * f
    _, pool, _ = corpus(args.size + spare, entries, vectors, terms, np.random.default_rng(11), vectors_only=True)
    base, fresh = pool[: args.size], pool[args.size:]
    queries = q_vecs[np.random.default_rng(3).choice(len(q_vecs), args.queries, replace=False)]
    config = DenseConfig(threshold=1)

    rows = []
    first = DenseSearch(base, config)
    build_s, _ = timed(first.graph)
    rows.append(("full build", args.size, build_s, None))

    def sync(previous: DenseSearch, prev_emb: np.ndarray, drop: slice | None, add: np.ndarray
             ) -> tuple[DenseSearch, np.ndarray, float, float]:
        keep = np.ones(prev_emb.shape[0], dtype=bool)
        if drop is not None:
            keep[drop] = False
        emb = np.concatenate([prev_emb[keep], add])
        old_of_new = np.concatenate([np.flatnonzero(keep), np.full(add.shape[0], -1)]).astype(np.int64)
        search = DenseSearch(emb, config)
        seconds, ok = timed(lambda: search.update(previous, old_of_new))
        if not ok:
            raise SystemExit("the update was refused")
        rebuild_s = build_s if args.no_rebuild else timed(DenseSearch(emb, config).graph)[0]
        return search, emb, seconds, rebuild_s

    mid = slice(args.size // 2, args.size // 2 + f)
    s_add, e_add, t, rb = sync(first, base, None, fresh[:f])
    rows.append(("add one file", e_add.shape[0], t, rb))
    s_chg, e_chg, t, rb = sync(first, base, mid, fresh[f:2 * f])
    rows.append(("change one file (middle)", e_chg.shape[0], t, rb))
    s_rm, e_rm, t, rb = sync(first, base, mid, fresh[:0])
    rows.append(("remove one file (middle)", e_rm.shape[0], t, rb))

    search, emb = first, base
    chain_s = []
    rng = np.random.default_rng(5)
    for i in range(args.chain):
        at = int(rng.integers(0, emb.shape[0] - f))
        keep = np.ones(emb.shape[0], dtype=bool)
        keep[at:at + f] = False
        new_emb = np.concatenate([emb[keep], fresh[(i + 2) * f:(i + 3) * f]])
        old_of_new = np.concatenate([np.flatnonzero(keep), np.full(f, -1)]).astype(np.int64)
        nxt = DenseSearch(new_emb, config)
        seconds, ok = timed(lambda: nxt.update(search, old_of_new))
        if not ok:
            raise SystemExit("the update was refused")
        chain_s.append(seconds)
        search, emb = nxt, new_emb
    r_chain = recall(search, emb, queries)
    if args.no_rebuild:
        r_fresh = float("nan")
    else:
        rebuilt = DenseSearch(emb, config)
        rebuilt.graph()
        r_fresh = recall(rebuilt, emb, queries)
    r_first = recall(first, base, queries)

    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [] if args.append else ["# HNSW graph: updated by a sync vs built again (issue 17)", ""]
    lines += [f"## {args.size:,} chunks", "",
             f"`OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dense_update.py --size {args.size} --file-chunks {f} "
             f"--chain {args.chain} --queries {args.queries}{' --no-rebuild' if args.no_rebuild else ''}"
             f"{' --append' if args.append else ''}` — {now}; {platform.machine()}, {os.cpu_count()} cores "
             f"shared with other jobs (load average {os.getloadavg()[0]:.1f} at the end); "
             f"{(time.perf_counter() - t_start) / 60:.1f} min. Method: see the module docstring. Graph: usearch "
             f"HNSW M={config.connectivity}, ef_construction={config.expansion_add}, {config.quantization}.", "",
             ("Each update is compared with the first full build (no rebuild per sync at this size)."
              if args.no_rebuild else "Each update is compared with building the same vectors' graph from scratch."),
             "",
             "| sync | chunks after | update wall s | build from scratch wall s | update / build |",
             "|---|---:|---:|---:|---:|"]
    for label, n, t, rb in rows:
        if rb is None:
            lines.append(f"| {label} | {n:,} | – | {t:.2f} | – |")
        else:
            lines.append(f"| {label} | {n:,} | {t:.3f} | {rb:.2f} | {t / rb:.2%} |")
    lines += ["", f"A chain of {args.chain} one-file changes ({args.chain * f:,} entries removed and as many added, "
              f"{args.chain * f / args.size:.1%} of the index): update wall s median {np.median(chain_s):.3f}, "
              f"max {max(chain_s):.3f}; tombstones after it {search.graph().removed:,} "
              f"(a rebuild once they pass `max_removed_share` = {config.max_removed_share:.0%} of the live entries).",
              "", f"Dense recall@100 vs exact ({args.queries} real queries): first graph {r_first:.4f}; after the "
              f"chain {r_chain:.4f}" + ("." if args.no_rebuild else
                                        f"; a graph built fresh on the same final vectors {r_fresh:.4f}."), ""]
    text = "\n".join(lines) + "\n"
    if args.append and args.out.exists():
        text = args.out.read_text(encoding="utf-8") + "\n" + text
    args.out.write_text(text, encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
