"""The simplified dialect: the 18 operations of ``shared/spec/llamacloud-openapi.yml`` under
``/api/v1`` (the seed contract), as thin routes over :mod:`llamaeval.server._services`."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, File, Query, Request, Response, UploadFile

from llamaeval.server import _schemas as S
from llamaeval.server._auth import account_id
from llamaeval.server._boundary import unknown_fields_warning
from llamaeval.server._services import InvalidInput, Services
from llamaeval.server._storage import DataSource, Job, Pipeline, PipelineFile, Project, StoredFile

__all__ = ["API_PREFIX", "RETRIEVE_PATH", "router", "retrieve_response", "search_answer"]

API_PREFIX = "/api/v1"
#: The retrieve operation's path under the API root (one place for the route and the retrieve lane).
RETRIEVE_PATH = "/pipelines/{pipelineId}/retrieve"
_E400 = {"model": S.ErrorOut, "description": "Bad request: invalid input (message in detail)"}
_E401 = {"model": S.ErrorOut, "description": "Unauthorized - invalid or missing API key"}
_E404 = {"model": S.ErrorOut, "description": "Not found (or owned by another account)"}
_E413 = {"model": S.ErrorOut, "description": "File larger than the server's upload limit"}


def _svc(request: Request) -> Services:
    return request.app.state.llamaeval


def _warn(response: Response, *bodies: Any) -> None:
    """Name the request's unknown fields in a ``Warning`` header (accepted, never applied)."""
    response.headers.update(unknown_fields_warning(*bodies))


def _embedding_model(config: dict[str, Any] | None) -> str | None:
    """The model an ``embedding_config`` ``{"model_name": ...}`` names (None: the default)."""
    if config is None:
        return None
    unknown = sorted(set(config) - {"model_name"})
    if unknown or "model_name" not in config:
        raise InvalidInput("embedding_config must be {\"model_name\": <model>}"
                           + (f"; unknown key(s): {', '.join(unknown)}" if unknown else ""))
    return config["model_name"]


def server_timing(timings: dict[str, float], total_s: float) -> str:
    """A ``Server-Timing`` header value: each stage and the total, in milliseconds."""
    parts = [f"{name};dur={seconds * 1000:.3f}" for name, seconds in timings.items()]
    parts.append(f"total;dur={total_s * 1000:.3f}")
    return ", ".join(parts)


def retrieve_response(payload: dict[str, Any], timings: dict[str, float], total_s: float, body: Any) -> Response:
    """A retrieve answer of either dialect: ``payload`` as JSON (orjson: ~20x faster than
    ``json.dumps`` on 30 nodes; NaN would become null), the stage ``timings`` and ``total_s``
    (seconds) in ``Server-Timing``, the request ``body``'s unknown fields named in ``Warning``."""
    headers = {"Server-Timing": server_timing(timings, total_s), **unknown_fields_warning(body)}
    return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json",
                    headers=headers)


# -- wire shapes -------------------------------------------------------------------------------
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
            "num_failed": j.num_failed, "num_chunks": j.num_chunks, "num_chunks_total": j.num_chunks_total,
            "num_chunks_done": j.num_chunks_done, "num_chunks_cached": j.num_chunks_cached}


def _data_source_out(d: DataSource) -> dict[str, Any]:
    return {"id": d.id, "name": d.name, "source_type": d.source_type, "project_id": d.project_id,
            "config": d.config, "created_at": d.created_at, "updated_at": d.updated_at}


def _result_out(hit: Any, pipeline_id: str) -> dict[str, Any]:
    e = hit.entry
    metadata = dict(e.metadata)
    metadata.update(file_id=e.file_id, file_name=e.file_name, pipeline_id=pipeline_id,
                    chunk_id=e.chunk_id, chunk_index=e.chunk_index, start_char=e.start_char,
                    end_char=e.end_char, scores={k: float(v) for k, v in hit.stage_scores.items()})
    if e.title:
        metadata.setdefault("title", e.title)
    return {"text": e.text, "score": float(hit.score), "metadata": metadata}


async def search_answer(svc: Services, acct: str, pipeline_id: str, body: S.RetrievalRequest) -> Response:
    """The answer to ``POST /pipelines/{pipelineId}/retrieve`` (the route's, and the retrieve lane's,
    :mod:`llamaeval.server._retrieve_lane`): the mode's preset searched inline or on a worker thread."""
    from llamaeval.engine import SearchRequest

    outcome = await svc.run_search(lambda: svc.search(
        acct, pipeline_id, body.query,
        lambda config: SearchRequest.preset(body.mode, body.query, body.top_k, config)), body.query)
    payload = {"results": [_result_out(h, pipeline_id) for h in outcome.response.hits], "mode": body.mode,
               "top_k": body.top_k, "retrieval_config": outcome.config_summary}
    return retrieve_response(payload, outcome.response.timings, outcome.total_s, body)


# -- routes ------------------------------------------------------------------------------------
def router() -> APIRouter:
    r = APIRouter(prefix=API_PREFIX, responses={401: _E401})

    # Projects
    @r.get("/projects", operation_id="listProjects", summary="List projects", tags=["Projects"],
           response_model=list[S.ProjectOut])
    def list_projects(request: Request, acct: str = Depends(account_id)) -> Any:
        return [_project_out(p) for p in _svc(request).list_projects(acct)]

    @r.post("/projects", operation_id="createProject", summary="Create a project", tags=["Projects"],
            status_code=201, response_model=S.ProjectOut, responses={400: _E400})
    def create_project(body: S.CreateProjectRequest, request: Request, response: Response,
                       acct: str = Depends(account_id)) -> Any:
        _warn(response, body)
        return _project_out(_svc(request).create_project(acct, body.name))

    @r.get("/projects/{projectId}", operation_id="getProject", summary="Get a project", tags=["Projects"],
           response_model=S.ProjectOut, responses={404: _E404})
    def get_project(projectId: str, request: Request, acct: str = Depends(account_id)) -> Any:
        return _project_out(_svc(request).project(acct, projectId))

    # Files
    @r.post("/files", operation_id="uploadFile", summary="Upload a file", tags=["Files"],
            response_model=S.FileOut, responses={400: _E400, 404: _E404, 413: _E413})
    def upload_file(request: Request, project_id: str = Query(..., description="The project of the file."),
                    file: UploadFile = File(..., description="The file to upload."),
                    acct: str = Depends(account_id)) -> Any:
        return _file_out(_svc(request).upload(acct, project_id, file.filename, file.file, file.content_type))

    @r.get("/files/{fileId}", operation_id="getFile", summary="Get a file (extension)", tags=["Files"],
           response_model=S.FileOut, responses={404: _E404})
    def get_file(fileId: str, request: Request, acct: str = Depends(account_id)) -> Any:
        return _file_out(_svc(request).file(acct, fileId))

    # Pipelines
    @r.get("/pipelines", operation_id="listPipelines", summary="List pipelines", tags=["Pipelines"],
           response_model=list[S.PipelineOut], responses={400: _E400, 404: _E404})
    def list_pipelines(request: Request, project_id: str = Query(..., description="The project."),
                       acct: str = Depends(account_id)) -> Any:
        return [_pipeline_out(p) for p in _svc(request).list_pipelines(acct, project_id)]

    @r.post("/pipelines", operation_id="createPipeline", summary="Create a pipeline", tags=["Pipelines"],
            status_code=201, response_model=S.PipelineOut, responses={400: _E400, 404: _E404})
    def create_pipeline(body: S.CreatePipelineRequest, request: Request, response: Response,
                        acct: str = Depends(account_id)) -> Any:
        _warn(response, body)
        return _pipeline_out(_svc(request).create_pipeline(
            acct, body.project_id, body.name, retrieval_config=body.retrieval_config,
            chunking_config=body.chunking_config, sync_interval=body.sync_interval,
            embedding_model=_embedding_model(body.embedding_config)))

    @r.get("/pipelines/{pipelineId}", operation_id="getPipeline", summary="Get a pipeline", tags=["Pipelines"],
           response_model=S.PipelineOut, responses={404: _E404})
    def get_pipeline(pipelineId: str, request: Request, acct: str = Depends(account_id)) -> Any:
        return _pipeline_out(_svc(request).pipeline(acct, pipelineId))

    @r.delete("/pipelines/{pipelineId}", operation_id="deletePipeline", summary="Delete a pipeline",
              tags=["Pipelines"], response_model=S.DeletedOut, responses={404: _E404})
    def delete_pipeline(pipelineId: str, request: Request, acct: str = Depends(account_id)) -> Any:
        return {"id": _svc(request).delete_pipeline(acct, pipelineId).id, "deleted": True}

    @r.post("/pipelines/{pipelineId}/sync", operation_id="syncPipeline", summary="Sync a pipeline",
            tags=["Pipelines"], response_model=S.PipelineJobOut, responses={400: _E400, 404: _E404})
    def sync_pipeline(pipelineId: str, request: Request, acct: str = Depends(account_id)) -> Any:
        return _job_out(_svc(request).request_sync(acct, pipelineId))

    @r.post(RETRIEVE_PATH, operation_id="runSearch", summary="Run search",
            tags=["Retrieval"], response_model=S.RetrievalResponseOut, responses={400: _E400, 404: _E404})
    async def run_search(pipelineId: str, body: S.RetrievalRequest, request: Request,
                         acct: str = Depends(account_id)) -> Any:
        return await search_answer(_svc(request), acct, pipelineId, body)

    # Pipeline files
    @r.get("/pipelines/{pipelineId}/files", operation_id="listPipelineFiles", summary="List pipeline files",
           tags=["Pipeline Files"], response_model=list[S.PipelineFileOut], responses={404: _E404})
    def list_pipeline_files(pipelineId: str, request: Request, acct: str = Depends(account_id)) -> Any:
        return [_pipeline_file_out(pf) for pf in _svc(request).pipeline_files(acct, pipelineId)]

    @r.put("/pipelines/{pipelineId}/files", operation_id="addFilesToPipeline", summary="Add files to a pipeline",
           tags=["Pipeline Files"], response_model=list[S.PipelineFileOut], responses={400: _E400, 404: _E404})
    def add_files(pipelineId: str, body: list[S.PipelineFileInput], request: Request, response: Response,
                  acct: str = Depends(account_id)) -> Any:
        _warn(response, body)
        added = _svc(request).add_files(acct, pipelineId, [(item.file_id, item.metadata) for item in body])
        return [_pipeline_file_out(pf) for pf in added]

    # Pipeline data sources
    @r.get("/pipelines/{pipelineId}/data-sources", operation_id="listPipelineDataSources",
           summary="List pipeline data sources", tags=["Pipeline Data Sources"],
           response_model=list[S.DataSourceOut], responses={404: _E404})
    def list_pipeline_data_sources(pipelineId: str, request: Request, acct: str = Depends(account_id)) -> Any:
        svc = _svc(request)
        pipeline = svc.pipeline(acct, pipelineId)
        return [_data_source_out(d) for d in svc.storage.list_pipeline_data_sources(pipeline.id)]

    @r.put("/pipelines/{pipelineId}/data-sources", operation_id="addDataSourcesToPipeline",
           summary="Add data sources to a pipeline", tags=["Pipeline Data Sources"],
           response_model=list[S.DataSourceOut], responses={400: _E400, 404: _E404})
    def add_data_sources(pipelineId: str, body: list[S.PipelineDataSourceInput], request: Request,
                         response: Response, acct: str = Depends(account_id)) -> Any:
        _warn(response, body)
        svc = _svc(request)

        def maker(item: S.PipelineDataSourceInput) -> Any:
            return lambda project_id: svc.new_data_source(acct, item.name, item.source_type,
                                                          item.project_id or project_id, item.config)

        existing = [item.data_source_id for item in body if item.data_source_id is not None]
        new = [maker(item) for item in body if item.data_source_id is None]
        return [_data_source_out(d) for d in svc.attach_data_sources(acct, pipelineId, existing, new)]

    # Data sinks
    @r.get("/pipelines/{pipelineId}/data-sinks", operation_id="listPipelineDataSinks",
           summary="List pipeline data sinks", tags=["Pipeline Data Sinks"],
           response_model=list[S.DataSinkOut], responses={404: _E404})
    def list_data_sinks(pipelineId: str, request: Request, acct: str = Depends(account_id)) -> Any:
        svc = _svc(request)
        pipeline = svc.pipeline(acct, pipelineId)
        return [{"id": f"sink-{pipeline.id}", "name": "embedded", "sink_type": "embedded",
                 "config": svc.index_location(pipeline)}]

    # Jobs
    @r.get("/pipelines/{pipelineId}/jobs", operation_id="listPipelineJobs", summary="List pipeline jobs",
           tags=["Pipeline Jobs"], response_model=list[S.PipelineJobOut], responses={404: _E404})
    def list_jobs(pipelineId: str, request: Request, acct: str = Depends(account_id)) -> Any:
        return [_job_out(j) for j in _svc(request).jobs(acct, pipelineId)]

    @r.get("/pipelines/{pipelineId}/jobs/{jobId}", operation_id="getPipelineJob",
           summary="Get a pipeline job (extension)", tags=["Pipeline Jobs"], response_model=S.PipelineJobOut,
           responses={404: _E404})
    def get_job(pipelineId: str, jobId: str, request: Request, acct: str = Depends(account_id)) -> Any:
        return _job_out(_svc(request).job(acct, pipelineId, jobId))

    # Data sources
    @r.get("/data-sources", operation_id="listDataSources", summary="List data sources", tags=["Data Sources"],
           response_model=list[S.DataSourceOut], responses={400: _E400, 404: _E404})
    def list_data_sources(request: Request, project_id: str = Query(..., description="The project."),
                          acct: str = Depends(account_id)) -> Any:
        svc = _svc(request)
        svc.project(acct, project_id)
        return [_data_source_out(d) for d in svc.storage.list_data_sources(acct, project_id)]

    @r.post("/data-sources", operation_id="createDataSource", summary="Create a data source",
            tags=["Data Sources"], status_code=201, response_model=S.DataSourceOut,
            responses={400: _E400, 404: _E404})
    def create_data_source(body: S.DataSourceInput, request: Request, response: Response,
                           acct: str = Depends(account_id)) -> Any:
        _warn(response, body)
        ds = _svc(request).new_data_source(acct, body.name, body.source_type, body.project_id, body.config)
        return _data_source_out(ds)

    return r
