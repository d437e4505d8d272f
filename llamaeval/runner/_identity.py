"""What a run measured, by content: the queries and judgements (SHA-256, order-independent),
each configuration as the retrieve request it sends, each pipeline's configuration (SHA-256),
and the llamaeval and server versions. Written into the manifest (``identity``) and compared
by ``llamaeval gate``: two runs are paired only when their queries and judgements hash the
same, and configurations are paired by their request, not by pipeline id (a re-ingest makes
a new pipeline).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

__all__ = ["PIPELINE_CONFIG_FIELDS", "canonical", "pipeline_config_sha256", "qrels_sha256", "queries_sha256",
           "request_key", "run_identity"]

#: Fields of a pipeline record that decide what a retrieve returns (hashed as its configuration).
PIPELINE_CONFIG_FIELDS: tuple[str, ...] = ("retrieval_config", "chunking_config", "embedding_model",
                                           "preset_retrieval_parameters")


def canonical(value: Any) -> Any:
    """``value`` with numbers normalised for comparison (``1.0`` -> ``1``; booleans stay
    booleans), tuples as lists, mapping keys as text."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() and abs(value) < 2 ** 53 else value
    if isinstance(value, int):
        return int(value)
    return str(value)


def _sha256_rows(tag: str, rows: list[str]) -> str:
    digest = hashlib.sha256(f"{tag}\x00".encode())
    for row in sorted(rows):
        digest.update(row.encode("utf-8"))
        digest.update(b"\x1e")
    return digest.hexdigest()


def queries_sha256(queries: pd.DataFrame) -> str:
    """SHA-256 of the benchmarked queries (``query_id``, ``text``), independent of row order."""
    rows = [f"{q}\x1f{t}" for q, t in zip(queries["query_id"].astype(str), queries["text"].astype(str))]
    return _sha256_rows("queries", rows)


def qrels_sha256(qrels: pd.DataFrame) -> str:
    """SHA-256 of the judgements (``query_id``, ``doc_id``, ``relevance``), independent of row order;
    grades compare as numbers (``2`` and ``2.0`` hash alike)."""
    grades = [json.dumps(canonical(float(r))) for r in pd.to_numeric(qrels["relevance"])]
    rows = [f"{q}\x1f{d}\x1f{g}" for q, d, g in zip(qrels["query_id"].astype(str), qrels["doc_id"].astype(str), grades)]
    return _sha256_rows("qrels", rows)


def request_key(mode: Any, top_k: Any, params: Mapping[str, Any]) -> str:
    """The retrieve request a configuration sends, as canonical JSON (sorted keys): what two runs'
    configurations must share to be compared."""
    mode = None if mode is None or (not isinstance(mode, str) and pd.isna(mode)) else str(mode)
    return json.dumps({"mode": mode, "top_k": int(top_k), "params": canonical(dict(params))},
                      sort_keys=True, separators=(",", ":"))


def pipeline_config_sha256(info: Mapping[str, Any]) -> str:
    """SHA-256 of a pipeline's configuration as recorded in a manifest (:data:`PIPELINE_CONFIG_FIELDS`)."""
    config = {k: canonical(info.get(k)) for k in PIPELINE_CONFIG_FIELDS}
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def run_identity(manifest: Mapping[str, Any], queries: pd.DataFrame, qrels: pd.DataFrame,
                 configurations: pd.DataFrame) -> dict[str, Any]:
    """The identity of a run (JSON-safe): ``queries_sha256``, ``qrels_sha256``, ``n_queries``,
    ``n_qrels``, ``configurations`` (one per configuration: pipeline_id, name, top_k,
    retrieve ``mode``, ``params`` including the run-wide ``retrieve_params``, ``request``: the
    canonical request key), ``pipelines`` (id, name, ``config_sha256``, files and chunks),
    ``llamaeval``, ``server_version``, ``dialect``, ``queryset`` (name, split, content hash)."""
    parameters = manifest.get("parameters") or {}
    common = dict(parameters.get("retrieve_params") or (manifest.get("fingerprint") or {}).get("retrieve_params") or {})
    configs = []
    for row in configurations.to_dict("records"):
        params = {**common, **json.loads(row.get("params") or "{}")}
        mode = row.get("retrieve_mode")
        mode = None if mode is None or pd.isna(mode) else str(mode)
        configs.append({"pipeline_id": str(row["pipeline_id"]), "name": str(row["mode"]), "top_k": int(row["top_k"]),
                        "mode": mode, "params": canonical(params), "request": request_key(mode, row["top_k"], params)})
    pipelines = []
    for info in manifest.get("pipelines") or []:
        if isinstance(info, Mapping):
            pipelines.append({"id": info.get("id"), "name": info.get("name"),
                              "config_sha256": pipeline_config_sha256(info),
                              "num_files": info.get("num_files"), "num_chunks": info.get("num_chunks")})
        else:  # an older manifest listed bare ids
            pipelines.append({"id": str(info), "name": None, "config_sha256": None})
    qs = manifest.get("queryset") or {}
    return {
        "queries_sha256": queries_sha256(queries), "qrels_sha256": qrels_sha256(qrels),
        "n_queries": int(queries["query_id"].nunique()), "n_qrels": int(len(qrels)),
        "queryset": {"name": qs.get("name"), "split": qs.get("split"), "content_hash": qs.get("content_hash")},
        "configurations": configs, "pipelines": pipelines,
        "llamaeval": (manifest.get("client") or {}).get("llamaeval") or manifest.get("llamaeval_version"),
        "server_version": (manifest.get("server") or {}).get("version"),
        "dialect": (manifest.get("client") or {}).get("dialect"),
    }
