"""The FastAPI application: the 18 operations of the LlamaCloud spec under ``/api/v1``."""

from __future__ import annotations

import json
import logging
import mimetypes
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, AsyncIterator

from fastapi import APIRouter, Depends, FastAPI, File, HTTPException, Query, Request, Security, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from llamaeval.server import _schemas as S
from llamaeval.server._config import DataLayout, ServerConfig, write_atomic
from llamaeval.server._keys import hash_key
from llamaeval.server._storage import (
    DataSource,
    Job,
    Pipeline,
    PipelineFile,
    Project,
    Storage,
    StoredFile,
    utc_now,
)
from llamaeval.server._sync import SUPPORTED_SOURCE_TYPES, IndexCache, SyncService, resolve_source_dir

__all__ = ["create_app"]

log = logging.getLogger("llamaeval.server")

API_PREFIX = "/api/v1"
RESERVED_METADATA = ("file_id", "file_name", "pipeline_id", "chunk_id", "chunk_index", "start_char",
                     "end_char", "scores")
_MAX_NAME = 200
_E400 = {"model": S.ErrorOut, "description": "Bad request: invalid input (message in detail)"}
_E401 = {"model": S.ErrorOut, "description": "Unauthorized - invalid or missing API key"}
_E404 = {"model": S.ErrorOut, "description": "Not found (or owned by another account)"}
_E413 = {"model": S.ErrorOut, "description": "File larger than the server's upload limit"}


@dataclass
class ServerState:
    """Everything one app instance owns (created at startup, never at import)."""

    config: ServerConfig
    storage: Storage
    layout: DataLayout
    embedder: Any
    indexes: IndexCache
    sync: SyncService


def _state(request: Request) -> ServerState:
    return request.app.state.llamaeval


def _bad(message: str) -> HTTPException:
    return HTTPException(status_code=400, detail=message)


def _not_found(kind: str, ident: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"{kind} {ident!r} not found")


# -- auth ----------------------------------------------------------------------------------
_bearer = HTTPBearer(auto_error=False, scheme_name="bearerAuth", bearerFormat="API Key",
                     description="An API key from `llamaeval keys create`, as `Authorization: Bearer <key>`.")


def account_id(request: Request, _creds: HTTPAuthorizationCredentials | None = Security(_bearer)) -> str:
    """The caller's account; the gatekeeper middleware has already answered 401 otherwise."""
    acct = request.scope.get("state", {}).get("account_id")
    if acct is None:  # pragma: no cover - the middleware guarantees it
        raise HTTPException(401, "missing API key", headers={"WWW-Authenticate": "Bearer"})
    return acct


class Gatekeeper:
    """ASGI middleware run before the body is read: 413 for oversized bodies, 401 for bad keys.

    Doing this before FastAPI parses the body means an unauthenticated client never gets
    a 400 about its JSON, and a huge upload is refused from its Content-Length.
    """

    def __init__(self, app: Any, max_upload_bytes: int) -> None:
        self.app = app
        self.max_upload_bytes = max_upload_bytes
        self.max_body_bytes = max_upload_bytes + 1024 * 1024  # room for the multipart envelope

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path: str = scope.get("path", "")
        if path.startswith(API_PREFIX + "/") or path == API_PREFIX:
            auth = headers.get("authorization", "")
            scheme, _, key = auth.partition(" ")
            if scheme.lower() != "bearer" or not key.strip():
                return await _send_json(send, 401, "missing API key: send the header 'Authorization: Bearer <key>'",
                                        {"www-authenticate": "Bearer"})
            state: ServerState = scope["app"].state.llamaeval
            acct = state.storage.account_for_key_hash(hash_key(key.strip()))
            if acct is None:
                return await _send_json(send, 401, "invalid API key", {"www-authenticate": "Bearer"})
            scope.setdefault("state", {})["account_id"] = acct
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            limit_mb = self.max_upload_bytes / 1024 / 1024
            return await _send_json(send, 413, f"request body of {int(length)} bytes is larger than the server's "
                                    f"upload limit of {limit_mb:.2f} MB (see --max-upload-mb)")
        return await self.app(scope, receive, send)


async def _send_json(send: Any, status: int, detail: str, extra: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# -- error handlers ------------------------------------------------------------------------
def _validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for err in errors[:5]:
        etype = err.get("type", "")
        loc = [str(x) for x in err.get("loc", ())]
        where = ".".join(loc[1:]) if loc and loc[0] in ("body", "query", "path", "header") else ".".join(loc)
        if etype == "json_invalid":
            reason = (err.get("ctx") or {}).get("error", "")
            parts.append(f"malformed JSON body ({reason})" if reason else "malformed JSON body")
            continue
        if etype == "missing" and loc == ["body"]:
            parts.append("request body is required")
            continue
        msg = err.get("msg", "invalid value")
        if loc and loc[0] == "query":
            where = f"query parameter {where}"
        elif loc and loc[0] == "body" and where == "":
            where = "request body"
        parts.append(f"{where}: {msg}" if where else msg)
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "invalid request: " + "; ".join(parts) + more


async def _on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": _validation_message(list(exc.errors()))}, status_code=400)


async def _on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": f"internal server error ({type(exc).__name__})"}, status_code=500)


# -- conversions ----------------------------------------------------------------------------
def _project_out(p: Project) -> dict[str, Any]:
    return {"id": p.id, "name": p.name, "created_at": p.created_at, "updated_at": p.updated_at}


def _file_out(f: StoredFile) -> dict[str, Any]:
    return {"id": f.id, "name": f.name, "project_id": f.project_id, "file_size": f.file_size,
            "content_type": f.content_type, "created_at": f.created_at, "updated_at": f.updated_at,
            "data_source_id": f.data_source_id}


def _pipeline_out(p: Pipeline) -> dict[str, Any]:
    return {"id": p.id, "name": p.name, "project_id": p.project_id, "status": p.status,
            "sync_interval": p.sync_interval, "created_at": p.created_at, "updated_at": p.updated_at,
            "retrieval_config": p.retrieval_config, "chunking_config": p.chunking_config,
            "embedding_model": p.embedding_model, "num_files": p.num_files, "num_chunks": p.num_chunks,
            "last_synced_at": p.last_synced_at, "error": p.error}


def _pipeline_file_out(pf: PipelineFile) -> dict[str, Any]:
    return {"file_id": pf.file_id, "name": pf.name, "status": pf.status, "metadata": pf.metadata,
            "pipeline_id": pf.pipeline_id, "error": pf.error, "num_chunks": pf.num_chunks,
            "data_source_id": pf.data_source_id, "updated_at": pf.updated_at}


def _job_out(j: Job) -> dict[str, Any]:
    return {"id": j.id, "pipeline_id": j.pipeline_id, "status": j.status, "created_at": j.created_at,
            "completed_at": j.completed_at, "started_at": j.started_at, "error": j.error,
            "trigger": j.trigger, "num_files": j.num_files, "num_processed": j.num_processed,
            "num_failed": j.num_failed, "num_chunks": j.num_chunks}


def _data_source_out(d: DataSource) -> dict[str, Any]:
    return {"id": d.id, "name": d.name, "source_type": d.source_type, "project_id": d.project_id,
            "config": d.config, "created_at": d.created_at, "updated_at": d.updated_at}


# -- validation helpers ------------------------------------------------------------------------
def _check_name(value: str, what: str) -> str:
    name = value.strip()
    if not name:
        raise _bad(f"{what} must not be empty")
    if len(name) > _MAX_NAME:
        raise _bad(f"{what} is longer than {_MAX_NAME} characters")
    return name


def _check_file_name(name: str | None) -> str:
    from llamaeval import engine

    if name is None or not name.strip():
        raise _bad("the uploaded file has no file name")
    if "\x00" in name or "/" in name or "\\" in name or name.strip() in (".", "..") or name.startswith(".."):
        raise _bad(f"file name {name!r} is not allowed: give a plain file name without directories or '..'")
    if len(name) > 255:
        raise _bad("file name is longer than 255 characters")
    ext = PurePath(name).suffix.lower()
    if ext not in engine.SUPPORTED_EXTENSIONS:
        raise _bad(f"unsupported file type {ext or '(no extension)'!s} for {name!r}; supported: "
                   f"{', '.join(sorted(engine.SUPPORTED_EXTENSIONS))}")
    return name


def _project_or_404(state: ServerState, acct: str, project_id: str) -> Project:
    project = state.storage.get_project(acct, project_id)
    if project is None:
        raise _not_found("project", project_id)
    return project


def _pipeline_or_404(state: ServerState, acct: str, pipeline_id: str) -> Pipeline:
    pipeline = state.storage.get_pipeline(acct, pipeline_id)
    if pipeline is None:
        raise _not_found("pipeline", pipeline_id)
    return pipeline


def _default_project(state: ServerState, acct: str) -> Project:
    projects = state.storage.list_projects(acct)
    return projects[0] if projects else state.storage.create_project(acct, "default")


def _new_data_source(state: ServerState, acct: str, name: str | None, source_type: str | None,
                     project_id: str | None, config: dict[str, Any] | None) -> DataSource:
    if name is None or source_type is None:
        raise _bad("a data source needs name and source_type (or give data_source_id to attach an existing one)")
    name = _check_name(name, "data source name")
    if source_type not in SUPPORTED_SOURCE_TYPES:
        raise _bad(f"unsupported source_type {source_type!r}; supported: {', '.join(SUPPORTED_SOURCE_TYPES)}")
    config = dict(config or {})
    unknown = sorted(set(config) - {"path", "recursive"})
    if unknown:
        raise _bad(f"unknown config key(s) for a directory data source: {', '.join(unknown)}; "
                   "known: path, recursive")
    if "recursive" in config and not isinstance(config["recursive"], bool):
        raise _bad("config.recursive must be true or false")
    try:
        resolve_source_dir(state.config.sources_root, config.get("path"))
    except ValueError as exc:
        raise _bad(str(exc)) from None
    project = _project_or_404(state, acct, project_id) if project_id else _default_project(state, acct)
    now = utc_now()
    return state.storage.create_data_source(DataSource(
        id=str(uuid.uuid4()), account_id=acct, project_id=project.id, name=name, source_type=source_type,
        config=config, created_at=now, updated_at=now))


# -- routes ----------------------------------------------------------------------------------
def _api_router() -> APIRouter:
    r = APIRouter(prefix=API_PREFIX, responses={401: _E401})

    # Projects
    @r.get("/projects", operation_id="listProjects", summary="List projects", tags=["Projects"],
           response_model=list[S.ProjectOut])
    def list_projects(request: Request, acct: str = Depends(account_id)) -> Any:
        return [_project_out(p) for p in _state(request).storage.list_projects(acct)]

    @r.post("/projects", operation_id="createProject", summary="Create a project", tags=["Projects"],
            status_code=201, response_model=S.ProjectOut, responses={400: _E400})
    def create_project(body: S.CreateProjectRequest, request: Request, acct: str = Depends(account_id)) -> Any:
        name = _check_name(body.name, "project name")
        return _project_out(_state(request).storage.create_project(acct, name))

    @r.get("/projects/{projectId}", operation_id="getProject", summary="Get a project", tags=["Projects"],
           response_model=S.ProjectOut, responses={404: _E404})
    def get_project(projectId: str, request: Request, acct: str = Depends(account_id)) -> Any:
        return _project_out(_project_or_404(_state(request), acct, projectId))

    # Files
    @r.post("/files", operation_id="uploadFile", summary="Upload a file", tags=["Files"],
            response_model=S.FileOut, responses={400: _E400, 404: _E404, 413: _E413})
    def upload_file(request: Request, project_id: str = Query(..., description="The project of the file."),
                    file: UploadFile = File(..., description="The file to upload."),
                    acct: str = Depends(account_id)) -> Any:
        state = _state(request)
        _project_or_404(state, acct, project_id)
        name = _check_file_name(file.filename)
        limit = state.config.max_upload_bytes
        data = file.file.read(limit + 1)
        if len(data) > limit:
            raise HTTPException(413, f"file {name!r} is larger than the server's upload limit of "
                                     f"{limit / 1024 / 1024:.2f} MB ({limit} bytes; see --max-upload-mb)")
        if not data:
            raise _bad(f"file {name!r} is empty")
        content_type = file.content_type or ""
        if not content_type or content_type == "application/octet-stream":
            content_type = mimetypes.guess_type(name)[0] or content_type or "application/octet-stream"
        import hashlib

        now = utc_now()
        record = StoredFile(id=str(uuid.uuid4()), account_id=acct, project_id=project_id, name=name,
                            file_size=len(data), content_type=content_type,
                            sha256=hashlib.sha256(data).hexdigest(), created_at=now, updated_at=now)
        path = state.layout.file_path(record.id)
        write_atomic(path, data)
        try:
            state.storage.create_file(record)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return _file_out(record)

    @r.get("/files/{fileId}", operation_id="getFile", summary="Get a file (extension)", tags=["Files"],
           response_model=S.FileOut, responses={404: _E404})
    def get_file(fileId: str, request: Request, acct: str = Depends(account_id)) -> Any:
        f = _state(request).storage.get_file(acct, fileId)
        if f is None:
            raise _not_found("file", fileId)
        return _file_out(f)

    # Pipelines
    @r.get("/pipelines", operation_id="listPipelines", summary="List pipelines", tags=["Pipelines"],
           response_model=list[S.PipelineOut], responses={400: _E400, 404: _E404})
    def list_pipelines(request: Request, project_id: str = Query(..., description="The project."),
                       acct: str = Depends(account_id)) -> Any:
        state = _state(request)
        _project_or_404(state, acct, project_id)
        return [_pipeline_out(p) for p in state.storage.list_pipelines(acct, project_id)]

    @r.post("/pipelines", operation_id="createPipeline", summary="Create a pipeline", tags=["Pipelines"],
            status_code=201, response_model=S.PipelineOut, responses={400: _E400, 404: _E404})
    def create_pipeline(body: S.CreatePipelineRequest, request: Request, acct: str = Depends(account_id)) -> Any:
        from llamaeval import engine

        state = _state(request)
        name = _check_name(body.name, "pipeline name")
        _project_or_404(state, acct, body.project_id)
        if body.sync_interval is not None and body.sync_interval < 0:
            raise _bad(f"sync_interval must be a number of seconds >= 1 (or 0/null for none), "
                       f"got {body.sync_interval}")
        try:
            retrieval = engine.RetrievalConfig.from_dict(body.retrieval_config).to_dict()
            chunking = engine.ChunkingConfig.from_dict(body.chunking_config).to_dict()
        except (ValueError, TypeError) as exc:
            raise _bad(str(exc)) from None
        now = utc_now()
        pipeline = Pipeline(id=str(uuid.uuid4()), account_id=acct, project_id=body.project_id, name=name,
                            status="idle", sync_interval=body.sync_interval or None,
                            retrieval_config=retrieval, chunking_config=chunking,
                            embedding_model=state.embedder.model_name, created_at=now, updated_at=now)
        state.storage.create_pipeline(pipeline)
        return _pipeline_out(pipeline)

    @r.get("/pipelines/{pipelineId}", operation_id="getPipeline", summary="Get a pipeline", tags=["Pipelines"],
           response_model=S.PipelineOut, responses={404: _E404})
    def get_pipeline(pipelineId: str, request: Request, acct: str = Depends(account_id)) -> Any:
        return _pipeline_out(_pipeline_or_404(_state(request), acct, pipelineId))

    @r.delete("/pipelines/{pipelineId}", operation_id="deletePipeline", summary="Delete a pipeline",
              tags=["Pipelines"], response_model=S.DeletedOut, responses={404: _E404})
    def delete_pipeline(pipelineId: str, request: Request, acct: str = Depends(account_id)) -> Any:
        state = _state(request)
        pipeline = _pipeline_or_404(state, acct, pipelineId)
        state.storage.delete_pipeline(pipeline.id)
        state.indexes.drop(pipeline.id)
        state.layout.remove_pipeline(pipeline.id)
        return {"id": pipeline.id, "deleted": True}

    @r.post("/pipelines/{pipelineId}/sync", operation_id="syncPipeline", summary="Sync a pipeline",
            tags=["Pipelines"], response_model=S.PipelineJobOut, responses={400: _E400, 404: _E404})
    def sync_pipeline(pipelineId: str, request: Request, acct: str = Depends(account_id)) -> Any:
        state = _state(request)
        pipeline = _pipeline_or_404(state, acct, pipelineId)
        if pipeline.num_files == 0 and not state.storage.list_pipeline_data_sources(pipeline.id):
            raise _bad(f"pipeline {pipeline.id!r} is empty: add files (PUT /pipelines/{{id}}/files) or data "
                       "sources before syncing")
        return _job_out(state.sync.request_sync(pipeline))

    @r.post("/pipelines/{pipelineId}/retrieve", operation_id="runSearch", summary="Run search",
            tags=["Retrieval"], response_model=S.RetrievalResponseOut, responses={400: _E400, 404: _E404})
    def run_search(pipelineId: str, body: S.RetrievalRequest, request: Request,
                   acct: str = Depends(account_id)) -> Any:
        from llamaeval import engine

        t0 = time.perf_counter()
        state = _state(request)
        head = state.storage.get_pipeline_index(acct, pipelineId)  # no config decoding on the hot path
        if head is None:
            raise _not_found("pipeline", pipelineId)
        status, index_version = head
        if not body.query.strip():
            raise _bad("query must not be empty")
        if not 1 <= body.top_k <= engine.MAX_TOP_K:
            raise _bad(f"top_k must be between 1 and {engine.MAX_TOP_K}, got {body.top_k}")
        if index_version is None:
            hint = ("its first sync is still running; wait for the job to complete"
                    if status == "syncing" else "add files and sync it first")
            raise _bad(f"pipeline {pipelineId!r} has no completed index yet: {hint}")
        index = state.indexes.get(pipelineId, index_version)
        try:
            response = index.search(body.query, body.mode, body.top_k)
        except ValueError as exc:
            raise _bad(str(exc)) from None
        results = []
        for hit in response.hits:
            e = hit.entry
            metadata = dict(e.metadata)
            metadata.update(file_id=e.file_id, file_name=e.file_name, pipeline_id=pipelineId,
                            chunk_id=e.chunk_id, chunk_index=e.chunk_index, start_char=e.start_char,
                            end_char=e.end_char, scores={k: float(v) for k, v in hit.stage_scores.items()})
            if e.title:
                metadata.setdefault("title", e.title)
            results.append({"text": e.text, "score": float(hit.score), "metadata": metadata})
        payload = {"results": results, "mode": body.mode, "top_k": body.top_k,
                   "retrieval_config": index.config_summary}
        total = time.perf_counter() - t0
        timing = [f"{name};dur={seconds * 1000:.3f}" for name, seconds in response.timings.items()]
        timing.append(f"total;dur={total * 1000:.3f}")
        return JSONResponse(payload, headers={"Server-Timing": ", ".join(timing)})

    # Pipeline files
    @r.get("/pipelines/{pipelineId}/files", operation_id="listPipelineFiles", summary="List pipeline files",
           tags=["Pipeline Files"], response_model=list[S.PipelineFileOut], responses={404: _E404})
    def list_pipeline_files(pipelineId: str, request: Request, acct: str = Depends(account_id)) -> Any:
        state = _state(request)
        pipeline = _pipeline_or_404(state, acct, pipelineId)
        return [_pipeline_file_out(pf) for pf in state.storage.list_pipeline_files(pipeline.id)]

    @r.put("/pipelines/{pipelineId}/files", operation_id="addFilesToPipeline", summary="Add files to a pipeline",
           tags=["Pipeline Files"], response_model=list[S.PipelineFileOut], responses={400: _E400, 404: _E404})
    def add_files(pipelineId: str, body: list[S.PipelineFileInput], request: Request,
                  acct: str = Depends(account_id)) -> Any:
        state = _state(request)
        pipeline = _pipeline_or_404(state, acct, pipelineId)
        if not body:
            raise _bad("no files given: send a list of {\"file_id\": ..., \"metadata\": {...}}")
        resolved: list[tuple[StoredFile, dict[str, Any]]] = []
        missing = []
        for item in body:
            stored = state.storage.get_file(acct, item.file_id)
            if stored is None:
                missing.append(item.file_id)
                continue
            metadata = dict(item.metadata or {})
            reserved = sorted(set(metadata) & set(RESERVED_METADATA))
            if reserved:
                raise _bad(f"metadata of file {item.file_id!r} uses reserved key(s) {', '.join(reserved)}; "
                           f"reserved: {', '.join(RESERVED_METADATA)}")
            resolved.append((stored, metadata))
        if missing:
            shown = ", ".join(repr(m) for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise _bad(f"unknown file id(s): {shown}; upload files with POST /files first")
        now = utc_now()
        out = []
        for stored, metadata in resolved:
            current = state.storage.get_pipeline_file(pipeline.id, stored.id)
            if current is not None and current.metadata == metadata and current.status != "error":
                out.append(current)
                continue
            pf = PipelineFile(pipeline_id=pipeline.id, file_id=stored.id, name=stored.name, status="pending",
                              metadata=metadata, error=None, num_chunks=0,
                              processed_key=current.processed_key if current else None,
                              data_source_id=stored.data_source_id,
                              added_at=current.added_at if current else now, updated_at=now)
            out.append(state.storage.upsert_pipeline_file(pf))
        state.storage.update_pipeline(pipeline.id, updated_at=now)
        return [_pipeline_file_out(pf) for pf in out]

    # Pipeline data sources
    @r.get("/pipelines/{pipelineId}/data-sources", operation_id="listPipelineDataSources",
           summary="List pipeline data sources", tags=["Pipeline Data Sources"],
           response_model=list[S.DataSourceOut], responses={404: _E404})
    def list_pipeline_data_sources(pipelineId: str, request: Request, acct: str = Depends(account_id)) -> Any:
        state = _state(request)
        pipeline = _pipeline_or_404(state, acct, pipelineId)
        return [_data_source_out(d) for d in state.storage.list_pipeline_data_sources(pipeline.id)]

    @r.put("/pipelines/{pipelineId}/data-sources", operation_id="addDataSourcesToPipeline",
           summary="Add data sources to a pipeline", tags=["Pipeline Data Sources"],
           response_model=list[S.DataSourceOut], responses={400: _E400, 404: _E404})
    def add_data_sources(pipelineId: str, body: list[S.PipelineDataSourceInput], request: Request,
                         acct: str = Depends(account_id)) -> Any:
        state = _state(request)
        pipeline = _pipeline_or_404(state, acct, pipelineId)
        if not body:
            raise _bad("no data sources given")
        sources = []
        for item in body:  # validate everything before attaching anything
            if item.data_source_id is not None:
                ds = state.storage.get_data_source(acct, item.data_source_id)
                if ds is None:
                    raise _bad(f"unknown data_source_id {item.data_source_id!r}")
                sources.append(ds)
        for item in body:
            if item.data_source_id is None:
                sources.append(_new_data_source(state, acct, item.name, item.source_type,
                                                item.project_id or pipeline.project_id, item.config))
        for ds in sources:
            state.storage.attach_data_source(pipeline.id, ds.id)
        state.storage.update_pipeline(pipeline.id, updated_at=utc_now())
        return [_data_source_out(d) for d in sources]

    # Data sinks
    @r.get("/pipelines/{pipelineId}/data-sinks", operation_id="listPipelineDataSinks",
           summary="List pipeline data sinks", tags=["Pipeline Data Sinks"],
           response_model=list[S.DataSinkOut], responses={404: _E404})
    def list_data_sinks(pipelineId: str, request: Request, acct: str = Depends(account_id)) -> Any:
        state = _state(request)
        pipeline = _pipeline_or_404(state, acct, pipelineId)
        location = (state.layout.index_dir(pipeline.id, pipeline.index_version)
                    if pipeline.index_version else state.layout.indexes_dir(pipeline.id))
        config = {"location": str(location), "index_version": pipeline.index_version,
                  "num_chunks": pipeline.num_chunks, "embedding_model": pipeline.embedding_model,
                  "dimensions": int(state.embedder.dimensions), "sparse": "bm25s",
                  "last_synced_at": pipeline.last_synced_at.isoformat() if pipeline.last_synced_at else None}
        return [{"id": f"sink-{pipeline.id}", "name": "embedded", "sink_type": "embedded", "config": config}]

    # Jobs
    @r.get("/pipelines/{pipelineId}/jobs", operation_id="listPipelineJobs", summary="List pipeline jobs",
           tags=["Pipeline Jobs"], response_model=list[S.PipelineJobOut], responses={404: _E404})
    def list_jobs(pipelineId: str, request: Request, acct: str = Depends(account_id)) -> Any:
        state = _state(request)
        pipeline = _pipeline_or_404(state, acct, pipelineId)
        return [_job_out(j) for j in state.storage.list_jobs(pipeline.id)]

    @r.get("/pipelines/{pipelineId}/jobs/{jobId}", operation_id="getPipelineJob",
           summary="Get a pipeline job (extension)", tags=["Pipeline Jobs"], response_model=S.PipelineJobOut,
           responses={404: _E404})
    def get_job(pipelineId: str, jobId: str, request: Request, acct: str = Depends(account_id)) -> Any:
        state = _state(request)
        pipeline = _pipeline_or_404(state, acct, pipelineId)
        job = state.storage.get_job(jobId)
        if job is None or job.pipeline_id != pipeline.id:
            raise _not_found("job", jobId)
        return _job_out(job)

    # Data sources
    @r.get("/data-sources", operation_id="listDataSources", summary="List data sources", tags=["Data Sources"],
           response_model=list[S.DataSourceOut], responses={400: _E400, 404: _E404})
    def list_data_sources(request: Request, project_id: str = Query(..., description="The project."),
                          acct: str = Depends(account_id)) -> Any:
        state = _state(request)
        _project_or_404(state, acct, project_id)
        return [_data_source_out(d) for d in state.storage.list_data_sources(acct, project_id)]

    @r.post("/data-sources", operation_id="createDataSource", summary="Create a data source",
            tags=["Data Sources"], status_code=201, response_model=S.DataSourceOut,
            responses={400: _E400, 404: _E404})
    def create_data_source(body: S.DataSourceInput, request: Request, acct: str = Depends(account_id)) -> Any:
        ds = _new_data_source(_state(request), acct, body.name, body.source_type, body.project_id, body.config)
        return _data_source_out(ds)

    return r


def _offline_docs_assets() -> Any:
    """Swagger UI / ReDoc files shipped by the ``fastapi-offline`` package, so /docs works
    without internet; None when it is not installed (then FastAPI's CDN-based pages are used)."""
    try:
        import importlib.resources

        folder = importlib.resources.files("fastapi_offline") / "static"
    except ModuleNotFoundError:
        return None
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def _mount_offline_docs(app: FastAPI, folder: Any) -> None:
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    app.mount("/docs-static", StaticFiles(directory=str(folder)), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - docs",
                                   swagger_js_url="/docs-static/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-static/swagger-ui.css",
                                   swagger_favicon_url="/docs-static/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - ReDoc",
                              redoc_js_url="/docs-static/redoc.standalone.js",
                              redoc_favicon_url="/docs-static/favicon.png")


def create_app(config: ServerConfig, storage: Storage | None = None, embedder: Any = None) -> FastAPI:
    """The ASGI app for ``config``. Nothing starts until the app's lifespan starts:
    then the storage is opened (SQLite under ``config.data_dir`` unless ``storage`` is given),
    BLAS is limited to one thread, the embedder is created and the sync worker starts."""
    from llamaeval import __version__

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from threadpoolctl import threadpool_limits

        from llamaeval import engine
        from llamaeval.server._sqlite import SQLiteStorage

        # numpy's BLAS workers spin against onnxruntime on few cores: one thread each
        app.state.blas_limits = threadpool_limits(limits=1)
        layout = DataLayout(config.data_dir)
        layout.create()
        store = storage if storage is not None else SQLiteStorage(layout.db_path)
        emb = embedder if embedder is not None else engine.Embedder(num_threads=config.onnx_threads)
        indexes = IndexCache(layout, emb, config.load_reranker())
        sync = SyncService(store, layout, config, emb, indexes)
        app.state.llamaeval = ServerState(config=config, storage=store, layout=layout, embedder=emb,
                                          indexes=indexes, sync=sync)
        sync.start()
        log.info("llamaeval server ready: data dir %s", config.data_dir)
        try:
            yield
        finally:
            sync.stop()
            if storage is None:
                store.close()
            app.state.blas_limits.restore_original_limits()

    static_docs = _offline_docs_assets()
    app = FastAPI(title="llamaeval local LlamaCloud server", version=__version__, lifespan=lifespan,
                  docs_url=None if static_docs else "/docs", redoc_url=None if static_docs else "/redoc",
                  description="A self-hosted implementation of the LlamaCloud retrieval API "
                              "(projects, files, pipelines, sync jobs, data sources, retrieval). "
                              "Authenticate with `Authorization: Bearer <key>` "
                              "(create keys with `llamaeval keys create --data-dir DIR`).")
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
    app.add_middleware(Gatekeeper, max_upload_bytes=config.max_upload_bytes)

    @app.get("/health", tags=["Health"], response_model=S.HealthOut, summary="Liveness (no auth)", operation_id="health")
    def health() -> Any:
        from llamaeval import engine

        return {"status": "ok", "version": __version__, "max_top_k": engine.MAX_TOP_K,
                "supported_extensions": sorted(engine.SUPPORTED_EXTENSIONS),
                "supported_source_types": list(SUPPORTED_SOURCE_TYPES)}

    app.include_router(_api_router())
    if static_docs:
        _mount_offline_docs(app, static_docs)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes,
                             servers=[{"url": "/", "description": "this server (API under /api/v1)"}])
        for path in schema.get("paths", {}).values():  # validation errors are 400 here, never 422
            for op in path.values():
                op.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
