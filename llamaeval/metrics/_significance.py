"""Significance of per-query differences against a baseline configuration."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from llamaeval._errors import EvaluationError
from llamaeval.metrics._frames import Selector, config_columns, select_config, sort_configs

__all__ = ["adjust_pvalues", "cohens_d", "compare", "paired_t_test", "permutation_test"]

_TESTS = {"t-test": "ttest", "ttest": "ttest", "t": "ttest",
          "permutation": "permutation", "randomization": "permutation", "randomisation": "permutation"}
_CORRECTIONS = ("holm", "bonferroni", "none")


def _paired(x: Any, y: Any) -> np.ndarray:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise EvaluationError(f"paired scores must be two 1-d arrays of one length, got {x.shape} and {y.shape}")
    if np.isnan(x).any() or np.isnan(y).any():
        raise EvaluationError("paired scores contain NaN")
    return x - y


def paired_t_test(x: Any, y: Any) -> float:
    """Two-sided p-value of the paired t-test of ``x`` vs ``y`` (same queries, same order).

    All differences equal: p = 1 when they are 0, p = 0 otherwise (t is infinite).
    Fewer than 2 pairs: NaN.
    """
    from scipy import stats

    d = _paired(x, y)
    if len(d) < 2:
        return float("nan")
    if np.ptp(d) <= 1e-12 * max(1.0, float(np.abs(d).max())):  # constant differences (up to rounding)
        return 1.0 if np.abs(d).max() <= 1e-12 else 0.0
    return float(stats.ttest_rel(x, y).pvalue)


def permutation_test(x: Any, y: Any, n_permutations: int = 10_000, seed: int = 0) -> float:
    """Two-sided paired randomization test (sign flips of the differences) on the mean difference.

    Exact (all 2**n sign patterns) when 2**n <= ``n_permutations``; otherwise
    ``n_permutations`` random patterns from a generator seeded with ``seed`` and
    p = (1 + hits) / (1 + n_permutations), so p is never 0. Identical systems give p = 1.
    """
    d = _paired(x, y)
    n = len(d)
    if n == 0:
        return float("nan")
    if n_permutations < 1:
        raise EvaluationError(f"n_permutations must be >= 1, got {n_permutations}")
    observed = abs(d.mean())
    tol = 1e-12 * max(1.0, observed)
    return sign_flip_pvalue(d, lambda means: np.abs(means) >= observed - tol, n_permutations, seed)


def sign_flip_pvalue(d: np.ndarray, extreme: Callable[[np.ndarray], np.ndarray], n_permutations: int,
                     seed: int) -> float:
    """The share of sign flips of the paired differences ``d`` whose mean is ``extreme`` (a boolean
    mask over an array of flipped means): exact over all 2**n patterns when 2**n <= ``n_permutations``,
    else ``n_permutations`` random patterns seeded with ``seed`` and p = (1 + hits) / (1 + n_permutations)."""
    n = len(d)
    if n <= 30 and 2 ** n <= n_permutations:
        patterns = ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1) * 2 - 1
        return int(extreme(patterns @ d / n).sum()) / 2 ** n
    rng = np.random.default_rng(seed)
    hits, done = 0, 0
    block = max(1, 4_000_000 // n)
    while done < n_permutations:
        size = min(block, n_permutations - done)
        signs = rng.integers(0, 2, size=(size, n)) * 2 - 1
        hits += int(extreme(signs @ d / n).sum())
        done += size
    return (1 + hits) / (1 + n_permutations)


def cohens_d(x: Any, y: Any) -> float:
    """Effect size of paired differences, Cohen's d_z = mean(x - y) / sd(x - y) (ddof=1).

    Zero spread: 0 when every difference is 0, else +-inf. Fewer than 2 pairs: NaN.
    """
    d = _paired(x, y)
    if len(d) < 2:
        return float("nan")
    sd = d.std(ddof=1)
    if sd == 0:
        return 0.0 if d.mean() == 0 else float(np.sign(d.mean()) * np.inf)
    return float(d.mean() / sd)


def adjust_pvalues(pvalues: Sequence[float], method: str = "holm") -> np.ndarray:
    """Family-wise corrected p-values: ``"holm"`` (step-down), ``"bonferroni"`` or ``"none"``.

    NaN p-values stay NaN and do not count in the family size.
    """
    if method not in _CORRECTIONS:
        raise EvaluationError(f"correction must be one of {_CORRECTIONS}, got {method!r}")
    p = np.asarray(pvalues, dtype=np.float64)
    out = p.copy()
    valid = np.flatnonzero(~np.isnan(p))
    m = len(valid)
    if method == "none" or m == 0:
        return out
    if method == "bonferroni":
        out[valid] = np.minimum(1.0, p[valid] * m)
        return out
    order = valid[np.argsort(p[valid], kind="stable")]
    scaled = np.minimum(1.0, p[order] * (m - np.arange(m)))
    out[order] = np.maximum.accumulate(scaled)
    return out


def compare(results: pd.DataFrame, qrels: pd.DataFrame | None, baseline: Selector, metric: str = "ndcg@10",
            tests: Sequence[str] = ("t-test", "permutation"), correction: str = "holm", *,
            alpha: float = 0.05, n_permutations: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """Every configuration against ``baseline`` on ``metric``, paired over the judged queries.

    ``results``/``qrels`` as for :func:`evaluate`; alternatively pass a per-query frame
    from ``evaluate(..., per_query=True)`` as ``results`` and ``qrels=None``.
    ``baseline`` is a dict (``{"mode": "fast", "top_k": 10}``) or tuple
    (``(pipeline_id, mode, top_k)``; shorter tuples match the last columns).
    ``tests``: ``"t-test"`` (paired t-test) and/or ``"permutation"`` (paired randomization).
    ``correction`` (``"holm"`` default, ``"bonferroni"``, ``"none"``) runs per test over the
    comparisons with the baseline.

    Rows: configurations in the display order of :func:`evaluate`.
    Columns: configuration, ``metric`` mean, ``baseline`` (bool), ``mean_diff``
    (configuration - baseline), ``cohens_d`` (d_z of paired differences), ``wins``,
    ``losses``, ``ties`` (queries better / worse / equal), ``p_<test>`` and
    ``p_<test>_adj``, ``significant`` (EVERY requested test's adjusted p < ``alpha``),
    ``mark`` ("▲" significantly better, "▼" significantly worse, "" not significant,
    "baseline"), ``n_queries``.
    """
    from llamaeval.metrics._relevance import evaluate  # local: avoids an import cycle

    names = [_TESTS.get(str(t).lower()) for t in ([tests] if isinstance(tests, str) else tests)]
    if not names or None in names:
        raise EvaluationError(f"tests must be among {sorted(set(_TESTS))}, got {tests!r}")
    names = list(dict.fromkeys(names))
    if correction not in _CORRECTIONS:
        raise EvaluationError(f"correction must be one of {_CORRECTIONS}, got {correction!r}")
    if not 0 < alpha < 1:
        raise EvaluationError(f"alpha must be in (0, 1), got {alpha}")

    if qrels is None:
        per_query = results
        if not isinstance(per_query, pd.DataFrame) or not {"query_id", "metric", "value"} <= set(per_query.columns):
            raise EvaluationError("with qrels=None, results must be a per-query frame from evaluate(per_query=True)")
        per_query = per_query[per_query["metric"] == metric]
        if per_query.empty:
            raise EvaluationError(f"the per-query frame has no metric {metric!r}")
    else:
        per_query = evaluate(results, qrels, [metric], per_query=True)
    cols = config_columns(per_query)
    wide = per_query.pivot_table(index=cols or None, columns="query_id", values="value", aggfunc="first") \
        if cols else per_query.set_index("query_id")["value"].to_frame().T
    if cols:  # pivot_table sorts its index: back to display order
        order = sort_configs(per_query[cols].drop_duplicates())
        wide = wide.reindex(pd.MultiIndex.from_frame(order) if len(cols) > 1 else pd.Index(order[cols[0]]))
    if wide.isna().any().any():
        raise EvaluationError("configurations were scored on different queries; cannot pair them")
    configs = wide.index.to_frame(index=False) if cols else pd.DataFrame(index=[0])
    base_mask = select_config(configs, baseline, "baseline").to_numpy()
    base = wide.to_numpy()[base_mask][0]
    scores = wide.to_numpy()

    table = configs.copy()
    table[metric] = scores.mean(axis=1)
    table["baseline"] = base_mask
    table["mean_diff"] = scores.mean(axis=1) - base.mean()
    table["cohens_d"] = [np.nan if b else cohens_d(s, base) for s, b in zip(scores, base_mask)]
    diff = scores - base
    table["wins"] = (diff > 1e-12).sum(axis=1)
    table["losses"] = (diff < -1e-12).sum(axis=1)
    table["ties"] = scores.shape[1] - table["wins"] - table["losses"]
    significant = np.ones(len(table), dtype=bool)
    for name in names:
        if name == "ttest":
            p = [np.nan if b else paired_t_test(s, base) for s, b in zip(scores, base_mask)]
        else:
            p = [np.nan if b else permutation_test(s, base, n_permutations, seed) for s, b in zip(scores, base_mask)]
        adjusted = adjust_pvalues(p, correction)
        table[f"p_{name}"] = p
        table[f"p_{name}_adj"] = adjusted
        significant &= np.nan_to_num(adjusted, nan=1.0) < alpha
    table["significant"] = significant & ~base_mask
    table["mark"] = np.where(base_mask, "baseline",
                             np.where(table["significant"] & (table["mean_diff"] > 0), "▲",
                                      np.where(table["significant"] & (table["mean_diff"] < 0), "▼", "")))
    table["n_queries"] = scores.shape[1]
    return table.reset_index(drop=True)
