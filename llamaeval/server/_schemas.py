"""Request and response bodies of the API (the spec's schemas, plus the fields we add).

Request models use strict types, so a wrong JSON type is a 400 rather than a silent
conversion. Unknown request fields are accepted (real LlamaCloud clients send more) but never
silently: the response names them in a ``Warning: 299 - "unknown field(s) ignored: ..."`` header.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

PipelineStatus = Literal["idle", "syncing", "active", "error"]
FileStatus = Literal["pending", "processing", "completed", "error"]
JobStatus = Literal["pending", "running", "completed", "failed"]
Mode = Literal["fast", "accurate", "advanced"]


class _In(BaseModel):
    model_config = ConfigDict(extra="allow")  # kept to be named in the Warning header, never used


class ErrorOut(BaseModel):
    detail: str = Field(description="What went wrong, for humans.")


# -- requests -------------------------------------------------------------------------------
class CreateProjectRequest(_In):
    name: StrictStr = Field(description="Human-readable name for the new project (1..200 characters).")


class CreatePipelineRequest(_In):
    name: StrictStr = Field(description="Human-readable name for the new pipeline.")
    project_id: StrictStr = Field(description="Identifier of the project to create the pipeline in.")
    sync_interval: StrictInt | None = Field(
        None, description="Optional scheduled sync frequency in seconds (>= 1); null or 0 for none.")
    retrieval_config: dict[str, Any] | None = Field(
        None, description="Partial retrieval parameters merged over the defaults (see the engine docs).")
    chunking_config: dict[str, Any] | None = Field(
        None, description="Partial chunking parameters: chunk_size, chunk_overlap (word pieces).")
    embedding_config: dict[str, Any] | None = Field(
        None, description='{"model_name": ...}: the model embedding the chunks and queries, one of the server\'s '
                          '(GET /health lists them; default all-MiniLM-L6-v2-onnx-int8; '
                          'wordllama-l2-supercat-256 with the fast-embed extra).')


class PipelineFileInput(_In):
    file_id: StrictStr = Field(description="Identifier of the file to add to the pipeline.")
    metadata: dict[str, Any] | None = Field(None, description="Optional custom metadata (e.g. doc_id).")


class DataSourceInput(_In):
    name: StrictStr = Field(description="Human-readable name for the data source.")
    source_type: StrictStr = Field(description="Type of the data source; this server supports: directory.")
    project_id: StrictStr | None = Field(
        None, description="Project of the data source (default: the account's first project, created if none).")
    config: dict[str, Any] | None = Field(
        None, description='For "directory": {"path": "<folder under the sources root>", "recursive": true}.')


class PipelineDataSourceInput(_In):
    """DataSourceInput, or a reference ``{"data_source_id": ...}`` to an existing data source."""

    data_source_id: StrictStr | None = Field(None, description="Attach this existing data source.")
    name: StrictStr | None = Field(None, description="Name of a new data source to create and attach.")
    source_type: StrictStr | None = Field(None, description="Type of the new data source (directory).")
    project_id: StrictStr | None = None
    config: dict[str, Any] | None = None


class RetrievalRequest(_In):
    query: StrictStr = Field(description="The search query (non-empty).")
    mode: Mode = Field("fast", description="fast | accurate | advanced.")
    top_k: StrictInt = Field(10, ge=1, description="Results to return, 1..MAX_TOP_K (see /health).")


# -- responses ------------------------------------------------------------------------------
class ProjectOut(BaseModel):
    id: str
    name: str
    created_at: datetime
    updated_at: datetime


class FileOut(BaseModel):
    id: str
    name: str
    project_id: str
    file_size: int = Field(description="Size in bytes.")
    content_type: str
    created_at: datetime
    updated_at: datetime | None = None
    data_source_id: str | None = None


class PipelineOut(BaseModel):
    id: str
    name: str
    project_id: str
    status: PipelineStatus
    sync_interval: int | None = None
    created_at: datetime
    updated_at: datetime
    retrieval_config: dict[str, Any]
    chunking_config: dict[str, Any]
    embedding_model: str
    num_files: int
    num_chunks: int = Field(description="Chunks in the last completed index.")
    last_synced_at: datetime | None = None
    error: str | None = Field(None, description="Why the last sync failed, if it did.")


class PipelineFileOut(BaseModel):
    file_id: str
    name: str
    status: FileStatus
    metadata: dict[str, Any]
    pipeline_id: str
    error: str | None = Field(None, description="Why the file could not be processed (status error).")
    num_chunks: int = 0
    data_source_id: str | None = None
    updated_at: datetime | None = None


class PipelineJobOut(BaseModel):
    id: str
    pipeline_id: str
    status: JobStatus
    created_at: datetime
    completed_at: datetime | None = None
    started_at: datetime | None = None
    error: str | None = Field(None, description="Why the job failed.")
    trigger: Literal["manual", "schedule"] = "manual"
    num_files: int = Field(0, description="Files this job had to process.")
    num_processed: int = 0
    num_failed: int = Field(0, description="Files that ended in error.")
    num_chunks: int = Field(0, description="Chunks in the index the job built.")
    num_chunks_total: int = Field(0, description="Chunks of the files this job processes (known once they are cut).")
    num_chunks_done: int = Field(0, description="Of them, chunks with a vector: embedded, or found in the "
                                                "embedding cache.")
    num_chunks_cached: int = Field(0, description="Of them, chunks found in the embedding cache (not embedded "
                                                  "again).")


class DataSourceOut(BaseModel):
    id: str
    name: str
    source_type: str
    project_id: str
    config: dict[str, Any]
    created_at: datetime
    updated_at: datetime | None = None


class DataSinkOut(BaseModel):
    id: str
    name: str
    sink_type: str
    config: dict[str, Any]


class RetrievalResultOut(BaseModel):
    text: str
    score: float
    metadata: dict[str, Any]


class RetrievalResponseOut(BaseModel):
    results: list[RetrievalResultOut]
    mode: Mode
    top_k: int
    retrieval_config: dict[str, Any]


class DeletedOut(BaseModel):
    id: str
    deleted: StrictBool = True


class HealthOut(BaseModel):
    status: str
    version: str
    max_top_k: int | None = None
    supported_extensions: list[str] | None = None
    supported_source_types: list[str] | None = None
    embedding_models: list[str] | None = Field(
        None, description="Models a pipeline's embedding_config may name (a model whose extra is not installed is "
                          "refused with a message naming the extra).")
