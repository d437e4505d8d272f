"""Every API operation and helper, written once as sans-I/O operations (see _core).

Each public function validates its arguments eagerly (raising ConfigurationError
before anything is sent) and returns an operation generator for a driver to run.
"""

from __future__ import annotations

import mimetypes
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from llamaeval._errors import APIError, ConfigurationError, EmptyPipelineError, SyncError
from llamaeval.client import _llamacloud as real
from llamaeval.client._config import LLAMACLOUD
from llamaeval.client._core import Call, Core, Gather, Op, Reply, Sleep, clean_json, encode_json, probe_dialect
from llamaeval.client._records import (
    DataSink,
    DataSource,
    File,
    Pipeline,
    PipelineFile,
    PipelineJob,
    Project,
    Record,
    frame_from_json,
    infer_column,
)
from llamaeval.client._retrieval import MODES, RetrievalResult, parse_server_timing, simplified_results

if TYPE_CHECKING:
    import pandas as pd

#: Concurrent uploads per batch in the async client (the sync client uploads one by one).
UPLOAD_CONCURRENCY = 4

# ----------------------------------------------------------------------- validation


def as_id(value: Any, what: str) -> str:
    """An object id from a string or a record (anything with ``.id``)."""
    if isinstance(value, Record):
        value = getattr(value, "id", None) or getattr(value, "file_id", None)
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{what} must be a non-empty string id, got {value!r}")
    return value


def _seg(value: Any, what: str) -> str:
    return quote(as_id(value, what), safe="")


def _name(value: Any, what: str = "name") -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{what} must be a non-empty string, got {value!r}")
    return value


def _config_dict(value: Any, what: str) -> dict[str, Any] | None:
    if value is None:
        return None
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict) and not isinstance(value, Mapping):
        value = to_dict()
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{what} must be a dict (or have .to_dict()), got {type(value).__name__}")
    return dict(value)


def _positive_number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(f"{what} must be a number > 0 (seconds), got {value!r}")
    return float(value)


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{what} must be an integer >= 1, got {value!r}")
    return value


# ------------------------------------------------------------------------ parsing


def _array(reply: Reply) -> list[Any]:
    data = reply.json()
    if not isinstance(data, list):
        raise APIError(f"expected a JSON array, got {type(data).__name__}",
                       status_code=reply.response.status_code, request=reply.request, body=data)
    return data


def _object(reply: Reply) -> dict[str, Any]:
    data = reply.json()
    if not isinstance(data, dict):
        raise APIError(f"expected a JSON object, got {type(data).__name__}",
                       status_code=reply.response.status_code, request=reply.request, body=data)
    return data


def _single(core: Core, call: Call, parse: Callable[[Reply], Any]) -> Op[Any]:
    reply = yield from core.request(call)
    return parse(reply)


def _frame_of(cls: type[Record]) -> Callable[[Reply], pd.DataFrame]:
    return lambda reply: frame_from_json(cls, _array(reply))


def _record_of(cls: type[Record]) -> Callable[[Reply], Record]:
    return lambda reply: cls.from_json(_object(reply))


def _frame_or_empty(cls: type[Record]) -> Callable[[Reply], pd.DataFrame]:
    """For PUT endpoints whose response body the spec leaves open."""
    def parse(reply: Reply) -> pd.DataFrame:
        data = reply.json_or_none()
        return frame_from_json(cls, data if isinstance(data, list) else [])
    return parse


def _dialectal(core: Core, simplified: Callable[[], Op[Any]], llamacloud: Callable[[], Op[Any]]) -> Op[Any]:
    """Run the operation of the client's dialect (decided on first use, see ``Core.dialect``)."""
    dialect = yield from core.dialect()
    return (yield from (llamacloud() if dialect == LLAMACLOUD else simplified()))


def _records(cls: type[Record], items: list[dict[str, Any]]) -> pd.DataFrame:
    return frame_from_json(cls, items)


# ------------------------------------------------------------------------- health


def health(core: Core) -> Op[dict[str, Any]]:
    """``GET /health`` at the server root (the local server answers it without auth)."""
    return _single(core, Call("GET", "/health", at_root=True), _object)


# ----------------------------------------------------------------------- projects


def list_projects(core: Core) -> Op[pd.DataFrame]:
    """``GET /projects`` (the same in both dialects; it is also the dialect probe, so an
    ``auto`` client decides its dialect from this answer instead of asking twice)."""
    reply = yield from core.request(Call("GET", "/projects"))
    data = _array(reply)
    if core.resolved_dialect is None:
        core.resolved_dialect = probe_dialect(data)
    return frame_from_json(Project, data)


def create_project(core: Core, name: str) -> Op[Project]:
    body = encode_json({"name": _name(name)})
    return _single(core, Call("POST", "/projects", content=body, idempotent=False), _record_of(Project))


def get_project(core: Core, project_id: str) -> Op[Project]:
    return _single(core, Call("GET", f"/projects/{_seg(project_id, 'project_id')}"), _record_of(Project))


# -------------------------------------------------------------------------- files


def _file_payload(path_or_bytes: Any, name: str | None) -> tuple[str, bytes, str]:
    """(file name, content, content type) from a path, bytes or a binary file object."""
    if isinstance(path_or_bytes, (str, os.PathLike)):
        path = Path(path_or_bytes)
        if not path.is_file():
            raise ConfigurationError(f"no such file: {path}")
        data = path.read_bytes()
        name = name or path.name
    elif isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(path_or_bytes)
    elif hasattr(path_or_bytes, "read"):
        data = path_or_bytes.read()
        if isinstance(data, str):
            raise ConfigurationError("open the file in binary mode ('rb') to upload it")
        name = name or Path(getattr(path_or_bytes, "name", "") or "").name or None
    else:
        raise ConfigurationError(
            f"upload takes a path, bytes or a binary file object, got {type(path_or_bytes).__name__}")
    if not name:
        raise ConfigurationError("name= is required when uploading bytes (the server parses by extension)")
    _name(name, "file name")
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return name, data, content_type


def _upload_call(project_id: str, payload: tuple[str, bytes, str]) -> Call:
    return Call("POST", "/files", params={"project_id": project_id}, files={"file": payload}, idempotent=False)


def _upload(core: Core, project_id: str, payload: tuple[str, bytes, str]) -> Op[File]:
    """Upload in the client's dialect: ``POST /files`` (simplified) or ``POST /beta/files`` (real)."""
    def llamacloud() -> Op[File]:
        reply = yield from core.request(real.upload_call(project_id, payload))
        return File.from_json(real.file_json(_object(reply)))

    return _dialectal(core, lambda: _single(core, _upload_call(project_id, payload), _record_of(File)), llamacloud)


def upload_file(core: Core, path_or_bytes: Any, project_id: str, name: str | None = None) -> Op[File]:
    payload = _file_payload(path_or_bytes, name)
    return _upload(core, as_id(project_id, "project_id"), payload)


def _add_files_items(files: Any) -> list[dict[str, Any]]:
    """``{"file_id", "metadata"?}`` entries from ids, records, dicts or a frame (validated)."""
    items: list[dict[str, Any]] = []
    if hasattr(files, "to_dict") and hasattr(files, "columns"):  # a DataFrame
        if "file_id" not in files.columns:
            raise ConfigurationError("the files frame needs a 'file_id' column (and optionally 'metadata')")
        files = files.to_dict("records")
    if isinstance(files, (str, Mapping)) or not isinstance(files, Iterable):
        raise ConfigurationError("files must be a list of file ids or of {'file_id', 'metadata'} dicts")
    for item in files:
        if isinstance(item, (str, File)):
            items.append({"file_id": as_id(item, "file_id")})
        elif isinstance(item, Mapping):
            entry = {"file_id": as_id(item.get("file_id"), "file_id")}
            metadata = item.get("metadata")
            if metadata is not None and not (isinstance(metadata, float) and metadata != metadata):
                if not isinstance(metadata, Mapping):
                    raise ConfigurationError(f"metadata of file {entry['file_id']} must be a dict")
                entry["metadata"] = dict(metadata)
            items.append(entry)
        else:
            raise ConfigurationError(f"cannot add {item!r} to a pipeline: give a file id or a dict")
    if not items:
        raise ConfigurationError("files is empty: nothing to add")
    return items


def _add_files(core: Core, pipeline_id: str, items: list[dict[str, Any]]) -> Op[pd.DataFrame]:
    """Add files in the client's dialect (real: ``custom_metadata``, which starts ingestion)."""
    def simplified() -> Op[pd.DataFrame]:
        call = Call("PUT", f"/pipelines/{quote(pipeline_id, safe='')}/files", content=encode_json(items))
        return _single(core, call, _frame_or_empty(PipelineFile))

    def llamacloud() -> Op[pd.DataFrame]:
        reply = yield from core.request(real.add_files_call(pipeline_id, items))
        data = reply.json_or_none()
        return _records(PipelineFile, [real.pipeline_file_json(f) for f in (data if isinstance(data, list) else [])
                                       if isinstance(f, dict)])

    return _dialectal(core, simplified, llamacloud)


def add_pipeline_files(core: Core, pipeline_id: str, files: Any) -> Op[pd.DataFrame]:
    return _add_files(core, as_id(pipeline_id, "pipeline_id"), _add_files_items(files))


def list_pipeline_files(core: Core, pipeline_id: str) -> Op[pd.DataFrame]:
    pid = as_id(pipeline_id, "pipeline_id")

    def llamacloud() -> Op[pd.DataFrame]:
        return _records(PipelineFile, (yield from real.list_pipeline_files(core, pid)))

    return _dialectal(core, lambda: _single(core, Call("GET", f"/pipelines/{quote(pid, safe='')}/files"),
                                            _frame_of(PipelineFile)), llamacloud)


# ---------------------------------------------------------------------- pipelines


def list_pipelines(core: Core, project_id: str | None = None) -> Op[pd.DataFrame]:
    """Pipelines of a project; without one, of every project of the account (one frame)."""
    if project_id is None:
        return _all_pipelines(core)
    call = Call("GET", "/pipelines", params={"project_id": as_id(project_id, "project_id")})

    def llamacloud() -> Op[pd.DataFrame]:
        reply = yield from core.request(call)
        return _records(Pipeline, [real.pipeline_json(p) for p in _array(reply) if isinstance(p, dict)])

    return _dialectal(core, lambda: _single(core, call, _frame_of(Pipeline)), llamacloud)


def _all_pipelines(core: Core) -> Op[pd.DataFrame]:
    import pandas as pd

    projects = yield from list_projects(core)
    frames = []
    for pid in projects["id"]:
        frame = yield from list_pipelines(core, str(pid))
        if len(frame):
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else frame_from_json(Pipeline, [])


def create_pipeline(core: Core, name: str, project_id: str, sync_interval: int | None = None,
                    retrieval_config: Any = None, chunking_config: Any = None,
                    preset_retrieval_parameters: Mapping[str, Any] | None = None,
                    embedding_model: str | None = None) -> Op[Pipeline]:
    """Create a pipeline. ``chunking_config`` becomes the real API's ``transform_config``;
    ``preset_retrieval_parameters`` exist only there, ``sync_interval`` only in the simplified API.
    ``embedding_model``: the model that embeds the pipeline's chunks and queries (the local server's
    names, e.g. ``wordllama-l2-supercat-256``; sent as ``embedding_config`` in either dialect)."""
    body: dict[str, Any] = {"name": _name(name), "project_id": as_id(project_id, "project_id")}
    if embedding_model is not None:
        if not isinstance(embedding_model, str) or not embedding_model.strip():
            raise ConfigurationError(f"embedding_model must be a model name, got {embedding_model!r}")
        body["embedding_config"] = {"model_name": embedding_model.strip()}
    if sync_interval is not None:
        body["sync_interval"] = _positive_int(sync_interval, "sync_interval (seconds)")
    for key, value in (("retrieval_config", retrieval_config), ("chunking_config", chunking_config)):
        config = _config_dict(value, key)
        if config is not None:
            body[key] = config
    presets = _config_dict(preset_retrieval_parameters, "preset_retrieval_parameters")

    def simplified() -> Op[Pipeline]:
        if presets is not None:
            raise ConfigurationError("preset_retrieval_parameters belong to the real LlamaCloud API; "
                                     "this server speaks the simplified dialect")
        call = Call("POST", "/pipelines", content=encode_json(body), idempotent=False)
        return _single(core, call, _record_of(Pipeline))

    def llamacloud() -> Op[Pipeline]:
        if sync_interval is not None:
            raise ConfigurationError("sync_interval is not a pipeline setting of the real LlamaCloud API")
        call = real.create_pipeline_call(body["name"], body["project_id"], body.get("chunking_config"),
                                         body.get("retrieval_config"), presets, body.get("embedding_config"))
        reply = yield from core.request(call)
        return Pipeline.from_json(real.pipeline_json(_object(reply)))

    return _dialectal(core, simplified, llamacloud)


def get_pipeline(core: Core, pipeline_id: str) -> Op[Pipeline]:
    call = Call("GET", f"/pipelines/{_seg(pipeline_id, 'pipeline_id')}")

    def llamacloud() -> Op[Pipeline]:
        reply = yield from core.request(call)
        return Pipeline.from_json(real.pipeline_json(_object(reply)))

    return _dialectal(core, lambda: _single(core, call, _record_of(Pipeline)), llamacloud)


def update_pipeline(core: Core, pipeline_id: str, name: str | None = None,
                    preset_retrieval_parameters: Mapping[str, Any] | None = None) -> Op[Pipeline]:
    """Change a pipeline's name and/or its ``preset_retrieval_parameters`` (replaced as a whole:
    the fields a retrieve omits). Real API only: the simplified API has no pipeline update."""
    body: dict[str, Any] = {}
    if name is not None:
        body["name"] = _name(name)
    presets = _config_dict(preset_retrieval_parameters, "preset_retrieval_parameters")
    if presets is not None:  # sent as given: the service validates its own fields (422 names them)
        body["preset_retrieval_parameters"] = presets
    if not body:
        raise ConfigurationError("pipelines.update needs name or preset_retrieval_parameters")
    pid = as_id(pipeline_id, "pipeline_id")

    def simplified() -> Op[Pipeline]:
        raise ConfigurationError("the simplified API has no pipeline update (and no preset_retrieval_parameters): "
                                 "pass the retrieve parameters with every retrieve instead")
        yield  # pragma: no cover - makes this a generator like the other operations

    def llamacloud() -> Op[Pipeline]:
        reply = yield from core.request(real.update_pipeline_call(pid, body))
        return Pipeline.from_json(real.pipeline_json(_object(reply)))

    return _dialectal(core, simplified, llamacloud)


def delete_pipeline(core: Core, pipeline_id: str) -> Op[None]:
    return _single(core, Call("DELETE", f"/pipelines/{_seg(pipeline_id, 'pipeline_id')}"), lambda reply: None)


def sync_pipeline(core: Core, pipeline_id: str) -> Op[PipelineJob]:
    pid = as_id(pipeline_id, "pipeline_id")
    # Starting a job is not idempotent: retried only when the server cannot have applied it.
    call = Call("POST", f"/pipelines/{quote(pid, safe='')}/sync", idempotent=False)

    def llamacloud() -> Op[PipelineJob]:
        return PipelineJob.from_json((yield from real.sync(core, pid)))

    return _dialectal(core, lambda: _single(core, call, _record_of(PipelineJob)), llamacloud)


def pipeline_status(core: Core, pipeline_id: str) -> Op[PipelineJob]:
    """The pipeline's ingestion state as a job record (real: ``…/status``; simplified: its newest job)."""
    pid = as_id(pipeline_id, "pipeline_id")

    def simplified() -> Op[PipelineJob]:
        reply = yield from core.request(Call("GET", f"/pipelines/{quote(pid, safe='')}/jobs"))
        jobs = [PipelineJob.from_json(item) for item in _array(reply)]
        if not jobs:
            return PipelineJob(id="", pipeline_id=pid, status="pending", extra={"status_raw": None})
        return _newest_job(jobs)

    def llamacloud() -> Op[PipelineJob]:
        return PipelineJob.from_json(real.job_from_status((yield from real.status(core, pid)), pid))

    return _dialectal(core, simplified, llamacloud)


def list_pipeline_jobs(core: Core, pipeline_id: str) -> Op[pd.DataFrame]:
    pid = as_id(pipeline_id, "pipeline_id")

    def llamacloud() -> Op[pd.DataFrame]:
        return _records(PipelineJob, (yield from real.list_jobs(core, pid)))

    return _dialectal(core, lambda: _single(core, Call("GET", f"/pipelines/{quote(pid, safe='')}/jobs"),
                                            _frame_of(PipelineJob)), llamacloud)


def list_pipeline_data_sinks(core: Core, pipeline_id: str) -> Op[pd.DataFrame]:
    pid = as_id(pipeline_id, "pipeline_id")

    def llamacloud() -> Op[pd.DataFrame]:
        return _records(DataSink, (yield from real.data_sinks(core, pid)))

    return _dialectal(core, lambda: _single(core, Call("GET", f"/pipelines/{quote(pid, safe='')}/data-sinks"),
                                            _frame_of(DataSink)), llamacloud)


def list_pipeline_data_sources(core: Core, pipeline_id: str) -> Op[pd.DataFrame]:
    call = Call("GET", f"/pipelines/{_seg(pipeline_id, 'pipeline_id')}/data-sources")

    def llamacloud() -> Op[pd.DataFrame]:
        reply = yield from core.request(call)
        return _records(DataSource, [real.data_source_json(d) for d in _array(reply) if isinstance(d, dict)])

    return _dialectal(core, lambda: _single(core, call, _frame_of(DataSource)), llamacloud)


def _data_source_input(item: Any) -> dict[str, Any]:
    """A new source ``{name, source_type, config, project_id}`` or a reference ``{data_source_id}``."""
    if isinstance(item, (str, DataSource)):
        return {"data_source_id": as_id(item, "data_source_id")}
    if not isinstance(item, Mapping):
        raise ConfigurationError(f"a data source must be a dict, an id or a DataSource, got {type(item).__name__}")
    out = dict(item)
    if out.get("data_source_id") is not None:
        as_id(out["data_source_id"], "data_source_id")
    else:
        _name(out.get("name"), "data source name")
        _name(out.get("source_type"), "source_type")
    if out.get("config") is not None and not isinstance(out["config"], Mapping):
        raise ConfigurationError("a data source's config must be a dict")
    return out


def add_pipeline_data_sources(core: Core, pipeline_id: str, data_sources: Any) -> Op[pd.DataFrame]:
    if isinstance(data_sources, (Mapping, DataSource, str)):
        data_sources = [data_sources]
    items = [_data_source_input(item) for item in data_sources]
    if not items:
        raise ConfigurationError("data_sources is empty: nothing to add")
    pid = as_id(pipeline_id, "pipeline_id")
    call = Call("PUT", f"/pipelines/{quote(pid, safe='')}/data-sources", content=encode_json(items))

    def llamacloud() -> Op[pd.DataFrame]:
        return _records(DataSource, (yield from real.add_data_sources(core, pid, items)))

    return _dialectal(core, lambda: _single(core, call, _frame_or_empty(DataSource)), llamacloud)


# ------------------------------------------------------------------- data sources


def list_data_sources(core: Core, project_id: str) -> Op[pd.DataFrame]:
    call = Call("GET", "/data-sources", params={"project_id": as_id(project_id, "project_id")})

    def llamacloud() -> Op[pd.DataFrame]:
        reply = yield from core.request(call)
        return _records(DataSource, [real.data_source_json(d) for d in _array(reply) if isinstance(d, dict)])

    return _dialectal(core, lambda: _single(core, call, _frame_of(DataSource)), llamacloud)


def create_data_source(core: Core, name: str, source_type: str, config: Mapping[str, Any] | None = None,
                       project_id: str | None = None) -> Op[DataSource]:
    body: dict[str, Any] = {"name": _name(name), "source_type": _name(source_type, "source_type")}
    pid = None if project_id is None else as_id(project_id, "project_id")
    cfg = _config_dict(config, "config")

    def simplified() -> Op[DataSource]:
        call = Call("POST", "/data-sources", idempotent=False,
                    content=encode_json({**body, **({"project_id": pid} if pid else {}),
                                         **({"config": cfg} if cfg is not None else {})}))
        return _single(core, call, _record_of(DataSource))

    def llamacloud() -> Op[DataSource]:
        call = Call("POST", "/data-sources", params={"project_id": pid} if pid else None, idempotent=False,
                    content=encode_json({**body, "component": cfg or {}}))
        reply = yield from core.request(call)
        return DataSource.from_json(real.data_source_json(_object(reply)))

    return _dialectal(core, simplified, llamacloud)


# ---------------------------------------------------------------------- documents (real API)


def upsert_documents(core: Core, pipeline_id: str, documents: Any) -> Op[pd.DataFrame]:
    """Text documents ``{"id", "text", "metadata"}`` into a pipeline (real API only; starts ingestion)."""
    pid = as_id(pipeline_id, "pipeline_id")
    if isinstance(documents, Mapping) or not isinstance(documents, Iterable):
        raise ConfigurationError("documents must be a list of {'id', 'text', 'metadata'} dicts")
    items = []
    for d in documents:
        if not isinstance(d, Mapping) or not isinstance(d.get("text"), str):
            raise ConfigurationError(f"a document needs a 'text' string: {d!r}")
        meta = d.get("metadata") or {}
        if not isinstance(meta, Mapping):
            raise ConfigurationError(f"a document's metadata must be a dict: {d!r}")
        items.append(clean_json({"id": None if d.get("id") is None else str(d["id"]), "text": d["text"],
                                 "metadata": dict(meta)}))
    if not items:
        raise ConfigurationError("documents is empty: nothing to add")

    def simplified() -> Op[pd.DataFrame]:
        raise ConfigurationError("the documents API belongs to the real LlamaCloud API; with the simplified "
                                 "dialect upload files (files.upload_documents)")
        yield  # pragma: no cover - makes this a generator

    def llamacloud() -> Op[pd.DataFrame]:
        import pandas as pd

        docs = yield from real.upsert_documents(core, pid, items)
        return _documents_frame(pd, docs)

    return _dialectal(core, simplified, llamacloud)


def list_documents(core: Core, pipeline_id: str) -> Op[pd.DataFrame]:
    pid = as_id(pipeline_id, "pipeline_id")

    def simplified() -> Op[pd.DataFrame]:
        raise ConfigurationError("the documents API belongs to the real LlamaCloud API")
        yield  # pragma: no cover

    def llamacloud() -> Op[pd.DataFrame]:
        import pandas as pd

        return _documents_frame(pd, (yield from real.list_documents(core, pid)))

    return _dialectal(core, simplified, llamacloud)


def delete_document(core: Core, pipeline_id: str, document_id: str) -> Op[None]:
    pid, did = as_id(pipeline_id, "pipeline_id"), as_id(document_id, "document_id")

    def simplified() -> Op[None]:
        raise ConfigurationError("the documents API belongs to the real LlamaCloud API")
        yield  # pragma: no cover

    return _dialectal(core, simplified, lambda: real.delete_document(core, pid, did))


def _documents_frame(pd: Any, docs: list[dict[str, Any]]) -> pd.DataFrame:
    status = [(d.get("status_metadata") or {}).get("status") if isinstance(d.get("status_metadata"), dict) else None
              for d in docs]
    frame = pd.DataFrame({"id": pd.array([str(d.get("id")) for d in docs], dtype="string"),
                          "text": pd.array([d.get("text") for d in docs], dtype="string"),
                          "status_raw": pd.array(status, dtype="string")})
    keys: dict[str, None] = {}
    for d in docs:
        keys.update(dict.fromkeys(d.get("metadata") or {}))
    for key in keys:
        frame[f"metadata.{key}"] = infer_column([(d.get("metadata") or {}).get(key) for d in docs])
    return frame


# ---------------------------------------------------------------------- retrieval


def retrieve(core: Core, pipeline_id: str, query: str, mode: str | None = None, top_k: int | None = None,
             extra: Mapping[str, Any] | None = None) -> Op[RetrievalResult]:
    """One query. Simplified API: ``{query, mode (default fast), top_k (default 10), **extra}``.
    Real API: the mode's preset (``MODE_PRESETS``), ``extra`` (its retrieve parameters) over it,
    and ``top_k`` as the node count; every given value is sent (``alpha=0.0`` is a value), what
    is not given is left to the pipeline's presets."""
    pid = as_id(pipeline_id, "pipeline_id")
    if not isinstance(query, str) or not query.strip():
        raise ConfigurationError(f"query must be a non-empty string, got {query!r}")
    if mode is not None and mode not in MODES:
        raise ConfigurationError(f"mode must be one of {', '.join(MODES)} (or None); got {mode!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ConfigurationError(f"top_k must be an integer >= 1, got {top_k!r}")
    params = dict(extra or {})
    clash = sorted(set(params) & {"query", "mode", "top_k"})
    if clash:
        raise ConfigurationError(f"extra retrieve parameters may not repeat {clash}")
    path = f"/pipelines/{quote(pid, safe='')}/retrieve"

    def send(body: dict[str, Any], dialect: str) -> Op[RetrievalResult]:
        # Retrieval only reads: safe to retry on any transient failure.
        reply = yield from core.request(Call("POST", path, content=encode_json(body)))
        raw = _object(reply)
        if dialect == LLAMACLOUD:
            results = real.results_of(raw, reply)
        elif not isinstance(raw.get("results"), list):
            raise APIError(f"the retrieve response has no 'results' list (keys: {sorted(raw)}); a real "
                           "LlamaCloud server? pass dialect='llamacloud'", status_code=reply.response.status_code,
                           request=reply.request, body=raw)
        else:
            results = simplified_results(raw)
        timing = parse_server_timing(",".join(reply.response.headers.get_list("server-timing")))
        if not timing and isinstance(raw.get("retrieval_latency"), dict):
            timing = {str(k): float(v) for k, v in raw["retrieval_latency"].items()
                      if isinstance(v, (int, float)) and not isinstance(v, bool)}
        return RetrievalResult(request={"pipeline_id": pid, **body}, raw=raw, latency_s=reply.elapsed_s,
                               server_timing=timing, status_code=reply.response.status_code,
                               attempts=reply.attempts, results=results, dialect=dialect)

    def simplified() -> Op[RetrievalResult]:
        knobs = sorted(set(params) & set(real.RETRIEVE_PARAMS))
        if knobs:
            raise ConfigurationError(
                f"{knobs} are parameters of the real LlamaCloud API, which this server does not speak "
                "(the local server serves it under <base_url>/cloud)")
        body = {"query": query, "mode": mode or "fast", "top_k": 10 if top_k is None else top_k, **params}
        return (yield from send(body, "simplified"))

    def llamacloud() -> Op[RetrievalResult]:
        return (yield from send(real.retrieve_body(query, mode, top_k, params), LLAMACLOUD))

    return _dialectal(core, simplified, llamacloud)


def check_ready(core: Core, pipeline_id: str, query: str = "the") -> Op[dict[str, Any]]:
    """Pre-flight before a benchmark: the pipeline has ingested files and a smoke retrieve of
    ``query`` finds a chunk (the real API can report SUCCESS with nothing indexed). Returns
    ``{"files", "completed", "smoke_results"}``; raises EmptyPipelineError otherwise."""
    pid = as_id(pipeline_id, "pipeline_id")
    query = _name(query, "query")

    def check(files: list[dict[str, Any]], mode: str | None, params: dict[str, Any]) -> Op[dict[str, Any]]:
        completed = sum(1 for f in files if f.get("status") == "completed")
        if not completed:
            raise EmptyPipelineError(f"pipeline {pid} has no ingested file ({len(files)} file(s), none "
                                     "completed): ingest and wait_for_sync first")
        try:
            smoke = yield from retrieve(core, pid, query, mode, 1, params)
        except APIError as exc:
            raise EmptyPipelineError(f"pipeline {pid} cannot be searched yet: {exc}") from exc
        if not smoke.results:
            raise EmptyPipelineError(f"pipeline {pid} reports {completed} ingested file(s) but a smoke retrieve "
                                     f"of {query!r} found no chunk: its index is empty")
        return {"files": len(files), "completed": completed, "smoke_results": len(smoke.results)}

    def simplified() -> Op[dict[str, Any]]:
        reply = yield from core.request(Call("GET", f"/pipelines/{quote(pid, safe='')}/files"))
        return (yield from check([f for f in _array(reply) if isinstance(f, dict)], "fast", {}))

    def llamacloud() -> Op[dict[str, Any]]:
        files = yield from real.list_pipeline_files(core, pid)
        return (yield from check(files, None, {"enable_reranking": False, "alpha": 0.5}))

    return _dialectal(core, simplified, llamacloud)


# ------------------------------------------------------------------ wait for sync


def _newest_job(jobs: list[PipelineJob]) -> PipelineJob:
    """Latest created job; ties (or missing timestamps) resolve to the later list entry."""
    order = sorted(range(len(jobs)), key=lambda i: (jobs[i].created_at is not None,
                                                    jobs[i].created_at.timestamp() if jobs[i].created_at else 0.0, i))
    return jobs[order[-1]]


def _job_error(job: PipelineJob) -> str:
    for value in (job.error, job.extra.get("error_message"), job.extra.get("message"), job.extra.get("detail")):
        if value:
            return str(value)
    return "the server gave no reason"


def _job_progress(job: PipelineJob) -> tuple[int, int, int] | None:
    """(files to process, processed, failed) from the job's counters (a local-server extension)."""
    values = [job.extra.get(k) for k in ("num_files", "num_processed", "num_failed")]
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return values[0], values[1], values[2]
    return None


def _files_progress(files: list[Any]) -> tuple[int, int, int]:
    """(files, finished, failed) from the pipeline's file statuses."""
    statuses = [f.get("status") for f in files if isinstance(f, dict)]
    failed = statuses.count("error")
    return len(statuses), statuses.count("completed") + failed, failed


def wait_for_sync(core: Core, pipeline_id: str, timeout: float = 600.0, poll_interval: float = 0.5,
                  progress: bool = True, job_id: str | None = None,
                  on_progress: Callable[[PipelineJob], None] | None = None) -> Op[PipelineJob]:
    pid = as_id(pipeline_id, "pipeline_id")
    timeout = _positive_number(timeout, "timeout")
    poll_interval = _positive_number(poll_interval, "poll_interval")
    wanted = None if job_id is None else as_id(job_id, "job_id")
    if on_progress is not None and not callable(on_progress):
        raise ConfigurationError(f"on_progress must be a callable taking the job, got {type(on_progress).__name__}")
    return _dialectal(core, lambda: _wait_for_sync(core, pid, timeout, poll_interval, bool(progress), wanted,
                                                   on_progress),
                      lambda: _wait_for_ingestion(core, pid, timeout, poll_interval, bool(progress)))


def _wait_for_ingestion(core: Core, pid: str, timeout: float, poll_interval: float,
                        progress: bool) -> Op[PipelineJob]:
    """Real API: poll ``…/status`` until SUCCESS / PARTIAL_SUCCESS (a warning) or ERROR /
    CANCELLED (SyncError with the error steps); the bar counts files from ``…/files2``."""
    deadline = time.monotonic() + timeout
    bar = None
    try:
        while True:
            job = real.job_from_status((yield from real.status(core, pid)), pid)
            if progress:
                files = yield from real.list_pipeline_files(core, pid)
                counts = _files_progress(files)
                if bar is None:
                    from tqdm.auto import tqdm

                    bar = tqdm(total=counts[0], desc=f"ingest {pid[:12]}", unit="file")
                bar.total, bar.n = counts[0], counts[1]
                bar.set_postfix(status=job["status_raw"], failed=counts[2], refresh=False)
                bar.refresh()
            raw = job["status_raw"]
            if raw in ("SUCCESS", "PARTIAL_SUCCESS"):
                real.warn_partial(job, pid)
                return PipelineJob.from_json(job)
            if raw in ("ERROR", "CANCELLED"):
                raise SyncError(f"ingestion of pipeline {pid} ended {raw}: {job['error'] or 'no reason given'}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SyncError(f"ingestion of pipeline {pid} did not finish within {timeout:g} s (status {raw!r})")
            yield Sleep(min(poll_interval, remaining))
    finally:
        if bar is not None:
            bar.close()


def _sync_bar(bar: Any, pid: str, job: PipelineJob, files: tuple[int, int, int]) -> Any:
    """Show ``job`` on ``bar`` (created on the first call): chunks done/total when the server
    reports them — tqdm then shows the rate and an ETA — else files done/total."""
    from tqdm.auto import tqdm

    counters = job.progress or {}
    by_chunk = "chunks" in counters
    total, done = (counters["chunks"] or None, counters["chunks_done"]) if by_chunk else (files[0], files[1])
    if bar is None:
        bar = tqdm(total=total, desc=f"sync {pid[:12]}", unit="chunk" if by_chunk else "file")
    if done < bar.n:  # another job than the one shown so far
        bar.reset(total=total)
    bar.total = total
    postfix: dict[str, Any] = {"job": job.status, "files": f"{files[1]}/{files[0]}", "failed": files[2]}
    if counters.get("chunks_cached"):
        postfix["cached"] = counters["chunks_cached"]
    bar.set_postfix(postfix, refresh=False)
    bar.update(done - bar.n)  # through update, so tqdm's rate and ETA follow
    bar.refresh()
    return bar


def _wait_for_sync(core: Core, pid: str, timeout: float, poll_interval: float, progress: bool,
                   wanted: str | None, on_progress: Callable[[PipelineJob], None] | None = None
                   ) -> Op[PipelineJob]:
    seg = quote(pid, safe="")
    deadline = time.monotonic() + timeout
    bar = None
    try:
        while True:
            reply = yield from core.request(Call("GET", f"/pipelines/{seg}/jobs"))
            jobs = [PipelineJob.from_json(item) for item in _array(reply)]
            if wanted is not None:
                matching = [j for j in jobs if j.id == wanted]
                if not matching:
                    raise SyncError(f"pipeline {pid} has no job {wanted}")
                job = matching[0]
            elif not jobs:
                raise SyncError(f"pipeline {pid} has no sync job to wait for: call pipelines.sync() first")
            else:
                job = _newest_job(jobs)
            if on_progress is not None:
                on_progress(job)
            if progress:
                counts = _job_progress(job)
                if counts is None:  # a server without job counters: count the pipeline's files
                    reply = yield from core.request(Call("GET", f"/pipelines/{seg}/files"))
                    counts = _files_progress(_array(reply))
                bar = _sync_bar(bar, pid, job, counts)
            if job.status == "completed":
                return job
            if job.status == "failed":
                raise SyncError(f"sync job {job.id} of pipeline {pid} failed: {_job_error(job)}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SyncError(f"sync job {job.id} of pipeline {pid} did not finish within {timeout:g} s "
                                f"(status {job.status!r})")
            yield Sleep(min(poll_interval, remaining))
    finally:
        if bar is not None:
            bar.close()


# ------------------------------------------------------------------ bulk uploads

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe_file_name(doc_id: str, extension: str) -> str:
    stem = _UNSAFE.sub("_", doc_id).strip("._") or "document"
    return stem[:120] + extension


def _upload_one(core: Core, project_id: str, name: str, source: bytes | Path, bar: Any) -> Op[File]:
    data = source.read_bytes() if isinstance(source, Path) else source
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    uploaded = yield from _upload(core, project_id, (name, data, content_type))
    if bar is not None:
        bar.update(1)
    return uploaded


def _upload_many(core: Core, project_id: str, pipeline_id: str | None,
                 items: list[tuple[str, bytes | Path, dict[str, Any]]], batch_size: int,
                 progress: bool, desc: str) -> Op[list[File]]:
    """Upload in batches; after each batch, add the batch to the pipeline with its metadata."""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(items), desc=desc, unit="file")
    uploaded: list[File] = []
    try:
        for start in range(0, len(items), batch_size):
            batch = items[start:start + batch_size]
            files = yield Gather([_upload_one(core, project_id, name, source, bar) for name, source, _ in batch],
                                 limit=UPLOAD_CONCURRENCY)
            if pipeline_id is not None:
                entries = [{"file_id": f.id, "metadata": meta} for f, (_, _, meta) in zip(files, batch, strict=True)]
                yield from _add_files(core, pipeline_id, entries)
            uploaded.extend(files)
    finally:
        if bar is not None:
            bar.close()
    return uploaded


def _uploads_frame(first: tuple[str, list[Any]], files: list[File], metadata: list[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    columns: dict[str, Any] = {first[0]: pd.array(first[1], dtype="string")}
    columns["file_id"] = pd.array([f.id for f in files], dtype="string")
    columns["file_name"] = pd.array([f.name for f in files], dtype="string")
    columns["file_size"] = pd.array([f.file_size for f in files], dtype="Int64")
    keys: dict[str, None] = {}
    for meta in metadata:
        keys.update(dict.fromkeys(meta))
    for key in keys:
        if key not in columns:
            columns[f"metadata.{key}"] = infer_column([meta.get(key) for meta in metadata])
    return pd.DataFrame(columns, index=pd.RangeIndex(len(files)))


def upload_documents(core: Core, documents: Any, project_id: str, pipeline_id: str | None = None, *,
                     id_column: str = "doc_id", text_column: str = "text", title_column: str | None = "title",
                     metadata_columns: Iterable[str] = (), batch_size: int = 50,
                     progress: bool = True) -> Op[pd.DataFrame]:
    import pandas as pd

    if not isinstance(documents, pd.DataFrame):
        try:
            documents = pd.DataFrame(documents)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"documents must be a DataFrame or a list of dicts: {exc}") from exc
    metadata_columns = list(metadata_columns)
    missing = [c for c in (id_column, text_column, *metadata_columns) if c not in documents.columns]
    if missing:
        raise ConfigurationError(f"documents lack the column(s) {missing}; it has {list(documents.columns)}")
    if documents.empty:
        raise ConfigurationError("documents is empty: nothing to upload")
    ids = documents[id_column]
    if ids.isna().any():
        raise ConfigurationError(f"column {id_column!r} has missing ids")
    ids = ids.astype(str)
    dupes = sorted(ids[ids.duplicated()].unique())
    if dupes:
        raise ConfigurationError(f"column {id_column!r} has duplicate ids, e.g. {dupes[:5]}")
    pid = as_id(project_id, "project_id")
    plid = None if pipeline_id is None else as_id(pipeline_id, "pipeline_id")
    batch_size = _positive_int(batch_size, "batch_size")
    has_title = title_column is not None and title_column in documents.columns
    items: list[tuple[str, bytes | Path, dict[str, Any]]] = []
    metadata: list[dict[str, Any]] = []
    for i, doc_id in enumerate(ids):
        row = documents.iloc[i]
        text = row[text_column]
        text = "" if text is None or (isinstance(text, float) and text != text) else str(text)
        if has_title:
            title = row[title_column]
            if isinstance(title, str) and title.strip():
                text = f"{title.strip()}\n\n{text}"
        meta = clean_json({"doc_id": doc_id, **{c: row[c] for c in metadata_columns if c != id_column}})
        items.append((_safe_file_name(doc_id, ".txt"), text.encode("utf-8"), meta))
        metadata.append(meta)
    return _map(_upload_many(core, pid, plid, items, batch_size, progress, "upload"),
                lambda files: _uploads_frame(("doc_id", list(ids)), files, metadata))


FolderMetadata = Mapping[str, Any] | Callable[[Path], Mapping[str, Any]] | None


def upload_folder(core: Core, folder: str | os.PathLike[str], project_id: str, pipeline_id: str | None = None, *,
                  pattern: str = "**/*", metadata: FolderMetadata = None, batch_size: int = 50,
                  progress: bool = True) -> Op[pd.DataFrame]:
    root = Path(folder)
    if not root.is_dir():
        raise ConfigurationError(f"not a folder: {root}")
    paths = sorted(p for p in root.glob(pattern)
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not paths:
        raise ConfigurationError(f"no files match {pattern!r} in {root}")
    if metadata is not None and not (callable(metadata) or isinstance(metadata, Mapping)):
        raise ConfigurationError("metadata must be a dict or a function Path -> dict")
    pid = as_id(project_id, "project_id")
    plid = None if pipeline_id is None else as_id(pipeline_id, "pipeline_id")
    batch_size = _positive_int(batch_size, "batch_size")
    items: list[tuple[str, bytes | Path, dict[str, Any]]] = []
    metas: list[dict[str, Any]] = []
    for path in paths:
        rel = path.relative_to(root).as_posix()
        meta: dict[str, Any] = {"file_path": rel}
        extra = metadata(path) if callable(metadata) else metadata
        if extra is not None:
            if not isinstance(extra, Mapping):
                raise ConfigurationError(f"metadata for {rel} must be a dict, got {type(extra).__name__}")
            meta.update(extra)
        items.append((path.name, path, meta))
        metas.append(meta)
    rels = [m["file_path"] for m in metas]
    return _map(_upload_many(core, pid, plid, items, batch_size, progress, "upload"),
                lambda files: _uploads_frame(("path", rels), files, [
                    {k: v for k, v in m.items() if k != "file_path"} for m in metas]))


def _map(op: Op[Any], fn: Callable[[Any], Any]) -> Op[Any]:
    result = yield from op
    return fn(result)
