"""The server's one storage interface for metadata, and the records it stores.

Every object belongs to an account; every getter takes the caller's ``account_id``
and returns None for objects of other accounts, so the API answers 404 and ids do
not leak. SQLite implements it (``_sqlite.SQLiteStorage``, the default) and so does
PostgreSQL (``_postgres.PostgresStorage``, ``--database postgresql://...``); the tests of the
server's contract run on both (their SQL is one, ``_sql_storage.SQLStorage``). File contents are
kept by ``_file_store`` (the data dir, or PostgreSQL); processed chunks and indexes are on disk
(``_config.DataLayout``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "Account", "ApiKey", "Project", "StoredFile", "Pipeline", "PipelineFile",
    "DataSource", "DataSink", "Job", "Storage", "utc_now", "JSON_FIELDS", "UPDATABLE",
]

#: Record fields holding JSON values (stored as JSON text by every implementation).
JSON_FIELDS = frozenset({"retrieval_config", "chunking_config", "metadata", "config", "attributes", "component"})
#: table -> the fields its ``update_*`` method may change (others are a ValueError naming them).
UPDATABLE: dict[str, frozenset[str]] = {
    "files": frozenset({"name", "file_size", "content_type", "sha256", "updated_at"}),
    "pipelines": frozenset({"status", "updated_at", "num_chunks", "last_synced_at", "index_version", "error",
                            "last_sync_started_at", "name", "sync_interval", "attributes", "retrieval_config",
                            "chunking_config", "embedding_model"}),
    "pipeline_files": frozenset({"name", "status", "metadata", "error", "num_chunks", "processed_key",
                                 "updated_at"}),
    "data_sources": frozenset({"name", "config", "updated_at"}),
    "data_sinks": frozenset({"name", "component", "updated_at"}),
    "jobs": frozenset({"status", "started_at", "completed_at", "error", "num_files", "num_processed",
                       "num_failed", "num_chunks", "num_chunks_total", "num_chunks_done", "num_chunks_cached"}),
}


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


@dataclass
class Account:
    id: str
    name: str
    created_at: datetime


@dataclass
class ApiKey:
    id: str
    account_id: str
    name: str
    prefix: str  # first characters of the key, for display; the key itself is never stored
    created_at: datetime


@dataclass
class Project:
    id: str
    account_id: str
    name: str
    created_at: datetime
    updated_at: datetime


@dataclass
class StoredFile:
    """An uploaded file (or a file copied from a data source); its bytes are in the file store by ``id``."""

    id: str
    account_id: str
    project_id: str
    name: str
    file_size: int  # bytes
    content_type: str
    sha256: str
    created_at: datetime
    updated_at: datetime
    data_source_id: str | None = None
    source_path: str | None = None  # path relative to the data source's folder
    external_file_id: str | None = None  # the client's own id (a document's id for pipeline documents)
    purpose: str | None = None  # why it was uploaded (real API: user_data, ...; "document": pipeline document text)


@dataclass
class Pipeline:
    id: str
    account_id: str
    project_id: str
    name: str
    status: str  # idle | syncing | active | error
    sync_interval: int | None  # seconds
    retrieval_config: dict[str, Any]
    chunking_config: dict[str, Any]
    embedding_model: str
    created_at: datetime
    updated_at: datetime
    num_files: int = 0
    num_chunks: int = 0  # chunks in the current (last completed) index
    last_synced_at: datetime | None = None
    index_version: str | None = None  # directory name of the current index; None before any sync
    error: str | None = None  # why the last sync failed
    last_sync_started_at: datetime | None = None
    # what a dialect stores beyond the common record (the real API's pipeline_type,
    # embedding_config, transform_config, preset_retrieval_parameters, data_sink_id, ...)
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class PipelineFile:
    pipeline_id: str
    file_id: str
    name: str
    status: str  # pending | processing | completed | error
    metadata: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    num_chunks: int = 0
    processed_key: str | None = None  # content+config key of the chunks on disk
    data_source_id: str | None = None
    added_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass
class DataSource:
    id: str
    account_id: str
    project_id: str
    name: str
    source_type: str
    config: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass
class DataSink:
    """Where a pipeline's vectors go (the real API's top-level resource); the local server
    always indexes on its own disk and records the sink as configured."""

    id: str
    account_id: str
    project_id: str
    name: str
    sink_type: str
    component: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass
class Job:
    id: str
    pipeline_id: str
    account_id: str
    status: str  # pending | running | completed | failed
    created_at: datetime
    trigger: str = "manual"  # manual | schedule
    started_at: datetime | None = None
    completed_at: datetime | None = None
    error: str | None = None
    num_files: int = 0  # files this job had to process
    num_processed: int = 0
    num_failed: int = 0
    num_chunks: int = 0  # chunks in the index the job built
    # while it runs: chunks of the files it processes (known once they are cut), of them with a
    # vector (embedded, or found in the embedding cache), and of them found in the cache
    num_chunks_total: int = 0
    num_chunks_done: int = 0
    num_chunks_cached: int = 0


@runtime_checkable
class Storage(Protocol):
    """Metadata persistence. Implementations must be safe to call from several threads."""

    # accounts and keys
    def create_account(self, name: str) -> Account: ...
    def get_account(self, account_id: str) -> Account | None: ...
    def create_api_key(self, account_id: str, name: str, key_hash: str, prefix: str) -> ApiKey: ...
    def account_for_key_hash(self, key_hash: str) -> str | None: ...
    def list_api_keys(self) -> list[ApiKey]: ...

    # projects
    def create_project(self, account_id: str, name: str) -> Project: ...
    def get_project(self, account_id: str, project_id: str) -> Project | None: ...
    def list_projects(self, account_id: str) -> list[Project]: ...

    # files
    def create_file(self, record: StoredFile) -> StoredFile: ...
    def get_file(self, account_id: str, file_id: str) -> StoredFile | None: ...
    def update_file(self, file_id: str, **changes: Any) -> None: ...
    def find_source_file(self, data_source_id: str, source_path: str) -> StoredFile | None: ...
    def list_files(self, account_id: str, project_id: str) -> list[StoredFile]: ...
    def delete_file(self, file_id: str) -> None: ...

    # pipelines
    def create_pipeline(self, record: Pipeline) -> Pipeline: ...
    def get_pipeline(self, account_id: str, pipeline_id: str) -> Pipeline | None: ...
    def get_pipeline_any(self, pipeline_id: str) -> Pipeline | None: ...
    def get_pipeline_index(self, account_id: str, pipeline_id: str) -> tuple[str, str | None] | None:
        """(status, index_version) of the account's pipeline, None if absent: the retrieve
        hot path, without decoding the pipeline's configs."""
        ...
    def get_pipeline_attributes(self, account_id: str, pipeline_id: str) -> dict[str, Any] | None:
        """The pipeline's dialect attributes alone (the real retrieve reads its presets)."""
        ...
    def list_pipelines(self, account_id: str, project_id: str) -> list[Pipeline]: ...
    def list_all_pipelines(self) -> list[Pipeline]: ...
    def list_scheduled_pipelines(self) -> list[Pipeline]: ...
    def update_pipeline(self, pipeline_id: str, **changes: Any) -> None: ...
    def delete_pipeline(self, pipeline_id: str) -> None: ...

    # files in pipelines
    def upsert_pipeline_file(self, record: PipelineFile) -> PipelineFile: ...
    def get_pipeline_file(self, pipeline_id: str, file_id: str) -> PipelineFile | None: ...
    def list_pipeline_files(self, pipeline_id: str) -> list[PipelineFile]: ...
    def update_pipeline_file(self, pipeline_id: str, file_id: str, **changes: Any) -> None: ...
    def remove_pipeline_file(self, pipeline_id: str, file_id: str) -> None: ...

    # data sources
    def create_data_source(self, record: DataSource) -> DataSource: ...
    def get_data_source(self, account_id: str, data_source_id: str) -> DataSource | None: ...
    def list_data_sources(self, account_id: str, project_id: str) -> list[DataSource]: ...
    def attach_data_source(self, pipeline_id: str, data_source_id: str) -> None: ...
    def list_pipeline_data_sources(self, pipeline_id: str) -> list[DataSource]: ...
    def update_data_source(self, data_source_id: str, **changes: Any) -> None: ...
    def detach_data_source(self, pipeline_id: str, data_source_id: str) -> None: ...
    def delete_data_source(self, data_source_id: str) -> None: ...

    # data sinks
    def create_data_sink(self, record: DataSink) -> DataSink: ...
    def get_data_sink(self, account_id: str, data_sink_id: str) -> DataSink | None: ...
    def list_data_sinks(self, account_id: str, project_id: str) -> list[DataSink]: ...
    def update_data_sink(self, data_sink_id: str, **changes: Any) -> None: ...
    def delete_data_sink(self, data_sink_id: str) -> None: ...

    # jobs: a change of a job's state and its pipeline's status is ONE call, one transaction,
    # so no reader ever sees a job finished while its pipeline still says syncing (or the reverse)
    def create_job(self, record: Job, pipeline_changes: dict[str, Any] | None = None) -> Job:
        """Insert ``record`` and apply ``pipeline_changes`` to its pipeline, atomically."""
        ...
    def get_job(self, job_id: str) -> Job | None: ...
    def list_jobs(self, pipeline_id: str) -> list[Job]: ...
    def list_unfinished_jobs(self) -> list[Job]: ...
    def update_job(self, job_id: str, **changes: Any) -> None: ...
    def update_job_and_pipeline(self, job_id: str, job_changes: dict[str, Any], pipeline_id: str,
                                pipeline_changes: dict[str, Any]) -> None:
        """Change a job and its pipeline in one transaction (a pipeline that no longer exists is
        left alone)."""
        ...

    def close(self) -> None: ...
