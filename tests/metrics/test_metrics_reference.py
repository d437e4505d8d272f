"""evaluate() agrees to 1e-6 with independent implementations (pytrec_eval = trec_eval's C code,
and ir_measures) on real BM25 runs: adi (binary judgements) and cranfield (graded 1-4).

The runs are made without a server: bm25s over the bundled collection, turned into the runner's
results schema, with two configurations, some judged queries missing from one of them
and one failed request (rank NA), which must all score 0.
"""

import warnings

import ir_measures
import numpy as np
import pandas as pd
import pytest
import pytrec_eval
from ir_measures import RR, P, R, Success, nDCG

from llamaeval import load_queryset
from llamaeval.metrics import evaluate

bm25s = pytest.importorskip("bm25s")  # in the [server] extra, which CI installs with [dev]

# ours -> pytrec_eval measure key (trec_eval names)
TREC = {"ndcg@10": "ndcg_cut_10", "ndcg@3": "ndcg_cut_3", "map": "map", "map@100": "map_cut_100",
        "mrr": "recip_rank", "recall@20": "recall_20", "P@5": "P_5", "r-precision": "Rprec"}
# ours -> ir_measures measure (variants trec_eval names differently or lacks)
EXP_GAINS = {g: 2 ** g - 1 for g in range(5)}
IRM = {"hit_rate@5": Success @ 5, "mrr@10": RR @ 10, "ndcg_burges@10": nDCG(gains=EXP_GAINS) @ 10,
       "precision(rel=2)@5": P(rel=2) @ 5, "recall(rel=3)@20": R(rel=3) @ 20}


def _bm25_results(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A results frame (runner schema) of two BM25 configurations over a bundled collection, and its qrels."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cranfield's two empty documents are reported, and kept
        queryset = load_queryset(name)
    frame = queryset.corpus.fillna("")
    corpus = [{"_id": r.doc_id, "title": r.title, "text": r.text} for r in frame.itertuples()]
    queries = [{"_id": r.query_id, "text": r.text} for r in queryset.queries.itertuples()]
    qrels = queryset.qrels[["query_id", "doc_id", "relevance"]].astype({"query_id": str, "doc_id": str})
    doc_ids = [d["_id"] for d in corpus]
    rows = []
    for mode, top_k, field in (("text", 100, lambda d: f"{d['title']} {d['text']}"), ("title", 20, lambda d: d["title"])):
        retriever = bm25s.BM25(k1=0.9, b=0.4)
        retriever.index(bm25s.tokenize([field(d) for d in corpus], show_progress=False), show_progress=False)
        tokens = bm25s.tokenize([q["text"] for q in queries], show_progress=False)
        idx, scores = retriever.retrieve(tokens, k=min(top_k, len(corpus)), show_progress=False, n_threads=1)
        for qi, q in enumerate(queries):
            if mode == "title" and qi % 7 == 0:
                continue  # judged queries absent from this configuration: must score 0
            if mode == "title" and qi % 7 == 1:
                rows.append({"pipeline_id": "bm25", "mode": mode, "top_k": top_k, "query_id": q["_id"],
                             "rank": pd.NA, "doc_id": pd.NA, "score": np.nan, "status": 500, "error": "boom"})
                continue  # a failed request: one row, rank NA
            for rank, (i, s) in enumerate(zip(idx[qi], scores[qi]), start=1):
                if s <= 0:
                    break
                rows.append({"pipeline_id": "bm25", "mode": mode, "top_k": top_k, "query_id": q["_id"],
                             "rank": rank, "doc_id": doc_ids[i], "score": float(s), "status": 200, "error": None})
    results = pd.DataFrame(rows)
    results["rank"] = results["rank"].astype("Int64")
    return results, qrels


def _references(results: pd.DataFrame, qrels: pd.DataFrame, mode: str) -> dict[str, dict[str, float]]:
    """Per-query values from pytrec_eval and ir_measures; judged queries they skip score 0."""
    qrels_dict: dict = {}
    for row in qrels.itertuples():
        qrels_dict.setdefault(row.query_id, {})[row.doc_id] = int(row.relevance)
    run = results[(results["mode"] == mode) & results["rank"].notna()]
    run_dict: dict = {}
    for row in run.itertuples():
        run_dict.setdefault(row.query_id, {})[row.doc_id] = 1.0 / row.rank  # same order as ours, no ties
    judged = sorted(qrels_dict)
    evaluator = pytrec_eval.RelevanceEvaluator(qrels_dict, {"ndcg_cut.3,10", "map", "map_cut.100", "recip_rank",
                                                            "recall.20", "P.5", "Rprec"})
    trec = evaluator.evaluate(run_dict)
    out = {ours: {q: trec.get(q, {}).get(key, 0.0) for q in judged} for ours, key in TREC.items()}
    irm = {ours: dict.fromkeys(judged, 0.0) for ours in IRM}
    by_measure = {str(m): ours for ours, m in IRM.items()}
    for metric in ir_measures.iter_calc(list(IRM.values()), qrels_dict, run_dict):
        irm[by_measure[str(metric.measure)]][metric.query_id] = metric.value
    return out | irm


@pytest.mark.parametrize("collection", ["adi", "cranfield"])
def test_agrees_with_trec_eval_and_ir_measures(collection):
    results, qrels = _bm25_results(collection)
    metrics = [*TREC, *IRM]
    ours = evaluate(results, qrels, metrics, per_query=True)
    n_judged = qrels["query_id"].nunique()
    assert len(ours) == 2 * n_judged * len(metrics)
    checked = 0
    for mode in ("text", "title"):
        reference = _references(results, qrels, mode)
        mine = ours[ours["mode"] == mode]
        for metric in metrics:
            got = mine[mine["metric"] == metric].set_index("query_id")["value"].to_dict()
            assert got.keys() == reference[metric].keys()
            worst = max(abs(got[q] - reference[metric][q]) for q in got)
            assert worst < 1e-6, f"{collection} {mode} {metric}: max per-query difference {worst}"
            checked += 1
    # the means (the table) are the means of those per-query values, over all judged queries
    table = evaluate(results, qrels, ["ndcg@10", "map"]).set_index("mode")
    assert (table["n_queries"] == n_judged).all()
    pq = ours[ours["metric"] == "ndcg@10"].groupby("mode")["value"].mean()
    assert table["ndcg@10"].to_dict() == pytest.approx(pq.to_dict(), abs=1e-12)
    # sanity: this is a real run, not an all-zero one (README range: adi 0.43, cranfield 0.33)
    assert table.loc["text", "ndcg@10"] > 0.25
    assert table.loc["title", "ndcg@10"] < table.loc["text", "ndcg@10"]
