"""pareto_frontier() and cheapest_within() on a table whose answers are checked by hand."""

import numpy as np
import pandas as pd
import pytest

from llamaeval import EvaluationError
from llamaeval.metrics import cheapest_within, pareto_frontier

#      name  ndcg  p50_s   dominated?
# A    0.50  0.010   no  (cheapest)
# B    0.48  0.020   yes, by A (better and cheaper)
# C    0.60  0.030   no
# D    0.60  0.040   yes, by C (same quality, dearer)
# E    0.70  0.100   no  (best quality)
# F    0.65  0.200   yes, by E
# G    0.55  0.030   yes, by C (same cost, worse)
# H    NaN   0.001   left out (no quality)
TABLE = pd.DataFrame({
    "mode": list("ABCDEFGH"),
    "ndcg@10": [0.50, 0.48, 0.60, 0.60, 0.70, 0.65, 0.55, np.nan],
    "p50_s": [0.010, 0.020, 0.030, 0.040, 0.100, 0.200, 0.030, 0.001],
})


def test_pareto_frontier_by_hand():
    front = pareto_frontier(TABLE, "ndcg@10", "p50_s")
    assert front["mode"].tolist() == ["A", "C", "E"]  # sorted by cost; quality rises along it


def test_pareto_keeps_exact_duplicates_and_other_columns():
    table = pd.concat([TABLE, TABLE.iloc[[2]].assign(mode="C2")], ignore_index=True)
    assert pareto_frontier(table, "ndcg@10", "p50_s")["mode"].tolist() == ["A", "C", "C2", "E"]


@pytest.mark.parametrize(("tolerance", "relative", "expected"), [
    (0.0, False, "E"),    # only the best itself
    (0.05, False, "E"),   # floor 0.65: E (0.100 s) is cheaper than F (0.200 s)
    (0.10, False, "C"),   # floor 0.60: C and D qualify, C is cheaper
    (0.25, False, "A"),   # floor 0.45: everything with a quality, A cheapest
    (0.15, True, "C"),    # floor 0.70 * 0.85 = 0.595
    (0.30, True, "A"),    # floor 0.49
])
def test_cheapest_within(tolerance, relative, expected):
    row = cheapest_within(TABLE, "ndcg@10", "p50_s", tolerance, relative=relative)
    assert row["mode"] == expected


def test_bad_input():
    with pytest.raises(EvaluationError, match="lacks column"):
        pareto_frontier(TABLE, "ndcg@10", "p95_s")
    with pytest.raises(EvaluationError, match="tolerance"):
        cheapest_within(TABLE, "ndcg@10", "p50_s", -0.1)
    with pytest.raises(EvaluationError, match="fraction"):
        cheapest_within(TABLE, "ndcg@10", "p50_s", 5, relative=True)
    with pytest.raises(EvaluationError, match="no row"):
        pareto_frontier(TABLE.assign(p50_s=np.nan), "ndcg@10", "p50_s")
