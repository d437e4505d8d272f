"""Judged@k on a constructed case, checked by hand and against ir_measures."""

from __future__ import annotations

import pandas as pd
import pytest

from llamaeval import EvaluationError, metrics

# fast: q1 -> a b c d (a, c judged); q2 -> e f (e judged); q3 (unjudged) -> a
# accurate: q1 -> c a; q2 -> nothing retrieved
RESULTS = pd.DataFrame(
    [("fast", 4, "q1", 1, "a"), ("fast", 4, "q1", 2, "b"), ("fast", 4, "q1", 3, "c"), ("fast", 4, "q1", 4, "d"),
     ("fast", 4, "q2", 1, "e"), ("fast", 4, "q2", 2, "f"), ("fast", 4, "q3", 1, "a"),
     ("accurate", 4, "q1", 1, "c"), ("accurate", 4, "q1", 2, "a"), ("accurate", 4, "q2", None, None)],
    columns=["mode", "top_k", "query_id", "rank", "doc_id"])
QRELS = pd.DataFrame({"query_id": ["q1", "q1", "q2", "q2"], "doc_id": ["a", "c", "e", "z"],
                      "relevance": [1, 0, 2, 0]})   # a grade-0 judgement is still a judgement


def test_judged_at_k_by_hand():
    table = metrics.judged(RESULTS, QRELS, k=[1, 2, 4]).set_index("mode")
    # fast: q1 1/1, 1/2, 2/4; q2 1/1, 1/2, 1/2 (two retrieved)  -> means
    assert table.loc["fast", "judged@1"] == pytest.approx(1.0)
    assert table.loc["fast", "judged@2"] == pytest.approx(0.5)
    assert table.loc["fast", "judged@4"] == pytest.approx((2 / 4 + 1 / 2) / 2)
    assert table.loc["fast", "n_queries"] == 2             # q3 has no judgement: not scored
    # accurate: q1 c a -> all judged; q2 retrieved nothing -> scores 0, as in every measure
    assert table.loc["accurate", ["judged@1", "judged@2", "judged@4"]].tolist() == [0.5, 0.5, 0.5]
    assert table.loc["accurate", "n_queries"] == 2
    assert list(table.index) == ["fast", "accurate"]


def test_matches_ir_measures():
    ir_measures = pytest.importorskip("ir_measures")
    run = RESULTS.dropna(subset=["doc_id"])
    per_query = metrics.judged_per_query(run, QRELS, k=[2, 4])
    for mode, group in run.groupby("mode"):
        scored = [ir_measures.ScoredDoc(q, d, -float(r)) for q, d, r in
                  group[["query_id", "doc_id", "rank"]].itertuples(index=False)]
        qrels = [ir_measures.Qrel(q, d, int(g)) for q, d, g in QRELS.itertuples(index=False)]
        for k in (2, 4):
            expected = {m.query_id: m.value for m in
                        ir_measures.iter_calc([ir_measures.Judged @ k], qrels, scored)}
            mine = per_query[per_query["mode"] == mode].set_index("query_id")[f"judged@{k}"].to_dict()
            assert mine == pytest.approx(expected), (mode, k)


def test_bad_input():
    with pytest.raises(EvaluationError):
        metrics.judged(RESULTS, QRELS, k=0)
    with pytest.raises(EvaluationError):
        metrics.judged(RESULTS[RESULTS["query_id"] == "q3"], QRELS)
