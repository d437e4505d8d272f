"""Tune the fusion of `fast` and train the learned second stage of `accurate`/`advanced`.

    .venv/bin/python benchmarks/train_ltr.py [--write]

Training data, and ONLY these (SciFact test is never read): SciFact `qrels/train.tsv`
(809 queries), cranfield, cisi and med (their only judgements). Each collection
counts equally (per-query weights 1/n_queries). Steps:
1. fast: grid over fusion (convex / rrf), dense_weight and rrf_k; pick the best mean nDCG@10.
2. accurate: a linear model over the second-stage features of the `rerank_depth`
   best fused candidates, fitted with a listwise softmax loss (ListNet, L2), by L-BFGS.
   The L2 strength is chosen by leave-one-collection-out.
3. advanced: grid over expansion parameters with a model per setting, the same way.
With --write the weights go to llamaeval/engine/data/ltr.json (with what they were trained on).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

sys.path.insert(0, str(Path(__file__).resolve().parent))
from modes import (  # noqa: E402
    ROOT, CachedQueryEmbedder, Embedder, RetrievalConfig, cached_query_vectors, collapse,
    collection_index, load_qrels, load_queries, metrics,
)

from llamaeval.engine._index import _top  # noqa: E402

TRAIN_SETS = (("scifact", "train"), ("cranfield", "test"), ("cisi", "test"), ("med", "test"))
FEATURES_ACCURATE = ["bm25", "dense", "dense_mm", "fused", "fused_rrf", "doc_bm25_max", "doc_dense_max",
                     "title", "coverage", "proximity", "length"]
FEATURES_ADVANCED = FEATURES_ACCURATE + ["bm25_prf", "dense_prf", "fused_prf", "fused_both"]


def load_sets(embedder: Embedder, config: RetrievalConfig) -> list[dict]:
    sets = []
    for name, split in TRAIN_SETS:
        qrels = load_qrels(name, split)
        queries = load_queries(name, qrels)
        vecs = cached_query_vectors(name, queries, embedder)
        index = collection_index(name, CachedQueryEmbedder(embedder, vecs), config)
        sets.append({"name": f"{name}/{split}", "qrels": qrels, "queries": queries, "index": index})
        print(f"loaded {name}/{split}: {len(queries)} queries, {index.num_chunks} chunks", file=sys.stderr)
    return sets


def ndcg_of(index, queries, qrels, mode) -> float:
    run = {}
    for q, text in queries.items():
        res = index.search(text, mode, 100)
        run[q] = collapse([h.entry.metadata["doc_id"] for h in res.hits])
    return metrics(run, qrels)["ndcg@10"]


# ----------------------------------------------------------------------------- step 1: fusion
def tune_fusion(sets: list[dict]) -> tuple[dict, list]:
    pre = []
    for s in sets:
        idx = s["index"]
        rows = []
        for q, text in s["queries"].items():
            sp = idx._bm25_scores(idx._query_weights(text))
            de = idx._dense_scores(idx.embedder.embed_query(text))
            rows.append((q, sp, de))
        pre.append(rows)
    grid = [{"fusion": "convex", "dense_weight": w} for w in (0.3, 0.4, 0.5, 0.6, 0.7)]
    grid += [{"fusion": "rrf", "rrf_k": k, "dense_weight": w} for k in (10, 30, 60) for w in (0.4, 0.5, 0.6)]
    table = []
    for params in grid:
        per_set = []
        for s, rows in zip(sets, pre):
            idx = s["index"].with_config(replace(s["index"].config, **params))
            run = {}
            for q, sp, de in rows:
                cand, fused = idx._fuse(sp, de, idx.config.fast_candidates)
                order = cand[np.lexsort((cand, -fused))]
                run[q] = collapse([idx.entries[i].metadata["doc_id"] for i in order])
            per_set.append(metrics(run, s["qrels"])["ndcg@10"])
        table.append((params, per_set, float(np.mean(per_set))))
        print(f"fusion {params}: {' '.join(f'{v:.4f}' for v in per_set)} mean {np.mean(per_set):.4f}", file=sys.stderr)
    best = max(table, key=lambda r: r[2])
    return best[0], table


# ----------------------------------------------------------------------------- steps 2-3: LTR
def collect(sets: list[dict], mode: str, features: list[str]) -> list[dict]:
    """Per query: feature matrix (n_cand, n_feat), graded labels, collection id."""
    data = []
    for sid, s in enumerate(sets):
        idx = s["index"]
        for q, text in s["queries"].items():
            timings: dict = {}
            cand, _, stage, ctx = idx._candidates(text, mode, timings)
            feats = idx._stage_features(cand, stage, ctx, mode)
            x = np.stack([feats[f] for f in features], axis=1)
            rel = s["qrels"].get(q, {})
            y = np.array([max(rel.get(idx.entries[i].metadata["doc_id"], 0), 0) for i in cand], dtype=np.float64)
            data.append({"set": sid, "q": q, "x": x, "y": y, "cand": cand})
    return data


def fit(data: list[dict], l2: float, n_sets: int) -> dict:
    """ListNet: minimise sum_q w_q * CE(softmax(gain_q), softmax(X_q w)) + l2 |w|^2."""
    use = [d for d in data if d["y"].sum() > 0]
    counts = np.bincount([d["set"] for d in use], minlength=n_sets)
    allx = np.concatenate([d["x"] for d in use])
    mean, std = allx.mean(0), allx.std(0) + 1e-9
    width = max(d["x"].shape[0] for d in use)
    nf = allx.shape[1]
    X = np.zeros((len(use), width, nf))
    M = np.zeros((len(use), width), dtype=bool)
    T = np.zeros((len(use), width))
    W = np.array([1.0 / counts[d["set"]] / n_sets for d in use])
    for i, d in enumerate(use):
        n = d["x"].shape[0]
        X[i, :n] = (d["x"] - mean) / std
        M[i, :n] = True
        g = 2.0 ** d["y"] - 1.0
        T[i, :n] = g / g.sum()

    def loss(w):
        s = X @ w
        s = np.where(M, s, -1e9)
        s_max = s.max(1, keepdims=True)
        logz = np.log(np.exp(s - s_max).sum(1, keepdims=True)) + s_max
        logp = np.where(M, s - logz, 0.0)
        p = np.where(M, np.exp(logp), 0.0)
        ce = -(T * logp).sum(1)
        grad_s = (p - T) * W[:, None]
        g = np.einsum("qn,qnf->f", grad_s, X) + 2 * l2 * w
        return float((W * ce).sum() + l2 * w @ w), g

    res = minimize(loss, np.zeros(nf), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return {"weights": res.x.tolist(), "mean": mean.tolist(), "std": std.tolist(), "bias": 0.0}


def evaluate_model(data: list[dict], model: dict, sets: list[dict], which: set[int]) -> list[float]:
    w, mean, std = np.array(model["weights"]), np.array(model["mean"]), np.array(model["std"])
    out = []
    for sid, s in enumerate(sets):
        if sid not in which:
            continue
        run = {}
        idx = s["index"]
        for d in data:
            if d["set"] != sid:
                continue
            sc = ((d["x"] - mean) / std) @ w
            order = d["cand"][np.lexsort((d["cand"], -sc))]
            run[d["q"]] = collapse([idx.entries[i].metadata["doc_id"] for i in order])
        out.append(metrics(run, s["qrels"])["ndcg@10"])
    return out


def train(data: list[dict], sets: list[dict], label: str) -> tuple[dict, dict]:
    n = len(sets)
    report = {}
    best_l2, best_score = None, -1.0
    for l2 in (1e-4, 1e-3, 1e-2):
        held = []
        for out in range(n):
            m = fit([d for d in data if d["set"] != out], l2, n)
            held.append(evaluate_model(data, m, sets, {out})[0])
        score = float(np.mean(held))
        report[f"l2={l2}"] = {"leave_one_collection_out_ndcg@10": dict(zip([s["name"] for s in sets], held)),
                              "mean": score}
        print(f"{label} l2={l2}: held-out {' '.join(f'{v:.4f}' for v in held)} mean {score:.4f}", file=sys.stderr)
        if score > best_score:
            best_l2, best_score = l2, score
    model = fit(data, best_l2, n)
    insample = evaluate_model(data, model, sets, set(range(n)))
    report["chosen_l2"] = best_l2
    report["in_sample_ndcg@10"] = dict(zip([s["name"] for s in sets], insample))
    print(f"{label} final l2={best_l2}: in-sample {' '.join(f'{v:.4f}' for v in insample)}", file=sys.stderr)
    return model, report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true", help="write llamaeval/engine/data/ltr.json")
    ap.add_argument("--skip-fusion", action="store_true")
    args = ap.parse_args()
    from threadpoolctl import threadpool_limits

    t0 = time.time()
    embedder = Embedder(num_threads=1)
    base = RetrievalConfig()
    with threadpool_limits(limits=1, user_api="blas"):
        sets = load_sets(embedder, base)
        tuning: dict = {"trained_on": [s["name"] for s in sets], "never_used": "scifact/test"}
        if not args.skip_fusion:
            best, table = tune_fusion(sets)
            tuning["fusion_grid"] = [{"params": p, "ndcg@10": dict(zip([s["name"] for s in sets], v)), "mean": m}
                                     for p, v, m in table]
            tuning["fusion_chosen"] = best
            base = replace(base, **best)
            for s in sets:
                s["index"] = s["index"].with_config(base)
        data = collect(sets, "accurate", FEATURES_ACCURATE)
        acc_model, acc_report = train(data, sets, "accurate")
        models = {"accurate": {"features": FEATURES_ACCURATE, **acc_model}}
        tuning["accurate"] = acc_report
        # advanced: expansion grid, a model per setting, chosen by held-out mean
        adv_best = None
        for prf in ({"prf_docs": 3, "prf_terms": 10, "prf_weight": 0.3, "rocchio_beta": 0.3},
                    {"prf_docs": 5, "prf_terms": 20, "prf_weight": 0.4, "rocchio_beta": 0.5},
                    {"prf_docs": 10, "prf_terms": 20, "prf_weight": 0.5, "rocchio_beta": 1.0}):
            cfg = replace(base, **prf)
            for s in sets:
                s["index"] = s["index"].with_config(cfg)
            data = collect(sets, "advanced", FEATURES_ADVANCED)
            model, report = train(data, sets, f"advanced {prf}")
            held = max(v["mean"] for k, v in report.items() if k.startswith("l2="))
            tuning.setdefault("advanced_grid", []).append({"params": prf, "held_out_mean": held, "report": report})
            if adv_best is None or held > adv_best[0]:
                adv_best = (held, prf, model)
        models["advanced"] = {"features": FEATURES_ADVANCED, **adv_best[2]}
        tuning["advanced_chosen"] = adv_best[1]
    tuning["seconds"] = round(time.time() - t0, 1)
    out = {"description": "Linear learning-to-rank weights (ListNet) of llamaeval's accurate/advanced second "
                          "stage; produced by benchmarks/train_ltr.py", "models": models, "tuning": tuning}
    print(json.dumps({k: v for k, v in tuning.items() if k != "fusion_grid"}, indent=1)[:4000])
    if args.write:
        path = ROOT / "llamaeval" / "engine" / "data" / "ltr.json"
        path.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
