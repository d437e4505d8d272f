"""Input checks and configuration selection shared by the metrics functions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Union

import pandas as pd

from llamaeval._errors import EvaluationError
from llamaeval._keys import CONFIG_KEY, natural_order

# Columns that identify one benchmark configuration, in this order (``mode`` = its name).
CONFIG_COLUMNS: tuple[str, ...] = CONFIG_KEY

Selector = Union[Mapping[str, Any], Sequence[Any]]


def config_columns(frame: pd.DataFrame) -> list[str]:
    """The configuration columns present in ``frame`` (none -> the frame is one configuration)."""
    return [c for c in CONFIG_COLUMNS if c in frame.columns]


def sort_configs(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in display order, stable: pipeline_id, then ``mode`` in natural order (fast,
    accurate, advanced, then other configurations in the order they first appear in
    ``frame``), then top_k ascending. The index is reset."""
    if frame.empty or "mode" not in frame.columns:
        return frame.reset_index(drop=True)
    rank = {name: i for i, name in enumerate(natural_order(frame["mode"]))}
    by = [c for c in ("pipeline_id",) if c in frame.columns] + ["_mode_rank"]
    by += [c for c in ("top_k",) if c in frame.columns]
    tmp = frame.assign(_mode_rank=frame["mode"].map(rank).to_numpy())
    return tmp.sort_values(by, kind="stable").drop(columns="_mode_rank").reset_index(drop=True)


def require_frame(frame: Any, name: str, columns: Sequence[str]) -> pd.DataFrame:
    """Raise EvaluationError unless ``frame`` is a non-empty DataFrame with ``columns``."""
    if not isinstance(frame, pd.DataFrame):
        raise EvaluationError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise EvaluationError(f"{name} lacks column(s) {missing}; it has {list(frame.columns)}")
    if frame.empty:
        raise EvaluationError(f"{name} is empty: nothing to evaluate")
    return frame


def normalise_qrels(qrels: Any) -> pd.DataFrame:
    """Judgements as ``query_id``/``doc_id`` strings and numeric ``relevance``; duplicates keep the highest grade."""
    require_frame(qrels, "qrels", ("query_id", "doc_id", "relevance"))
    frame = qrels[["query_id", "doc_id", "relevance"]].dropna()
    relevance = pd.to_numeric(frame["relevance"], errors="coerce")
    if relevance.isna().any():
        bad = frame.loc[relevance.isna(), "relevance"].iloc[0]
        raise EvaluationError(f"qrels relevance must be numeric, got {bad!r}")
    frame = pd.DataFrame({
        "query_id": frame["query_id"].astype(str),
        "doc_id": frame["doc_id"].astype(str),
        "relevance": relevance.astype(float),
    })
    if frame.empty:
        raise EvaluationError("qrels hold no judgements")
    return frame.groupby(["query_id", "doc_id"], as_index=False, sort=False)["relevance"].max()


def select_config(frame: pd.DataFrame, selector: Selector, what: str = "configuration") -> pd.Series:
    """Boolean mask of the rows of the ONE configuration ``selector`` names.

    ``selector`` is a dict of configuration columns (``{"mode": "fast", "top_k": 10}``; the
    keys given must identify one configuration) or a tuple of values matched to
    ``(pipeline_id, mode, top_k)``; a shorter tuple is matched to the LAST columns, so
    ``("fast", 10)`` works for a single-pipeline run. Values compare as text, so
    ``top_k`` may be given as 10 or "10".
    """
    cols = config_columns(frame)
    if isinstance(selector, Mapping):
        unknown = [k for k in selector if k not in cols]
        if unknown:
            raise EvaluationError(f"{what} selector has unknown key(s) {unknown}; configuration columns are {cols}")
        items = list(selector.items())
    elif isinstance(selector, Sequence) and not isinstance(selector, str):
        if len(selector) > len(cols):
            raise EvaluationError(f"{what} selector {tuple(selector)!r} has more values than configuration columns {cols}")
        items = list(zip(cols[len(cols) - len(selector):], selector))
    else:
        raise EvaluationError(f"{what} must be a dict or a tuple of {cols}, got {selector!r}")
    mask = pd.Series(True, index=frame.index)
    for col, value in items:
        mask &= frame[col].astype(str) == str(value)
    found = frame.loc[mask, cols].drop_duplicates()
    if found.empty:
        available = frame[cols].drop_duplicates().to_dict("records")
        raise EvaluationError(f"no {what} matches {selector!r}; available: {available}")
    if len(found) > 1:
        raise EvaluationError(
            f"{what} {selector!r} matches {len(found)} configurations "
            f"({found.to_dict('records')}); name more columns")
    return mask
