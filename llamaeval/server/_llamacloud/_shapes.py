"""Wire shapes of the real LlamaCloud dialect: storage records -> the JSON the official SDKs
validate (required fields, upper-case statuses, ``retrieval_nodes``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from llamaeval.server._storage import DataSink, DataSource, Job, Pipeline, PipelineFile, Project, StoredFile
from llamaeval.server._sync import CANCELLED, stopped

#: What the local server embeds with by default: a hosted provider's ``embedding_config`` (OpenAI,
#: Cohere, ...) is recorded and embedded with this; a ``HUGGINGFACE_API_EMBEDDING`` config chooses one
#: of the server's own models by ``component.model_name`` (``LOCAL_EMBEDDING_TYPE``).
LOCAL_EMBEDDING_TYPE = "HUGGINGFACE_API_EMBEDDING"
LOCAL_EMBEDDING = {"type": "HUGGINGFACE_API_EMBEDDING",
                   "component": {"model_name": "sentence-transformers/all-MiniLM-L6-v2",
                                 "class_name": "HuggingFaceInferenceAPIEmbedding"}}
_EMBEDDING_TYPES = ("MANAGED_OPENAI_EMBEDDING", "OPENAI_EMBEDDING", "AZURE_EMBEDDING", "BEDROCK_EMBEDDING",
                    "COHERE_EMBEDDING", "GEMINI_EMBEDDING", "HUGGINGFACE_API_EMBEDDING", "VERTEXAI_EMBEDDING")
#: The local file statuses as the real API names them (a completed file waits for its index).
FILE_STATUS = {"pending": "NOT_STARTED", "processing": "IN_PROGRESS", "completed": "SUCCESS", "error": "ERROR"}
_PIPELINE_FILES = uuid.UUID("0b8d3c52-8f0e-4d55-a8c1-5f9d0e3b7a10")  # namespace of pipeline-file ids


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def project_out(p: Project, default_id: str) -> dict[str, Any]:
    return {"id": p.id, "name": p.name, "organization_id": p.account_id, "is_default": p.id == default_id,
            "created_at": iso(p.created_at), "updated_at": iso(p.updated_at)}


def file_out(f: StoredFile) -> dict[str, Any]:
    """A File (legacy upload) / FileV2 (beta upload): both need id, name, project_id."""
    return {"id": f.id, "name": f.name, "project_id": f.project_id, "file_size": f.file_size,
            "file_type": f.content_type, "purpose": f.purpose, "external_file_id": f.external_file_id,
            "data_source_id": f.data_source_id, "created_at": iso(f.created_at), "updated_at": iso(f.updated_at),
            "last_modified_at": iso(f.updated_at)}


def transform_out(chunking: dict[str, Any]) -> dict[str, Any]:
    return {"mode": "auto", "chunk_size": chunking["chunk_size"], "chunk_overlap": chunking["chunk_overlap"]}


def embedding_out(sent: Any, model: str | None = None) -> dict[str, Any]:
    """The embedding config a client sent when it names a known type, else the local one of the
    pipeline's ``model`` (default: MiniLM's)."""
    from llamaeval.engine._embed import DEFAULT_MODEL_NAME

    if isinstance(sent, dict) and sent.get("type") in _EMBEDDING_TYPES:
        return sent
    if model is None or model == DEFAULT_MODEL_NAME:
        return LOCAL_EMBEDDING
    return {"type": LOCAL_EMBEDDING_TYPE, "component": {**LOCAL_EMBEDDING["component"], "model_name": model}}


def pipeline_out(p: Pipeline, sink: DataSink | None = None) -> dict[str, Any]:
    a = p.attributes
    return {"id": p.id, "name": p.name, "project_id": p.project_id,
            "embedding_config": embedding_out(a.get("embedding_config"), p.embedding_model),
            "transform_config": transform_out(p.chunking_config),
            "pipeline_type": a.get("pipeline_type") or "MANAGED",
            "preset_retrieval_parameters": a.get("preset_retrieval_parameters") or {},
            "llama_parse_parameters": a.get("llama_parse_parameters"),
            "data_sink_id": sink.id if sink else None, "data_sink": data_sink_out(sink) if sink else None,
            "status": "CREATED", "created_at": iso(p.created_at), "updated_at": iso(p.updated_at),
            # llamaeval's own view of the pipeline (extra fields are allowed by every SDK)
            "embedding_model": p.embedding_model, "num_files": p.num_files, "num_chunks": p.num_chunks,
            "sync_status": p.status, "last_synced_at": iso(p.last_synced_at)}


def pipeline_file_id(pipeline_id: str, file_id: str) -> str:
    """A PipelineFile's own id (stable for the pair)."""
    return str(uuid.uuid5(_PIPELINE_FILES, f"{pipeline_id}\n{file_id}"))


def file_status(pf: PipelineFile, busy: bool) -> str:
    """A file is SUCCESS once searchable: completed and no sync of its pipeline still running."""
    status = FILE_STATUS.get(pf.status, "NOT_STARTED")
    return "IN_PROGRESS" if status == "SUCCESS" and busy else status


def pipeline_file_out(pf: PipelineFile, stored: StoredFile | None, busy: bool) -> dict[str, Any]:
    return {"id": pipeline_file_id(pf.pipeline_id, pf.file_id), "pipeline_id": pf.pipeline_id,
            "file_id": pf.file_id, "name": pf.name, "custom_metadata": pf.metadata,
            "status": file_status(pf, busy), "status_updated_at": iso(pf.updated_at),
            "data_source_id": pf.data_source_id,
            "file_size": stored.file_size if stored else None, "file_type": stored.content_type if stored else None,
            "project_id": stored.project_id if stored else None, "created_at": iso(pf.added_at),
            "updated_at": iso(pf.updated_at), "num_chunks": pf.num_chunks, "error": pf.error}


def _step(error: str) -> str:
    return "MANAGED_INGESTION" if error.startswith(("interrupted", "nothing to index")) else "PARSE"


def ingestion_status(files: list[PipelineFile], jobs: list[Job]) -> dict[str, Any]:
    """ManagedIngestionStatusResponse of a pipeline (or of one file: ``files`` of one)."""
    last = jobs[-1] if jobs else None
    busy = any(j.status in ("pending", "running") for j in jobs)
    job_id = last.id if last else None
    errors = [{"job_id": job_id or "", "message": f"{pf.name}: {pf.error}", "step": _step(pf.error)}
              for pf in files if pf.status == "error" and pf.error]
    if busy or any(pf.status == "processing" for pf in files):
        status = "IN_PROGRESS"
    elif last is None or (files and all(pf.status == "pending" for pf in files)):
        status = "NOT_STARTED"
    elif last.status == "failed":  # stopped (cancelled or interrupted by a server stop): CANCELLED
        status = "CANCELLED" if stopped(last.error) else "ERROR"
        if last.error and last.error != CANCELLED:
            errors.append({"job_id": last.id, "message": last.error, "step": "MANAGED_INGESTION"})
    elif errors and len(errors) < len(files):
        status = "PARTIAL_SUCCESS"
    elif errors:
        status = "ERROR"
    else:
        status = "SUCCESS"
    return {"status": status, "job_id": job_id, "error": errors,
            "effective_at": iso(last.completed_at or last.created_at) if last else None}


def document_out(doc_id: str, text: str, metadata: dict[str, Any], status: str | None = None) -> dict[str, Any]:
    return {"id": doc_id, "text": text, "metadata": metadata, "excluded_embed_metadata_keys": [],
            "excluded_llm_metadata_keys": [], "status_metadata": {"status": status} if status else None}


def node_out(entry: Any, score: float | None, pipeline_id: str, source_id: str, text: str | None = None,
             extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A NodeWithScore: the chunk (or whole file) as a TextNode, its metadata in ``extra_info``."""
    info = {"file_name": entry.file_name, **entry.metadata, "file_id": entry.file_id, "pipeline_id": pipeline_id,
            **(extra or {})}
    node = {"id_": entry.chunk_id if text is None else entry.file_id, "text": entry.text if text is None else text,
            "extra_info": info, "start_char_idx": entry.start_char if text is None else 0,
            "end_char_idx": entry.end_char if text is None else len(text),
            "relationships": {"1": {"node_id": source_id, "node_type": "4", "metadata": {}, "class_name":
                                    "RelatedNodeInfo"}},
            "excluded_embed_metadata_keys": [], "excluded_llm_metadata_keys": [],
            "metadata_seperator": "\n", "text_template": "{metadata_str}\n\n{content}", "class_name": "TextNode"}
    return {"node": node, "score": score, "class_name": "NodeWithScore"}


def data_source_out(d: DataSource) -> dict[str, Any]:
    return {"id": d.id, "name": d.name, "project_id": d.project_id, "source_type": d.source_type,
            "component": d.config, "custom_metadata": None,
            "created_at": iso(d.created_at), "updated_at": iso(d.updated_at)}


def pipeline_data_source_out(d: DataSource, pipeline: Pipeline) -> dict[str, Any]:
    out = data_source_out(d)
    out.update(id=d.id, data_source_id=d.id, pipeline_id=pipeline.id,
               last_synced_at=iso(pipeline.last_synced_at or pipeline.created_at),
               status={"active": "SUCCESS", "syncing": "IN_PROGRESS", "error": "ERROR"}.get(pipeline.status,
                                                                                            "NOT_STARTED"),
               sync_interval=float(pipeline.sync_interval) if pipeline.sync_interval else None)
    return out


def data_sink_out(s: DataSink) -> dict[str, Any]:
    return {"id": s.id, "name": s.name, "project_id": s.project_id, "sink_type": s.sink_type,
            "component": s.component, "created_at": iso(s.created_at), "updated_at": iso(s.updated_at)}


def job_out(j: Job, project_id: str) -> dict[str, Any]:
    """A job record of ``GET /api/v1/jobs``."""
    status = {"pending": "PENDING", "running": "PENDING", "completed": "SUCCESS"}.get(j.status)
    if status is None:
        status = "CANCELLED" if stopped(j.error) else "ERROR"
    if status == "SUCCESS" and j.num_failed:
        status = "PARTIAL_SUCCESS"
    return {"job_record": {"id": j.id, "job_name": "pipeline_sync", "partitions": {"pipeline_id": j.pipeline_id},
                           "project_id": project_id, "status": status, "error_message": j.error,
                           "created_at": iso(j.created_at), "started_at": iso(j.started_at),
                           "ended_at": iso(j.completed_at), "updated_at": iso(j.completed_at or j.created_at),
                           "parameters": {"trigger": j.trigger, "num_files": j.num_files,
                                          "num_processed": j.num_processed, "num_failed": j.num_failed,
                                          "num_chunks": j.num_chunks, "num_chunks_total": j.num_chunks_total,
                                          "num_chunks_done": j.num_chunks_done,
                                          "num_chunks_cached": j.num_chunks_cached}}}
