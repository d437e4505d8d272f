"""Significance tests, corrections and the compare() table on constructed cases with known answers."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from llamaeval import EvaluationError
from llamaeval.metrics import adjust_pvalues, cohens_d, compare, paired_t_test, permutation_test


def test_permutation_identical_systems_give_p_one():
    x = np.linspace(0, 1, 40)
    assert permutation_test(x, x) == 1.0           # Monte Carlo branch (2**40 > 10_000)
    assert permutation_test(x[:8], x[:8]) == 1.0   # exact branch


def test_permutation_exact_small_case_by_hand():
    # d = (1, 1, 1, -1): observed |mean| = 0.5. Of the 16 sign patterns, |mean| >= 0.5 needs
    # |sum| >= 2: sums are 4 (1 pattern), 2 (4 patterns), 0 (6), -2 (4), -4 (1) -> 10/16.
    x, y = np.array([1.0, 1, 1, 0]), np.array([0.0, 0, 0, 1])
    assert permutation_test(x, y) == pytest.approx(10 / 16)
    # d = (1, 1, 1, 1): only the all-plus and all-minus patterns reach |mean| 1 -> 2/16.
    assert permutation_test(np.ones(4), np.zeros(4)) == pytest.approx(2 / 16)


def test_permutation_huge_consistent_difference_gives_tiny_p():
    rng = np.random.default_rng(3)
    base = rng.uniform(0, 0.5, 50)
    better = base + 0.4 + rng.uniform(0, 0.01, 50)
    p = permutation_test(better, base, n_permutations=5000, seed=1)
    assert p == pytest.approx(1 / 5001)   # no random pattern reaches it: the floor (1 + 0) / (1 + n)
    assert paired_t_test(better, base) < 1e-30


def test_permutation_is_seeded_and_near_the_t_test_on_noise():
    rng = np.random.default_rng(0)
    x, y = rng.normal(0, 1, 60), rng.normal(0.1, 1, 60)
    assert permutation_test(x, y, seed=7) == permutation_test(x, y, seed=7)
    assert permutation_test(x, y, seed=7) == pytest.approx(paired_t_test(x, y), abs=0.05)


def test_t_test_matches_scipy_and_hand_formula():
    x = np.array([0.9, 0.7, 0.8, 0.6, 0.75])
    y = np.array([0.8, 0.72, 0.6, 0.5, 0.7])
    d = x - y  # 0.1, -0.02, 0.2, 0.1, 0.05: mean 0.086, sd 0.0808...
    t = d.mean() / (d.std(ddof=1) / np.sqrt(5))
    assert paired_t_test(x, y) == pytest.approx(2 * stats.t.sf(abs(t), df=4), rel=1e-12)
    assert cohens_d(x, y) == pytest.approx(d.mean() / d.std(ddof=1))
    assert paired_t_test(x, x) == 1.0 and cohens_d(x, x) == 0.0
    assert paired_t_test(x + 0.1, x) == 0.0 and cohens_d(x + 0.1, x) == np.inf


def test_holm_on_known_pvalues():
    # sorted p: 0.01, 0.02, 0.03, 0.04 (m = 4) -> 4*0.01=0.04, 3*0.02=0.06, 2*0.03=0.06, 1*0.04=0.04
    # then running max -> 0.04, 0.06, 0.06, 0.06; returned in the input order.
    p = [0.03, 0.01, 0.04, 0.02]
    assert adjust_pvalues(p, "holm") == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert adjust_pvalues(p, "bonferroni") == pytest.approx([0.12, 0.04, 0.16, 0.08])
    assert adjust_pvalues(p, "none") == pytest.approx(p)
    # NaN stays NaN and does not count in m; values are capped at 1
    out = adjust_pvalues([np.nan, 0.5, 0.01], "holm")
    assert np.isnan(out[0]) and out[1:] == pytest.approx([0.5, 0.02])
    assert adjust_pvalues([0.6, 0.7], "bonferroni") == pytest.approx([1.0, 1.0])
    with pytest.raises(EvaluationError, match="holm"):
        adjust_pvalues(p, "fdr")


def _per_query(values: dict[str, list[float]]) -> pd.DataFrame:
    rows = [{"pipeline_id": "p", "mode": mode, "top_k": 10, "query_id": f"q{i:02d}", "metric": "ndcg@10", "value": v}
            for mode, vals in values.items() for i, v in enumerate(vals)]
    return pd.DataFrame(rows)


def test_compare_marks_better_worse_and_unchanged():
    rng = np.random.default_rng(5)
    base = rng.uniform(0.2, 0.6, 30)
    frame = _per_query({
        "fast": list(base),
        "accurate": list(base + 0.3),                                  # consistently better
        "advanced": list(base - 0.15 - rng.uniform(0, 0.01, 30)),     # consistently worse
        "same": list(base),                                            # identical to baseline
    })
    table = compare(frame, None, baseline={"mode": "fast"}, metric="ndcg@10").set_index("mode")
    assert table.loc["fast", "mark"] == "baseline" and table.loc["fast", "baseline"]
    assert table.loc["accurate", "mark"] == "▲" and table.loc["advanced", "mark"] == "▼"
    assert table.loc["same", "mark"] == "" and not table.loc["same", "significant"]
    assert table.loc["same", "p_permutation"] == 1.0 and table.loc["same", "p_ttest"] == 1.0
    assert table.loc["accurate", "mean_diff"] == pytest.approx(0.3)
    assert table.loc["accurate", ["wins", "losses", "ties"]].tolist() == [30, 0, 0]
    assert table.loc["same", ["wins", "losses", "ties"]].tolist() == [0, 0, 30]
    # Holm over the three comparisons: the smallest p is multiplied by 3
    raw = table.loc[["accurate", "advanced", "same"], "p_ttest"].to_numpy()
    assert table.loc[["accurate", "advanced", "same"], "p_ttest_adj"].to_numpy() == pytest.approx(
        adjust_pvalues(raw, "holm"))
    assert (table["n_queries"] == 30).all()
    bonf = compare(frame, None, baseline={"mode": "fast"}, correction="bonferroni").set_index("mode")
    assert bonf.loc["advanced", "p_permutation_adj"] == pytest.approx(min(1.0, 3 * bonf.loc["advanced", "p_permutation"]))


def test_compare_from_results_and_qrels_and_bad_input():
    results = pd.DataFrame({"pipeline_id": "p", "mode": ["a"] * 3 + ["b"] * 3, "top_k": 10,
                            "query_id": ["1", "2", "3"] * 2, "rank": 1, "doc_id": ["x", "y", "w", "x", "z", "z"]})
    qrels = pd.DataFrame({"query_id": ["1", "2", "3"], "doc_id": ["x", "y", "w"], "relevance": [1, 1, 1]})
    table = compare(results, qrels, baseline=("p", "a", 10), metric="mrr", tests=["permutation"], correction="none")
    row = table.set_index("mode").loc["b"]
    # per query RR: a = (1, 1, 1), b = (1, 0, 0); d = (0, -1, -1), |sum| = 2. Of the 8 sign
    # patterns, |sum| = 2 when the two -1s keep the same relative sign: 4 of 8 -> p = 0.5.
    assert row["mrr"] == pytest.approx(1 / 3) and row["mean_diff"] == pytest.approx(-2 / 3)
    assert row["p_permutation"] == 0.5
    assert "p_ttest" not in table.columns
    with pytest.raises(EvaluationError, match="no baseline matches"):
        compare(results, qrels, baseline={"mode": "zzz"}, metric="mrr")
    with pytest.raises(EvaluationError, match="matches 2 configurations"):
        compare(results, qrels, baseline={"top_k": 10}, metric="mrr")
    with pytest.raises(EvaluationError, match="tests must be"):
        compare(results, qrels, baseline={"mode": "a"}, tests=["wilcoxon"])
    with pytest.raises(EvaluationError, match="correction"):
        compare(results, qrels, baseline={"mode": "a"}, correction="fdr")
