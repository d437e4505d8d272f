"""MiniLM (int8 ONNX, 384 dims) vs the static WordLlama embedder (256 dims): speed and relevance.

    OMP_NUM_THREADS=1 RAYON_NUM_THREADS=1 .venv/bin/python benchmarks/embedders.py \
        [--collections adi,med,cranfield,cisi,scifact,cf] [--rounds 5] [--out benchmarks/results/embedders.md]

Speed (one core each: ``Embedder(num_threads=1)``, tokenizers' and BLAS threads 1): the same
Cranfield chunks, embedded in alternating rounds (MiniLM, static, static, MiniLM, ...), so the
noise of this shared machine falls on both alike; passages/s is chunks over the median round's
seconds. Query latency: the collection's queries one by one, each query embedded by both models
back to back (order alternating), p50/p95 in milliseconds. The ingest projections multiply the
measured passages/s by the chunks per document of the bundled collections.

Relevance (in-process, the engine as the server runs it): each collection's documents become
chunks exactly as the server makes them (title + blank line + body, 256/32 MiniLM word pieces:
the two pipelines differ only in the vectors), embedded by each model; ``fast`` / ``accurate`` /
``advanced`` with the default retrieval config; chunk hits collapse to documents; nDCG@10
(linear gain) and recall@100 over the judged test queries. MiniLM passage vectors are cached
under $LLAMAEVAL_CACHE (as benchmarks/modes.py does); the static model is fast enough to embed
every time. The bundled collections are read from the package (``llamaeval.datasets``); ``cf``
(and ``cosqa``) from ../shared/datasets when present.

Through the runner (``--runner``): the embedded server, one Cranfield upload, two pipelines that
differ only in ``embedding_config``; sync time of each and the runner's grid (fast/accurate/
advanced, top_k 100) over HTTP, metrics from llamaeval.metrics.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
from dataclasses import replace
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from llamaeval.datasets._registry import BUNDLED, bundled_path  # noqa: E402
from llamaeval.engine import ChunkingConfig, Embedder, Index, IndexEntry, RetrievalConfig  # noqa: E402
from llamaeval.engine._embedders import embedder_for  # noqa: E402
from llamaeval.engine._static_embed import WORDLLAMA_MODEL_NAME  # noqa: E402
import modes as M  # noqa: E402  (metrics, collapse, MiniLM vector cache)

SHARED = Path(os.environ.get("LLAMAEVAL_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
MODES = ("fast", "accurate", "advanced")
#: dense_weight of the extra fast rows (the default is 0.6; 0 is BM25 alone)
VARIANT_WEIGHTS = (0.3, 0.0)


# ----------------------------------------------------------------------------- data
def _open(folder: Path, name: str):
    gz = folder / f"{name}.gz"
    return gzip.open(gz, "rt", encoding="utf-8") if gz.exists() else open(folder / name, encoding="utf-8")


def collection_folder(name: str) -> Path | None:
    if name in BUNDLED:
        return bundled_path(name)
    folder = SHARED / name
    return folder if (folder / "corpus.jsonl").exists() else None


def load(name: str) -> tuple[list[dict], dict[str, str], dict[str, dict[str, int]]]:
    folder = collection_folder(name)
    with _open(folder, "corpus.jsonl") as fh:
        corpus = [json.loads(line) for line in fh if line.strip()]
    with _open(folder, "queries.jsonl") as fh:
        texts = {str(q["_id"]): q["text"] for q in map(json.loads, filter(str.strip, fh))}
    qrels: dict[str, dict[str, int]] = {}
    with _open(folder / "qrels", "test.tsv") as fh:
        next(fh)
        for line in fh:
            q, d, s = line.rstrip("\n").split("\t")
            qrels.setdefault(q, {})[d] = int(s)
    queries = {q: texts[q] for q in sorted(qrels, key=M._natural)
               if q in texts and any(v > 0 for v in qrels[q].values())}
    return corpus, queries, qrels


def entries_of(corpus: list[dict], tokenizer: Embedder) -> list[IndexEntry]:
    """Chunks as the server makes them (MiniLM word pieces for every model)."""
    return M.corpus_entries(corpus, tokenizer, ChunkingConfig())


# ----------------------------------------------------------------------------- speed
def speed(minilm: Embedder, static, rounds: int, sample: int) -> dict:
    corpus, queries, _ = load("cranfield")
    texts = [e.text for e in entries_of(corpus, minilm)][:sample]
    minilm.embed_passages(texts[:8])  # load both
    static.embed_passages(texts[:8])
    reps = 20  # the static model repeats its pass within a round: one pass takes a few ms
    load_before = os.getloadavg()[0]
    per = {"minilm": [], "static": []}
    for r in range(rounds):
        order = ("minilm", "static") if r % 2 == 0 else ("static", "minilm")
        for who in order:
            t = time.perf_counter()
            if who == "minilm":
                minilm.embed_passages(texts)
                per[who].append(len(texts) / (time.perf_counter() - t))
            else:
                for _ in range(reps):
                    static.embed_passages(texts)
                per[who].append(reps * len(texts) / (time.perf_counter() - t))
        print(f"[speed] round {r + 1}: MiniLM {per['minilm'][-1]:.1f} /s, static {per['static'][-1]:.0f} /s",
              file=sys.stderr)
    lat = {"minilm": [], "static": []}
    for i, text in enumerate(queries.values()):
        for who in (("minilm", "static") if i % 2 == 0 else ("static", "minilm")):
            emb = minilm if who == "minilm" else static
            t = time.perf_counter()
            emb.embed_query(text)
            lat[who].append((time.perf_counter() - t) * 1000)
    tokens = {"minilm": float(np.mean([minilm.count_tokens(t) for t in texts])),
              "static": float(np.mean([static.count_tokens(t) for t in texts]))}
    return {"chunks": len(texts), "rounds": rounds, "passages_per_s": {k: statistics.median(v) for k, v in per.items()},
            "rounds_per_s": per, "query_ms": {k: (float(np.percentile(v, 50)), float(np.percentile(v, 95)))
                                              for k, v in lat.items()},
            "n_queries": len(queries), "tokens_per_chunk": tokens,
            "load_average": (load_before, os.getloadavg()[0])}


# ----------------------------------------------------------------------------- relevance
def relevance(name: str, minilm: Embedder, static) -> dict:
    corpus, queries, qrels = load(name)
    entries = entries_of(corpus, minilm)
    out: dict = {"docs": len(corpus), "chunks": len(entries), "queries": len(queries), "models": {}}
    for label, emb in (("minilm", minilm), ("static", static)):
        t = time.perf_counter()
        if label == "minilm":
            vectors = M.cached_embeddings(name, entries, minilm)
        else:
            vectors = static.embed_passages([e.text for e in entries])
        embed_s = time.perf_counter() - t
        index = Index(entries, vectors, RetrievalConfig(), emb)
        row: dict = {"embed_s": embed_s}
        for mode in MODES:
            run, lat = M.run_mode(index, queries, mode, 100)
            m = M.metrics(run, qrels)
            row[mode] = {"ndcg@10": m["ndcg@10"], "recall@100": m["recall@100"],
                         "p50_ms": float(np.percentile(lat, 50)) * 1000}
        for weight in VARIANT_WEIGHTS:  # fast with less weight on the dense retriever
            run, _ = M.run_mode(index.with_config(replace(RetrievalConfig(), dense_weight=weight)), queries, "fast", 100)
            m = M.metrics(run, qrels)
            row[f"fast dw={weight}"] = {"ndcg@10": m["ndcg@10"], "recall@100": m["recall@100"]}
        out["models"][label] = row
        print(f"[{name}] {label}: " + ", ".join(f"{m} {row[m]['ndcg@10']:.4f}" for m in MODES), file=sys.stderr)
    return out


# ----------------------------------------------------------------------------- runner
def through_runner(collection: str = "cranfield") -> dict:
    """Two pipelines on the embedded server, identical but for ``embedding_config``; the sync of
    each, then the runner's grid over both (fast/accurate/advanced, top_k 100, concurrency 1)."""
    import httpx

    import llamaeval as le
    from llamaeval.server import EmbeddedServer

    qs = le.load_queryset(collection)
    out: dict = {"collection": collection, "pipelines": {}}
    with EmbeddedServer(settings={"LLAMAEVAL_EMBED_CACHE_MB": "0"}) as srv:  # each pipeline embeds everything
        lc = le.LlamaCloud(base_url=srv.base_url, api_key=srv.api_key)
        minilm_id = le.ingest(lc, qs, pipeline=f"{collection}-minilm", progress=False, timeout=7200)
        http = httpx.Client(base_url=srv.api_url, headers={"Authorization": f"Bearer {srv.api_key}"}, timeout=600)
        first = http.get(f"/pipelines/{minilm_id}").json()
        files = [{"file_id": f["file_id"], "metadata": f["metadata"]}
                 for f in http.get(f"/pipelines/{minilm_id}/files").json()]
        static = http.post("/pipelines", json={"name": f"{collection}-static", "project_id": first["project_id"],
                                               "embedding_config": {"model_name": WORDLLAMA_MODEL_NAME}}).json()
        http.put(f"/pipelines/{static['id']}/files", json=files).raise_for_status()
        job = http.post(f"/pipelines/{static['id']}/sync").json()
        while job["status"] not in ("completed", "failed"):
            time.sleep(0.2)
            job = http.get(f"/pipelines/{static['id']}/jobs/{job['id']}").json()
        jobs = {"minilm": http.get(f"/pipelines/{minilm_id}/jobs").json()[-1], "static": job}
        ids = {"minilm": minilm_id, "static": static["id"]}
        for label, j in jobs.items():
            from datetime import datetime

            seconds = (datetime.fromisoformat(j["completed_at"]) - datetime.fromisoformat(j["started_at"])).total_seconds()
            out["pipelines"][label] = {"id": ids[label], "status": j["status"], "sync_s": seconds,
                                       "chunks": j["num_chunks"], "files": j["num_files"],
                                       "embedding_model": http.get(f"/pipelines/{ids[label]}").json()["embedding_model"]}
        run = le.benchmark(lc, [minilm_id, static["id"]], qs, modes=list(MODES), top_k=[100], concurrency=1,
                           config=le.BenchmarkConfig(warmup=2, seed=0))
        metrics = run.evaluate(["ndcg@10", "recall@100"])
        lat = run.requests.groupby(["pipeline_id", "mode"])["latency_s"].median()
        for label, pid in ids.items():
            rows = metrics[metrics["pipeline_id"] == pid]
            out["pipelines"][label]["modes"] = {
                str(r["mode"]): {"ndcg@10": float(r["ndcg@10"]), "recall@100": float(r["recall@100"]),
                                 "p50_ms": float(lat[(pid, r["mode"])]) * 1000} for _, r in rows.iterrows()}
    return out


# ----------------------------------------------------------------------------- report
def report(speed_res: dict | None, rel: dict[str, dict], runner_res: dict | None) -> list[str]:
    lines = ["# Embedders: MiniLM vs the static WordLlama model", "",
             f"`benchmarks/embedders.py` on {platform.machine()}, {os.cpu_count()} cores shared with other jobs, "
             f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}. MiniLM = "
             f"`all-MiniLM-L6-v2-onnx-int8` (384 dims, the default); static = `{WORDLLAMA_MODEL_NAME}` (256 dims, "
             "`pip install 'llamaeval[fast-embed]'`, selected per pipeline with `embedding_config`).", ""]
    if speed_res and rel:
        pm, ps = speed_res["passages_per_s"]["minilm"], speed_res["passages_per_s"]["static"]
        fast = [r["models"]["static"]["fast"]["ndcg@10"] - r["models"]["minilm"]["fast"]["ndcg@10"] for r in rel.values()]
        above = [r for r in rel.values() if "fast dw=0.3" in r["models"]["static"]
                 and r["models"]["static"]["fast dw=0.3"]["ndcg@10"] > r["models"]["minilm"]["fast dw=0.0"]["ndcg@10"]]
        lines += ["**In short.** The static model embeds "
                  f"{ps / pm:.0f}x the passages per second of MiniLM on one core and costs {-np.mean(fast):.3f} "
                  f"nDCG@10 in `fast` on average over {len(rel)} collections (from {-max(fast):.3f} to "
                  f"{-min(fast):.3f}). Use it when ingestion time decides (a first look at a big corpus, a "
                  "chunking sweep, a corpus that changes faster than MiniLM can embed it); keep MiniLM for "
                  "the pipeline whose relevance you ship. With the static model, give the dense retriever "
                  f"less weight (`dense_weight` 0.3): then it beats BM25 alone on {len(above)} of {len(rel)} "
                  "collections.", ""]
    if speed_res:
        s = speed_res
        pm, ps = s["passages_per_s"]["minilm"], s["passages_per_s"]["static"]
        lines += ["## Speed (one core each)", "",
                  f"Same {s['chunks']} Cranfield chunks (256/32 MiniLM word pieces; {s['tokens_per_chunk']['minilm']:.0f} "
                  f"MiniLM / {s['tokens_per_chunk']['static']:.0f} Llama-2 tokens per chunk on average), {s['rounds']} "
                  "alternating rounds, median round; query latency over "
                  f"{s['n_queries']} Cranfield queries, each embedded by both back to back.", "",
                  "| | MiniLM | static | ratio |", "|---|---:|---:|---:|",
                  f"| passages / s | {pm:.1f} | {ps:,.0f} | {ps / pm:.0f}x |",
                  f"| query embedding p50 (ms) | {s['query_ms']['minilm'][0]:.2f} | {s['query_ms']['static'][0]:.3f} | "
                  f"{s['query_ms']['minilm'][0] / s['query_ms']['static'][0]:.0f}x |",
                  f"| query embedding p95 (ms) | {s['query_ms']['minilm'][1]:.2f} | {s['query_ms']['static'][1]:.3f} | "
                  f"{s['query_ms']['minilm'][1] / s['query_ms']['static'][1]:.0f}x |", "",
                  "Rounds (passages/s): MiniLM " + ", ".join(f"{v:.1f}" for v in s["rounds_per_s"]["minilm"])
                  + "; static " + ", ".join(f"{v:,.0f}" for v in s["rounds_per_s"]["static"]) + "."
                  + (" Load average (1 min) at the start and end of the speed runs: "
                     f"{s['load_average'][0]:.1f} / {s['load_average'][1]:.1f} on 2 cores — other jobs held the "
                     "machine, so the absolute rates are low (issue 17 measured MiniLM at ~20 chunks/s with two "
                     "threads on a quieter machine); the ratio, from interleaved rounds, is the figure to use."
                     if "load_average" in s else ""), ""]
        if rel:
            chunks = sum(r["chunks"] for r in rel.values())
            docs = sum(r["docs"] for r in rel.values())
            per_doc = chunks / docs
            lines += ["### Ingest projections (embedding only, one core)", "",
                      f"{per_doc:.2f} chunks per document (the measured collections together: {chunks:,} chunks of "
                      f"{docs:,} documents). Two cores roughly halve MiniLM's time (onnxruntime's two threads); the "
                      "static model runs on one thread, so a second core serves queries instead. Parsing, chunking "
                      "(MiniLM's tokenizer, for both) and the index build come on top, the same for both models.", "",
                      "| documents | chunks | MiniLM | static |", "|---:|---:|---:|---:|"]
            for n in (100_000, 1_000_000):
                c = n * per_doc
                lines.append(f"| {n:,} | {c:,.0f} | {_duration(c / pm)} | {_duration(c / ps)} |")
            lines.append("")
            if runner_res:
                a, b = runner_res["pipelines"]["minilm"], runner_res["pipelines"]["static"]
                ra, rb = a["chunks"] / a["sync_s"], b["chunks"] / b["sync_s"]
                lines += [f"End to end, a server sync ({runner_res['collection']}, below: parse, chunk, embed, index "
                          f"build; MiniLM on the server's two onnxruntime threads) ran at {ra:.1f} vs {rb:.1f} chunks/s "
                          f"({rb / ra:.0f}x; the two syncs ran one after the other, not interleaved, on the shared "
                          "machine: a rough ratio): with the static model, embedding is no longer what a sync waits for — "
                          "parsing, MiniLM-word-piece chunking and the index build are. At those rates:", "",
                          "| documents | MiniLM sync | static sync |", "|---:|---:|---:|"]
                for n in (100_000, 1_000_000):
                    c = n * per_doc
                    lines.append(f"| {n:,} | {_duration(c / ra)} | {_duration(c / rb)} |")
                lines.append("")
    if rel:
        lines += ["## Relevance per collection", "",
                  "nDCG@10 / recall@100 over the judged test queries; default retrieval config (hybrid BM25 + dense, "
                  "the learned second stage for accurate/advanced, trained on MiniLM features); identical chunks. "
                  "Δ = static - MiniLM.", "",
                  "| collection | chunks | queries | mode | MiniLM nDCG@10 | static nDCG@10 | Δ nDCG@10 | "
                  "MiniLM R@100 | static R@100 | Δ R@100 |", "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
        deltas: dict[str, list[float]] = {m: [] for m in MODES}
        for name, r in rel.items():
            a, b = r["models"]["minilm"], r["models"]["static"]
            for mode in MODES:
                d = b[mode]["ndcg@10"] - a[mode]["ndcg@10"]
                deltas[mode].append(d)
                lines.append(f"| {name} | {r['chunks']:,} | {r['queries']} | {mode} | {a[mode]['ndcg@10']:.4f} | "
                             f"{b[mode]['ndcg@10']:.4f} | {d:+.4f} | {a[mode]['recall@100']:.4f} | "
                             f"{b[mode]['recall@100']:.4f} | {b[mode]['recall@100'] - a[mode]['recall@100']:+.4f} |")
        lines += ["", "Mean Δ nDCG@10 over the collections: " + ", ".join(
            f"{m} {np.mean(v):+.4f} (worst {min(v):+.4f})" for m, v in deltas.items()) + ".", ""]
        lines += ["The weight of the dense retriever in the fusion (`dense_weight`, default 0.6; a pipeline sets it in "
                  "`retrieval_config`) was chosen with MiniLM. `fast` nDCG@10 with less of it (0 = BM25 alone, the "
                  "same for both models):", "",
                  "| collection | MiniLM 0.6 | MiniLM 0.3 | static 0.6 | static 0.3 | BM25 alone |",
                  "|---|---:|---:|---:|---:|---:|"]
        for name, r in rel.items():
            a, b = r["models"]["minilm"], r["models"]["static"]
            if "fast dw=0.3" not in a:
                continue
            lines.append(f"| {name} | {a['fast']['ndcg@10']:.4f} | {a['fast dw=0.3']['ndcg@10']:.4f} | "
                         f"{b['fast']['ndcg@10']:.4f} | {b['fast dw=0.3']['ndcg@10']:.4f} | "
                         f"{a['fast dw=0.0']['ndcg@10']:.4f} |")
        lines.append("")
        lines += ["Search latency p50 (ms, in-process, whole search incl. query embedding):", "",
                  "| collection | mode | MiniLM | static |", "|---|---|---:|---:|"]
        for name, r in rel.items():
            for mode in MODES:
                lines.append(f"| {name} | {mode} | {r['models']['minilm'][mode]['p50_ms']:.1f} | "
                             f"{r['models']['static'][mode]['p50_ms']:.1f} |")
        lines.append("")
    if runner_res:
        lines += runner_lines(runner_res)
    return lines


def runner_lines(res: dict) -> list[str]:
    p = res["pipelines"]
    a, b = p["minilm"], p["static"]
    lines = ["## Through the server and the runner", "",
             f"`{res['collection']}` uploaded once into the embedded server (embedding cache off), two pipelines "
             "differing only in `embedding_config` (`{\"model_name\": \"" + WORDLLAMA_MODEL_NAME + "\"}` for the "
             "second; default chunking and retrieval), each synced; then one `le.benchmark` over both pipelines "
             "(fast/accurate/advanced, top_k 100, concurrency 1, seeded shuffled order), metrics from "
             "`run.evaluate`. Sync = the job's started..completed (parse, chunk, embed, index build; the server's "
             "default onnxruntime threads).", "",
             "| | MiniLM | static |", "|---|---:|---:|",
             f"| embedding_model | `{a['embedding_model']}` | `{b['embedding_model']}` |",
             f"| files / chunks | {a['files']} / {a['chunks']} | {b['files']} / {b['chunks']} |",
             f"| sync (s) | {a['sync_s']:.1f} | {b['sync_s']:.1f} |",
             f"| chunks / s | {a['chunks'] / a['sync_s']:.1f} | {b['chunks'] / b['sync_s']:.1f} |"]
    for mode in MODES:
        ma, mb = a["modes"][mode], b["modes"][mode]
        lines.append(f"| {mode}: nDCG@10 / R@100 / p50 ms | {ma['ndcg@10']:.4f} / {ma['recall@100']:.4f} / "
                     f"{ma['p50_ms']:.1f} | {mb['ndcg@10']:.4f} / {mb['recall@100']:.4f} / {mb['p50_ms']:.1f} |")
    return lines + [""]


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.0f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--collections", default="adi,med,cranfield,cisi,scifact")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sample", type=int, default=256, help="chunks per speed round")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--runner", metavar="COLLECTION", default=None,
                    help="also benchmark two pipelines on COLLECTION through the embedded server and the runner")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "embedders.json")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "embedders.md")
    args = ap.parse_args()
    minilm = Embedder(num_threads=1)
    static = embedder_for(WORDLLAMA_MODEL_NAME)
    previous = json.loads(args.json.read_text()) if args.json.exists() else {}
    speed_res = previous.get("speed") if args.skip_speed else speed(minilm, static, args.rounds, args.sample)
    rel = dict(previous.get("relevance", {}))
    for name in [c for c in args.collections.split(",") if c]:
        if collection_folder(name) is None:
            print(f"[{name}] not found: skipped", file=sys.stderr)
            continue
        rel[name] = relevance(name, minilm, static)
        args.json.write_text(json.dumps({"speed": speed_res, "relevance": rel}, indent=1))
    runner_res = through_runner(args.runner) if args.runner else previous.get("runner")
    args.json.write_text(json.dumps({"speed": speed_res, "relevance": rel, "runner": runner_res}, indent=1))
    args.out.write_text("\n".join(report(speed_res, rel, runner_res)) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
