"""One table of quality and cost per configuration, ready for the trade-off functions."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from llamaeval.metrics._frames import config_columns
from llamaeval.metrics._latency import latency_stats
from llamaeval.metrics._measures import Measure
from llamaeval.metrics._relevance import DEFAULT_METRICS, evaluate

__all__ = ["summarize"]


def summarize(results: pd.DataFrame, qrels: pd.DataFrame, requests: pd.DataFrame,
              metrics: Sequence[str | Measure] | str | Measure = DEFAULT_METRICS, *,
              shared: str = "include", seed: int = 0) -> pd.DataFrame:
    """:func:`evaluate` joined with :func:`latency_stats` on the configuration columns.

    The result feeds :func:`pareto_frontier` / :func:`cheapest_within` directly,
    e.g. ``pareto_frontier(summarize(r, q, req), "ndcg@10", "p50_s")``.
    """
    quality = evaluate(results, qrels, metrics)
    cost = latency_stats(requests, seed=seed, shared=shared)
    keys = [c for c in config_columns(quality) if c in cost.columns]
    if not keys:
        return quality.join(cost, how="cross") if len(cost) == 1 else quality
    for key in keys:  # align dtypes (e.g. top_k int vs str after a CSV round trip)
        cost[key] = cost[key].astype(quality[key].dtype)
    return quality.merge(cost, on=keys, how="left")
