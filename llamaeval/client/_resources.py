"""Resource namespaces (``client.projects``, ``client.pipelines.files``, ...).

Written once for both clients: each method validates, builds an operation
(:mod:`llamaeval.client._operations`) and hands it to the client's driver.
On :class:`~llamaeval.client.LlamaCloud` a method returns its result; on
:class:`~llamaeval.client.AsyncLlamaCloud` the same method returns an awaitable
of that result.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llamaeval.client import _operations as ops

if TYPE_CHECKING:
    import pandas as pd

    from llamaeval.client._records import DataSource, File, Pipeline, PipelineJob, Project
    from llamaeval.client._retrieval import RetrievalResult


class _Namespace:
    __slots__ = ("_client",)

    def __init__(self, client: Any) -> None:
        self._client = client

    def _run(self, op: Any) -> Any:
        return self._client._run(op)

    @property
    def _core(self) -> Any:
        return self._client._core

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._client!r}>"


class Projects(_Namespace):
    """Projects: ``list``, ``create``, ``get``."""

    __slots__ = ()

    def list(self) -> pd.DataFrame:
        """All projects of the account, one row each."""
        return self._run(ops.list_projects(self._core))

    def create(self, name: str) -> Project:
        """Create a project (not retried if the server may have created it)."""
        return self._run(ops.create_project(self._core, name))

    def get(self, project_id: str | Project) -> Project:
        """One project by id (NotFoundError if absent)."""
        return self._run(ops.get_project(self._core, project_id))


class Files(_Namespace):
    """Uploads: one file, a DataFrame of documents, or a folder."""

    __slots__ = ()

    def upload(self, path_or_bytes: str | os.PathLike[str] | bytes | Any, project_id: str | Project,
               name: str | None = None) -> File:
        """Upload one file (a path, bytes with ``name=``, or a binary file object)."""
        return self._run(ops.upload_file(self._core, path_or_bytes, project_id, name))

    def upload_documents(self, documents: pd.DataFrame | Iterable[Mapping[str, Any]], project_id: str | Project,
                         pipeline_id: str | Pipeline | None = None, *, id_column: str = "doc_id",
                         text_column: str = "text", title_column: str | None = "title",
                         metadata_columns: Iterable[str] = (), batch_size: int = 50,
                         progress: bool = True) -> pd.DataFrame:
        """Upload one ``<doc_id>.txt`` per row (``title`` + blank line + ``text``), in batches.

        With ``pipeline_id``, each batch is then added to the pipeline with metadata
        ``{"doc_id": <id>, <metadata_columns>...}`` (no sync is started). Returns a frame
        ``doc_id, file_id, file_name, file_size, metadata.*``.
        """
        return self._run(ops.upload_documents(
            self._core, documents, project_id, pipeline_id, id_column=id_column, text_column=text_column,
            title_column=title_column, metadata_columns=metadata_columns, batch_size=batch_size,
            progress=progress))

    def upload_folder(self, folder: str | os.PathLike[str], project_id: str | Project,
                      pipeline_id: str | Pipeline | None = None, *, pattern: str = "**/*",
                      metadata: Mapping[str, Any] | Callable[[Path], Mapping[str, Any]] | None = None,
                      batch_size: int = 50, progress: bool = True) -> pd.DataFrame:
        """Upload every file under ``folder`` matching ``pattern`` (hidden files skipped), in batches.

        With ``pipeline_id``, each batch is added to the pipeline with metadata
        ``{"file_path": <relative path>, **metadata}`` (``metadata`` a dict or a function
        of the path). Returns a frame ``path, file_id, file_name, file_size, metadata.*``.
        """
        return self._run(ops.upload_folder(
            self._core, folder, project_id, pipeline_id, pattern=pattern, metadata=metadata,
            batch_size=batch_size, progress=progress))


class PipelineFiles(_Namespace):
    """Files of one pipeline: ``list``, ``add``."""

    __slots__ = ()

    def list(self, pipeline_id: str | Pipeline) -> pd.DataFrame:
        """Files of the pipeline with their status and ``metadata.*`` columns."""
        return self._run(ops.list_pipeline_files(self._core, pipeline_id))

    def add(self, pipeline_id: str | Pipeline, files: Iterable[Any] | pd.DataFrame) -> pd.DataFrame:
        """Add uploaded files: ids, ``{"file_id", "metadata"}`` dicts, or a frame with those columns.

        Returns the pipeline files the server reports back (empty if it sends none).
        """
        return self._run(ops.add_pipeline_files(self._core, pipeline_id, files))


class PipelineDataSources(_Namespace):
    """Data sources connected to one pipeline: ``list``, ``add``."""

    __slots__ = ()

    def list(self, pipeline_id: str | Pipeline) -> pd.DataFrame:
        """Data sources connected to the pipeline."""
        return self._run(ops.list_pipeline_data_sources(self._core, pipeline_id))

    def add(self, pipeline_id: str | Pipeline, data_sources: Iterable[Mapping[str, Any] | DataSource | str]
            ) -> pd.DataFrame:
        """Connect data sources: new ones as dicts (``name``, ``source_type``, ``config``), or
        existing ones by id / DataSource record (sent as ``{"data_source_id": ...}``)."""
        return self._run(ops.add_pipeline_data_sources(self._core, pipeline_id, data_sources))


class PipelineDataSinks(_Namespace):
    """Data sinks of one pipeline: ``list``."""

    __slots__ = ()

    def list(self, pipeline_id: str | Pipeline) -> pd.DataFrame:
        """Data sinks configured for the pipeline."""
        return self._run(ops.list_pipeline_data_sinks(self._core, pipeline_id))


class PipelineJobs(_Namespace):
    """Ingestion jobs of one pipeline: ``list``."""

    __slots__ = ()

    def list(self, pipeline_id: str | Pipeline) -> pd.DataFrame:
        """Jobs of the pipeline (status categorical, tz-aware timestamps)."""
        return self._run(ops.list_pipeline_jobs(self._core, pipeline_id))


class PipelineDocuments(_Namespace):
    """Text documents of one pipeline (real LlamaCloud API only): ``upsert``, ``list``, ``delete``."""

    __slots__ = ()

    def upsert(self, pipeline_id: str | Pipeline, documents: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
        """Add or replace ``{"id", "text", "metadata"}`` documents; ingestion starts by itself."""
        return self._run(ops.upsert_documents(self._core, pipeline_id, documents))

    def list(self, pipeline_id: str | Pipeline) -> pd.DataFrame:
        """Every document (all pages): ``id, text, status_raw, metadata.*``."""
        return self._run(ops.list_documents(self._core, pipeline_id))

    def delete(self, pipeline_id: str | Pipeline, document_id: str) -> None:
        """Delete one document (its chunks leave the index with the next ingestion)."""
        return self._run(ops.delete_document(self._core, pipeline_id, document_id))


class Pipelines(_Namespace):
    """Pipelines, their sub-resources (``files``, ``documents``, ``data_sources``, ``data_sinks``,
    ``jobs``), ingestion status and retrieval."""

    __slots__ = ("files", "documents", "data_sources", "data_sinks", "jobs")

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.files = PipelineFiles(client)
        self.documents = PipelineDocuments(client)
        self.data_sources = PipelineDataSources(client)
        self.data_sinks = PipelineDataSinks(client)
        self.jobs = PipelineJobs(client)

    def list(self, project_id: str | Project | None = None) -> pd.DataFrame:
        """Pipelines of a project; without ``project_id``, of every project of the account."""
        return self._run(ops.list_pipelines(self._core, project_id))

    def create(self, name: str, project_id: str | Project, sync_interval: int | None = None,
               retrieval_config: Mapping[str, Any] | Any = None,
               chunking_config: Mapping[str, Any] | Any = None, *,
               preset_retrieval_parameters: Mapping[str, Any] | None = None,
               embedding_model: str | None = None) -> Pipeline:
        """Create a pipeline; configs are partial dicts (or have ``.to_dict()``). ``chunking_config``
        ({"chunk_size", "chunk_overlap"}) is the real API's ``transform_config``;
        ``sync_interval`` (seconds) is simplified-API only, ``preset_retrieval_parameters`` real-API only;
        ``embedding_model`` names the model that embeds its chunks and queries (the local server's
        ``/health`` lists them; default MiniLM)."""
        return self._run(ops.create_pipeline(self._core, name, project_id, sync_interval,
                                             retrieval_config, chunking_config, preset_retrieval_parameters,
                                             embedding_model))

    def get(self, pipeline_id: str | Pipeline) -> Pipeline:
        """One pipeline by id."""
        return self._run(ops.get_pipeline(self._core, pipeline_id))

    def update(self, pipeline_id: str | Pipeline, *, name: str | None = None,
               preset_retrieval_parameters: Mapping[str, Any] | None = None) -> Pipeline:
        """Rename a pipeline and/or replace its ``preset_retrieval_parameters`` (the retrieve
        fields a request omits; the whole object is replaced). Real API only."""
        return self._run(ops.update_pipeline(self._core, pipeline_id, name, preset_retrieval_parameters))

    def delete(self, pipeline_id: str | Pipeline) -> None:
        """Delete a pipeline."""
        return self._run(ops.delete_pipeline(self._core, pipeline_id))

    def sync(self, pipeline_id: str | Pipeline) -> PipelineJob:
        """Start an ingestion job; returns it at once (see ``wait_for_sync``). The real API
        answers the pipeline: the job then comes from its ingestion status."""
        return self._run(ops.sync_pipeline(self._core, pipeline_id))

    def check_ready(self, pipeline_id: str | Pipeline, query: str = "the") -> dict[str, Any]:
        """Pre-flight: ingested files and a smoke retrieve that finds a chunk; returns
        ``{"files", "completed", "smoke_results"}``, else raises EmptyPipelineError."""
        return self._run(ops.check_ready(self._core, pipeline_id, query))

    def status(self, pipeline_id: str | Pipeline) -> PipelineJob:
        """Ingestion state now, as a job record (``status`` normalised, ``extra["status_raw"]``,
        ``error`` with the real API's error steps)."""
        return self._run(ops.pipeline_status(self._core, pipeline_id))

    def retrieve(self, pipeline_id: str | Pipeline, query: str, mode: str | None = None,
                 top_k: int | None = None, **params: Any) -> RetrievalResult:
        """Run one query; ``top_k >= 1``.

        Simplified API: ``mode`` in fast/accurate/advanced (default fast), ``top_k`` default 10;
        extra keyword arguments are sent as server extensions. Real API: ``mode`` None or a
        preset (``fast``, ``accurate``: see ``llamaeval.client.MODE_PRESETS``), the keyword
        arguments are its retrieve parameters (``alpha``, ``dense_similarity_top_k``,
        ``sparse_similarity_top_k``, ``enable_reranking``, ``rerank_top_n``, ``retrieval_mode``,
        ``files_top_k``, ``search_filters`` (see ``metadata_filters``), ``dense_similarity_cutoff``)
        and ``top_k`` is the node count; what is not given is left to the pipeline's
        ``preset_retrieval_parameters``. Invalid arguments raise ConfigurationError before sending.
        """
        return self._run(ops.retrieve(self._core, pipeline_id, query, mode, top_k, params))

    def wait_for_sync(self, pipeline_id: str | Pipeline, timeout: float = 600.0, poll_interval: float = 0.5,
                      progress: bool = True, job_id: str | None = None,
                      on_progress: Callable[[PipelineJob], None] | None = None) -> PipelineJob:
        """Wait until ingestion finishes: the newest job (or ``job_id``) in the simplified API,
        ``…/status`` in the real one (``PARTIAL_SUCCESS`` warns).

        Shows a tqdm bar when ``progress``: chunks embedded / total with rate and ETA when the
        server reports them (the local server; ``PipelineJob.progress``), else processed files.
        ``on_progress(job)`` is called with the job at every poll (simplified API). Raises
        SyncError with the error (the real API's error steps) when it fails, or when ``timeout``
        seconds pass first.
        """
        return self._run(ops.wait_for_sync(self._core, pipeline_id, timeout, poll_interval, progress, job_id,
                                           on_progress))


class DataSources(_Namespace):
    """Project-level data sources: ``list``, ``create``."""

    __slots__ = ()

    def list(self, project_id: str | Project) -> pd.DataFrame:
        """Data sources of a project."""
        return self._run(ops.list_data_sources(self._core, project_id))

    def create(self, name: str, source_type: str, config: Mapping[str, Any] | None = None,
               project_id: str | Project | None = None) -> DataSource:
        """Create a data source (the server lists the ``source_type`` values it supports)."""
        return self._run(ops.create_data_source(self._core, name, source_type, config, project_id))
