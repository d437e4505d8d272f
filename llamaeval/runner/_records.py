"""Finished requests ("records") and the tidy frames derived from them.

A record is a JSON-safe dict, one per request actually sent::

    {"pipeline_id", "mode", "top_k", "query_id",   # mode: the configuration's name; top_k as sent
     "shared": bool, "order": int, "started_at": ISO-8601 UTC,
     "latency_s": float, "status": int, "error": str | None,
     "server_timing": {stage: seconds},
     "hits": [[rank, key_value, file_name, chunk_index, chunk_id, file_id, score], ...]}

``hits`` are the chunks in the server's order with what the DocumentMapping needs
(``key_value`` = the chunk's ``metadata[mapping.metadata_key]``, the file name and
chunk index); the mapping resolves document ids and collapses chunks when frames are built.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from llamaeval._keys import REQUEST_KEY as _REQUEST_KEY
from llamaeval.runner._plan import Key, sources

REQUEST_KEY = list(_REQUEST_KEY)  # pipeline_id, mode (the configuration's name), top_k, query_id
REQUEST_COLUMNS = [*REQUEST_KEY, "latency_s", "server_total_s"]
REQUEST_TAIL = ["status", "error", "n_results", "shared", "started_at", "order"]
RESULT_COLUMNS = [*REQUEST_KEY, "rank", "doc_id", "chunk_id", "file_id", "score", "latency_s", "status",
                  "error", "shared"]
RECORD_COLUMNS = [*REQUEST_KEY, "shared", "order", "started_at", "latency_s", "status", "attempts", "error",
                  "server_timing"]
HIT_FIELDS = ["rank", "key_value", "file_name", "chunk_index", "chunk_id", "file_id", "score"]
CHUNK_COLUMNS = [*REQUEST_KEY, *HIT_FIELDS]
DOC_COLUMNS = [*REQUEST_KEY, "rank", "doc_id", "chunk_id", "file_id", "score"]


def record_key(record: Mapping[str, Any]) -> Key:
    p, m, k, q = (record[c] for c in REQUEST_KEY)
    return (p, m, int(k), q)


def hits_from_results(items: Any, mapping: Any) -> list[list[Any]]:
    """Chunk hits ``[rank, key_value, file_name, chunk_index, chunk_id, file_id, score]`` of a
    retrieve call's result objects ``{text, score, metadata}`` (the client's ``results``, the
    same in both dialects), in the server's order."""
    items = items if isinstance(items, Sequence) and not isinstance(items, (str, bytes)) else []
    key = getattr(mapping, "metadata_key", "doc_id")
    hits: list[list[Any]] = []
    for rank, item in enumerate(items, start=1):
        metadata = item.get("metadata") or {}
        score = item.get("score")
        index = metadata.get("chunk_index")
        hits.append([
            rank,
            _opt_str(metadata.get(key)),
            _opt_str(metadata.get("file_name")),
            index if isinstance(index, int) and not isinstance(index, bool) else None,
            _opt_str(metadata.get("chunk_id")),
            _opt_str(metadata.get("file_id")),
            float(score) if score is not None else math.nan,
        ])
    return hits


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _stage_column(stage: str) -> str:
    return "server_" + re.sub(r"[^0-9a-zA-Z]+", "_", stage).strip("_").lower() + "_s"


# --- persistence of records as two Parquet tables -----------------------------------------

def records_to_tables(records: Iterable[Mapping[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(records table, chunk-hits table) for Parquet; inverse of :func:`tables_to_records`."""
    rows, chunks = [], []
    for r in records:
        rows.append({c: r.get(c) for c in RECORD_COLUMNS[:-1]}
                    | {"attempts": int(r.get("attempts") or 1),
                       "server_timing": json.dumps(r.get("server_timing") or {})})
        key = record_key(r)
        for h in r.get("hits") or []:
            chunks.append([*key, *h])
    table = pd.DataFrame(rows, columns=RECORD_COLUMNS).astype(
        {"top_k": "int64", "shared": "bool", "order": "int64", "latency_s": "float64", "status": "int64",
         "attempts": "int64"})
    chunk_table = _chunk_frame(chunks)
    return table, chunk_table


def tables_to_records(table: pd.DataFrame, chunk_table: pd.DataFrame) -> list[dict[str, Any]]:
    """Records back from the two Parquet tables."""
    hits: dict[Key, list[list[Any]]] = {}
    for row in chunk_table.sort_values([*REQUEST_KEY, "rank"]).itertuples(index=False):
        hits.setdefault(record_key(row._asdict()), []).append(
            [int(row.rank), _na_to_none(row.key_value), _na_to_none(row.file_name),
             None if _na_to_none(row.chunk_index) is None else int(row.chunk_index),
             _na_to_none(row.chunk_id), _na_to_none(row.file_id), float(row.score)])
    out = []
    for row in table.itertuples(index=False):
        rec = dict(zip(REQUEST_KEY, record_key(row._asdict()))) | {
            "shared": bool(row.shared), "order": int(row.order),
            "started_at": row.started_at, "latency_s": float(row.latency_s), "status": int(row.status),
            "attempts": int(row.attempts),
            "error": _na_to_none(row.error), "server_timing": json.loads(row.server_timing or "{}"),
        }
        rec["hits"] = hits.get(record_key(rec), [])
        out.append(rec)
    return out


def _na_to_none(value: Any) -> Any:
    if value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


# --- derived frames ----------------------------------------------------------------------

def build_frames(records: Mapping[Key, Mapping[str, Any]], cells: Sequence[Key], mapping: Any,
                 *, share_k: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(requests, results) frames for the grid ``cells`` from the finished ``records``.

    With share_k a cell is answered by the shared request at the smallest sent
    top_k >= its own, truncated to its top_k chunks before the collapse to documents.
    """
    src = sources(cells, records.keys(), share_k=share_k)
    stages = sorted({s for r in records.values() for s in (r.get("server_timing") or {}) if s != "total"})
    req_rows, chunk_rows = [], []
    for cell in cells:
        key = src.get(cell)
        if key is None:
            continue
        r = records[key]
        k = cell[2]
        hits = [h for h in (r.get("hits") or []) if h[0] <= k]
        timing = r.get("server_timing") or {}
        row = dict(zip(REQUEST_KEY, cell)) | {
            "latency_s": r["latency_s"], "server_total_s": timing.get("total", math.nan),
        }
        for s in stages:
            row[_stage_column(s)] = timing.get(s, math.nan)
        row |= {"status": r["status"], "error": r.get("error"), "n_results": len(hits),
                "shared": key != cell,  # cut from a larger top_k request
                "started_at": r["started_at"], "order": r["order"]}
        req_rows.append(row)
        for h in hits:
            chunk_rows.append([*cell, *h])

    stage_cols = [_stage_column(s) for s in stages]
    requests = pd.DataFrame(req_rows, columns=REQUEST_COLUMNS + stage_cols + REQUEST_TAIL)
    requests = requests.astype({"top_k": "int64", "latency_s": "float64", "server_total_s": "float64",
                                **{c: "float64" for c in stage_cols}, "status": "int64",
                                "n_results": "int64", "shared": "bool", "order": "int64"})
    requests["error"] = _str_column(requests["error"])
    for c in REQUEST_KEY:
        if c != "top_k":
            requests[c] = _str_column(requests[c])
    requests["started_at"] = pd.to_datetime(requests["started_at"], utc=True, format="ISO8601")
    # Rows follow the grid (pipelines and modes as given, top_k ascending, queries in query-set
    # order) - already the order of req_rows; ``order`` keeps the send order.

    results = _collapse(_chunk_frame(chunk_rows), mapping)
    results = _attach_request_fields(results, requests)
    return requests, results


def _chunk_frame(rows: list[list[Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=CHUNK_COLUMNS)
    frame = frame.astype({"top_k": "int64", "rank": "int64", "score": "float64"})
    frame["chunk_index"] = frame["chunk_index"].astype("Int64")
    for c in ("pipeline_id", "mode", "query_id", "key_value", "file_name", "chunk_id", "file_id"):
        frame[c] = _str_column(frame[c])
    return frame


def _collapse(chunks: pd.DataFrame, mapping: Any) -> pd.DataFrame:
    """Chunks -> documents via the DocumentMapping (best rank per document, ranks 1..n per request)."""
    key = getattr(mapping, "metadata_key", "doc_id")
    frame = chunks.drop(columns=["key_value"])
    # The mapping reads its metadata key as a column (and file_name / chunk_index as fallbacks).
    frame[key] = chunks["key_value"]
    collapsed = mapping.collapse(frame, by=REQUEST_KEY)
    return collapsed[DOC_COLUMNS].reset_index(drop=True)


def _attach_request_fields(docs: pd.DataFrame, requests: pd.DataFrame) -> pd.DataFrame:
    """Join each document row to its request's latency/status/error/shared; add one NA row per
    request that returned nothing (failed or empty)."""
    per_req = requests[[*REQUEST_KEY, "latency_s", "status", "error", "shared"]]
    per_req = per_req.assign(_row=range(len(requests)))
    merged = per_req.merge(docs, on=REQUEST_KEY, how="left", validate="one_to_many")
    merged = merged.sort_values(["_row", "rank"], kind="stable", na_position="first")
    out = merged[RESULT_COLUMNS].reset_index(drop=True)
    out["rank"] = out["rank"].astype("Int64")
    out["score"] = out["score"].astype("float64")
    for c in ("doc_id", "chunk_id", "file_id", "error", "pipeline_id", "mode", "query_id"):
        out[c] = _str_column(out[c])
    return out


def _str_column(series: pd.Series) -> pd.Series:
    """A string column with missing values as NA, stable across Parquet round trips."""
    if isinstance(series.dtype, pd.StringDtype) and series.dtype.na_value is pd.NA:
        return series
    return series.astype("string")
