"""The server's rules, once, for every dialect: projects, files, pipelines, pipeline files,
data sources and sinks, sync and search. Services know no wire format and no HTTP: they take
and return storage records and engine objects, and raise :class:`ServiceError` subclasses that
each router turns into its dialect's status code and body."""

from __future__ import annotations

import hashlib
import math
import mimetypes
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, BinaryIO, Callable, Iterator, TypeVar

from llamaeval.server._boundary import INT64_MAX, INT64_MIN, text_problem
from llamaeval.server._config import DataLayout, ServerConfig
from llamaeval.server._file_store import FileStore, file_store
from llamaeval.server._offload import RequestLoad
from llamaeval.server._storage import (
    DataSink,
    DataSource,
    Job,
    Pipeline,
    PipelineFile,
    Project,
    Storage,
    StoredFile,
    utc_now,
)
from llamaeval.server._sync import SUPPORTED_SOURCE_TYPES, IndexCache, SearchGate, SyncService, resolve_source_dir

T = TypeVar("T")

__all__ = [
    "ServiceError", "InvalidInput", "NotFound", "TooLarge", "Services", "SearchOutcome",
    "RESERVED_METADATA", "DEFAULT_PROJECT", "DOCUMENT_PURPOSE", "MAX_SYNC_INTERVAL", "check_text",
]

#: Metadata keys the server sets on every search result; a file's custom metadata may not use them.
RESERVED_METADATA = ("file_id", "file_name", "pipeline_id", "chunk_id", "chunk_index", "start_char",
                     "end_char", "scores")
#: The project every account has (LlamaCloud's SDKs look projects up by this name).
DEFAULT_PROJECT = "Default"
#: ``StoredFile.purpose`` of a pipeline document (text sent inline, not uploaded as a file).
DOCUMENT_PURPOSE = "document"
_DOCUMENTS = uuid.UUID("6d1f7c0e-3b7a-4f7e-9a43-2f1f0b2f9d51")  # namespace of document file ids
MAX_NAME = 200
#: Longest schedule (seconds, about 31 years): larger values are refused, not overflowed.
MAX_SYNC_INTERVAL = 10 ** 9
#: Uploads are copied to disk in pieces of this size (never held whole in memory).
UPLOAD_CHUNK = 1024 * 1024


class ServiceError(Exception):
    """A request the rules refuse; ``message`` says why in words a user can act on."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ServiceError):
    """The input breaks a rule (400)."""


class NotFound(ServiceError):
    """No such object for this account (404: other accounts' objects do not exist)."""

    def __init__(self, kind: str, ident: str) -> None:
        super().__init__(f"{kind} {ident!r} not found")


class TooLarge(ServiceError):
    """The upload (or a query) is over the server's limit (413)."""


@dataclass
class SearchOutcome:
    """One search: the engine's response, the index's config summary and the server's
    total seconds (for ``Server-Timing``)."""

    response: Any
    config_summary: dict[str, Any]
    total_s: float


@dataclass
class Services:
    """Everything one app instance owns (created at startup, never at import), and the rules."""

    config: ServerConfig
    storage: Storage
    layout: DataLayout
    embedder: Any
    indexes: IndexCache
    sync: SyncService
    #: the lane of heavy queries (at least ``config.heavy_query_chars`` long): one at a time, paced
    heavy_lane: threading.Lock = field(default_factory=threading.Lock)
    _heavy_free_at: float = field(default=0.0, init=False, repr=False)
    #: searches running at once: the cores, one fewer while a sync runs (set in __post_init__)
    gate: SearchGate | None = None
    #: API requests in flight, and whether a search runs inline or on a worker thread
    load: RequestLoad = field(default_factory=RequestLoad)

    def __post_init__(self) -> None:
        if self.gate is None:
            slots = self.config.search_slots or os.cpu_count() or 1
            self.gate = SearchGate(slots, reserve=lambda: self.sync.busy)

    # -- projects ---------------------------------------------------------------------------
    def list_projects(self, acct: str) -> list[Project]:
        return self.storage.list_projects(acct)

    def create_project(self, acct: str, name: str) -> Project:
        return self.storage.create_project(acct, check_name(name, "project name"))

    def project(self, acct: str, project_id: str) -> Project:
        return found(self.storage.get_project(acct, project_id), "project", project_id)

    def default_project(self, acct: str) -> Project:
        """The account's ``Default`` project, created on first need (real accounts always have one)."""
        for p in self.storage.list_projects(acct):
            if p.name == DEFAULT_PROJECT:
                return p
        return self.storage.create_project(acct, DEFAULT_PROJECT)

    def project_or_default(self, acct: str, project_id: str | None) -> Project:
        return self.project(acct, project_id) if project_id else self.default_project(acct)

    # -- files ------------------------------------------------------------------------------
    @property
    def files(self) -> FileStore:
        """Where file bytes live: the data dir, or PostgreSQL on a PostgreSQL server."""
        return file_store(self.storage, self.layout)

    def upload(self, acct: str, project_id: str, file_name: str | None, stream: BinaryIO,
               content_type: str | None, **extra: str | None) -> StoredFile:
        """Store an uploaded file (bytes in the file store, record in storage)."""
        self.project(acct, project_id)
        name = check_file_name(file_name)
        for key, value in extra.items():
            if value is not None:
                check_text(value, key)
        limit = self.config.max_upload_bytes
        digest = hashlib.sha256()
        size = 0

        def pieces() -> Iterator[bytes]:  # piece by piece: an upload is never whole in memory
            nonlocal size
            while True:
                piece = stream.read(UPLOAD_CHUNK)
                if not piece:
                    break
                size += len(piece)
                if size > limit:
                    raise TooLarge(f"file {name!r} is larger than the server's upload limit of "
                                   f"{limit / 1024 / 1024:.2f} MB ({limit} bytes; see --max-upload-mb)")
                digest.update(piece)
                yield piece
            if size == 0:
                raise InvalidInput(f"file {name!r} is empty")

        file_id = str(uuid.uuid4())
        files = self.files
        files.write(file_id, pieces())  # all or nothing: a refused upload leaves no bytes
        record = self._file_record(acct, project_id, name, size, digest.hexdigest(), content_type, file_id,
                                   **extra)
        try:
            self.storage.create_file(record)
        except BaseException:
            files.delete(record.id)
            raise
        return record

    def _file_record(self, acct: str, project_id: str, name: str, size: int, sha256: str,
                     content_type: str | None, file_id: str | None, **extra: str | None) -> StoredFile:
        content_type = content_type or ""
        if not content_type or content_type == "application/octet-stream":
            content_type = mimetypes.guess_type(name)[0] or content_type or "application/octet-stream"
        now = utc_now()
        return StoredFile(id=file_id or str(uuid.uuid4()), account_id=acct, project_id=project_id, name=name,
                          file_size=size, content_type=content_type, sha256=sha256, created_at=now,
                          updated_at=now, **extra)

    def store_bytes(self, acct: str, project_id: str, name: str, data: bytes, content_type: str | None,
                    file_id: str | None = None, **extra: str | None) -> StoredFile:
        """Store ``data`` as a file (``extra``: ``external_file_id``, ``purpose``)."""
        if not data:
            raise InvalidInput(f"file {name!r} is empty")
        record = self._file_record(acct, project_id, name, len(data), hashlib.sha256(data).hexdigest(),
                                   content_type, file_id, **extra)
        files = self.files
        files.write(record.id, [data])
        try:
            self.storage.create_file(record)
        except BaseException:
            files.delete(record.id)
            raise
        return record

    def file(self, acct: str, file_id: str) -> StoredFile:
        return found(self.storage.get_file(acct, file_id), "file", file_id)

    def read_file(self, acct: str, file_id: str) -> bytes:
        return self.files.read(self.file(acct, file_id).id)

    def delete_file(self, acct: str, file_id: str) -> None:
        """Delete a file and take it out of every pipeline of its project (they resync)."""
        f = self.file(acct, file_id)
        for pipeline in self.storage.list_pipelines(acct, f.project_id):
            if self.storage.get_pipeline_file(pipeline.id, f.id) is not None:
                self.remove_pipeline_file(acct, pipeline.id, f.id)
        self.storage.delete_file(f.id)
        self.files.delete(f.id)

    # -- pipelines --------------------------------------------------------------------------
    def pipeline(self, acct: str, pipeline_id: str) -> Pipeline:
        return found(self.storage.get_pipeline(acct, pipeline_id), "pipeline", pipeline_id)

    def list_pipelines(self, acct: str, project_id: str) -> list[Pipeline]:
        self.project(acct, project_id)
        return self.storage.list_pipelines(acct, project_id)

    def create_pipeline(self, acct: str, project_id: str, name: str, *, retrieval_config: Any = None,
                        chunking_config: Any = None, sync_interval: int | None = None,
                        attributes: dict[str, Any] | None = None, embedding_model: str | None = None) -> Pipeline:
        """A new pipeline; ``embedding_model`` (a name or alias of ``engine.EMBEDDING_MODELS``, default
        the server's default model) embeds its chunks and queries."""
        name = check_name(name, "pipeline name")
        self.project(acct, project_id)
        retrieval, chunking = check_configs(retrieval_config, chunking_config)
        model = self.embedding_model(embedding_model)
        retrieval = self._model_by_reference(retrieval)
        check_value(attributes or {}, "pipeline settings")
        now = utc_now()
        pipeline = Pipeline(id=str(uuid.uuid4()), account_id=acct, project_id=project_id, name=name,
                            status="idle", sync_interval=check_sync_interval(sync_interval),
                            retrieval_config=retrieval, chunking_config=chunking,
                            embedding_model=model, created_at=now, updated_at=now,
                            attributes=dict(attributes or {}))
        self.storage.create_pipeline(pipeline)
        return pipeline

    def update_pipeline(self, acct: str, pipeline_id: str, *, name: str | None = None,
                        retrieval_config: Any = None, chunking_config: Any = None,
                        attributes: dict[str, Any] | None = None, embedding_model: str | None = None) -> Pipeline:
        """Change a pipeline; a new chunking config or embedding model marks its files for processing
        again (the current index keeps being served, with its own model, until the next sync)."""
        pipeline = self.pipeline(acct, pipeline_id)
        changes: dict[str, Any] = {}
        if embedding_model is not None and (model := self.embedding_model(embedding_model)) != pipeline.embedding_model:
            changes["embedding_model"] = model
        if name is not None:
            changes["name"] = check_name(name, "pipeline name")
        retrieval, chunking = check_configs(
            pipeline.retrieval_config if retrieval_config is None else retrieval_config,
            pipeline.chunking_config if chunking_config is None else chunking_config)
        retrieval = self._model_by_reference(retrieval)
        if retrieval != pipeline.retrieval_config:
            changes["retrieval_config"] = retrieval
        if chunking != pipeline.chunking_config:
            changes["chunking_config"] = chunking
        if attributes is not None:
            check_value(attributes, "pipeline settings")
            changes["attributes"] = {**pipeline.attributes, **attributes}
        if changes:
            self.storage.update_pipeline(pipeline.id, updated_at=utc_now(), **changes)
        return self.pipeline(acct, pipeline_id)

    def embedding_model(self, requested: Any) -> str:
        """The canonical name of the embedding model ``requested`` (None: the server's default) once
        this server can embed with it; InvalidInput naming the allowed models, or the extra to install."""
        from llamaeval.engine._embedders import embedder_of

        if requested is None:
            return self.embedder.model_name
        if not isinstance(requested, str) or not requested.strip():
            raise InvalidInput(f"embedding model must be a non-empty string, got {requested!r}")
        try:
            return embedder_of(self.embedder, requested).model_name
        except ValueError as exc:  # ConfigurationError: unknown model, or its package is not installed
            raise InvalidInput(str(exc)) from None

    def _model_by_reference(self, retrieval: dict[str, Any]) -> dict[str, Any]:
        """A validated retrieval config whose second-stage model is a reference: inline weights go to
        the model store (``<data_dir>/models/<sha256>.json``) and are replaced by their name, version
        and SHA-256; a reference must name a shipped model or one in the store (InvalidInput)."""
        from llamaeval import engine
        from llamaeval.engine._models import ModelStore, is_reference

        store = ModelStore(self.layout.models_dir)
        model = retrieval["ltr_model"]
        if not is_reference(model):
            return {**retrieval, "ltr_model": store.put(model)}
        try:
            engine.RetrievalConfig.from_dict(retrieval).model_document((store,))
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        return retrieval

    def delete_pipeline(self, acct: str, pipeline_id: str) -> Pipeline:
        pipeline = self.pipeline(acct, pipeline_id)
        self.storage.delete_pipeline(pipeline.id)
        self.indexes.drop(pipeline.id)
        self.layout.remove_pipeline(pipeline.id)
        return pipeline

    def request_sync(self, acct: str, pipeline_id: str, require_content: bool = True) -> Job:
        pipeline = self.pipeline(acct, pipeline_id)
        if require_content and pipeline.num_files == 0 and not self.storage.list_pipeline_data_sources(pipeline.id):
            raise InvalidInput(f"pipeline {pipeline.id!r} is empty: add files (PUT /pipelines/{{id}}/files) or "
                               "data sources before syncing")
        return self.sync.request_sync(pipeline)

    def cancel_sync(self, acct: str, pipeline_id: str) -> int:
        return self.sync.cancel(self.pipeline(acct, pipeline_id))

    def jobs(self, acct: str, pipeline_id: str) -> list[Job]:
        return self.storage.list_jobs(self.pipeline(acct, pipeline_id).id)

    def job(self, acct: str, pipeline_id: str, job_id: str) -> Job:
        pipeline = self.pipeline(acct, pipeline_id)
        job = self.storage.get_job(job_id)
        if job is None or job.pipeline_id != pipeline.id:
            raise NotFound("job", job_id)
        return job

    # -- files in pipelines -------------------------------------------------------------------
    def add_files(self, acct: str, pipeline_id: str, items: list[tuple[str, dict[str, Any] | None]],
                  reserved: tuple[str, ...] = RESERVED_METADATA) -> list[PipelineFile]:
        """Add (or re-add with new metadata) files to a pipeline; changed ones become ``pending``.
        Metadata may not use ``reserved`` keys. Everything is validated before anything is written."""
        pipeline = self.pipeline(acct, pipeline_id)
        if not items:
            raise InvalidInput("no files given: send a list of {\"file_id\": ..., \"metadata\": {...}}")
        resolved: list[tuple[StoredFile, dict[str, Any]]] = []
        missing = []
        for file_id, metadata in items:
            stored = self.storage.get_file(acct, file_id)
            if stored is None:
                missing.append(file_id)
                continue
            resolved.append((stored, check_metadata(file_id, metadata, reserved)))
        if missing:
            shown = ", ".join(repr(m) for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise InvalidInput(f"unknown file id(s): {shown}; upload files with POST /files first")
        now = utc_now()
        out = []
        for stored, metadata in resolved:
            current = self.storage.get_pipeline_file(pipeline.id, stored.id)
            if current is not None and current.metadata == metadata and current.status != "error":
                out.append(current)
                continue
            pf = PipelineFile(pipeline_id=pipeline.id, file_id=stored.id, name=stored.name, status="pending",
                              metadata=metadata, error=None, num_chunks=0,
                              processed_key=current.processed_key if current else None,
                              data_source_id=stored.data_source_id,
                              added_at=current.added_at if current else now, updated_at=now)
            out.append(self.storage.upsert_pipeline_file(pf))
        self.storage.update_pipeline(pipeline.id, updated_at=now)
        return out

    def pipeline_files(self, acct: str, pipeline_id: str) -> list[PipelineFile]:
        return self.storage.list_pipeline_files(self.pipeline(acct, pipeline_id).id)

    def pipeline_file(self, acct: str, pipeline_id: str, file_id: str) -> PipelineFile:
        pf = self.storage.get_pipeline_file(self.pipeline(acct, pipeline_id).id, file_id)
        if pf is None:
            raise NotFound("pipeline file", file_id)
        return pf

    def remove_pipeline_file(self, acct: str, pipeline_id: str, file_id: str) -> None:
        """Take a file out of a pipeline; the next sync builds an index without it."""
        pf = self.pipeline_file(acct, pipeline_id, file_id)
        self.storage.remove_pipeline_file(pf.pipeline_id, pf.file_id)
        for path in self.layout.chunks_paths(pf.pipeline_id, pf.file_id):
            path.unlink(missing_ok=True)
        if (not self.storage.list_pipeline_files(pf.pipeline_id)
                and not self.storage.list_pipeline_data_sources(pf.pipeline_id)):
            # nothing left to search: no index (a sync needs content, so none would replace it)
            self.storage.update_pipeline(pf.pipeline_id, index_version=None, num_chunks=0, status="idle",
                                         updated_at=utc_now())
            self.indexes.drop(pf.pipeline_id)
        else:
            self.storage.update_pipeline(pf.pipeline_id, updated_at=utc_now())

    # -- documents: text given inline, stored as a .txt file per (pipeline, document id) -----------
    def document_file_id(self, pipeline_id: str, document_id: str) -> str:
        return str(uuid.uuid5(_DOCUMENTS, f"{pipeline_id}\n{document_id}"))

    def upsert_documents(self, acct: str, pipeline_id: str, docs: list[tuple[str | None, str, dict[str, Any]]],
                         reserved: tuple[str, ...] = RESERVED_METADATA) -> list[tuple[str, PipelineFile]]:
        """Add or replace text documents ``(id or None, text, metadata)``; returns (id, pipeline file)
        pairs. A document is a .txt file (purpose ``document``) whose id is ``external_file_id``."""
        pipeline = self.pipeline(acct, pipeline_id)
        if not docs:
            raise InvalidInput("no documents given: send a list of {\"text\": ..., \"metadata\": {...}}")
        prepared = []
        for i, (doc_id, text, metadata) in enumerate(docs):
            doc_id = check_text(doc_id, f"document {i} id") if doc_id else str(uuid.uuid4())
            check_text(text, f"document {i} ({doc_id!r}) text")
            if not text.strip():
                raise InvalidInput(f"document {i} ({doc_id!r}) has empty text")
            prepared.append((doc_id, text.encode("utf-8"), check_metadata(doc_id, metadata, reserved)))
        items = []
        for doc_id, data, metadata in prepared:
            file_id = self.document_file_id(pipeline.id, doc_id)
            current = self.storage.get_file(acct, file_id)
            if current is None:
                self.store_bytes(acct, pipeline.project_id, "document.txt", data, "text/plain", file_id=file_id,
                                 external_file_id=doc_id, purpose=DOCUMENT_PURPOSE)
            elif current.sha256 != hashlib.sha256(data).hexdigest():
                self.files.write(file_id, [data])
                self.storage.update_file(file_id, file_size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                                         updated_at=utc_now())
            items.append((file_id, metadata))
        files = self.add_files(acct, pipeline.id, items, reserved)
        return [(doc_id, pf) for (doc_id, _, _), pf in zip(prepared, files)]

    def documents(self, acct: str, pipeline_id: str) -> list[tuple[StoredFile, PipelineFile]]:
        """The pipeline's text documents, in the order they were added."""
        out = []
        for pf in self.pipeline_files(acct, pipeline_id):
            stored = self.storage.get_file(acct, pf.file_id)
            if stored is not None and stored.purpose == DOCUMENT_PURPOSE:
                out.append((stored, pf))
        return out

    def document(self, acct: str, pipeline_id: str, document_id: str) -> tuple[StoredFile, PipelineFile]:
        pipeline = self.pipeline(acct, pipeline_id)
        file_id = self.document_file_id(pipeline.id, document_id)
        stored = self.storage.get_file(acct, file_id)
        pf = self.storage.get_pipeline_file(pipeline.id, file_id)
        if stored is None or pf is None:
            raise NotFound("document", document_id)
        return stored, pf

    def delete_document(self, acct: str, pipeline_id: str, document_id: str) -> None:
        stored, _ = self.document(acct, pipeline_id, document_id)
        self.delete_file(acct, stored.id)

    # -- data sources and sinks ---------------------------------------------------------------
    def new_data_source(self, acct: str, name: str | None, source_type: str | None, project_id: str | None,
                        config: dict[str, Any] | None) -> DataSource:
        if name is None or source_type is None:
            raise InvalidInput("a data source needs name and source_type (or give data_source_id to attach an "
                               "existing one)")
        name = check_name(name, "data source name")
        config = self.check_source_config(acct, source_type, config)
        project = self.project_or_default(acct, project_id)
        now = utc_now()
        return self.storage.create_data_source(DataSource(
            id=str(uuid.uuid4()), account_id=acct, project_id=project.id, name=name, source_type=source_type,
            config=config, created_at=now, updated_at=now))

    def check_source_config(self, acct: str, source_type: str, config: dict[str, Any] | None) -> dict[str, Any]:
        if source_type not in SUPPORTED_SOURCE_TYPES:
            raise InvalidInput(f"unsupported source_type {source_type!r}; supported: "
                               f"{', '.join(SUPPORTED_SOURCE_TYPES)}")
        config = dict(config or {})
        check_value(config, "config")
        unknown = sorted(set(config) - {"path", "recursive"})
        if unknown:
            raise InvalidInput(f"unknown config key(s) for a directory data source: {', '.join(unknown)}; "
                               "known: path, recursive")
        if "recursive" in config and not isinstance(config["recursive"], bool):
            raise InvalidInput("config.recursive must be true or false")
        try:
            resolve_source_dir(self.config.sources_root_of(acct), config.get("path"), self.config.sources_root)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        return config

    def data_source(self, acct: str, data_source_id: str) -> DataSource:
        return found(self.storage.get_data_source(acct, data_source_id), "data source", data_source_id)

    def update_data_source(self, acct: str, data_source_id: str, name: str | None,
                           component: dict[str, Any] | None) -> DataSource:
        """Rename and/or re-point a data source (``None`` leaves a field; a blank name keeps the old one)."""
        ds = self.data_source(acct, data_source_id)
        changes = _renamed(name, "data source name")
        if component is not None:
            changes["config"] = self.check_source_config(acct, ds.source_type, component)
        if changes:
            self.storage.update_data_source(ds.id, updated_at=utc_now(), **changes)
        return self.data_source(acct, data_source_id)

    def attach_data_sources(self, acct: str, pipeline_id: str, existing: list[str],
                            new: list[Callable[[str], DataSource]]) -> list[DataSource]:
        """Attach existing data sources (ids) and ones created by ``new`` (given the pipeline's
        project id); existing ids are all checked before anything is created."""
        pipeline = self.pipeline(acct, pipeline_id)
        if not existing and not new:
            raise InvalidInput("no data sources given")
        sources = []
        for ds_id in existing:
            ds = self.storage.get_data_source(acct, ds_id)
            if ds is None:
                raise InvalidInput(f"unknown data_source_id {ds_id!r}")
            sources.append(ds)
        sources += [make(pipeline.project_id) for make in new]
        for ds in sources:
            self.storage.attach_data_source(pipeline.id, ds.id)
        self.storage.update_pipeline(pipeline.id, updated_at=utc_now())
        return sources

    def new_data_sink(self, acct: str, project_id: str | None, name: str, sink_type: str,
                      component: dict[str, Any] | None) -> DataSink:
        project = self.project_or_default(acct, project_id)
        check_value(component or {}, "data sink component")
        now = utc_now()
        return self.storage.create_data_sink(DataSink(
            id=str(uuid.uuid4()), account_id=acct, project_id=project.id, name=check_name(name, "data sink name"),
            sink_type=sink_type, component=dict(component or {}), created_at=now, updated_at=now))

    def data_sink(self, acct: str, data_sink_id: str) -> DataSink:
        return found(self.storage.get_data_sink(acct, data_sink_id), "data sink", data_sink_id)

    def update_data_sink(self, acct: str, data_sink_id: str, name: str | None,
                         component: dict[str, Any] | None) -> DataSink:
        """Rename a data sink and/or replace its component (``None`` leaves a field; a blank name keeps
        the old one)."""
        sink = self.data_sink(acct, data_sink_id)
        changes = _renamed(name, "data sink name")
        if component is not None:
            check_value(component, "data sink component")
            changes["component"] = dict(component)
        if changes:
            self.storage.update_data_sink(sink.id, updated_at=utc_now(), **changes)
        return self.data_sink(acct, data_sink_id)

    def index_location(self, pipeline: Pipeline) -> dict[str, Any]:
        """Where and how the pipeline's index lives on this server."""
        location = (self.layout.index_dir(pipeline.id, pipeline.index_version)
                    if pipeline.index_version else self.layout.indexes_dir(pipeline.id))
        # relative to the server's data dir: a client never learns the server's filesystem paths
        return {"location": location.relative_to(self.layout.root).as_posix(),
                "index_version": pipeline.index_version,
                "num_chunks": pipeline.num_chunks, "embedding_model": pipeline.embedding_model,
                "dimensions": self._dimensions(pipeline.embedding_model), "sparse": "bm25s",
                "last_synced_at": pipeline.last_synced_at.isoformat() if pipeline.last_synced_at else None}

    def _dimensions(self, model: str) -> int:
        from llamaeval.engine._embedders import embedder_of

        try:
            return int(embedder_of(self.embedder, model).dimensions)
        except ValueError:  # a model this process cannot load: its index manifest says
            return 0

    # -- search -------------------------------------------------------------------------------
    def _load_index(self, acct: str, pipeline_id: str, version: str) -> Any:
        """The loaded index ``version``; a pipeline deleted (or re-indexed) while its index was
        being loaded is a 404 (or the newer index), never a missing-file 500."""
        for _ in range(3):
            try:
                return self.indexes.get(pipeline_id, version)
            except OSError:
                head = self.storage.get_pipeline_index(acct, pipeline_id)
                if head is None:
                    raise NotFound("pipeline", pipeline_id) from None
                if head[1] is None or head[1] == version:
                    raise
                version = head[1]
        return self.indexes.get(pipeline_id, version)

    #: after a heavy query the lane stays shut this many times its duration (at most HEAVY_PAUSE_MAX s)
    HEAVY_PACE = 3.0
    HEAVY_PAUSE_MAX = 3.0

    def _heavy(self, run: Callable[[], Any]) -> Any:
        """Run a heavy query in the heavy lane: one at a time, and paced — the next one starts only
        after a pause three times as long as this one took — so clients sending maximal queries
        back to back run during at most a quarter of the time, and everybody else keeps the rest.
        A heavy query after a quiet spell is not delayed."""
        with self.heavy_lane:
            pause = self._heavy_free_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            t = time.monotonic()
            try:
                return run()
            finally:
                spent = time.monotonic() - t
                self._heavy_free_at = time.monotonic() + min(spent * self.HEAVY_PACE, self.HEAVY_PAUSE_MAX)

    def check_query(self, query: str) -> str:
        """A retrieve query within the server's length limit (413 naming it) and storable text."""
        limit = self.config.max_query_chars
        if len(query) > limit:
            raise TooLarge(f"query of {len(query)} characters is longer than the server's limit of {limit} "
                           "characters (see --max-query-chars / LLAMAEVAL_MAX_QUERY_CHARS)")
        return check_text(query, "query")

    async def run_search(self, work: Callable[[], T], query: str) -> T:
        """Run a retrieve request's blocking ``work()`` (which calls :meth:`search`): inline on the
        event loop when the request is the only one in flight and ``query`` is not heavy, else on
        a worker thread (:class:`RequestLoad`)."""
        return await self.load.run(work, inline=len(query) < self.config.heavy_query_chars)

    def search(self, acct: str, pipeline_id: str, query: str, build: Callable[[Any], Any],
               execute: Callable[[Any, Any], Any] | None = None,
               head: tuple[str, str | None] | None = None) -> SearchOutcome:
        """Search the pipeline's last completed index for ``query``: ``build(config)`` makes the
        engine request (the pipeline's retrieval config fills what a dialect leaves to it) and
        ``execute(index, request)`` runs it (default ``index.search(request)``); ``head``: the
        pipeline's (status, index version) when the caller has just read it. Queries of at
        least ``config.heavy_query_chars`` characters run one at a time (the heavy lane)."""
        self.check_query(query)
        t0 = time.perf_counter()
        if head is None:
            head = self.storage.get_pipeline_index(acct, pipeline_id)  # no config decoding on the hot path
        if head is None:
            raise NotFound("pipeline", pipeline_id)
        status, index_version = head
        try:
            if index_version is None:
                from llamaeval import engine

                build(engine.RetrievalConfig())  # a bad request is named before "not indexed yet"
                hint = ("its first sync is still running; wait for it to complete"
                        if status == "syncing" else "add files and sync it first")
                raise InvalidInput(f"pipeline {pipeline_id!r} has no completed index yet: {hint}")
            index = self._load_index(acct, pipeline_id, index_version)
            request = build(index.config)
            def run() -> Any:
                with self.gate:
                    return execute(index, request) if execute is not None else index.search(request)

            response = self._heavy(run) if len(query) >= self.config.heavy_query_chars else run()
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        return SearchOutcome(response=response, config_summary=index.config_summary,
                             total_s=time.perf_counter() - t0)


def found(record: T | None, kind: str, ident: str) -> T:
    """``record``, or NotFound naming ``kind`` and ``ident`` (another account's object is not found too)."""
    if record is None:
        raise NotFound(kind, ident)
    return record


# -- rules on single values ------------------------------------------------------------------
def check_text(value: str, what: str) -> str:
    """``value`` when it can be stored and searched: no NUL, no lone UTF-16 surrogate."""
    problem = text_problem(value)
    if problem is not None:
        raise InvalidInput(f"{what} {problem}")
    return value


def check_value(value: Any, what: str, depth: int = 0) -> None:
    """A JSON value a client stores (metadata, configs): strings by :func:`check_text`, 64-bit
    integers, finite numbers, keys that are strings, at most 32 levels deep."""
    if isinstance(value, str):
        check_text(value, what)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidInput(f"{what}: integer out of range (integers must be within -2**63..2**63-1)")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"{what}: number is not finite")
    elif depth >= 32:
        raise InvalidInput(f"{what}: nested too deeply (at most 32 levels)")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInput(f"{what}: keys must be strings")
            check_text(key, f"{what}: key")
            check_value(item, f"{what}.{key}", depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_value(item, f"{what}[{i}]", depth + 1)
    else:
        raise InvalidInput(f"{what}: {type(value).__name__} is not a JSON value")


def check_name(value: str, what: str) -> str:
    check_text(value, what)
    name = value.strip()
    if not name:
        raise InvalidInput(f"{what} must not be empty")
    if len(name) > MAX_NAME:
        raise InvalidInput(f"{what} is longer than {MAX_NAME} characters")
    return name


def _renamed(name: str | None, what: str) -> dict[str, Any]:
    """The ``name`` change of an update: none when omitted or blank (blank keeps the old name)."""
    if name is None or not name.strip():
        return {}
    return {"name": check_name(name, what)}


def check_file_name(name: str | None) -> str:
    from llamaeval import engine

    if name is None or not name.strip():
        raise InvalidInput("the uploaded file has no file name")
    if "\x00" in name or "/" in name or "\\" in name or name.strip() in (".", "..") or name.startswith(".."):
        raise InvalidInput(f"file name {name!r} is not allowed: give a plain file name without directories or '..'")
    if len(name) > 255:
        raise InvalidInput("file name is longer than 255 characters")
    ext = PurePath(name).suffix.lower()
    if ext not in engine.SUPPORTED_EXTENSIONS:
        raise InvalidInput(f"unsupported file type {ext or '(no extension)'!s} for {name!r}; supported: "
                           f"{', '.join(sorted(engine.SUPPORTED_EXTENSIONS))}")
    return name


def check_metadata(file_id: str, metadata: dict[str, Any] | None,
                   reserved: tuple[str, ...] = RESERVED_METADATA) -> dict[str, Any]:
    metadata = dict(metadata or {})
    check_value(metadata, f"metadata of file {file_id!r}")
    used = sorted(set(metadata) & set(reserved))
    if used:
        raise InvalidInput(f"metadata of file {file_id!r} uses reserved key(s) {', '.join(used)}; "
                           f"reserved: {', '.join(reserved)}")
    return metadata


def check_sync_interval(seconds: int | None) -> int | None:
    if seconds is not None and not 0 <= seconds <= MAX_SYNC_INTERVAL:
        shown = seconds if abs(seconds) < 10 ** 30 else f"a number with {len(str(abs(seconds)))} digits"
        raise InvalidInput(f"sync_interval must be a number of seconds in 1..{MAX_SYNC_INTERVAL} (or 0/null for "
                           f"none), got {shown}")
    return seconds or None


def store_inline_models(storage: Storage, layout: DataLayout) -> int:
    """Start-up migration: pipelines stored before models were named by reference carry their second
    stage's weights inline in ``retrieval_config.ltr_model`` (~110 KB each). Weights equal to a model
    shipped with the package become that model's reference (name, version, SHA-256: the package keeps
    every older version, so the pipeline ranks exactly as before); any other weights move to the model
    store (``<data_dir>/models/<sha256>.json``) and become a reference to it. Idempotent; returns the
    number of pipelines changed (their next sync rebuilds the index, with the same model)."""
    import json

    from llamaeval.engine._models import MODEL_NAME, ModelStore, packaged_versions, read_packaged

    shipped: dict[str, dict[str, Any]] = {}
    for version in packaged_versions():
        data = read_packaged(version)
        shipped[json.dumps(json.loads(data)["models"], sort_keys=True)] = {
            "name": MODEL_NAME, "version": version, "sha256": hashlib.sha256(data).hexdigest()}
    store = ModelStore(layout.models_dir)
    changed = 0
    for pipeline in storage.list_all_pipelines():
        config = pipeline.retrieval_config
        model = config.get("ltr_model") if isinstance(config, dict) else None
        if not isinstance(model, dict) or not isinstance(model.get("models"), dict):
            continue
        ref = shipped.get(json.dumps(model["models"], sort_keys=True)) or store.put(model)
        storage.update_pipeline(pipeline.id, retrieval_config={**config, "ltr_model": ref})
        changed += 1
    return changed


def check_configs(retrieval: Any, chunking: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pipeline's retrieval and chunking configs, validated and completed with defaults."""
    from llamaeval import engine

    try:
        return (engine.RetrievalConfig.from_dict(retrieval).to_dict(),
                engine.ChunkingConfig.from_dict(chunking).to_dict())
    except (ValueError, TypeError) as exc:
        raise InvalidInput(str(exc)) from None
