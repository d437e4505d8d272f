"""Quality-versus-cost trade-offs: the Pareto frontier and the cheapest good-enough configuration."""

from __future__ import annotations

import numpy as np
import pandas as pd

from llamaeval._errors import EvaluationError

__all__ = ["cheapest_within", "pareto_frontier"]


def _numeric(table: pd.DataFrame, quality: str, cost: str) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise EvaluationError(f"table must be a pandas DataFrame, got {type(table).__name__}")
    missing = [c for c in (quality, cost) if c not in table.columns]
    if missing:
        raise EvaluationError(f"table lacks column(s) {missing}; it has {list(table.columns)} "
                              "(merge evaluate() and latency_stats() on the configuration columns)")
    q = pd.to_numeric(table[quality], errors="coerce")
    c = pd.to_numeric(table[cost], errors="coerce")
    usable = table[q.notna() & c.notna()]
    if usable.empty:
        raise EvaluationError(f"no row has both {quality!r} and {cost!r}")
    return usable


def pareto_frontier(table: pd.DataFrame, quality: str = "ndcg@10", cost: str = "p50_s") -> pd.DataFrame:
    """Rows no other row beats: none has higher-or-equal ``quality`` AND lower-or-equal ``cost``
    with at least one strictly better. Higher quality is better, lower cost is better.

    Returned sorted by ``cost`` ascending (so quality rises along it); rows with NaN in
    either column are left out; exact duplicates in (quality, cost) are all kept.
    """
    usable = _numeric(table, quality, cost)
    q = usable[quality].to_numpy(np.float64)
    c = usable[cost].to_numpy(np.float64)
    # i is dominated if some j has q_j >= q_i, c_j <= c_i and (q_j > q_i or c_j < c_i).
    dominated = ((q[None, :] >= q[:, None]) & (c[None, :] <= c[:, None])
                 & ((q[None, :] > q[:, None]) | (c[None, :] < c[:, None]))).any(axis=1)
    front = usable[~dominated]
    return front.sort_values([cost, quality], ascending=[True, False], kind="stable")


def cheapest_within(table: pd.DataFrame, quality: str = "ndcg@10", cost: str = "p50_s",
                    tolerance: float = 0.01, *, relative: bool = False) -> pd.Series:
    """The cheapest row whose ``quality`` is within ``tolerance`` of the best row's.

    Absolute (default): quality >= best - tolerance (``tolerance=0.01`` = one nDCG point).
    ``relative=True``: quality >= best * (1 - tolerance) (``0.05`` = within 5 % of the best).
    Ties in cost go to the higher quality. Returns that row (a Series, its index label kept).
    """
    if not np.isfinite(tolerance) or tolerance < 0:
        raise EvaluationError(f"tolerance must be >= 0, got {tolerance}")
    if relative and tolerance > 1:
        raise EvaluationError(f"a relative tolerance is a fraction in [0, 1], got {tolerance}")
    usable = _numeric(table, quality, cost)
    q = usable[quality].astype(float)
    best = q.max()
    floor = best * (1 - tolerance) if relative else best - tolerance
    eligible = usable[q >= floor - 1e-12]
    ranked = eligible.sort_values([cost, quality], ascending=[True, False], kind="stable")
    return ranked.iloc[0]
