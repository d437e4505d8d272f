"""Judged@k: how much of a configuration's top k has a judgement at all (pooling's blind spot).

Per query, Judged@k = (documents of the top k that have a judgement, of any grade,
0 included) / min(k, documents retrieved), as ``ir_measures``' ``Judged@k``.
A configuration that was not in the pool meets documents nobody judged; those count
as non-relevant in every other measure, so a low Judged@k says its scores are lower
bounds. Every judged query is scored, as in the other measures: one the configuration
retrieved nothing for (failed, empty, not asked) scores 0; unjudged queries are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from llamaeval._errors import EvaluationError
from llamaeval.metrics._frames import config_columns, require_frame, sort_configs


def _cutoffs(k: int | Iterable[int]) -> list[int]:
    ks = [k] if isinstance(k, int) else list(k)
    if not ks or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in ks):
        raise EvaluationError(f"k must be a positive int or a list of them, got {k!r}")
    return list(dict.fromkeys(ks))


def judged_per_query(results: Any, qrels: Any, k: int | Iterable[int] = 10) -> pd.DataFrame:
    """One row per (configuration, judged query): ``judged@<k>`` for each cutoff."""
    require_frame(results, "results", ("query_id", "doc_id", "rank"))
    require_frame(qrels, "qrels", ("query_id", "doc_id"))
    ks = _cutoffs(k)
    cols = config_columns(results)
    judged_pairs = set(zip(qrels["query_id"].astype(str), qrels["doc_id"].astype(str)))
    judged_queries = {q for q, _ in judged_pairs}
    configs = results[cols].drop_duplicates() if cols else pd.DataFrame(index=[0])
    run = results[results["doc_id"].notna() & results["rank"].notna()]
    run = pd.DataFrame({**{c: run[c].to_numpy() for c in cols}, "query_id": run["query_id"].astype(str).to_numpy(),
                        "doc_id": run["doc_id"].astype(str).to_numpy(),
                        "rank": pd.to_numeric(run["rank"]).to_numpy()})
    run = run[run["query_id"].isin(judged_queries)]
    if run.empty:
        raise EvaluationError("no retrieved document belongs to a judged query: nothing to score")
    run = run.sort_values([*cols, "query_id", "rank"], kind="stable")
    run["pos"] = run.groupby([*cols, "query_id"], sort=False).cumcount() + 1
    run["judged"] = [(q, d) in judged_pairs for q, d in zip(run["query_id"], run["doc_id"])]
    grid = configs.merge(pd.DataFrame({"query_id": sorted(judged_queries)}), how="cross")
    out = grid.set_index([*cols, "query_id"])
    for c in ks:
        top = run[run["pos"] <= c]
        grouped = top.groupby([*cols, "query_id"], sort=False)["judged"].agg(["sum", "size"])
        value = (grouped["sum"] / grouped["size"]).rename(f"judged@{c}")
        out = out.join(value)
        out[f"judged@{c}"] = out[f"judged@{c}"].fillna(0.0)
    return out.reset_index()


def judged(results: Any, qrels: Any, k: int | Iterable[int] = 10) -> pd.DataFrame:
    """Mean Judged@k per configuration: one row per ``(pipeline_id, mode, top_k)`` present,
    a ``judged@<k>`` column per cutoff, and ``n_queries`` (judged queries scored).

    ``results`` is a run's document-level results frame (``query_id``, ``doc_id``,
    ``rank`` and the configuration columns), ``qrels`` any frame with ``query_id`` and
    ``doc_id`` (every listed pair counts as judged, whatever its grade).
    """
    per_query = judged_per_query(results, qrels, k)
    cols = [c for c in config_columns(per_query)]
    metrics = [c for c in per_query.columns if c.startswith("judged@")]
    if cols:
        table = per_query.groupby(cols, sort=False)[metrics].mean()
        table["n_queries"] = per_query.groupby(cols, sort=False)["query_id"].nunique()
        return sort_configs(table.reset_index())
    row = per_query[metrics].mean().to_frame().T
    row["n_queries"] = per_query["query_id"].nunique()
    return row
