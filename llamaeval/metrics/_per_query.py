"""Per-query analysis: wins and losses, hardest queries, queries with nothing relevant retrieved."""

from __future__ import annotations

import numpy as np
import pandas as pd

from llamaeval._errors import EvaluationError
from llamaeval.metrics._frames import Selector, config_columns, normalise_qrels, require_frame, select_config

__all__ = ["hardest_queries", "no_relevant", "wins_losses"]


def _one_metric(per_query: pd.DataFrame, metric: str | None) -> pd.DataFrame:
    require_frame(per_query, "per_query", ("query_id", "metric", "value"))
    available = list(dict.fromkeys(per_query["metric"]))
    if metric is None:
        if len(available) != 1:
            raise EvaluationError(f"per_query holds several metrics {available}; name one with metric=")
        metric = available[0]
    if metric not in available:
        raise EvaluationError(f"per_query has no metric {metric!r}; it has {available}")
    return per_query[per_query["metric"] == metric]


def wins_losses(per_query: pd.DataFrame, a: Selector, b: Selector, metric: str | None = None,
                tolerance: float = 1e-9) -> pd.DataFrame:
    """Query-by-query comparison of configuration ``a`` with ``b`` on one metric.

    ``per_query`` is ``evaluate(..., per_query=True)``; ``a``/``b`` select configurations
    as in :func:`compare`. Returns ``query_id, a, b, diff`` (a - b) and ``outcome``
    ("win" when a beats b by more than ``tolerance``, "loss", or "tie"), largest wins first.
    ``result["outcome"].value_counts()`` gives the tally.
    """
    frame = _one_metric(per_query, metric)
    left = frame[select_config(frame, a, "configuration a")].set_index("query_id")["value"]
    right = frame[select_config(frame, b, "configuration b")].set_index("query_id")["value"]
    both = pd.concat([left.rename("a"), right.rename("b")], axis=1, join="inner")
    if both.empty:
        raise EvaluationError("configurations a and b share no query")
    both["diff"] = both["a"] - both["b"]
    both["outcome"] = np.where(both["diff"] > tolerance, "win", np.where(both["diff"] < -tolerance, "loss", "tie"))
    both = both.reset_index().sort_values(["diff", "query_id"], ascending=[False, True], kind="stable")
    return both.reset_index(drop=True)


def hardest_queries(per_query: pd.DataFrame, metric: str | None = None, n: int = 10,
                    queries: pd.DataFrame | None = None) -> pd.DataFrame:
    """The ``n`` queries with the lowest score averaged over all configurations.

    Columns ``query_id, mean, min, max, n_configs`` (plus ``text`` when ``queries`` with
    ``query_id, text`` is given, e.g. ``run.queries``); lowest mean first (ties by query id).
    """
    if n < 1:
        raise EvaluationError(f"n must be >= 1, got {n}")
    frame = _one_metric(per_query, metric)
    stats = frame.groupby("query_id")["value"].agg(["mean", "min", "max", "count"])
    stats = stats.rename(columns={"count": "n_configs"}).reset_index()
    out = stats.sort_values(["mean", "query_id"], kind="stable").head(n).reset_index(drop=True)
    if queries is not None:
        require_frame(queries, "queries", ("query_id", "text"))
        text = queries.assign(query_id=queries["query_id"].astype(str)).drop_duplicates("query_id")
        out = out.merge(text[["query_id", "text"]], on="query_id", how="left")
    return out


def no_relevant(results: pd.DataFrame, qrels: pd.DataFrame, k: int | None = None) -> pd.DataFrame:
    """Judged queries for which a configuration retrieved no relevant document (in its top ``k``).

    Only queries with at least one relevant judgement (grade >= 1) can qualify; failed
    requests and queries missing from the run count as retrieving nothing. Returns the
    configuration columns, ``query_id``, ``n_retrieved`` (documents considered) and
    ``n_relevant`` (relevant documents judged for the query).
    """
    require_frame(results, "results", ("query_id", "doc_id", "rank"))
    if k is not None and k < 1:
        raise EvaluationError(f"k must be >= 1, got {k}")
    judgements = normalise_qrels(qrels)
    relevant = judgements[judgements["relevance"] >= 1]
    n_relevant = relevant.groupby("query_id").size().rename("n_relevant")
    cols = config_columns(results)
    run = results.copy()
    run["query_id"] = run["query_id"].astype(str)
    run["rank"] = pd.to_numeric(run["rank"], errors="coerce")
    docs = run[run["rank"].notna() & run["doc_id"].notna()].copy()
    docs["doc_id"] = docs["doc_id"].astype(str)
    if k is not None:
        docs = docs[docs["rank"] <= k]
    configs = run[cols].drop_duplicates() if cols else pd.DataFrame(index=[0])
    grid = configs.merge(n_relevant.reset_index(), how="cross")
    keys = [*cols, "query_id"]
    retrieved = docs.groupby(keys).size().rename("n_retrieved").reset_index() if keys else None
    hits = docs.merge(relevant[["query_id", "doc_id"]], on=["query_id", "doc_id"])
    hit_keys = hits[keys].drop_duplicates().assign(_hit=True)
    out = grid.merge(retrieved, on=keys, how="left").merge(hit_keys, on=keys, how="left")
    out = out[out["_hit"].isna()].copy()
    out["n_retrieved"] = out["n_retrieved"].fillna(0).astype(int)
    out = out[[*keys, "n_retrieved", "n_relevant"]]
    return out.sort_values(keys, kind="stable").reset_index(drop=True)
