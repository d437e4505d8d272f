"""The real LlamaCloud dialect on the client side: its calls, and its wire shapes mapped onto the
client's one vocabulary (the same records, frames and ``RetrievalResult`` as the simplified API).

Statuses are normalised to the simplified vocabulary and the raw value is kept in
``status_raw``; values this module does not know are lower-cased, never refused.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from llamaeval._errors import APIError, ConfigurationError
from llamaeval.client._core import Call, Core, Op, Reply, encode_json

__all__ = ["RETRIEVE_PARAMS", "MODE_PRESETS", "MAX_TOP_K", "FILE_STATUS", "JOB_STATUS", "metadata_filters",
           "retrieve_parameters"]

#: Real file (and document) statuses -> the client's vocabulary.
FILE_STATUS = {"NOT_STARTED": "pending", "IN_PROGRESS": "processing", "SUCCESS": "completed", "ERROR": "error",
               "CANCELLED": "error"}
#: Real ingestion and job statuses -> the client's job vocabulary.
JOB_STATUS = {"NOT_STARTED": "pending", "PENDING": "pending", "IN_PROGRESS": "running", "SUCCESS": "completed",
              "PARTIAL_SUCCESS": "completed", "ERROR": "failed", "CANCELLED": "failed"}
#: Every field of the real retrieve request besides ``query``.
RETRIEVE_PARAMS: tuple[str, ...] = (
    "dense_similarity_top_k", "sparse_similarity_top_k", "alpha", "dense_similarity_cutoff", "enable_reranking",
    "rerank_top_n", "retrieval_mode", "files_top_k", "search_filters", "search_filters_inference_schema",
    "retrieve_image_nodes", "retrieve_page_figure_nodes", "retrieve_page_screenshot_nodes")
#: The modes as real knobs. ``top_k`` becomes ``rerank_top_n`` with reranking, else the
#: dense and sparse candidate counts. ``advanced`` (query expansion) has no real knob.
MODE_PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"enable_reranking": False, "alpha": 0.5},
    "accurate": {"enable_reranking": True, "alpha": 0.5, "dense_similarity_top_k": 100,
                 "sparse_similarity_top_k": 100},
}
#: Largest node count the real API returns (``rerank_top_n`` / candidate counts are 1..100).
MAX_TOP_K = 100
_FILTER_OPERATORS = ("==", "!=", ">", "<", ">=", "<=", "in", "nin", "any", "all", "text_match",
                     "text_match_insensitive", "contains", "is_empty")


def metadata_filters(*conditions: tuple[str, str, Any] | Mapping[str, Any], condition: str = "and"
                     ) -> dict[str, Any]:
    """``search_filters`` for a real retrieve: ``metadata_filters(("topic", "==", "law"),
    ("year", ">=", 2020), condition="and")``; a condition may also be a nested filters dict."""
    if condition not in ("and", "or", "not"):
        raise ConfigurationError(f"condition must be 'and', 'or' or 'not', got {condition!r}")
    filters: list[Any] = []
    for c in conditions:
        if isinstance(c, Mapping):
            if "filters" not in c:
                raise ConfigurationError(f"a nested filter needs 'filters': {dict(c)!r}")
            filters.append(dict(c))
            continue
        if not isinstance(c, tuple) or len(c) != 3:
            raise ConfigurationError(f"a condition is (key, operator, value), got {c!r}")
        key, op, value = c
        if op not in _FILTER_OPERATORS:
            raise ConfigurationError(f"unknown operator {op!r}; use one of {', '.join(_FILTER_OPERATORS)}")
        filters.append({"key": key, "operator": op, "value": list(value) if isinstance(value, (tuple, set)) else value})
    if not filters:
        raise ConfigurationError("metadata_filters needs at least one condition")
    return {"filters": filters, "condition": condition}


# ------------------------------------------------------------------------- shapes -> vocabulary

def _norm(raw: Any, table: Mapping[str, str]) -> str | None:
    if not isinstance(raw, str):
        return None
    return table.get(raw, raw.lower())


def file_json(f: dict[str, Any]) -> dict[str, Any]:
    out = dict(f)
    out.setdefault("content_type", f.get("file_type"))
    return out


def pipeline_json(p: dict[str, Any]) -> dict[str, Any]:
    out = dict(p)
    out["status_raw"] = p.get("status")
    out["status"] = p.get("sync_status") or _norm(p.get("status"), {})
    transform = p.get("transform_config")
    if isinstance(transform, dict):
        source = transform.get("chunking_config") if transform.get("mode") == "advanced" else transform
        if isinstance(source, dict):
            out["chunking_config"] = {k: source[k] for k in ("chunk_size", "chunk_overlap") if k in source}
    if not isinstance(p.get("retrieval_config"), dict):
        out.pop("retrieval_config", None)
    embedding = p.get("embedding_config")
    component = embedding.get("component") if isinstance(embedding, dict) else None
    if not out.get("embedding_model") and isinstance(component, dict) and component.get("model_name"):
        out["embedding_model"] = component["model_name"]  # LlamaCloud names the model only there
    return out


def pipeline_file_json(pf: dict[str, Any]) -> dict[str, Any]:
    out = dict(pf)
    out["status_raw"] = pf.get("status")
    out["status"] = _norm(pf.get("status"), FILE_STATUS)
    out["metadata"] = pf.get("custom_metadata") or {}
    out.pop("custom_metadata", None)
    out["pipeline_file_id"] = out.pop("id", None)
    return out


def job_from_status(status: dict[str, Any], pipeline_id: str) -> dict[str, Any]:
    """A job record from a pipeline's ingestion status (``…/status``)."""
    errors = status.get("error") or []
    message = "; ".join(f"{e.get('step', 'ERROR')}: {e.get('message', '')}" for e in errors if isinstance(e, dict))
    return {"id": status.get("job_id") or "", "pipeline_id": pipeline_id,
            "status": _norm(status.get("status"), JOB_STATUS), "status_raw": status.get("status"),
            "completed_at": status.get("effective_at"), "error": message or None,
            "error_steps": [e.get("step") for e in errors if isinstance(e, dict)]}


def job_record_json(item: dict[str, Any]) -> dict[str, Any]:
    rec = item.get("job_record", item) if isinstance(item, dict) else {}
    out = dict(rec)
    out["status_raw"] = rec.get("status")
    out["status"] = _norm(rec.get("status"), JOB_STATUS)
    out.setdefault("error", rec.get("error_message"))
    out.setdefault("completed_at", rec.get("ended_at"))
    partitions = rec.get("partitions") if isinstance(rec.get("partitions"), dict) else {}
    out.setdefault("pipeline_id", partitions.get("pipeline_id"))
    return out


def data_source_json(d: dict[str, Any]) -> dict[str, Any]:
    out = dict(d)
    out["config"] = d.get("component") if isinstance(d.get("component"), dict) else {}
    return out


def data_sink_json(s: dict[str, Any]) -> dict[str, Any]:
    out = dict(s)
    out["config"] = s.get("component") if isinstance(s.get("component"), dict) else {}
    return out


def results_of(body: Any, reply: Reply | None = None) -> list[dict[str, Any]]:
    """The retrieve response's nodes as result objects ``{text, score, metadata}``: metadata is
    the node's ``extra_info`` plus ``chunk_id`` (``id_``) and character offsets. A body without
    ``retrieval_nodes`` is an error, never an empty result."""
    nodes = body.get("retrieval_nodes") if isinstance(body, dict) else None
    if not isinstance(nodes, list):
        raise APIError("the retrieve response has no 'retrieval_nodes' list: is this a LlamaCloud server? "
                       f"(keys: {sorted(body) if isinstance(body, dict) else type(body).__name__})",
                       status_code=reply.response.status_code if reply else None,
                       request=reply.request if reply else None, body=body)
    out = []
    for item in nodes:
        node = item.get("node") if isinstance(item, dict) else None
        node = node if isinstance(node, dict) else {}
        info = node.get("extra_info")
        metadata = dict(info) if isinstance(info, dict) else dict(node.get("metadata") or {})
        metadata.setdefault("chunk_id", node.get("id_") or node.get("id"))
        for key, wire in (("start_char", "start_char_idx"), ("end_char", "end_char_idx")):
            if node.get(wire) is not None:
                metadata.setdefault(key, node.get(wire))
        out.append({"text": node.get("text"), "score": item.get("score") if isinstance(item, dict) else None,
                    "metadata": metadata})
    return out


def retrieve_body(query: str, mode: str | None, top_k: int | None, params: Mapping[str, Any]) -> dict[str, Any]:
    """The real request: ``{"query": query, **retrieve_parameters(mode, top_k, params)}``."""
    return {"query": query, **retrieve_parameters(mode, top_k, params)}


def retrieve_parameters(mode: str | None, top_k: int | None, params: Mapping[str, Any]) -> dict[str, Any]:
    """Every field of the real retrieve request but the query: the mode's preset, the caller's
    parameters over it, and ``top_k`` (when given) as the node count — ``rerank_top_n`` with
    reranking (on unless said otherwise, as in LlamaCloud), else the candidate counts. What
    nobody gave is not sent, so the pipeline's ``preset_retrieval_parameters`` and the
    service's defaults apply to it. The same fields, written as a pipeline's
    ``preset_retrieval_parameters``, make a retrieve without parameters send this request."""
    unknown = sorted(set(params) - set(RETRIEVE_PARAMS))
    if unknown:
        raise ConfigurationError(f"unknown retrieve parameter(s) {unknown} for the real LlamaCloud API; "
                                 f"known: {', '.join(RETRIEVE_PARAMS)}")
    if mode is not None and mode not in MODE_PRESETS:
        raise ConfigurationError(
            f"mode {mode!r} has no equivalent in the real LlamaCloud API (query expansion is a local-server "
            f"mode); use {', '.join(MODE_PRESETS)} or explicit parameters" if mode == "advanced"
            else f"unknown mode {mode!r}; use {', '.join(MODE_PRESETS)} or explicit parameters")
    if top_k is not None and top_k > MAX_TOP_K:
        raise ConfigurationError(f"top_k must be <= {MAX_TOP_K} with the real LlamaCloud API, got {top_k}")
    body: dict[str, Any] = {**(MODE_PRESETS.get(mode, {}) if mode else {}), **params}
    if top_k is None:
        return body
    if body.setdefault("enable_reranking", True):  # LlamaCloud's default, sent explicitly
        body.setdefault("rerank_top_n", top_k)
    else:
        body.setdefault("dense_similarity_top_k", top_k)
        body.setdefault("sparse_similarity_top_k", top_k)
    return body


# ------------------------------------------------------------------------------- calls

def _seg(value: str) -> str:
    return quote(value, safe="")


def _object(reply: Reply) -> dict[str, Any]:
    data = reply.json()
    if not isinstance(data, dict):
        raise APIError(f"expected a JSON object, got {type(data).__name__}", status_code=reply.response.status_code,
                       request=reply.request, body=data)
    return data


def _array(reply: Reply) -> list[Any]:
    data = reply.json()
    if not isinstance(data, list):
        raise APIError(f"expected a JSON array, got {type(data).__name__}", status_code=reply.response.status_code,
                       request=reply.request, body=data)
    return data


def upload_call(project_id: str, payload: tuple[str, bytes, str], purpose: str = "user_data") -> Call:
    """``POST /beta/files`` (multipart ``file`` + ``purpose``), what the 2.x SDK and LlamaCloudIndex use."""
    return Call("POST", "/beta/files", params={"project_id": project_id}, files={"file": payload},
                data={"purpose": purpose}, idempotent=False)


def add_files_call(pipeline_id: str, items: list[dict[str, Any]]) -> Call:
    body = [{"file_id": i["file_id"], "custom_metadata": i.get("metadata") or {}} for i in items]
    return Call("PUT", f"/pipelines/{_seg(pipeline_id)}/files", content=encode_json(body))


def create_pipeline_call(name: str, project_id: str, chunking: dict[str, Any] | None,
                         retrieval: dict[str, Any] | None, presets: dict[str, Any] | None,
                         embedding: dict[str, Any] | None = None) -> Call:
    body: dict[str, Any] = {"name": name}
    if embedding:  # a local model by name: the real API's shape for a Hugging Face model
        body["embedding_config"] = {"type": "HUGGINGFACE_API_EMBEDDING", "component": embedding}
    if chunking:
        body["transform_config"] = {"mode": "auto", **chunking}
    if presets:
        body["preset_retrieval_parameters"] = presets
    if retrieval:
        body["retrieval_config"] = retrieval  # the local server's engine parameters (ignored elsewhere)
    return Call("POST", "/pipelines", params={"project_id": project_id}, content=encode_json(body),
                idempotent=False)


def update_pipeline_call(pipeline_id: str, body: dict[str, Any]) -> Call:
    """``PUT /pipelines/{id}``: the fields given replace the pipeline's (``preset_retrieval_parameters``
    as a whole object)."""
    return Call("PUT", f"/pipelines/{_seg(pipeline_id)}", content=encode_json(body))


def list_pipeline_files(core: Core, pipeline_id: str, page_size: int = 100) -> Op[list[dict[str, Any]]]:
    """Every page of ``…/files2`` (``{files, total_count, offset}``)."""
    out: list[dict[str, Any]] = []
    while True:
        reply = yield from core.request(Call("GET", f"/pipelines/{_seg(pipeline_id)}/files2",
                                             params={"limit": str(page_size), "offset": str(len(out))}))
        page = _object(reply)
        files = page.get("files")
        if not isinstance(files, list):
            raise APIError("the files2 page has no 'files' list", status_code=reply.response.status_code,
                           request=reply.request, body=page)
        out.extend(pipeline_file_json(f) for f in files if isinstance(f, dict))
        total = page.get("total_count")
        if not files or not isinstance(total, int) or len(out) >= total:
            return out


def status(core: Core, pipeline_id: str) -> Op[dict[str, Any]]:
    reply = yield from core.request(Call("GET", f"/pipelines/{_seg(pipeline_id)}/status"))
    return _object(reply)


def sync(core: Core, pipeline_id: str) -> Op[dict[str, Any]]:
    """``POST …/sync`` answers the pipeline; the job comes from the status that follows."""
    yield from core.request(Call("POST", f"/pipelines/{_seg(pipeline_id)}/sync", idempotent=False))
    return job_from_status((yield from status(core, pipeline_id)), pipeline_id)


def list_jobs(core: Core, pipeline_id: str) -> Op[list[dict[str, Any]]]:
    """The pipeline's jobs from ``GET /jobs?project_id`` (the project comes from the pipeline)."""
    reply = yield from core.request(Call("GET", f"/pipelines/{_seg(pipeline_id)}"))
    project_id = _object(reply).get("project_id")
    reply = yield from core.request(Call("GET", "/jobs", params={"project_id": str(project_id)}))
    page = reply.json()
    items = page.get("jobs") if isinstance(page, dict) else page
    records = [job_record_json(j) for j in (items if isinstance(items, list) else [])]
    if any(r.get("pipeline_id") for r in records):
        records = [r for r in records if r.get("pipeline_id") == pipeline_id]
    return records


def data_sinks(core: Core, pipeline_id: str) -> Op[list[dict[str, Any]]]:
    reply = yield from core.request(Call("GET", f"/pipelines/{_seg(pipeline_id)}"))
    sink = _object(reply).get("data_sink")
    return [data_sink_json(sink)] if isinstance(sink, dict) else []


def add_data_sources(core: Core, pipeline_id: str, items: list[dict[str, Any]]) -> Op[list[dict[str, Any]]]:
    """New sources are created first (``POST /data-sources``), then all are attached by id."""
    ids = []
    reply = yield from core.request(Call("GET", f"/pipelines/{_seg(pipeline_id)}"))
    project_id = str(_object(reply).get("project_id"))
    for item in items:
        if item.get("data_source_id"):
            ids.append(item["data_source_id"])
            continue
        body = {"name": item["name"], "source_type": item["source_type"], "component": item.get("config") or {}}
        reply = yield from core.request(Call("POST", "/data-sources", params={"project_id": item.get("project_id")
                                                                              or project_id},
                                             content=encode_json(body), idempotent=False))
        ids.append(_object(reply)["id"])
    reply = yield from core.request(Call("PUT", f"/pipelines/{_seg(pipeline_id)}/data-sources",
                                         content=encode_json([{"data_source_id": i} for i in ids])))
    return [data_source_json(d) for d in _array(reply) if isinstance(d, dict)]


def upsert_documents(core: Core, pipeline_id: str, documents: list[dict[str, Any]]) -> Op[list[dict[str, Any]]]:
    reply = yield from core.request(Call("PUT", f"/pipelines/{_seg(pipeline_id)}/documents",
                                         content=encode_json(documents)))
    return [d for d in _array(reply) if isinstance(d, dict)]


def list_documents(core: Core, pipeline_id: str, page_size: int = 100) -> Op[list[dict[str, Any]]]:
    out: list[dict[str, Any]] = []
    while True:
        reply = yield from core.request(Call("GET", f"/pipelines/{_seg(pipeline_id)}/documents/paginated",
                                             params={"skip": str(len(out)), "limit": str(page_size)}))
        page = _object(reply)
        docs = page.get("documents")
        if not isinstance(docs, list):
            raise APIError("the documents page has no 'documents' list", status_code=reply.response.status_code,
                           request=reply.request, body=page)
        out.extend(d for d in docs if isinstance(d, dict))
        total = page.get("total_count")
        if not docs or not isinstance(total, int) or len(out) >= total:
            return out


def delete_document(core: Core, pipeline_id: str, document_id: str) -> Op[None]:
    yield from core.request(Call("DELETE", f"/pipelines/{_seg(pipeline_id)}/documents/{_seg(document_id)}"))
    return None


def warn_partial(job: dict[str, Any], pipeline_id: str) -> None:
    if job.get("status_raw") == "PARTIAL_SUCCESS":
        warnings.warn(f"pipeline {pipeline_id} ingested with PARTIAL_SUCCESS: {job.get('error')}", stacklevel=4)
