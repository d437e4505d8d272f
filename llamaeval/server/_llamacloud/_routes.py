"""Routes of the real LlamaCloud v1 dialect: parse the wire shape, call a service, shape the answer."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import unquote_plus

from fastapi import APIRouter, Body, Depends, File, Form, Query, Request, Response, UploadFile
from fastapi.exceptions import RequestValidationError

from llamaeval.server._auth import account_id
from llamaeval.server._llamacloud import _retrieve as R
from llamaeval.server._llamacloud import _schemas as S
from llamaeval.server._llamacloud import _shapes as W
from llamaeval.server._llamacloud._shapes import LOCAL_EMBEDDING_TYPE
from llamaeval.server._services import InvalidInput, NotFound, Services
from llamaeval.server._simplified import API_PREFIX, retrieve_response
from llamaeval.server._storage import Pipeline
from llamaeval.server._sync import SUPPORTED_SOURCE_TYPES

__all__ = ["router", "retrieve_answer", "RETRIEVE_PATH"]

#: The retrieve operation's path under the API root (one place for the route and the retrieve lane).
RETRIEVE_PATH = "/pipelines/{pipeline_id}/retrieve"

#: Metadata keys a file's custom metadata may not set here: the server sets them on every node
#: (``file_name`` and the rest may be custom, as LlamaIndex documents often carry their own).
RESERVED = ("file_id", "pipeline_id")
#: Sink types the real API names; the local server records the sink, its index stays on its own disk.
SINK_TYPES = ("PINECONE", "POSTGRES", "QDRANT", "AZUREAI_SEARCH", "MONGODB_ATLAS", "MILVUS", "ASTRA_DB")


def _svc(request: Request) -> Services:
    return request.app.state.llamaeval


def _unprocessable(loc: list[str], message: str) -> RequestValidationError:
    """A 422 in FastAPI's shape (what the SDKs parse as a validation error)."""
    return RequestValidationError([{"loc": loc, "msg": message, "type": "value_error"}])


def _busy(svc: Services, pipeline_id: str) -> bool:
    return any(j.status in ("pending", "running") for j in svc.storage.list_jobs(pipeline_id))


def _chunking(transform: dict[str, Any] | None) -> dict[str, Any] | None:
    """``transform_config`` -> the engine's chunking config (sizes in MiniLM word pieces)."""
    if not transform:
        return None
    source = transform.get("chunking_config") if transform.get("mode") == "advanced" else transform
    if not isinstance(source, dict):
        return None
    return {k: source[k] for k in ("chunk_size", "chunk_overlap") if source.get(k) is not None} or None


def _embedding_model(svc: Services, body: S.PipelineCreate | S.PipelineUpdate) -> str | None:
    """The local model an ``embedding_config`` chooses: ``{"type": "HUGGINGFACE_API_EMBEDDING",
    "component": {"model_name": ...}}`` names one of the server's models (422 naming the allowed
    ones otherwise); a hosted provider's config (OpenAI, Cohere, ...) is only recorded: None, the
    default model (or, on an update, the pipeline's current one)."""
    config = body.embedding_config
    if not isinstance(config, dict) or config.get("type") != LOCAL_EMBEDDING_TYPE:
        return None
    component = config.get("component")
    name = component.get("model_name") if isinstance(component, dict) else None
    if name is None:
        return None
    try:
        return svc.embedding_model(name)
    except InvalidInput as exc:
        raise _unprocessable(["body", "embedding_config", "component", "model_name"], str(exc)) from None


def _attributes(body: S.PipelineCreate | S.PipelineUpdate) -> dict[str, Any]:
    fields = body.model_dump(exclude_unset=True)
    out = {k: fields[k] for k in ("embedding_config", "pipeline_type", "llama_parse_parameters", "metadata_config",
                                  "data_sink_id") if k in fields}
    if body.preset_retrieval_parameters is not None:
        presets = body.preset_retrieval_parameters.model_dump(exclude_none=True)
        try:
            R.parsed_filters(presets)
        except ValueError as exc:
            raise _unprocessable(["body", "preset_retrieval_parameters", "search_filters"], str(exc)) from None
        out["preset_retrieval_parameters"] = presets
    return out


def _pipeline_out(svc: Services, acct: str, p: Pipeline) -> dict[str, Any]:
    sink_id = p.attributes.get("data_sink_id")
    sink = svc.storage.get_data_sink(acct, sink_id) if sink_id else None
    return W.pipeline_out(p, sink)


def _doc_id(svc: Services, acct: str, pipeline_id: str, raw: str) -> str:
    """The document id in a path: ``LlamaCloudIndex`` quotes ids twice (``quote_plus``), so try
    the id as decoded once by the server, then unquoted once and twice more."""
    candidates = [raw, unquote_plus(raw), unquote_plus(unquote_plus(raw))]
    pipeline = svc.pipeline(acct, pipeline_id)
    for c in candidates:
        if svc.storage.get_pipeline_file(pipeline.id, svc.document_file_id(pipeline.id, c)) is not None:
            return c
    raise NotFound("document", candidates[1])


def _check_sink(acct: str, svc: Services, sink_id: str | None) -> None:
    if sink_id:
        svc.data_sink(acct, sink_id)


def _start_ingestion(svc: Services, acct: str, pipeline_id: str) -> None:
    """The real API ingests as soon as files or documents change: queue a sync."""
    svc.request_sync(acct, pipeline_id, require_content=False)


async def retrieve_answer(svc: Services, acct: str, pipeline_id: str, body: S.RetrieveRequest) -> Response:
    """The answer to ``POST /pipelines/{pipeline_id}/retrieve`` (the route's, and the retrieve lane's,
    :mod:`llamaeval.server._retrieve_lane`): the search inline or on a worker thread."""
    return await svc.run_search(lambda: _retrieve(svc, acct, pipeline_id, body), body.query)


def _retrieve(svc: Services, acct: str, pipeline_id: str, body: S.RetrieveRequest) -> Response:
    """The retrieve answer (blocking: the search runs here)."""
    preset = svc.storage.get_pipeline_attributes(acct, pipeline_id)
    if preset is None:
        raise NotFound("pipeline", pipeline_id)
    params = R.effective_params(body.model_dump(exclude_none=True), preset.get("preset_retrieval_parameters"))
    if not body.query.strip():
        raise _unprocessable(["body", "query"], "query must not be blank")
    svc.check_query(body.query)
    try:
        R.parsed_filters(params)
    except ValueError as exc:
        raise _unprocessable(["body", "search_filters"], str(exc)) from None
    route = params["retrieval_mode"]
    files = route != "chunks"
    head = svc.storage.get_pipeline_index(acct, pipeline_id)
    if head is not None and head[1] is None and not svc.storage.list_pipeline_files(pipeline_id):
        empty = _retrieve_payload(pipeline_id, [], route, {"total": 0.0})  # an empty pipeline finds nothing
        return retrieve_response(empty, {}, 0.0, body)

    def execute(index: Any, req: Any) -> Any:
        nonlocal route
        timings: dict[str, float] = {}
        if route in ("files_via_metadata", "auto_routed"):
            t = time.perf_counter()
            by_meta = index.rank_files_by_metadata(body.query, req.filters)
            timings["metadata"] = time.perf_counter() - t
            if route == "auto_routed":
                route = ("files_via_metadata" if by_meta and by_meta[0][1] >= R.AUTO_ROUTE_METADATA_SHARE
                         else "chunks")
                if route == "chunks":
                    req = R.search_request(body.query, params, index.config)
        response = index.search(req)
        response.timings.update(timings)
        if route == "chunks":
            return response, None
        entries = {h.entry.file_id: (h.entry, float(h.score)) for h in reversed(response.hits)}
        n = int(params["files_top_k"])
        if route == "files_via_content":
            chosen = R.best_files(response.hits, n)
        else:  # metadata share first, then the best chunk's content score
            ranked = sorted(by_meta, key=lambda fs: (-fs[1], -entries.get(fs[0], (None, -1e9))[1]))
            chosen = [(entries[f][0] if f in entries else _first_entry(index, f), share)
                      for f, share in ranked[:n]]
        return response, chosen

    outcome = svc.search(acct, pipeline_id, body.query,
                         lambda config: R.search_request(body.query, params, config, files), execute, head)
    response, chosen = outcome.response
    if chosen is None:
        nodes = [W.node_out(h.entry, float(h.score), pipeline_id, h.entry.file_id,
                            extra={"scores": {k: float(v) for k, v in h.stage_scores.items()}})
                 for h in response.hits]
    else:
        nodes = [W.node_out(entry, score, pipeline_id, entry.file_id, text=_file_text(svc, acct, entry.file_id))
                 for entry, score in chosen]
    payload = _retrieve_payload(pipeline_id, nodes, route, {**response.timings, "total": outcome.total_s})
    return retrieve_response(payload, response.timings, outcome.total_s, body)


def router() -> APIRouter:
    r = APIRouter(prefix=API_PREFIX)
    acct_dep = Depends(account_id)

    # -- projects ------------------------------------------------------------------------------
    @r.get("/projects", tags=["Projects"], summary="List projects")
    def list_projects(request: Request, project_name: str | None = None, organization_id: str | None = None,
                      acct: str = acct_dep) -> Any:
        svc = _svc(request)
        default = svc.default_project(acct)
        projects = svc.list_projects(acct)
        if project_name is not None:
            projects = [p for p in projects if p.name == project_name]
        return [W.project_out(p, default.id) for p in projects]

    @r.get("/projects/{project_id}", tags=["Projects"], summary="Get a project")
    def get_project(project_id: str, request: Request, acct: str = acct_dep) -> Any:
        svc = _svc(request)
        return W.project_out(svc.project(acct, project_id), svc.default_project(acct).id)

    @r.post("/projects", tags=["Projects"], summary="Create a project (local server extension)")
    def create_project(request: Request, body: dict[str, Any] = Body(...), acct: str = acct_dep) -> Any:
        svc = _svc(request)
        name = body.get("name")
        if not isinstance(name, str):
            raise _unprocessable(["body", "name"], "Field required: a project name (string)")
        return W.project_out(svc.create_project(acct, name), svc.default_project(acct).id)

    # -- files -----------------------------------------------------------------------------------
    @r.post("/files", tags=["Files"], summary="Upload a file (multipart field upload_file)")
    def upload_file(request: Request, upload_file: UploadFile = File(...), project_id: str | None = None,
                    external_file_id: str | None = None, acct: str = acct_dep) -> Any:
        svc = _svc(request)
        project = svc.project_or_default(acct, project_id)
        stored = svc.upload(acct, project.id, upload_file.filename, upload_file.file, upload_file.content_type,
                            external_file_id=external_file_id)
        return W.file_out(stored)

    @r.post("/beta/files", tags=["Files"], summary="Upload a file (multipart file + purpose)")
    def upload_beta_file(request: Request, file: UploadFile = File(...), purpose: str = Form("user_data"),
                         external_file_id: str | None = Form(None), project_id: str | None = None,
                         acct: str = acct_dep) -> Any:
        svc = _svc(request)
        project = svc.project_or_default(acct, project_id)
        stored = svc.upload(acct, project.id, file.filename, file.file, file.content_type,
                            external_file_id=external_file_id, purpose=purpose)
        return W.file_out(stored)

    @r.get("/beta/files", tags=["Files"], summary="List files (cursor page)")
    def list_beta_files(request: Request, project_id: str | None = None,
                        page_size: int = Query(100, ge=1, le=1000), page_token: str | None = None,
                        acct: str = acct_dep) -> Any:
        svc = _svc(request)
        files = svc.storage.list_files(acct, svc.project_or_default(acct, project_id).id)
        # the tokens this server hands out are offsets in ASCII digits ('²'.isdigit() is true too, and
        # int() refuses it and numbers of thousands of digits); any other token starts at the beginning
        offset = page_token is not None and page_token.isascii() and page_token.isdigit() and len(page_token) <= 18
        start = int(page_token) if offset else 0
        page = files[start:start + page_size]
        more = start + page_size < len(files)
        return {"items": [W.file_out(f) for f in page], "next_page_token": str(start + page_size) if more else None,
                "total_size": len(files)}

    for prefix in ("/files", "/beta/files"):
        @r.get(prefix + "/{file_id}", tags=["Files"], summary="Get a file")
        def get_file(file_id: str, request: Request, acct: str = acct_dep) -> Any:
            return W.file_out(_svc(request).file(acct, file_id))

        @r.delete(prefix + "/{file_id}", tags=["Files"], summary="Delete a file (and take it out of pipelines)",
                  status_code=204)
        def delete_file(file_id: str, request: Request, acct: str = acct_dep) -> Response:
            _svc(request).delete_file(acct, file_id)
            return Response(status_code=204)

    # -- pipelines -------------------------------------------------------------------------------
    @r.get("/pipelines", tags=["Pipelines"], summary="Search pipelines")
    def list_pipelines(request: Request, project_id: str | None = None, project_name: str | None = None,
                       pipeline_name: str | None = None, pipeline_type: S.PipelineType | None = None,
                       acct: str = acct_dep) -> Any:
        svc = _svc(request)
        if project_id:
            projects = [svc.project(acct, project_id)]
        elif project_name:
            projects = [p for p in svc.list_projects(acct) if p.name == project_name]
        else:
            projects = svc.list_projects(acct)
        out = []
        for project in projects:
            for p in svc.storage.list_pipelines(acct, project.id):
                if pipeline_name is not None and p.name != pipeline_name:
                    continue
                if pipeline_type is not None and (p.attributes.get("pipeline_type") or "MANAGED") != pipeline_type:
                    continue
                out.append(_pipeline_out(svc, acct, p))
        return out

    def _create(svc: Services, acct: str, project_id: str | None, body: S.PipelineCreate) -> Pipeline:
        project = svc.project_or_default(acct, project_id)
        _check_sink(acct, svc, body.data_sink_id)
        return svc.create_pipeline(acct, project.id, body.name, retrieval_config=body.retrieval_config,
                                   chunking_config=_chunking(body.transform_config), attributes=_attributes(body),
                                   embedding_model=_embedding_model(svc, body))

    @r.post("/pipelines", tags=["Pipelines"], summary="Create a pipeline")
    def create_pipeline(body: S.PipelineCreate, request: Request, project_id: str | None = None,
                        acct: str = acct_dep) -> Any:
        svc = _svc(request)
        return _pipeline_out(svc, acct, _create(svc, acct, project_id, body))

    @r.put("/pipelines", tags=["Pipelines"], summary="Upsert a pipeline (by project and name)")
    def upsert_pipeline(body: S.PipelineCreate, request: Request, project_id: str | None = None,
                        acct: str = acct_dep) -> Any:
        svc = _svc(request)
        project = svc.project_or_default(acct, project_id)
        same = [p for p in svc.storage.list_pipelines(acct, project.id) if p.name == body.name.strip()]
        if not same:
            return _pipeline_out(svc, acct, _create(svc, acct, project.id, body))
        _check_sink(acct, svc, body.data_sink_id)
        updated = svc.update_pipeline(acct, same[0].id, retrieval_config=body.retrieval_config,
                                      chunking_config=_chunking(body.transform_config),
                                      attributes=_attributes(body), embedding_model=_embedding_model(svc, body))
        return _pipeline_out(svc, acct, updated)

    @r.get("/pipelines/{pipeline_id}", tags=["Pipelines"], summary="Get a pipeline")
    def get_pipeline(pipeline_id: str, request: Request, acct: str = acct_dep) -> Any:
        svc = _svc(request)
        return _pipeline_out(svc, acct, svc.pipeline(acct, pipeline_id))

    @r.put("/pipelines/{pipeline_id}", tags=["Pipelines"], summary="Update a pipeline")
    def update_pipeline(pipeline_id: str, body: S.PipelineUpdate, request: Request, acct: str = acct_dep) -> Any:
        svc = _svc(request)
        _check_sink(acct, svc, body.data_sink_id)
        updated = svc.update_pipeline(acct, pipeline_id, name=body.name, retrieval_config=body.retrieval_config,
                                      chunking_config=_chunking(body.transform_config), attributes=_attributes(body),
                                      embedding_model=_embedding_model(svc, body))
        return _pipeline_out(svc, acct, updated)

    @r.delete("/pipelines/{pipeline_id}", tags=["Pipelines"], summary="Delete a pipeline", status_code=204)
    def delete_pipeline(pipeline_id: str, request: Request, acct: str = acct_dep) -> Response:
        _svc(request).delete_pipeline(acct, pipeline_id)
        return Response(status_code=204)

    @r.get("/pipelines/{pipeline_id}/status", tags=["Pipelines"], summary="Ingestion status of a pipeline")
    def pipeline_status(pipeline_id: str, request: Request, acct: str = acct_dep) -> Any:
        svc = _svc(request)
        return W.ingestion_status(svc.pipeline_files(acct, pipeline_id), svc.jobs(acct, pipeline_id))

    @r.post("/pipelines/{pipeline_id}/sync", tags=["Pipelines"], summary="Sync a pipeline (returns the pipeline)")
    def sync_pipeline(pipeline_id: str, request: Request, acct: str = acct_dep) -> Any:
        svc = _svc(request)
        svc.request_sync(acct, pipeline_id)
        return _pipeline_out(svc, acct, svc.pipeline(acct, pipeline_id))

    @r.post("/pipelines/{pipeline_id}/sync/cancel", tags=["Pipelines"], summary="Cancel a pipeline's sync")
    def cancel_sync(pipeline_id: str, request: Request, acct: str = acct_dep) -> Any:
        svc = _svc(request)
        svc.cancel_sync(acct, pipeline_id)
        return _pipeline_out(svc, acct, svc.pipeline(acct, pipeline_id))

    @r.post(RETRIEVE_PATH, tags=["Retrieval"], summary="Retrieve nodes")
    async def retrieve(pipeline_id: str, body: S.RetrieveRequest, request: Request, acct: str = acct_dep) -> Any:
        return await retrieve_answer(_svc(request), acct, pipeline_id, body)

    # -- pipeline files --------------------------------------------------------------------------
    @r.put("/pipelines/{pipeline_id}/files", tags=["Pipeline Files"],
           summary="Add files to a pipeline (starts ingestion)")
    def add_files(pipeline_id: str, body: list[S.PipelineFileCreate], request: Request, acct: str = acct_dep) -> Any:
        svc = _svc(request)
        added = svc.add_files(acct, pipeline_id, [(item.file_id, item.custom_metadata) for item in body], RESERVED)
        _start_ingestion(svc, acct, pipeline_id)
        return [W.pipeline_file_out(pf, svc.storage.get_file(acct, pf.file_id), True) for pf in added]

    def _files_out(svc: Services, acct: str, pipeline_id: str) -> list[dict[str, Any]]:
        busy = _busy(svc, svc.pipeline(acct, pipeline_id).id)
        return [W.pipeline_file_out(pf, svc.storage.get_file(acct, pf.file_id), busy)
                for pf in svc.pipeline_files(acct, pipeline_id)]

    @r.get("/pipelines/{pipeline_id}/files", tags=["Pipeline Files"], summary="List pipeline files (legacy)")
    def list_files(pipeline_id: str, request: Request, acct: str = acct_dep) -> Any:
        return _files_out(_svc(request), acct, pipeline_id)

    @r.get("/pipelines/{pipeline_id}/files2", tags=["Pipeline Files"], summary="List pipeline files (paged)")
    def list_files2(pipeline_id: str, request: Request, limit: int = Query(100, ge=1, le=1000),
                    offset: int = Query(0, ge=0, le=10 ** 9), file_name_contains: str | None = None,
                    acct: str = acct_dep) -> Any:
        files = _files_out(_svc(request), acct, pipeline_id)
        if file_name_contains:
            files = [f for f in files if file_name_contains in (f["name"] or "")]
        return {"files": files[offset:offset + limit], "limit": limit, "offset": offset, "total_count": len(files)}

    @r.get("/pipelines/{pipeline_id}/files/status-counts", tags=["Pipeline Files"], summary="File status counts")
    def file_status_counts(pipeline_id: str, request: Request, acct: str = acct_dep) -> Any:
        counts: dict[str, int] = {}
        for f in _files_out(_svc(request), acct, pipeline_id):
            counts[f["status"]] = counts.get(f["status"], 0) + 1
        return {"counts": counts, "total_count": sum(counts.values()), "pipeline_id": pipeline_id}

    @r.get("/pipelines/{pipeline_id}/files/{file_id}/status", tags=["Pipeline Files"], summary="File status")
    def file_status(pipeline_id: str, file_id: str, request: Request, acct: str = acct_dep) -> Any:
        svc = _svc(request)
        pf = svc.pipeline_file(acct, pipeline_id, file_id)
        return W.ingestion_status([pf], svc.jobs(acct, pipeline_id))

    @r.put("/pipelines/{pipeline_id}/files/{file_id}", tags=["Pipeline Files"], summary="Update a file's metadata")
    def update_file(pipeline_id: str, file_id: str, body: S.PipelineFileUpdate, request: Request,
                    acct: str = acct_dep) -> Any:
        svc = _svc(request)
        svc.pipeline_file(acct, pipeline_id, file_id)
        (pf,) = svc.add_files(acct, pipeline_id, [(file_id, body.custom_metadata)], RESERVED)
        _start_ingestion(svc, acct, pipeline_id)
        return W.pipeline_file_out(pf, svc.storage.get_file(acct, file_id), True)

    @r.delete("/pipelines/{pipeline_id}/files/{file_id}", tags=["Pipeline Files"], status_code=204,
              summary="Take a file out of a pipeline")
    def remove_file(pipeline_id: str, file_id: str, request: Request, acct: str = acct_dep) -> Response:
        svc = _svc(request)
        svc.remove_pipeline_file(acct, pipeline_id, file_id)
        _start_ingestion(svc, acct, pipeline_id)
        return Response(status_code=204)

    # -- documents ---------------------------------------------------------------------------------
    def _docs_in(svc: Services, acct: str, pipeline_id: str, body: list[S.CloudDocumentCreate]) -> Any:
        pairs = svc.upsert_documents(acct, pipeline_id, [(d.id, d.text, d.metadata or {}) for d in body],
                                     RESERVED)
        _start_ingestion(svc, acct, pipeline_id)
        return [W.document_out(doc_id, d.text, pf.metadata) for (doc_id, pf), d in zip(pairs, body)]

    @r.post("/pipelines/{pipeline_id}/documents", tags=["Pipeline Documents"], summary="Add documents")
    def create_documents(pipeline_id: str, body: list[S.CloudDocumentCreate], request: Request,
                         acct: str = acct_dep) -> Any:
        return _docs_in(_svc(request), acct, pipeline_id, body)

    @r.put("/pipelines/{pipeline_id}/documents", tags=["Pipeline Documents"], summary="Upsert documents")
    def upsert_documents(pipeline_id: str, body: list[S.CloudDocumentCreate], request: Request,
                         acct: str = acct_dep) -> Any:
        return _docs_in(_svc(request), acct, pipeline_id, body)

    def _docs_out(svc: Services, acct: str, pipeline_id: str) -> list[dict[str, Any]]:
        busy = _busy(svc, svc.pipeline(acct, pipeline_id).id)
        return [W.document_out(stored.external_file_id or stored.id,
                               _text_of(svc.files.read(stored.id)), pf.metadata,
                               W.file_status(pf, busy))
                for stored, pf in svc.documents(acct, pipeline_id)]

    @r.get("/pipelines/{pipeline_id}/documents", tags=["Pipeline Documents"], summary="List documents")
    def list_documents(pipeline_id: str, request: Request, skip: int = Query(0, ge=0, le=10 ** 9),
                       limit: int = Query(1000, ge=1, le=10000), acct: str = acct_dep) -> Any:
        return _docs_out(_svc(request), acct, pipeline_id)[skip:skip + limit]

    @r.get("/pipelines/{pipeline_id}/documents/paginated", tags=["Pipeline Documents"],
           summary="List documents (paged)")
    def list_documents_paged(pipeline_id: str, request: Request, skip: int = Query(0, ge=0, le=10 ** 9),
                             limit: int = Query(100, ge=1, le=1000), acct: str = acct_dep) -> Any:
        docs = _docs_out(_svc(request), acct, pipeline_id)
        return {"documents": docs[skip:skip + limit], "limit": limit, "offset": skip, "total_count": len(docs)}

    @r.get("/pipelines/{pipeline_id}/documents/status-counts", tags=["Pipeline Documents"],
           summary="Document status counts")
    def document_status_counts(pipeline_id: str, request: Request, acct: str = acct_dep) -> Any:
        counts: dict[str, int] = {}
        for d in _docs_out(_svc(request), acct, pipeline_id):
            status = d["status_metadata"]["status"]
            counts[status] = counts.get(status, 0) + 1
        return {"counts": counts, "total_count": sum(counts.values()), "pipeline_id": pipeline_id}

    @r.get("/pipelines/{pipeline_id}/documents/{document_id}", tags=["Pipeline Documents"], summary="Get a document")
    def get_document(pipeline_id: str, document_id: str, request: Request, acct: str = acct_dep) -> Any:
        svc = _svc(request)
        doc_id = _doc_id(svc, acct, pipeline_id, document_id)
        stored, pf = svc.document(acct, pipeline_id, doc_id)
        return W.document_out(doc_id, _text_of(svc.files.read(stored.id)), pf.metadata,
                              W.file_status(pf, _busy(svc, pf.pipeline_id)))

    @r.get("/pipelines/{pipeline_id}/documents/{document_id}/status", tags=["Pipeline Documents"],
           summary="Ingestion status of a document")
    def document_status(pipeline_id: str, document_id: str, request: Request, acct: str = acct_dep) -> Any:
        svc = _svc(request)
        _, pf = svc.document(acct, pipeline_id, _doc_id(svc, acct, pipeline_id, document_id))
        return W.ingestion_status([pf], svc.jobs(acct, pipeline_id))

    @r.get("/pipelines/{pipeline_id}/documents/{document_id}/chunks", tags=["Pipeline Documents"],
           summary="A document's chunks in the current index")
    def document_chunks(pipeline_id: str, document_id: str, request: Request, acct: str = acct_dep) -> Any:
        svc = _svc(request)
        doc_id = _doc_id(svc, acct, pipeline_id, document_id)
        stored, _ = svc.document(acct, pipeline_id, doc_id)
        pipeline = svc.pipeline(acct, pipeline_id)
        if pipeline.index_version is None:
            return []
        index = svc.indexes.get(pipeline.id, pipeline.index_version)
        return [W.node_out(e, None, pipeline.id, doc_id)["node"] for e in index.entries if e.file_id == stored.id]

    @r.delete("/pipelines/{pipeline_id}/documents/{document_id}", tags=["Pipeline Documents"], status_code=204,
              summary="Delete a document")
    def delete_document(pipeline_id: str, document_id: str, request: Request, acct: str = acct_dep) -> Response:
        svc = _svc(request)
        svc.delete_document(acct, pipeline_id, _doc_id(svc, acct, pipeline_id, document_id))
        _start_ingestion(svc, acct, pipeline_id)
        return Response(status_code=204)

    # -- data sources ------------------------------------------------------------------------------
    def _source_type(value: str | None) -> str:
        kind = (value or "").lower()
        if kind not in SUPPORTED_SOURCE_TYPES:
            raise _unprocessable(["body", "source_type"],
                                 f"unsupported source_type {value!r}: this local server reads "
                                 f"{', '.join(SUPPORTED_SOURCE_TYPES)} (component {{\"path\": \"<folder under "
                                 f"--sources-root>\", \"recursive\": true}}); cloud connectors are not available")
        return kind

    @r.post("/data-sources", tags=["Data Sources"], summary="Create a data source")
    def create_data_source(body: S.DataSourceCreate, request: Request, project_id: str | None = None,
                           acct: str = acct_dep) -> Any:
        svc = _svc(request)
        ds = svc.new_data_source(acct, body.name, _source_type(body.source_type), project_id, body.component)
        return W.data_source_out(ds)

    @r.get("/data-sources", tags=["Data Sources"], summary="List data sources")
    def list_data_sources(request: Request, project_id: str | None = None, acct: str = acct_dep) -> Any:
        svc = _svc(request)
        project = svc.project_or_default(acct, project_id)
        return [W.data_source_out(d) for d in svc.storage.list_data_sources(acct, project.id)]

    @r.get("/data-sources/{data_source_id}", tags=["Data Sources"], summary="Get a data source")
    def get_data_source(data_source_id: str, request: Request, acct: str = acct_dep) -> Any:
        return W.data_source_out(_svc(request).data_source(acct, data_source_id))

    @r.put("/data-sources/{data_source_id}", tags=["Data Sources"], summary="Update a data source")
    def update_data_source(data_source_id: str, body: S.DataSourceUpdate, request: Request,
                           acct: str = acct_dep) -> Any:
        return W.data_source_out(_svc(request).update_data_source(acct, data_source_id, body.name,
                                                                  body.component))

    @r.delete("/data-sources/{data_source_id}", tags=["Data Sources"], status_code=204,
              summary="Delete a data source")
    def delete_data_source(data_source_id: str, request: Request, acct: str = acct_dep) -> Response:
        svc = _svc(request)
        svc.storage.delete_data_source(svc.data_source(acct, data_source_id).id)
        return Response(status_code=204)

    @r.get("/pipelines/{pipeline_id}/data-sources", tags=["Pipeline Data Sources"],
           summary="List a pipeline's data sources")
    def list_pipeline_data_sources(pipeline_id: str, request: Request, acct: str = acct_dep) -> Any:
        svc = _svc(request)
        pipeline = svc.pipeline(acct, pipeline_id)
        return [W.pipeline_data_source_out(d, pipeline) for d in svc.storage.list_pipeline_data_sources(pipeline.id)]

    @r.put("/pipelines/{pipeline_id}/data-sources", tags=["Pipeline Data Sources"],
           summary="Attach data sources to a pipeline (starts ingestion)")
    def add_pipeline_data_sources(pipeline_id: str, body: list[S.PipelineDataSourceCreate], request: Request,
                                  acct: str = acct_dep) -> Any:
        svc = _svc(request)
        sources = svc.attach_data_sources(acct, pipeline_id, [item.data_source_id for item in body], [])
        svc.request_sync(acct, pipeline_id)
        pipeline = svc.pipeline(acct, pipeline_id)
        return [W.pipeline_data_source_out(d, pipeline) for d in sources]

    # -- data sinks --------------------------------------------------------------------------------
    def _sink_type(value: str | None) -> str:
        if value not in SINK_TYPES:
            raise _unprocessable(["body", "sink_type"], f"unknown sink_type {value!r}; use one of "
                                 f"{', '.join(SINK_TYPES)} (the local server records the sink; its index stays "
                                 "on its own disk)")
        return value

    @r.post("/data-sinks", tags=["Data Sinks"], summary="Create a data sink")
    def create_data_sink(body: S.DataSinkCreate, request: Request, project_id: str | None = None,
                         acct: str = acct_dep) -> Any:
        sink = _svc(request).new_data_sink(acct, project_id, body.name, _sink_type(body.sink_type), body.component)
        return W.data_sink_out(sink)

    @r.get("/data-sinks", tags=["Data Sinks"], summary="List data sinks")
    def list_data_sinks(request: Request, project_id: str | None = None, acct: str = acct_dep) -> Any:
        svc = _svc(request)
        project = svc.project_or_default(acct, project_id)
        return [W.data_sink_out(s) for s in svc.storage.list_data_sinks(acct, project.id)]

    @r.get("/data-sinks/{data_sink_id}", tags=["Data Sinks"], summary="Get a data sink")
    def get_data_sink(data_sink_id: str, request: Request, acct: str = acct_dep) -> Any:
        return W.data_sink_out(_svc(request).data_sink(acct, data_sink_id))

    @r.put("/data-sinks/{data_sink_id}", tags=["Data Sinks"], summary="Update a data sink")
    def update_data_sink(data_sink_id: str, body: S.DataSinkUpdate, request: Request, acct: str = acct_dep) -> Any:
        return W.data_sink_out(_svc(request).update_data_sink(acct, data_sink_id, body.name, body.component))

    @r.delete("/data-sinks/{data_sink_id}", tags=["Data Sinks"], status_code=204, summary="Delete a data sink")
    def delete_data_sink(data_sink_id: str, request: Request, acct: str = acct_dep) -> Response:
        svc = _svc(request)
        svc.storage.delete_data_sink(svc.data_sink(acct, data_sink_id).id)
        return Response(status_code=204)

    # -- jobs ----------------------------------------------------------------------------------------
    @r.get("/jobs", tags=["Jobs"], summary="List jobs (sync jobs of the project's pipelines)")
    def list_jobs(request: Request, project_id: str | None = None, job_name: str | None = None,
                  limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0, le=10 ** 9),
                  acct: str = acct_dep) -> Any:
        svc = _svc(request)
        project = svc.project_or_default(acct, project_id)
        records = [W.job_out(j, project.id) for p in svc.storage.list_pipelines(acct, project.id)
                   for j in svc.storage.list_jobs(p.id)]
        if job_name is not None:
            records = [r for r in records if r["job_record"]["job_name"] == job_name]
        records.sort(key=lambda r: r["job_record"]["created_at"] or "", reverse=True)
        return {"jobs": records[offset:offset + limit], "total_count": len(records), "offset": offset,
                "limit": limit}

    return r


def _retrieve_payload(pipeline_id: str, nodes: list[dict[str, Any]], route: str, latency: dict[str, float]
                      ) -> dict[str, Any]:
    return {"pipeline_id": pipeline_id, "retrieval_nodes": nodes, "image_nodes": [], "page_figure_nodes": [],
            "inferred_search_filters": None, "metadata": {"retrieval_mode": route}, "retrieval_latency": latency,
            "class_name": "PipelineRetrieveResponse"}


def _first_entry(index: Any, file_id: str) -> Any:
    return next(e for e in index.entries if e.file_id == file_id)


def _text_of(data: bytes) -> str:
    """A stored text document as its text (UTF-8; line ends read as \\n, as a text file is read)."""
    return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")


def _file_text(svc: Services, acct: str, file_id: str) -> str:
    """A whole file's text as the engine parsed it (what files_via_* return as one node)."""
    from llamaeval import engine

    stored = svc.file(acct, file_id)
    return engine.parse_document(svc.files.read(stored.id), stored.name).text

