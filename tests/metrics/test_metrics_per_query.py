"""Per-query views: wins and losses, hardest queries, queries with nothing relevant retrieved."""

import pandas as pd
import pytest

from llamaeval import EvaluationError
from llamaeval.metrics import hardest_queries, no_relevant, wins_losses

PER_QUERY = pd.DataFrame(
    [{"pipeline_id": "p", "mode": m, "top_k": 10, "query_id": q, "metric": "ndcg@10", "value": v}
     for m, vals in {"fast": [0.2, 0.5, 0.0, 0.9], "accurate": [0.6, 0.5, 0.1, 0.3]}.items()
     for q, v in zip(["q1", "q2", "q3", "q4"], vals)]
)


def test_wins_losses():
    out = wins_losses(PER_QUERY, {"mode": "accurate"}, ("p", "fast", 10))
    # accurate - fast: q1 +0.4, q2 0, q3 +0.1, q4 -0.6
    assert out["query_id"].tolist() == ["q1", "q3", "q2", "q4"]
    assert out["outcome"].tolist() == ["win", "win", "tie", "loss"]
    assert out["diff"].tolist() == pytest.approx([0.4, 0.1, 0.0, -0.6])
    assert out["outcome"].value_counts().to_dict() == {"win": 2, "tie": 1, "loss": 1}


def test_hardest_queries():
    out = hardest_queries(PER_QUERY, n=2)
    # means: q1 0.4, q2 0.5, q3 0.05, q4 0.6 -> q3, q1
    assert out["query_id"].tolist() == ["q3", "q1"]
    assert out.iloc[0][["mean", "min", "max", "n_configs"]].tolist() == pytest.approx([0.05, 0.0, 0.1, 2])
    queries = pd.DataFrame({"query_id": ["q1", "q3"], "text": ["first?", "third?"]})
    assert hardest_queries(PER_QUERY, n=2, queries=queries)["text"].tolist() == ["third?", "first?"]


def test_metric_must_be_named_when_several():
    two = pd.concat([PER_QUERY, PER_QUERY.assign(metric="mrr")])
    with pytest.raises(EvaluationError, match="several metrics"):
        hardest_queries(two)
    assert len(hardest_queries(two, metric="mrr", n=10)) == 4
    with pytest.raises(EvaluationError, match="no metric"):
        wins_losses(two, {"mode": "fast"}, {"mode": "accurate"}, metric="map")


def test_no_relevant():
    results = pd.DataFrame({
        "pipeline_id": "p", "mode": ["fast"] * 5 + ["accurate"] * 2, "top_k": 10,
        "query_id": ["q1", "q1", "q2", "q3", "q9", "q1", "q2"],
        "rank": [1, 2, 1, pd.NA, 1, 1, 1],
        "doc_id": ["d9", "d1", "d8", pd.NA, "d1", "d1", "d2"],
    })
    qrels = pd.DataFrame({"query_id": ["q1", "q2", "q3", "q4", "q5"], "doc_id": ["d1", "d2", "d3", "d4", "d5"],
                          "relevance": [1, 1, 1, 1, 0]})
    out = no_relevant(results, qrels)
    # fast: q1 finds d1 (rank 2); q2 retrieves d8 only; q3 failed; q4 absent. accurate: q3, q4 absent.
    # q5 has no relevant judgement, so it never qualifies; q9 is unjudged.
    got = {(m, q): n for m, q, n in out[["mode", "query_id", "n_retrieved"]].itertuples(index=False)}
    assert got == {("fast", "q2"): 1, ("fast", "q3"): 0, ("fast", "q4"): 0,
                   ("accurate", "q3"): 0, ("accurate", "q4"): 0}
    top1 = no_relevant(results, qrels, k=1)
    assert ("fast", "q1") in set(map(tuple, top1[["mode", "query_id"]].to_numpy()))  # d1 is at rank 2
