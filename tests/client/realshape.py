"""A loopback LlamaCloud test double whose response bodies are official ``llama-cloud`` 2.19.0 models.

Every JSON body is an instance of a ``llama_cloud.types`` model (or an SDK page class such as
``SyncPaginatedPipelineFiles``) serialised with the SDK's ``to_dict(mode="json")``, so the *shapes*
are real by construction. The *behaviour* is a toy: ingestion advances one status step per status
poll (NOT_STARTED -> IN_PROGRESS -> SUCCESS), only finished sources are retrievable, and retrieval
ranks ~60-word chunks of the UTF-8 file text by plain term overlap (no embeddings, no real reranker;
``alpha`` only blends two overlap measures). Quirks for tests are switches on :class:`State`.
"""

from __future__ import annotations

import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, Optional
from urllib.parse import unquote_plus

import httpx
import uvicorn
from fastapi import APIRouter, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from llama_cloud.pagination import SyncPaginatedCloudDocuments, SyncPaginatedJobsHistory, SyncPaginatedPipelineFiles
from llama_cloud.types import (DataSink, FileCreateResponse, FileRetrieveResponse, ManagedIngestionStatusResponse,
                               MetadataFilters, Pipeline, PipelineRetrieveResponse, PipelineType, Project,
                               RetrievalMode)
from llama_cloud.types.managed_ingestion_status_response import Error as IngestionError
from llama_cloud.types.pipeline_retrieve_response import RetrievalNode
from llama_cloud.types.pipelines import CloudDocument, PipelineFile, TextNode
from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_EMBEDDING: dict[str, Any] = {"type": "MANAGED_OPENAI_EMBEDDING",
                                     "component": {"model_name": "openai-text-embedding-3-small"}}
DEFAULT_TRANSFORM: dict[str, Any] = {"mode": "auto", "chunk_size": 1024, "chunk_overlap": 200}
DEFAULT_PRESET: dict[str, Any] = {"dense_similarity_top_k": 30, "sparse_similarity_top_k": 30, "alpha": 0.5,
                                  "enable_reranking": True, "rerank_top_n": 6, "retrieval_mode": "chunks",
                                  "files_top_k": 1}
_NODE_NS = uuid.UUID("6f1c9a52-8d0e-4c3b-9a57-2f4be0c1d001")
_WORD, _TERM = re.compile(r"\S+"), re.compile(r"\w+")


def _uid() -> str:
    return str(uuid.uuid4())


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Failure:
    """An injected answer: status code plus headers (e.g. Retry-After)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Upload:
    """An uploaded file (bytes kept in memory)."""

    id: str
    name: str
    project_id: str
    data: bytes
    purpose: Optional[str]
    created_at: datetime = field(default_factory=_now)


@dataclass
class Source:
    """A file or document attached to a pipeline, with its ingestion progress (step 0, 1, 2=done)."""

    kind: Literal["file", "document"]
    id: str
    name: str
    text: str
    metadata: dict[str, Any]
    job_id: str
    extra: dict[str, Any] = field(default_factory=dict)
    row_id: str = field(default_factory=_uid)
    step: int = 0
    cancelled: bool = False
    created_at: datetime = field(default_factory=_now)
    updated_at: datetime = field(default_factory=_now)


@dataclass
class Job:
    """One ingestion job (a files/documents add), for ``GET /jobs``."""

    id: str
    pipeline_id: str
    project_id: str
    created_at: datetime = field(default_factory=_now)


@dataclass
class State:
    """In-memory server state plus the quirk switches tests may flip at any time."""

    api_key: str = "llx-realshape-0123456789"
    organization_id: str = "org-realshape"
    projects: dict[str, Project] = field(default_factory=dict)
    uploads: dict[str, Upload] = field(default_factory=dict)
    pipelines: dict[str, Pipeline] = field(default_factory=dict)
    sources: dict[str, dict[tuple[str, str], Source]] = field(default_factory=dict)
    jobs: list[Job] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # "METHOD /path?query", in arrival order
    # quirk switches (default off)
    null_scores: bool = False  # every retrieval node's score is null
    unknown_enums: bool = False  # NOT_STARTED and Pipeline.status become `unknown_enum_value`
    unknown_enum_value: str = "QUEUED_FOR_LATER"
    partial_success: bool = False  # the pipeline's first file ends in ERROR (step PARSE)
    files_page_size: int = 2  # default and maximum `limit` of files2
    docs_page_size: int = 2  # default and maximum `limit` of documents/paginated
    fail_next: list[Failure] = field(default_factory=list)  # consumed one per request, in order
    chunk_words: int = 60

    def __post_init__(self) -> None:
        if not self.projects:
            pid = _uid()
            self.projects[pid] = Project(id=pid, name="Default", organization_id=self.organization_id,
                                         is_default=True, created_at=_now(), updated_at=_now())

    def fail(self, status: int, *, times: int = 1, retry_after: Optional[float] = None) -> None:
        """Make the next `times` requests answer `status` (with Retry-After when given)."""
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        self.fail_next.extend(Failure(status, dict(headers)) for _ in range(times))

    @property
    def default_project(self) -> Project:
        return next(p for p in self.projects.values() if p.is_default)

    # --- ingestion status ---------------------------------------------------------------------
    def status(self, pipeline_id: str, src: Source) -> str:
        """The true status of a source (before `unknown_enums` masking)."""
        if src.cancelled:
            return "CANCELLED"
        if src.step < 2:
            return ("NOT_STARTED", "IN_PROGRESS")[src.step]
        files = [s for s in self.sources.get(pipeline_id, {}).values() if s.kind == "file"]
        return "ERROR" if self.partial_success and files and files[0] is src else "SUCCESS"

    def aggregate(self, pipeline_id: str, srcs: list[Source]) -> str:
        """Pipeline/job status over sources: pending first, then ERROR/PARTIAL_SUCCESS/CANCELLED/SUCCESS."""
        sts = [self.status(pipeline_id, s) for s in srcs]
        if sts and all(s == "NOT_STARTED" for s in sts):
            return "NOT_STARTED"
        if any(s in ("NOT_STARTED", "IN_PROGRESS") for s in sts):
            return "IN_PROGRESS"
        if "ERROR" in sts:
            return "ERROR" if all(s == "ERROR" for s in sts) else "PARTIAL_SUCCESS"
        return "CANCELLED" if "CANCELLED" in sts else "SUCCESS"

    def shown(self, status: str) -> str:
        return self.unknown_enum_value if self.unknown_enums and status == "NOT_STARTED" else status


# --- request bodies (extra keys are refused with FastAPI's own 422) ----------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PipelineBody(_Strict):
    """`PipelineCreateParams` minus its query params: a `project_id` key in the body is a 422."""

    name: str
    embedding_config: Optional[dict[str, Any]] = None
    transform_config: Optional[dict[str, Any]] = None
    pipeline_type: Optional[PipelineType] = None
    preset_retrieval_parameters: Optional[dict[str, Any]] = None
    data_sink: Optional[dict[str, Any]] = None
    data_sink_id: Optional[str] = None
    embedding_model_config_id: Optional[str] = None
    llama_parse_parameters: Optional[dict[str, Any]] = None
    metadata_config: Optional[dict[str, Any]] = None
    sparse_model_config: Optional[dict[str, Any]] = None
    managed_pipeline_id: Optional[str] = None
    status: Optional[str] = None


class PipelineUpdateBody(PipelineBody):
    name: Optional[str] = None  # type: ignore[assignment]


class FileLink(_Strict):
    file_id: str
    custom_metadata: Optional[dict[str, Any]] = None


class DocumentIn(_Strict):
    text: str
    metadata: dict[str, Any]
    id: Optional[str] = None
    excluded_embed_metadata_keys: Optional[list[str]] = None
    excluded_llm_metadata_keys: Optional[list[str]] = None
    page_positions: Optional[list[int]] = None


class RetrieveBody(_Strict):
    """`PipelineRetrieveParams` minus its query params, with the documented ranges (no top_k, no mode)."""

    query: str
    dense_similarity_top_k: Optional[int] = Field(None, ge=1, le=100)
    sparse_similarity_top_k: Optional[int] = Field(None, ge=1, le=100)
    alpha: Optional[float] = Field(None, ge=0, le=1)
    dense_similarity_cutoff: Optional[float] = Field(None, ge=0, le=1)
    enable_reranking: Optional[bool] = None
    rerank_top_n: Optional[int] = Field(None, ge=1, le=100)
    retrieval_mode: Optional[RetrievalMode] = None
    files_top_k: Optional[int] = Field(None, ge=1, le=5)
    search_filters: Optional[MetadataFilters] = None
    search_filters_inference_schema: Optional[dict[str, Any]] = None
    retrieve_image_nodes: bool = False
    retrieve_page_figure_nodes: bool = False
    retrieve_page_screenshot_nodes: bool = False
    class_name: str = "base_component"


# --- helpers -----------------------------------------------------------------------------------
def dump(obj: Any) -> Any:
    """Serialise SDK models (and lists of them) the way the API would send them."""
    if isinstance(obj, list):
        return [dump(o) for o in obj]
    return obj.to_dict(mode="json", warnings=False)


def _build(cls: Any, lenient: bool, **fields: Any) -> Any:
    """Validate into an SDK model, or `model_construct` it when it may carry an unknown enum."""
    return cls.model_construct(**fields) if lenient else cls(**fields)


def _ext(name: str) -> Optional[str]:
    return name.rsplit(".", 1)[1].lower() if "." in name else None


def _node_id(pipeline_id: str, s: Source, k: int) -> str:
    """Stable within one ingestion job; changes when the source is re-added (as real re-chunking does)."""
    return str(uuid.uuid5(_NODE_NS, f"{pipeline_id}/{s.kind}:{s.id}/{s.job_id}/{k}"))


def _extra_info(s: Source) -> dict[str, Any]:
    """A node's `extra_info`: custom metadata, plus file_id/file_name for files."""
    return {**s.metadata, "file_id": s.id, "file_name": s.name} if s.kind == "file" else dict(s.metadata)


def _chunks(text: str, words: int) -> list[tuple[int, int]]:
    spans = [m.span() for m in _WORD.finditer(text)]
    return [(spans[i][0], spans[min(i + words, len(spans)) - 1][1]) for i in range(0, len(spans), words)]


def _score(query: set[str], text: str, alpha: float) -> float:
    """alpha * (share of query terms present) + (1 - alpha) * (share of chunk words that are query terms)."""
    words = [t.lower() for t in _TERM.findall(text)]
    if not words or not query:
        return 0.0
    coverage = len(query & set(words)) / len(query)
    density = sum(w in query for w in words) / len(words)
    return round(alpha * coverage + (1 - alpha) * density, 6)


def _matches(meta: dict[str, Any], filters: Optional[MetadataFilters]) -> bool:
    if filters is None:
        return True
    results = []
    for f in filters.filters:
        if isinstance(f, MetadataFilters):
            results.append(_matches(meta, f))
            continue
        op, value, want = f.operator or "==", meta.get(f.key), f.value
        if op in ("==", "!="):
            results.append((value == want) == (op == "=="))
        elif op in ("in", "nin"):
            results.append((value in (want if isinstance(want, list) else [want])) == (op == "in"))
        else:
            raise HTTPException(400, f"operator {op!r} is not supported by the realshape double")
    cond = filters.condition or "and"
    return any(results) if cond == "or" else (not any(results) if cond == "not" else all(results))


def create_app(state: State) -> FastAPI:
    """The FastAPI app serving the real dialect under /api/v1 from `state`."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    api = APIRouter(prefix="/api/v1")

    @app.middleware("http")
    async def gate(request: Request, call_next: Any) -> Response:
        if not request.url.path.startswith("/api/"):
            return await call_next(request)
        query = f"?{request.url.query}" if request.url.query else ""
        state.requests.append(f"{request.method} {request.url.path}{query}")
        if state.fail_next:
            failure = state.fail_next.pop(0)
            return JSONResponse({"detail": f"injected {failure.status}"}, failure.status, failure.headers)
        if request.headers.get("authorization") != f"Bearer {state.api_key}":
            return JSONResponse({"detail": "Invalid API key"}, 401)
        return await call_next(request)

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    def project(project_id: Optional[str]) -> Project:
        if project_id is None:
            return state.default_project
        if project_id not in state.projects:
            raise HTTPException(404, "Project not found")
        return state.projects[project_id]

    def pipeline(pipeline_id: str) -> Pipeline:
        if pipeline_id not in state.pipelines:
            raise HTTPException(404, "Pipeline not found")
        return state.pipelines[pipeline_id]

    def sources(pipeline_id: str, kind: str) -> list[Source]:
        return [s for s in state.sources.get(pipeline(pipeline_id).id, {}).values() if s.kind == kind]

    def source(pipeline_id: str, kind: str, sid: str) -> Source:
        items = state.sources.get(pipeline(pipeline_id).id, {})
        found = items.get((kind, sid)) or items.get((kind, unquote_plus(sid)))
        if found is None:
            raise HTTPException(404, f"{kind.capitalize()} not found")
        return found

    def show_pipeline(p: Pipeline) -> Any:
        if not state.unknown_enums:
            return dump(p)
        return dump(Pipeline.model_construct(**{**p.to_dict(), "status": state.unknown_enum_value}))

    def make_pipeline(body: dict[str, Any], project_id: str, old: Optional[Pipeline]) -> Pipeline:
        base = old.to_dict() if old else {
            "id": _uid(), "project_id": project_id, "created_at": _now(), "status": "CREATED",
            "pipeline_type": "MANAGED", "embedding_config": DEFAULT_EMBEDDING, "data_sink": None,
            "transform_config": DEFAULT_TRANSFORM, "preset_retrieval_parameters": DEFAULT_PRESET}
        fields = {**base, **{k: v for k, v in body.items() if v is not None}, "updated_at": _now()}
        if not fields["transform_config"].get("mode"):  # `{}` (LlamaCloudIndex) or Fern's mode-less auto config
            fields["transform_config"] = {**DEFAULT_TRANSFORM, **fields["transform_config"], "mode": "auto"}
        fields["preset_retrieval_parameters"] = {**DEFAULT_PRESET, **fields["preset_retrieval_parameters"]}
        if body.get("data_sink"):
            fields["data_sink"] = DataSink(id=_uid(), project_id=fields["project_id"], **body["data_sink"])
            fields["data_sink_id"] = fields["data_sink"].id
        try:
            return Pipeline(**fields)
        except ValidationError as exc:  # a body the SDK model refuses: FastAPI's own 422
            raise RequestValidationError([{"loc": ("body", *e["loc"]), "msg": e["msg"], "type": e["type"]}
                                          for e in exc.errors()]) from exc

    def ingestion(pipeline_id: str, srcs: list[Source], job_id: Optional[str]) -> Any:
        status = state.shown(state.aggregate(pipeline_id, srcs))
        errors = [IngestionError(job_id=s.job_id, message=f"Failed to parse {s.name}", step="PARSE")
                  for s in srcs if state.status(pipeline_id, s) == "ERROR"]
        for s in srcs:  # report, then advance one step
            if s.step < 2 and not s.cancelled:
                s.step, s.updated_at = s.step + 1, _now()
        return dump(_build(ManagedIngestionStatusResponse, state.unknown_enums, status=status, job_id=job_id,
                           effective_at=_now(), error=errors))

    def pipeline_file(pipeline_id: str, s: Source) -> PipelineFile:
        status = state.status(pipeline_id, s)
        return _build(PipelineFile, state.unknown_enums, id=s.row_id, pipeline_id=pipeline_id, file_id=s.id,
                      name=s.name, custom_metadata=s.metadata, status=state.shown(status),
                      status_updated_at=s.updated_at, file_size=len(s.text.encode()),
                      file_type=_ext(s.name), project_id=state.pipelines[pipeline_id].project_id,
                      indexed_page_count=1 if status == "SUCCESS" else 0, data_source_id=None,
                      created_at=s.created_at, updated_at=s.updated_at)

    def document(s: Source) -> CloudDocument:
        return CloudDocument(id=s.id, text=s.text, metadata=s.metadata, **s.extra)

    def attach(pipeline_id: str, new: list[Source]) -> Job:
        job = Job(_uid(), pipeline_id, state.pipelines[pipeline_id].project_id)
        state.jobs.append(job)
        items = state.sources.setdefault(pipeline_id, {})
        for s in new:
            s.job_id = job.id
            old = items.get((s.kind, s.id))
            if old is not None:
                s.row_id, s.created_at = old.row_id, old.created_at
            items[(s.kind, s.id)] = s
        return job

    # --- projects ------------------------------------------------------------------------------
    @api.get("/projects")
    async def list_projects(project_name: Optional[str] = None, organization_id: Optional[str] = None) -> Any:
        return dump([p for p in state.projects.values() if project_name in (None, p.name)
                     and organization_id in (None, p.organization_id)])

    @api.get("/projects/{project_id}")
    async def get_project(project_id: str) -> Any:
        return dump(project(project_id))

    # --- files ---------------------------------------------------------------------------------
    async def store(upload: UploadFile, project_id: Optional[str], purpose: Optional[str]) -> Upload:
        up = Upload(_uid(), upload.filename or "upload.txt", project(project_id).id, await upload.read(), purpose)
        state.uploads[up.id] = up
        return up

    @api.post("/beta/files")
    async def upload_beta(file: UploadFile = File(...), purpose: str = Form(...), project_id: Optional[str] = None,
                          external_file_id: Optional[str] = Form(None)) -> Any:
        up = await store(file, project_id, purpose)
        return dump(FileCreateResponse(id=up.id, name=up.name, project_id=up.project_id, purpose=purpose,
                                       external_file_id=external_file_id, file_type=_ext(up.name),
                                       last_modified_at=up.created_at, expires_at=None))

    @api.post("/files")
    async def upload_legacy(upload_file: UploadFile = File(...), project_id: Optional[str] = None) -> Any:
        up = await store(upload_file, project_id, None)  # 2.19 has no legacy `File`: same required trio + extras
        return dump(FileRetrieveResponse(id=up.id, name=up.name, project_id=up.project_id, file_size=len(up.data),
                                         file_type=_ext(up.name), created_at=up.created_at,
                                         updated_at=up.created_at, last_modified_at=up.created_at))

    # --- pipelines -----------------------------------------------------------------------------
    @api.get("/pipelines")
    async def list_pipelines(project_id: Optional[str] = None, project_name: Optional[str] = None,
                             pipeline_name: Optional[str] = None, pipeline_type: Optional[str] = None) -> Any:
        pid = project(project_id).id if project_id or not project_name else next(
            (p.id for p in state.projects.values() if p.name == project_name), None)
        return [show_pipeline(p) for p in state.pipelines.values() if p.project_id == pid
                and pipeline_name in (None, p.name) and pipeline_type in (None, p.pipeline_type)]

    @api.post("/pipelines")
    async def create_pipeline(body: PipelineBody, project_id: Optional[str] = None) -> Any:
        proj = project(project_id)
        if any(p.project_id == proj.id and p.name == body.name for p in state.pipelines.values()):
            raise HTTPException(400, f"Pipeline {body.name!r} already exists", {"x-should-retry": "false"})
        p = make_pipeline(body.model_dump(exclude_unset=True), proj.id, None)
        state.pipelines[p.id] = p
        return show_pipeline(p)

    @api.put("/pipelines")
    async def upsert_pipeline(body: PipelineBody, project_id: Optional[str] = None) -> Any:
        proj = project(project_id)
        old = next((p for p in state.pipelines.values() if p.project_id == proj.id and p.name == body.name), None)
        p = make_pipeline(body.model_dump(exclude_unset=True), proj.id, old)
        state.pipelines[p.id] = p
        return show_pipeline(p)

    @api.get("/pipelines/{pipeline_id}")
    async def get_pipeline(pipeline_id: str) -> Any:
        return show_pipeline(pipeline(pipeline_id))

    @api.put("/pipelines/{pipeline_id}")
    async def update_pipeline(pipeline_id: str, body: PipelineUpdateBody) -> Any:
        old = pipeline(pipeline_id)
        state.pipelines[pipeline_id] = make_pipeline(body.model_dump(exclude_unset=True), old.project_id, old)
        return show_pipeline(state.pipelines[pipeline_id])

    @api.delete("/pipelines/{pipeline_id}", status_code=204)
    async def delete_pipeline(pipeline_id: str) -> Response:
        state.pipelines.pop(pipeline(pipeline_id).id)
        state.sources.pop(pipeline_id, None)
        return Response(status_code=204)

    @api.post("/pipelines/{pipeline_id}/sync")
    async def sync(pipeline_id: str) -> Any:
        return show_pipeline(pipeline(pipeline_id))

    @api.post("/pipelines/{pipeline_id}/sync/cancel")
    async def cancel(pipeline_id: str) -> Any:
        for s in state.sources.get(pipeline(pipeline_id).id, {}).values():
            s.cancelled = s.cancelled or s.step < 2
        return show_pipeline(pipeline(pipeline_id))

    @api.get("/pipelines/{pipeline_id}/status")
    async def pipeline_status(pipeline_id: str, full_details: Optional[bool] = None) -> Any:
        srcs = list(state.sources.get(pipeline(pipeline_id).id, {}).values())
        return ingestion(pipeline_id, srcs, srcs[-1].job_id if srcs else None)

    # --- pipeline files ------------------------------------------------------------------------
    @api.put("/pipelines/{pipeline_id}/files")
    async def add_files(pipeline_id: str, body: list[FileLink]) -> Any:
        pipeline(pipeline_id)
        if missing := [link.file_id for link in body if link.file_id not in state.uploads]:
            raise HTTPException(404, f"File not found: {missing[0]}")
        new = [Source("file", up.id, up.name, up.data.decode("utf-8", errors="replace"),
                      link.custom_metadata or {}, "") for link in body for up in [state.uploads[link.file_id]]]
        attach(pipeline_id, new)
        return dump([pipeline_file(pipeline_id, s) for s in new])

    @api.get("/pipelines/{pipeline_id}/files2")
    async def list_files(pipeline_id: str, limit: Optional[int] = None, offset: int = 0,
                         file_name_contains: Optional[str] = None) -> Any:
        rows = [s for s in sources(pipeline_id, "file") if not file_name_contains or file_name_contains in s.name]
        lim = min(limit or state.files_page_size, state.files_page_size)
        page = [pipeline_file(pipeline_id, s) for s in rows[max(offset, 0):max(offset, 0) + lim]]
        return dump(SyncPaginatedPipelineFiles[PipelineFile](files=page, limit=lim, offset=offset,
                                                             total_count=len(rows)))

    @api.get("/pipelines/{pipeline_id}/files/{file_id}/status")
    async def file_status(pipeline_id: str, file_id: str) -> Any:
        s = source(pipeline_id, "file", file_id)
        return ingestion(pipeline_id, [s], s.job_id)

    # --- documents -----------------------------------------------------------------------------
    @api.post("/pipelines/{pipeline_id}/documents")
    @api.put("/pipelines/{pipeline_id}/documents")
    async def upsert_documents(pipeline_id: str, body: list[DocumentIn]) -> Any:
        pipeline(pipeline_id)
        new = [Source("document", did, did, d.text, d.metadata, "",
                      extra=d.model_dump(exclude={"id", "text", "metadata"}, exclude_none=True))
               for d in body for did in [d.id or _uid()]]
        attach(pipeline_id, new)
        return dump([document(s) for s in new])

    @api.get("/pipelines/{pipeline_id}/documents/paginated")
    async def list_documents(pipeline_id: str, skip: int = 0, limit: Optional[int] = None) -> Any:
        rows = sources(pipeline_id, "document")
        lim = min(limit or state.docs_page_size, state.docs_page_size)
        page = [document(s) for s in rows[max(skip, 0):max(skip, 0) + lim]]
        return dump(SyncPaginatedCloudDocuments[CloudDocument](documents=page, limit=lim, offset=skip,
                                                               total_count=len(rows)))

    @api.get("/pipelines/{pipeline_id}/documents/{document_id}")
    async def get_document(pipeline_id: str, document_id: str) -> Any:
        return dump(document(source(pipeline_id, "document", document_id)))

    @api.delete("/pipelines/{pipeline_id}/documents/{document_id}", status_code=204)
    async def delete_document(pipeline_id: str, document_id: str) -> Response:
        s = source(pipeline_id, "document", document_id)
        del state.sources[pipeline_id][("document", s.id)]
        return Response(status_code=204)

    @api.get("/pipelines/{pipeline_id}/documents/{document_id}/status")
    async def document_status(pipeline_id: str, document_id: str) -> Any:
        s = source(pipeline_id, "document", document_id)
        return ingestion(pipeline_id, [s], s.job_id)

    # --- retrieval -----------------------------------------------------------------------------
    @api.post("/pipelines/{pipeline_id}/retrieve")
    async def retrieve(pipeline_id: str, body: RetrieveBody, project_id: Optional[str] = None) -> Any:
        """Toy ranking (module docstring); `sparse_similarity_top_k` and `retrieve_*_nodes` are accepted, ignored."""
        started = time.perf_counter()
        pipe = pipeline(pipeline_id)
        preset = pipe.preset_retrieval_parameters
        given = {k: getattr(body, k) for k in body.model_fields_set if getattr(body, k) is not None}
        p = {**DEFAULT_PRESET, **{k: getattr(preset, k) for k in (preset.model_fields_set if preset else ())
                                  if getattr(preset, k) is not None}, **given}
        query = {t.lower() for t in _TERM.findall(body.query)}
        done = [s for s in state.sources.get(pipe.id, {}).values() if state.status(pipe.id, s) == "SUCCESS"]
        scored: list[tuple[float, int, int, Source, int, int]] = []
        for order, s in enumerate(done):
            if not _matches(_extra_info(s), p.get("search_filters")):
                continue
            for i, (a, b) in enumerate(_chunks(s.text, state.chunk_words)):
                scored.append((_score(query, s.text[a:b], p["alpha"]), order, i, s, a, b))
        scored.sort(key=lambda x: (-x[0], x[1], x[2]) if p["alpha"] >= 0.5 else (-x[0], -x[1], x[2]))
        scored = [x for x in scored if x[0] >= (p.get("dense_similarity_cutoff") or 0.0)]
        mode = p.get("retrieval_mode") or "chunks"
        if mode in ("files_via_metadata", "files_via_content"):  # whole files: best chunk per source
            best = {id(x[3]): x for x in reversed(scored)}
            scored = sorted(best.values(), key=lambda x: (-x[0], x[1]))[: p["files_top_k"]]
            scored = [(sc, o, 0, s, 0, len(s.text)) for sc, o, _, s, _, _ in scored]
        else:
            scored = scored[: p["rerank_top_n"] if p["enable_reranking"] else p["dense_similarity_top_k"]]
        nodes = []
        for score, _, i, s, a, b in scored:
            rels: dict[str, Any] = {"1": {"node_id": s.id, "node_type": "4", "class_name": "RelatedNodeInfo"}}
            if i > 0:  # PREVIOUS / NEXT chunk of the same source
                rels["2"] = {"node_id": _node_id(pipe.id, s, i - 1), "node_type": "1"}
            if b < len(s.text.rstrip()):
                rels["3"] = {"node_id": _node_id(pipe.id, s, i + 1), "node_type": "1"}
            node = TextNode(id_=_node_id(pipe.id, s, i), text=s.text[a:b], extra_info=_extra_info(s),
                            start_char_idx=a, end_char_idx=b, relationships=rels,
                            excluded_embed_metadata_keys=[], excluded_llm_metadata_keys=[],
                            mimetype="text/plain", class_name="TextNode")
            nodes.append(RetrievalNode(node=node, score=None if state.null_scores else score,
                                       class_name="NodeWithScore"))
        elapsed = time.perf_counter() - started
        latency = {"dense_retrieval": elapsed / 2, "sparse_retrieval": elapsed / 2,
                   **({"rerank": 0.0} if p["enable_reranking"] else {})}
        return dump(PipelineRetrieveResponse(pipeline_id=pipe.id, retrieval_nodes=nodes, image_nodes=[],
                                             page_figure_nodes=[], inferred_search_filters=None,
                                             metadata={"retrieval_mode": mode}, retrieval_latency=latency))

    # --- jobs ----------------------------------------------------------------------------------
    @api.get("/jobs")
    async def list_jobs(project_id: Optional[str] = None, job_name: Optional[str] = None,
                        limit: int = 100, offset: int = 0) -> Any:
        proj = project(project_id)
        records = []
        for job in [j for j in state.jobs if j.project_id == proj.id and job_name in (None, "ingestion")]:
            srcs = [s for s in state.sources.get(job.pipeline_id, {}).values() if s.job_id == job.id]
            status = state.aggregate(job.pipeline_id, srcs)
            status = "PENDING" if status in ("NOT_STARTED", "IN_PROGRESS") else status
            records.append({"job_record": {"id": job.id, "job_name": "ingestion", "status": status,
                                           "partitions": {"pipeline_id": job.pipeline_id},
                                           "project_id": job.project_id, "created_at": job.created_at.isoformat(),
                                           "updated_at": job.created_at.isoformat()}})
        page = records[max(offset, 0):max(offset, 0) + limit]
        return dump(SyncPaginatedJobsHistory[dict[str, Any]](jobs=page, total_count=len(records), offset=offset))

    app.include_router(api)
    return app


class RealShapeServer:
    """`create_app(state)` served by uvicorn on a free loopback port in a daemon thread."""

    def __init__(self, state: Optional[State] = None) -> None:
        self.state = state or State()
        self.api_key = self.state.api_key
        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY then (else ~40 ms Nagle stall per request)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(create_app(self.state), log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def start(self, timeout: float = 10.0) -> RealShapeServer:
        """Start serving and wait until `/healthz` answers."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.stop()
                raise RuntimeError(f"realshape server did not start on {self.base_url}")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> RealShapeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
