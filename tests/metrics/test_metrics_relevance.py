"""evaluate(): values pinned on a tiny hand-checked run; bad input raises EvaluationError.

The agreement with independent implementations on real runs is in test_metrics_reference.py.
"""

from math import log2

import pandas as pd
import pytest

from llamaeval import EvaluationError
from llamaeval.metrics import evaluate, summarize

NA = None

# Judgements: q1 has a grade-2 and a grade-1 document plus a judged NON-relevant d3;
# q2 and q3 one relevant document each; q4 is judged but never asked (absent from the run).
QRELS = pd.DataFrame(
    [("q1", "d1", 2), ("q1", "d2", 1), ("q1", "d3", 0), ("q2", "d4", 1), ("q3", "d5", 1), ("q4", "d6", 1)],
    columns=["query_id", "doc_id", "relevance"],
)


def _rows(mode, ranking):
    return [{"pipeline_id": "p", "mode": mode, "top_k": 10, "query_id": q, "rank": r, "doc_id": d}
            for q, r, d in ranking]


# "fast": q1 -> d3 d1 d7 d2; q2 -> d8 d9 d4; q3 failed (one row, rank NA); q9 is unjudged.
# "accurate": perfect, and q1 lists d1 twice (two chunks of one doc; the best rank counts).
RESULTS = pd.DataFrame(
    _rows("fast", [("q1", 1, "d3"), ("q1", 2, "d1"), ("q1", 3, "d7"), ("q1", 4, "d2"),
                   ("q2", 1, "d8"), ("q2", 2, "d9"), ("q2", 3, "d4"),
                   ("q3", NA, NA), ("q9", 1, "d1")])
    + _rows("accurate", [("q1", 1, "d1"), ("q1", 2, "d2"), ("q1", 3, "d1"),
                         ("q2", 1, "d4"), ("q3", 1, "d5"), ("q4", 1, "d6")])
)

METRICS = ["ndcg@3", "ndcg_burges@3", "mrr", "map", "recall@3", "P@3", "r-precision",
           "hit_rate@1", "hit_rate@3", "precision(rel=2)@3"]

# Hand computation, "fast" (mean over the 4 judged queries; q3 failed and q4 absent score 0):
# q1 ranks d3(0) d1(2) d7(-) d2(1), R = 2:
#   nDCG@3 linear: DCG = 2/log2(3); IDCG = 2/log2(2) + 1/log2(3)            -> 0.4796249
#   nDCG@3 exp:    DCG = (2^2-1)/log2(3); IDCG = 3/1 + 1/log2(3)             -> 0.5212960
#   RR = 1/2; AP = (1/2 + 2/4) / 2 = 0.5; R@3 = 1/2; P@3 = 1/3; Rprec = 1/2 (d1 in top 2)
#   HitRate@1 = 0 (d3 is judged non-relevant); HitRate@3 = 1; P(rel>=2)@3 = 1/3
# q2 ranks d8 d9 d4(1), R = 1:
#   nDCG@3 = (1/log2(4)) / 1 = 0.5 (both gains); RR = 1/3; AP = 1/3; R@3 = 1; P@3 = 1/3
#   Rprec = 0; HitRate@1 = 0; HitRate@3 = 1; P(rel>=2)@3 = 0 (no grade-2 document)
Q1_NDCG = (2 / log2(3)) / (2 + 1 / log2(3))
Q1_NDCG_EXP = (3 / log2(3)) / (3 + 1 / log2(3))
FAST = {
    "ndcg@3": (Q1_NDCG + 0.5) / 4,
    "ndcg_burges@3": (Q1_NDCG_EXP + 0.5) / 4,
    "mrr": (1 / 2 + 1 / 3) / 4,
    "map": (0.5 + 1 / 3) / 4,
    "recall@3": (0.5 + 1) / 4,
    "P@3": (1 / 3 + 1 / 3) / 4,
    "r-precision": 0.5 / 4,
    "hit_rate@1": 0.0,
    "hit_rate@3": 0.5,
    "precision(rel=2)@3": (1 / 3) / 4,
}
# "accurate" is ideal on every query: 1.0 except P@3, which counts distinct documents:
# q1 (d1, d2 -> 2/3), q2, q3, q4 (1/3 each) -> (2/3 + 3 * 1/3) / 4 = 5/12; and
# P(rel>=2)@3: q1 1/3, others 0 -> 1/12.
ACCURATE = {m: 1.0 for m in METRICS} | {"P@3": 5 / 12, "precision(rel=2)@3": 1 / 12}


@pytest.fixture(scope="module")
def table():
    return evaluate(RESULTS, QRELS, METRICS)


def test_one_row_per_configuration_with_n_queries(table):
    assert list(table.columns) == ["pipeline_id", "mode", "top_k", *METRICS, "n_queries"]
    assert sorted(table["mode"]) == ["accurate", "fast"]
    assert (table["n_queries"] == 4).all()  # q1..q4 judged; q9 (unjudged) is not scored


@pytest.mark.parametrize("metric", METRICS)
def test_hand_checked_values(table, metric):
    got = table.set_index("mode")[metric]
    assert got["fast"] == pytest.approx(FAST[metric], abs=1e-12)
    assert got["accurate"] == pytest.approx(ACCURATE[metric], abs=1e-12)


def test_per_query_long_frame():
    long = evaluate(RESULTS, QRELS, ["mrr"], per_query=True)
    assert list(long.columns) == ["pipeline_id", "mode", "top_k", "query_id", "metric", "value"]
    fast = long[long["mode"] == "fast"].set_index("query_id")["value"].to_dict()
    assert fast == pytest.approx({"q1": 0.5, "q2": 1 / 3, "q3": 0.0, "q4": 0.0})


def test_order_comes_from_rank_not_score():
    # Scores say d2 first, ranks say d1 first; only d2 is relevant, so RR tells which order was used.
    res = pd.DataFrame({"query_id": ["q", "q"], "rank": [1, 2], "doc_id": ["d1", "d2"], "score": [0.1, 0.9]})
    qrels = pd.DataFrame({"query_id": ["q"], "doc_id": ["d2"], "relevance": [1]})
    # single configuration: no configuration columns in the output
    assert evaluate(res, qrels, ["mrr"]).to_dict("records") == [{"mrr": 0.5, "n_queries": 1}]
    # without ranks, score orders the documents (best first) -> d2 at rank 1
    assert evaluate(res.drop(columns="rank"), qrels, ["mrr"])["mrr"].item() == 1.0


def test_errors_are_clear():
    with pytest.raises(EvaluationError, match="empty"):
        evaluate(RESULTS.iloc[0:0], QRELS)
    with pytest.raises(EvaluationError, match="known metrics: ndcg"):
        evaluate(RESULTS, QRELS, ["ndcg@10", "bleu"])
    with pytest.raises(EvaluationError, match="no overlap between the run's"):
        evaluate(RESULTS.assign(query_id="x" + RESULTS["query_id"]), QRELS)
    with pytest.raises(EvaluationError, match="retrieved document ids"):
        evaluate(RESULTS.assign(doc_id="CRAN-" + RESULTS["doc_id"]), QRELS)
    all_failed = RESULTS.assign(rank=pd.NA, doc_id=pd.NA).drop_duplicates(["mode", "query_id"])
    with pytest.raises(EvaluationError, match="no document at all"):
        evaluate(all_failed, QRELS)
    with pytest.raises(EvaluationError, match="ranks start at 1"):
        evaluate(RESULTS.assign(rank=RESULTS["rank"] - 1), QRELS)
    with pytest.raises(EvaluationError, match="lacks column"):
        evaluate(RESULTS.drop(columns="doc_id"), QRELS)
    with pytest.raises(EvaluationError, match="qrels"):
        evaluate(RESULTS, QRELS.rename(columns={"relevance": "score"}))
    with pytest.raises(EvaluationError, match="no relevant judgement"):
        evaluate(RESULTS, QRELS.assign(relevance=0))


def test_summarize_joins_quality_and_latency_per_configuration():
    requests = pd.DataFrame({"pipeline_id": "p", "mode": ["fast", "fast", "accurate", "accurate"],
                             "top_k": ["10", "10", "10", "10"],  # text, as after a CSV round trip
                             "query_id": ["q1", "q2", "q1", "q2"], "latency_s": [0.1, 0.3, 1.0, 2.0],
                             "status": 200, "error": None})
    table = summarize(RESULTS, QRELS, requests, ["mrr"]).set_index("mode")
    assert table.loc["fast", "mrr"] == pytest.approx(FAST["mrr"])
    assert table.loc["fast", "mean_s"] == pytest.approx(0.2)
    assert table.loc["accurate", "p50_s"] == pytest.approx(1.5)
    assert table.loc["accurate", "n_queries"] == 4 and table.loc["accurate", "n"] == 2


def test_configurations_keep_natural_order():
    """Modes in their natural order (fast, accurate, advanced), then the other configurations
    in the order they appear - never alphabetical - in evaluate, latency, compare and summarize."""
    from llamaeval.metrics import compare, latency_stats
    from llamaeval.metrics._frames import sort_configs

    names = ["sparse", "advanced", "hybrid", "fast", "dense"]
    ranked = [("q1", 1, "d1"), ("q2", 1, "d4"), ("q3", 1, "d5"), ("q4", 1, "d6")]
    results = pd.DataFrame([row for n in names for row in _rows(n, ranked)])
    requests = results[["pipeline_id", "mode", "top_k", "query_id"]].assign(latency_s=0.01, status=200)
    expected = ["fast", "advanced", "sparse", "hybrid", "dense"]
    assert list(evaluate(results, QRELS, ["mrr"])["mode"]) == expected
    assert list(latency_stats(requests)["mode"]) == expected
    assert list(compare(results, QRELS, baseline={"mode": "dense"}, metric="mrr")["mode"]) == expected
    assert list(summarize(results, QRELS, requests, ["mrr"])["mode"]) == expected
    frame = pd.DataFrame({"pipeline_id": ["b", "a", "a", "a"], "mode": ["x", "y", "accurate", "x"],
                          "top_k": [5, 10, 10, 5]})
    # per pipeline; "x" is seen before "y" (in pipeline b's row)
    assert sort_configs(frame).values.tolist() == [["a", "accurate", 10], ["a", "x", 5], ["a", "y", 10],
                                                   ["b", "x", 5]]
