"""Background ingestion: one worker thread runs sync jobs; a scheduler thread starts timed syncs.

A job: scan the pipeline's data sources into pipeline files, parse and chunk each
pending or changed file once (chunks kept on disk per file), embed the chunks of up to
``WINDOW_CHUNKS`` of them at a time sorted by token length (vectors kept beside the chunks;
vectors the account's embedding cache already holds are not computed again), then build
a NEW complete index version in a temporary directory, rename it into place and only then
point the pipeline at it (one metadata update). Retrieval therefore only ever reads the last
completed index, also after a failed or killed sync; dead build directories are removed at
the next start.

A version is a manifest and one segment per file (``engine.IndexWriter``): a file whose
segment the previous version holds (same content key, name, metadata and analysis settings)
is a hard link to it, not read again; only added or changed files are read back and analysed.
The new version loads from the previous loaded one (``Index.load(previous=)``): its segments
are reused in memory and the BM25 postings merged, so a sync of k files costs O(k) plus a
linear merge (``benchmarks/results/incremental_index.md``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import mimetypes
import os
import queue
import threading
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llamaeval.server._config import DataLayout, ServerConfig, write_atomic
from llamaeval.server._embedding_cache import EmbeddingCache, model_scope
from llamaeval.server._file_store import file_store
from llamaeval.server._storage import DataSource, Job, Pipeline, PipelineFile, Storage, StoredFile, utc_now

__all__ = ["SyncService", "SearchGate", "IndexCache", "resolve_source_dir", "SUPPORTED_SOURCE_TYPES", "CANCELLED",
           "INTERRUPTED", "stopped"]

log = logging.getLogger("llamaeval.server")

SUPPORTED_SOURCE_TYPES = ("directory",)


class _Stop(Exception):
    """The server is shutting down (or the pipeline was deleted) during a job."""


class _NothingToIndex(ValueError):
    """An expected end of a sync: the pipeline's content gives no index (logged in one line)."""


def _reason(exc: BaseException) -> str:
    """Why a file could not be processed, for the client: an OSError's message without the
    server's file paths."""
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc) or type(exc).__name__


def resolve_source_dir(root: Path | None, path: Any, sources_root: Path | None = None) -> Path:
    """The real folder a ``directory`` data source points to; ValueError when it is not allowed.

    ``root`` is the folder the caller's data sources live under (``ServerConfig.sources_root_of``:
    ``<sources_root>/<account_id>`` by default, the whole ``sources_root`` when shared);
    ``path`` is relative to it (or absolute inside it); symlinks are resolved before the check,
    so nothing outside ``root`` is reachable. Messages never show the server's own paths.
    """
    if root is None:
        raise ValueError("directory data sources are disabled: start the server with --sources-root DIR "
                         "(or LLAMAEVAL_SOURCES_ROOT) to allow folders under DIR")
    if sources_root is None or root == sources_root:
        where = "the server's sources root"
    else:
        where = f"your account's folder '{root.name}/' of the server's sources root"
    if not isinstance(path, str) or not path.strip() or "\x00" in path:
        raise ValueError(f"config.path must be a non-empty string (a folder under {where})")
    try:
        base = root.resolve()
        target = (root / path).resolve()
        if not target.is_relative_to(base):
            raise ValueError(f"config.path {path!r} is outside {where}")
        if not target.is_dir():
            raise ValueError(f"config.path {path!r} is not a folder under {where}")
    except OSError as exc:  # e.g. a name too long for the filesystem
        raise ValueError(f"config.path {path!r} cannot be read ({exc.strerror or type(exc).__name__})") from None
    return target


#: The error of a job stopped by ``SyncService.cancel`` (the real dialect shows it as CANCELLED).
CANCELLED = "cancelled by the user"
#: The error of a job the server's stop (or a crash: found at the next start) cut short.
INTERRUPTED = "interrupted: the server stopped during this sync"


def stopped(error: str | None) -> bool:
    """Whether a failed job's ``error`` says it was stopped (cancelled or interrupted) rather
    than failed on its content: its pipeline keeps its status and index."""
    return error is not None and (error == CANCELLED or error.startswith("interrupted"))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class IndexCache:
    """Loaded indexes, one version per pipeline, within a memory budget (thread-safe).

    An index loads on first use; each is charged its estimated size in memory (its files on
    disk, the entries file three times over for its Python objects). When the total passes
    ``budget_bytes`` the least recently used indexes are unloaded (the next query of theirs
    loads them again); the index just used always stays, however large.
    """

    #: entries.jsonl costs about this many times its size once loaded as Python objects
    ENTRIES_FACTOR = 3

    def __init__(self, layout: DataLayout, embedder: Any, reranker: Any = None,
                 budget_bytes: int = 1024 * 1024 * 1024) -> None:
        self._layout = layout
        self._embedder = embedder
        self._reranker = reranker
        self.budget_bytes = budget_bytes
        self._lock = threading.Lock()
        self._loaded: OrderedDict[str, tuple[str, Any, int]] = OrderedDict()  # least recent first
        self._loading: dict[tuple[str, str], threading.Lock] = {}
        self.evictions = 0

    def get(self, pipeline_id: str, version: str) -> Any:
        with self._lock:
            hit = self._loaded.get(pipeline_id)
            if hit and hit[0] == version:
                self._loaded.move_to_end(pipeline_id)
                return hit[1]
            lock = self._loading.setdefault((pipeline_id, version), threading.Lock())
        with lock:
            with self._lock:
                hit = self._loaded.get(pipeline_id)
                if hit and hit[0] == version:
                    self._loaded.move_to_end(pipeline_id)
                    return hit[1]
            from llamaeval import engine

            directory = self._layout.index_dir(pipeline_id, version)
            index = engine.Index.load(directory, self._index_embedder(directory),
                                      reranker=self._reranker, previous=self.loaded(pipeline_id))
            self.put(pipeline_id, version, index)
            return index

    @property
    def reranker(self) -> Any:
        return self._reranker

    def loaded(self, pipeline_id: str) -> Any:
        """The pipeline's loaded index, whatever its version (None when none is): a new version
        loads from it, reusing its unchanged segments (``Index.load(previous=)``)."""
        with self._lock:
            hit = self._loaded.get(pipeline_id)
        return hit[1] if hit else None

    def _index_embedder(self, directory: Path) -> Any:
        """The embedder of the model an index was built with (its manifest's ``embedding_model``):
        its queries must be embedded by that model, also while a pipeline that changed model is
        still served by its previous index. ``Index.load`` checks the pair (name and dimensions)."""
        from llamaeval.engine._embedders import embedder_of

        try:
            model = json.loads((directory / "manifest.json").read_text("utf-8")).get("embedding_model")
        except (OSError, ValueError):
            model = None  # Index.load names what is missing
        return embedder_of(self._embedder, model if isinstance(model, str) else None)

    def estimate(self, pipeline_id: str, version: str) -> int:
        """Estimated bytes in memory of a loaded index (from its files on disk; for a segmented
        index from the sizes its manifest records)."""
        total = 0
        try:
            sizes = json.loads((self._layout.index_dir(pipeline_id, version) / "manifest.json").read_text("utf-8"))
            sizes = sizes.get("bytes") if isinstance(sizes, dict) else None
        except (OSError, ValueError):
            sizes = None
        if isinstance(sizes, dict):
            return int(sizes.get("segments", 0)) + (self.ENTRIES_FACTOR - 1) * int(sizes.get("entries", 0))
        for path in self._layout.index_dir(pipeline_id, version).rglob("*"):
            try:
                size = path.stat().st_size if path.is_file() else 0
            except OSError:
                continue
            total += size * (self.ENTRIES_FACTOR if path.name == "entries.jsonl" else 1)
        return total

    def put(self, pipeline_id: str, version: str, index: Any) -> None:
        size = self.estimate(pipeline_id, version)
        with self._lock:
            self._loaded[pipeline_id] = (version, index, size)
            self._loaded.move_to_end(pipeline_id)
            self._loading.pop((pipeline_id, version), None)
            total = sum(entry[2] for entry in self._loaded.values())
            while total > self.budget_bytes and len(self._loaded) > 1:
                victim, (_, _, victim_size) = next(iter(self._loaded.items()))
                if victim == pipeline_id:
                    break
                del self._loaded[victim]
                total -= victim_size
                self.evictions += 1
                log.info("index of pipeline %s unloaded (index cache over its %.0f MB budget)", victim,
                         self.budget_bytes / 1024 / 1024)

    def drop(self, pipeline_id: str) -> None:
        with self._lock:
            self._loaded.pop(pipeline_id, None)

    def stats(self) -> dict[str, int]:
        """Loaded indexes, their estimated bytes, the budget and evictions so far."""
        with self._lock:
            return {"loaded": len(self._loaded), "bytes": sum(e[2] for e in self._loaded.values()),
                    "budget_bytes": self.budget_bytes, "evictions": self.evictions}


class SearchGate:
    """At most ``slots`` searches run at once and the others wait their turn, first come first
    served; one slot fewer while ``reserve()`` is true — a sync job runs —, so ingestion keeps a
    core under any query load (without it 16 querying clients left the single sync worker a
    few percent of the CPU). Bounding the searches to the cores also keeps onnxruntime's
    threads from spinning against each other."""

    def __init__(self, slots: int, reserve: Any = None) -> None:
        if slots < 1:
            raise ValueError(f"search slots must be >= 1, got {slots}")
        self.slots = slots
        self._reserve = reserve or (lambda: False)
        self._lock = threading.Lock()
        self._active = 0
        self._waiting: deque[threading.Event] = deque()

    def capacity(self) -> int:
        return max(1, self.slots - 1) if self._reserve() else self.slots

    def __enter__(self) -> "SearchGate":
        with self._lock:
            if not self._waiting and self._active < self.capacity():
                self._active += 1
                return self
            turn = threading.Event()
            self._waiting.append(turn)
        while not turn.wait(0.05):  # a sync may have ended meanwhile: a slot may be free
            self._admit()
        return self

    def __exit__(self, *exc: Any) -> None:
        with self._lock:
            self._active -= 1
        self._admit()

    def _admit(self) -> None:
        """Hand free slots to the longest waiting searches (their slot is taken for them)."""
        with self._lock:
            while self._waiting and self._active < self.capacity():
                self._active += 1
                self._waiting.popleft().set()


@dataclass(frozen=True)
class _Chunked:
    """A file of the running sync cut into ``n_chunks`` chunks (saved on disk under ``key``)."""

    pf: PipelineFile
    key: str
    n_chunks: int


class SyncService:
    """Runs sync jobs one at a time on a worker thread; starts scheduled syncs."""

    def __init__(self, storage: Storage, layout: DataLayout, config: ServerConfig, embedder: Any,
                 indexes: IndexCache, embed_cache: Any = "data_dir") -> None:
        self.storage = storage
        self.layout = layout
        self.config = config
        self.embedder = embedder
        self.indexes = indexes
        #: vectors by content (``_embedding_cache``): by default the data dir's, with the budget of
        #: ``LLAMAEVAL_EMBED_CACHE_MB``; None: every chunk is embedded
        self.embed_cache: EmbeddingCache | None = (
            EmbeddingCache.in_data_dir(layout.root, dimensions=int(embedder.dimensions))
            if embed_cache == "data_dir" else embed_cache)
        self._queue: queue.Queue[str] = queue.Queue()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # serialises job creation
        self._threads: list[threading.Thread] = []
        self._cancelled: set[str] = set()  # pipelines whose running job should stop
        self._running = 0  # jobs running now (0 or 1): while one runs, searches leave it a core
        self._accounts: dict[str, str] = {}  # pipeline -> account, for the cheap check between files

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Recover from a previous run, then start the worker and scheduler threads."""
        self._recover()
        for target, name in ((self._work, "llamaeval-sync"), (self._schedule, "llamaeval-scheduler")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the threads to stop (a running job ends ``failed``: interrupted) and wait for them."""
        self._stop.set()
        self._queue.put("")
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()
        if self.embed_cache is not None:
            self.embed_cache.close()

    def _recover(self) -> None:
        """Jobs a killed server left running end failed; pending ones are queued again."""
        now = utc_now()
        for job in self.storage.list_unfinished_jobs():
            pipeline = self.storage.get_pipeline_any(job.pipeline_id)
            if pipeline is None:
                continue
            if job.status == "running":
                self._fail(job, pipeline, INTERRUPTED, now)
            else:
                self._queue.put(job.id)
        for pipeline in self.storage.list_all_pipelines():
            for pf in self.storage.list_pipeline_files(pipeline.id):
                if pf.status == "processing":
                    self.storage.update_pipeline_file(pipeline.id, pf.file_id, status="pending", updated_at=now)
            keep = {pipeline.index_version} if pipeline.index_version else set()
            self.layout.prune_indexes(pipeline.id, keep)

    # -- requests -------------------------------------------------------------------------
    def request_sync(self, pipeline: Pipeline, trigger: str = "manual") -> Job:
        """Queue a sync of ``pipeline``; an already queued (not started) job is returned instead."""
        with self._lock:
            for job in self.storage.list_jobs(pipeline.id):
                if job.status == "pending":
                    return job
            now = utc_now()
            job = self.storage.create_job(Job(id=str(uuid.uuid4()), pipeline_id=pipeline.id,
                                              account_id=pipeline.account_id, status="pending",
                                              created_at=now, trigger=trigger),
                                          pipeline_changes={"status": "syncing", "last_sync_started_at": now,
                                                            "updated_at": now})
        self._queue.put(job.id)
        return job

    def cancel(self, pipeline: Pipeline) -> int:
        """Cancel the pipeline's queued jobs and ask its running one to stop at the next file;
        returns how many jobs were affected. A cancelled job ends ``failed`` with
        ``CANCELLED`` as its error; the last completed index stays in service."""
        with self._lock:
            jobs = self.storage.list_jobs(pipeline.id)
            running = any(job.status == "running" for job in jobs)
            if running:
                self._cancelled.add(pipeline.id)
            n = int(running)
            for job in jobs:
                if job.status == "pending":
                    now = utc_now()  # the job and (when nothing runs) the pipeline's status, together
                    self.storage.update_job_and_pipeline(
                        job.id, {"status": "failed", "error": CANCELLED, "completed_at": now}, pipeline.id,
                        {} if running else self._settled(pipeline.id, now, exclude=job.id))
                    n += 1
        return n

    def _settled(self, pipeline_id: str, now: Any, error: str | None = None, exclude: str = ""
                 ) -> dict[str, Any]:
        """The pipeline's changes when a job of it stops without a new index: ``syncing`` while
        another of its jobs waits, else ``active`` if it serves an index, else ``idle``."""
        current = self.storage.get_pipeline_any(pipeline_id)
        if current is None:
            return {}
        if any(j.status in ("pending", "running") and j.id != exclude for j in self.storage.list_jobs(pipeline_id)):
            status = "syncing"
        else:
            status = "active" if current.index_version else "idle"
        changes: dict[str, Any] = {"status": status, "updated_at": now}
        if error is not None:
            changes["error"] = error
        return changes

    @property
    def busy(self) -> bool:
        """Whether a sync job is running now."""
        return self._running > 0

    # -- threads --------------------------------------------------------------------------
    def _load_model(self) -> None:
        """Load the embedding model now, off the request path: the first sync or query does not pay it."""
        try:
            load = getattr(self.embedder, "load", None)
            if callable(load):
                load()
        except Exception:
            log.exception("could not load the embedding model")

    def _work(self) -> None:
        self._load_model()
        while not self._stop.is_set():
            try:
                job_id = self._queue.get(timeout=1.0)
            except queue.Empty:
                continue
            if not job_id or self._stop.is_set():
                continue
            job = self.storage.get_job(job_id)
            if job is None or job.status != "pending":
                continue
            try:
                self._run(job)
            except Exception:  # never let the worker die; the job is already marked failed
                log.exception("sync job %s crashed", job_id)

    def _schedule(self) -> None:
        while not self._stop.wait(self.config.scheduler_tick_s):
            try:
                self._tick()
            except Exception:
                log.exception("scheduler tick failed")

    def _tick(self) -> None:
        now = utc_now()
        for pipeline in self.storage.list_scheduled_pipelines():
            since = pipeline.last_sync_started_at or pipeline.created_at
            if (now - since).total_seconds() < pipeline.sync_interval:
                continue
            if any(j.status in ("pending", "running") for j in self.storage.list_jobs(pipeline.id)):
                continue
            if not self.storage.list_pipeline_data_sources(pipeline.id) and not any(
                    pf.status == "pending" for pf in self.storage.list_pipeline_files(pipeline.id)):
                continue  # nothing can have changed: no job (avoids one empty job per interval)
            log.info("scheduled sync of pipeline %s", pipeline.id)
            self.request_sync(pipeline, trigger="schedule")

    # -- one job ---------------------------------------------------------------------------
    def _check(self, pipeline_id: str) -> None:
        if self._stop.is_set():
            raise _Stop("interrupted: the server stopped during this sync")
        # (status, index version) only: decoding the whole pipeline row (configs, learned weights)
        # for every file cost ~1.6 ms a file
        account = self._accounts.get(pipeline_id)
        gone = (self.storage.get_pipeline_index(account, pipeline_id) is None if account is not None
                else self.storage.get_pipeline_any(pipeline_id) is None)
        if gone:
            raise _Stop("the pipeline was deleted during this sync")
        if pipeline_id in self._cancelled:
            raise _Stop(CANCELLED)

    def _fail(self, job: Job, pipeline: Pipeline, reason: str, now: Any = None) -> None:
        """The job ends ``failed`` and its pipeline's status follows, in one storage call.

        A job that was stopped (cancelled, or interrupted by the server's stop or a crash) says
        nothing about the pipeline's content: it keeps serving its index, so its status is
        ``active`` (``idle`` without an index) and ``error`` says what happened. A job that
        failed on the content makes the pipeline ``error``."""
        now = now or utc_now()
        if stopped(reason):
            current = self.storage.get_pipeline_any(pipeline.id)
            note = reason
            if reason != CANCELLED and current is not None:
                served = (f"the previous index ({current.num_chunks} chunks) is still served"
                          if current.index_version else "nothing is searchable yet")
                note = f"{reason}; {served}: sync again to finish"
            changes = self._settled(pipeline.id, now, error=note, exclude=job.id)
        elif self.storage.get_pipeline_any(pipeline.id) is not None:
            changes = {"status": "error", "error": reason, "updated_at": now}
        else:
            changes = {}
        self.storage.update_job_and_pipeline(job.id, {"status": "failed", "error": reason, "completed_at": now},
                                             pipeline.id, changes)

    def _run(self, job: Job) -> None:
        pipeline = self.storage.get_pipeline_any(job.pipeline_id)
        if pipeline is None:
            return
        self._accounts[pipeline.id] = pipeline.account_id
        with self._lock:  # a cancel flag left by a job that ended before it was seen is stale
            current = self.storage.get_job(job.id)
            if current is None or current.status in ("completed", "failed"):
                return  # cancelled between the queue and here (cancel holds this lock too)
            self._cancelled.discard(pipeline.id)
            now = utc_now()
            self.storage.update_job_and_pipeline(job.id, {"status": "running", "started_at": now}, pipeline.id,
                                                 {"status": "syncing", "updated_at": now})
        self._running += 1
        try:
            self._sync(job, pipeline)
        except _Stop as stop:
            self._reset_processing(pipeline.id)
            self._fail(job, pipeline, str(stop))
            if self.storage.get_pipeline_any(pipeline.id) is None:
                self.layout.remove_pipeline(pipeline.id)
        except _NothingToIndex as exc:  # the files' fault, each named in its own error: one line
            log.warning("sync of pipeline %s failed: %s", pipeline.id, exc)
            self._reset_processing(pipeline.id)
            self._fail(job, pipeline, str(exc))
        except Exception as exc:
            log.exception("sync of pipeline %s failed", pipeline.id)
            self._reset_processing(pipeline.id)
            self._fail(job, pipeline, f"{type(exc).__name__}: {exc}")
        finally:
            self._running -= 1
            self._cancelled.discard(pipeline.id)

    def _reset_processing(self, pipeline_id: str) -> None:
        for pf in self.storage.list_pipeline_files(pipeline_id):
            if pf.status == "processing":
                self.storage.update_pipeline_file(pipeline_id, pf.file_id, status="pending", updated_at=utc_now())

    def _sync(self, job: Job, pipeline: Pipeline) -> None:
        from llamaeval import engine

        chunking = engine.ChunkingConfig.from_dict(pipeline.chunking_config)
        config_key = _sha256(json.dumps(chunking.to_dict(), sort_keys=True).encode()
                             + self._pipeline_embedder(pipeline.id).model_name.encode())[:16]
        removed = False
        for source in self.storage.list_pipeline_data_sources(pipeline.id):
            self._check(pipeline.id)
            removed |= self._scan_source(pipeline, source)

        files = self.storage.list_pipeline_files(pipeline.id)
        if not files and not self.storage.list_pipeline_data_sources(pipeline.id):
            now = utc_now()  # every file was taken out: nothing to search any more
            self.storage.update_job_and_pipeline(
                job.id, {"status": "completed", "completed_at": now, "num_chunks": 0}, pipeline.id,
                {"index_version": None, "num_chunks": 0, "status": "idle", "error": None, "last_synced_at": now,
                 "updated_at": now})
            self.indexes.drop(pipeline.id)
            return
        if not files:
            raise _NothingToIndex("nothing to index: the pipeline has no files and its data sources hold no "
                                  "supported files")
        targets: list[tuple[PipelineFile, StoredFile | None, str]] = []
        for pf in files:
            stored = self.storage.get_file(pipeline.account_id, pf.file_id)
            key = f"{stored.sha256[:32]}-{config_key}" if stored else ""
            if pf.status in ("pending", "processing") or pf.processed_key != key:
                targets.append((pf, stored, key))
        self.storage.update_job(job.id, num_files=len(targets))
        if (not targets and not removed and pipeline.index_version is not None
                and self._stored_fingerprint(pipeline) == self._fingerprint(pipeline)):
            now = utc_now()  # nothing changed: the current index stays
            self.storage.update_job_and_pipeline(
                job.id, {"status": "completed", "completed_at": now, "num_chunks": pipeline.num_chunks}, pipeline.id,
                {"status": "active", "error": None, "last_synced_at": now, "updated_at": now})
            return

        progress = {"processed": 0, "failed": 0, "chunks_total": 0, "chunks_done": 0, "chunks_cached": 0}
        chunked: list[_Chunked] = []  # files cut into chunks (on disk), waiting for their vectors
        last_report = time.monotonic()
        for pf, stored, key in targets:
            self._check(pipeline.id)
            self.storage.update_pipeline_file(pipeline.id, pf.file_id, status="processing", updated_at=utc_now())
            try:
                if stored is None:
                    raise engine.ParseError("the uploaded file no longer exists")
                reused = self._reuse(pipeline.id, pf.file_id, key)
                if reused is not None:
                    self._file_done(job, pipeline.id, pf, key, progress, n_chunks=reused)
                    continue
                doc = engine.parse_document(file_store(self.storage, self.layout).read(stored.id), stored.name)
                chunks = engine.chunk_document(doc, chunking, self.embedder)
                if not chunks:
                    raise engine.ParseError("document has no text to index")
                self._save_chunks(pipeline.id, pf.file_id, key, doc.title, chunks)
            except (engine.ParseError, ValueError, UnicodeError, OSError) as exc:
                self._file_done(job, pipeline.id, pf, key, progress, error=_reason(exc))
                continue
            chunked.append(_Chunked(pf, key, len(chunks)))
            progress["chunks_total"] += len(chunks)
            if time.monotonic() - last_report >= self.REPORT_S:
                self._report_chunks(job, progress)
                last_report = time.monotonic()
        self._report_chunks(job, progress)
        self._embed_files(job, pipeline.id, chunked, progress)
        if progress["chunks_total"]:
            cache = self.embed_cache.stats() if self.embed_cache is not None else None
            log.info("pipeline %s: %d chunks, %d embedded, %d from the embedding cache%s", pipeline.id,
                     progress["chunks_total"], progress["chunks_done"] - progress["chunks_cached"],
                     progress["chunks_cached"],
                     "" if cache is None else (f" (cache: {cache['entries']} vectors, {cache['bytes'] / 2**20:.1f} of "
                                               f"{cache['budget_bytes'] / 2**20:.0f} MB, {cache['evictions']} "
                                               "evicted since start)"))

        self._check(pipeline.id)
        progress["files"] = len(targets)
        self._build_and_swap(job, pipeline, chunking, progress)

    #: Chunks embedded together: sorted by token length over the window, cut into calls of at
    #: most ``Embedder.batch_tokens`` padded tokens (bounded memory: the window's texts and vectors).
    WINDOW_CHUNKS = 8192
    #: Seconds between progress writes while files are being chunked.
    REPORT_S = 0.5

    def _file_done(self, job: Job, pipeline_id: str, pf: PipelineFile, key: str, progress: dict[str, int],
                   n_chunks: int = 0, error: str | None = None) -> None:
        if error is not None:
            progress["failed"] += 1
            for p in self.layout.chunks_paths(pipeline_id, pf.file_id):
                p.unlink(missing_ok=True)
        # on error the key records WHICH content failed: retried only when it changes or is re-added
        self.storage.update_pipeline_file(pipeline_id, pf.file_id, status="error" if error else "completed",
                                          error=error, num_chunks=n_chunks, processed_key=key,
                                          updated_at=utc_now())
        progress["processed"] += 1
        self.storage.update_job(job.id, num_processed=progress["processed"], num_failed=progress["failed"])

    def _report_chunks(self, job: Job, progress: dict[str, int]) -> None:
        """The job's chunk counters: chunks of the files it processes, of them with a vector
        (embedded now or found in the embedding cache), and of them found in the cache."""
        self.storage.update_job(job.id, num_chunks_total=progress["chunks_total"],
                                num_chunks_done=progress["chunks_done"], num_chunks_cached=progress["chunks_cached"])

    def _reuse(self, pipeline_id: str, file_id: str, key: str) -> int | None:
        """Chunk count of this file's processed chunks on disk when they match ``key`` (same content
        and config, e.g. only the metadata changed), else None."""
        json_path, npy_path = self.layout.chunks_paths(pipeline_id, file_id)
        if not (json_path.exists() and npy_path.exists()):
            return None
        try:
            record = json.loads(json_path.read_text("utf-8"))
            return len(record["chunks"]) if record["key"] == key else None
        except (ValueError, KeyError, OSError):
            return None

    def _save_chunks(self, pipeline_id: str, file_id: str, key: str, title: str | None, chunks: list[Any]) -> None:
        """Write a file's chunks (its vectors follow once embedded); its old vectors go first, so
        chunks on disk never sit beside vectors of other chunks."""
        json_path, npy_path = self.layout.chunks_paths(pipeline_id, file_id)
        npy_path.unlink(missing_ok=True)
        record = {"key": key, "title": title, "embedding_model": self.embedder.model_name,
                  "chunks": [{"text": c.text, "chunk_index": c.chunk_index, "start_char": c.start_char,
                              "end_char": c.end_char} for c in chunks]}
        write_atomic(json_path, json.dumps(record, ensure_ascii=False).encode("utf-8"), durable=False)

    def _embed_files(self, job: Job, pipeline_id: str, files: list["_Chunked"], progress: dict[str, int]) -> None:
        """Give every chunked file its vectors, ``WINDOW_CHUNKS`` chunks at a time; a file
        completes as soon as all its chunks have one."""
        window: list[_Chunked] = []
        size = 0
        for f in files:
            window.append(f)
            size += f.n_chunks
            if size >= self.WINDOW_CHUNKS:
                self._embed_window(job, pipeline_id, window, progress)
                window, size = [], 0
        if window:
            self._embed_window(job, pipeline_id, window, progress)

    def _pipeline_embedder(self, pipeline_id: str) -> Any:
        """The embedder of the pipeline's ``embedding_model`` (ConfigurationError, naming the extra to
        install, when this process cannot embed with it: the job fails with that message)."""
        from llamaeval.engine._embedders import embedder_of

        current = self.storage.get_pipeline_any(pipeline_id)
        return embedder_of(self.embedder, current.embedding_model if current is not None else None)

    def _passage_batches(self, texts: list[str], embedder: Any = None) -> Any:
        """(indices into ``texts``, vectors) batch by batch from ``embedder`` (default the server's;
        one call for an embedder without ``iter_passage_batches``)."""
        embedder = self.embedder if embedder is None else embedder
        batches = getattr(embedder, "iter_passage_batches", None)
        if batches is not None:
            yield from batches(texts)
        elif texts:
            yield np.arange(len(texts)), embedder.embed_passages(texts)

    def _embed_window(self, job: Job, pipeline_id: str, window: list["_Chunked"], progress: dict[str, int]) -> None:
        """Embed the chunks of ``window``'s files together, longest first in token-budget batches;
        write each file's vectors and complete it once all its chunks are embedded. Each text is
        embedded once (duplicates share the vector). On an embedding error the window's
        unfinished files end in error."""
        self._check(pipeline_id)
        texts: list[str] = []
        owner: list[int] = []  # position -> index of its file in window
        starts: list[int] = []
        remaining: list[int] = []
        for i, f in enumerate(window):
            starts.append(len(texts))
            json_path, _ = self.layout.chunks_paths(pipeline_id, f.pf.file_id)
            try:
                record = json.loads(json_path.read_text("utf-8"))
                if record["key"] != f.key or len(record["chunks"]) != f.n_chunks:
                    raise ValueError("they changed since they were written")
                own = [c["text"] for c in record["chunks"]]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self._file_done(job, pipeline_id, f.pf, f.key, progress,
                                error=f"its chunks could not be read back: {_reason(exc)}")
                remaining.append(0)
                continue
            texts.extend(own)
            owner.extend([i] * len(own))
            remaining.append(len(own))
        embedder = self._pipeline_embedder(pipeline_id)
        dim = int(embedder.dimensions)
        vectors = np.zeros((len(texts), dim), dtype=np.float32)

        def settle(positions: list[int]) -> None:
            for p in positions:
                i = owner[p]
                remaining[i] -= 1
                if remaining[i] == 0:
                    self._write_vectors(job, pipeline_id, window[i], vectors[starts[i]:starts[i] + window[i].n_chunks],
                                        progress)
            progress["chunks_done"] += len(positions)

        keys: list[bytes] = []
        hits: dict[int, np.ndarray] = {}
        if self.embed_cache is not None and texts:
            keys = self.embed_cache.keys(job.account_id, model_scope(embedder), texts)
            hits = self.embed_cache.get_many(keys, dimensions=dim)
            for p, vector in hits.items():
                vectors[p] = vector
            progress["chunks_cached"] += len(hits)
            settle(list(hits))
        todo: list[int] = []
        copies: dict[int, list[int]] = {}  # first position of a text -> later positions of the same text
        first: dict[str, int] = {}
        for p, text in enumerate(texts):
            if p in hits:
                continue
            if text in first:
                copies.setdefault(first[text], []).append(p)
            else:
                first[text] = p
                todo.append(p)
        try:
            for idx, got in self._passage_batches([texts[p] for p in todo], embedder):
                got = np.asarray(got, dtype=np.float32)
                if got.shape != (len(idx), dim):
                    raise ValueError(f"the embedder returned vectors of shape {got.shape} for {len(idx)} chunks")
                done = [todo[i] for i in idx]
                vectors[done] = got
                if self.embed_cache is not None:
                    self.embed_cache.put_many([keys[p] for p in done], got)
                same = [(q, p) for p in done for q in copies.get(p, ())]
                for q, p in same:
                    vectors[q] = vectors[p]
                settle(done + [q for q, _ in same])
                self._report_chunks(job, progress)
                self._check(pipeline_id)
        except (ValueError, RuntimeError) as exc:
            for i, f in enumerate(window):
                if remaining[i] > 0:
                    self._file_done(job, pipeline_id, f.pf, f.key, progress, error=f"embedding failed: {exc}")
            return
        self._report_chunks(job, progress)

    def _write_vectors(self, job: Job, pipeline_id: str, f: "_Chunked", own: np.ndarray,
                       progress: dict[str, int]) -> None:
        """A file's vectors go beside its chunks; the file is completed."""
        import io

        _, npy_path = self.layout.chunks_paths(pipeline_id, f.pf.file_id)
        buf = io.BytesIO()
        np.save(buf, own)
        write_atomic(npy_path, buf.getvalue(), durable=False)
        self._file_done(job, pipeline_id, f.pf, f.key, progress, n_chunks=f.n_chunks)

    INPUTS_FILE = "inputs.sha256"  # in each index dir: what the index was built from

    def _fingerprint(self, pipeline: Pipeline, files: list[PipelineFile] | None = None) -> str:
        """Hash of everything an index is built from: completed files (``files``, default the
        pipeline's now), their content keys, names and metadata, and the retrieval config."""
        h = hashlib.sha256(json.dumps(pipeline.retrieval_config, sort_keys=True).encode())
        files = self.storage.list_pipeline_files(pipeline.id) if files is None else files
        for pf in sorted(files, key=lambda f: f.file_id):
            if pf.status == "completed":
                h.update(json.dumps([pf.file_id, pf.processed_key, pf.name, pf.metadata], sort_keys=True).encode())
        return h.hexdigest()

    def _stored_fingerprint(self, pipeline: Pipeline) -> str | None:
        if pipeline.index_version is None:
            return None
        try:
            return (self.layout.index_dir(pipeline.id, pipeline.index_version) / self.INPUTS_FILE).read_text().strip()
        except OSError:
            return None

    @staticmethod
    def _segment_id(pf: PipelineFile, config: Any) -> str:
        """The index segment of a completed file: named by what its entries are made of (file,
        processed content key — content, chunking and embedding model —, name, metadata) and
        the config's analysis settings, so an unchanged file's segment is reused by the next version."""
        from llamaeval.engine._segments import segment_id

        source = json.dumps([pf.file_id, pf.processed_key, pf.name, pf.metadata], sort_keys=True, ensure_ascii=False)
        return segment_id(source, config)

    def _read_chunks(self, pipeline_id: str, pf: PipelineFile) -> tuple[dict[str, Any], np.ndarray]:
        """A completed file's chunks and vectors from disk; OSError/ValueError/KeyError when unusable."""
        json_path, npy_path = self.layout.chunks_paths(pipeline_id, pf.file_id)
        record = json.loads(json_path.read_text("utf-8"))
        emb = np.load(npy_path)
        if record["key"] != pf.processed_key or emb.shape[0] != len(record["chunks"]):
            raise ValueError("chunks on disk do not match the file")
        return record, emb

    def _reprocess(self, job: Job, pipeline_id: str, pf: PipelineFile, chunking: Any,
                   progress: dict[str, int]) -> PipelineFile | None:
        """Process one completed file again (its chunks on disk were lost or damaged)."""
        from llamaeval import engine

        progress["files"] = progress.get("files", 0) + 1
        self.storage.update_job(job.id, num_files=progress["files"])
        stored = self.storage.get_file(job.account_id, pf.file_id)
        key = pf.processed_key or ""
        try:
            if stored is None:
                raise engine.ParseError("the uploaded file no longer exists")
            doc = engine.parse_document(file_store(self.storage, self.layout).read(stored.id), stored.name)
            chunks = engine.chunk_document(doc, chunking, self.embedder)
            if not chunks:
                raise engine.ParseError("document has no text to index")
            self._save_chunks(pipeline_id, pf.file_id, key, doc.title, chunks)
        except (engine.ParseError, ValueError, UnicodeError, OSError) as exc:
            self._file_done(job, pipeline_id, pf, key, progress, error=_reason(exc))
            return None
        progress["chunks_total"] = progress.get("chunks_total", 0) + len(chunks)
        self._embed_window(job, pipeline_id, [_Chunked(pf, key, len(chunks))], progress)
        return self.storage.get_pipeline_file(pipeline_id, pf.file_id)

    def _build_and_swap(self, job: Job, pipeline: Pipeline, chunking: Any, progress: dict[str, int]) -> None:
        from llamaeval import engine

        used: list[PipelineFile] = []  # what this index is built from (files may change meanwhile)
        config = engine.RetrievalConfig.from_dict(pipeline.retrieval_config)
        build_dir = self.layout.new_build_dir(pipeline.id)
        embedder = self._pipeline_embedder(pipeline.id)
        # a segment per file: the unchanged ones are hard links to the previous version's
        reuse = (self.layout.index_dir(pipeline.id, pipeline.index_version),) if pipeline.index_version else ()
        writer = engine.IndexWriter(build_dir, config, reuse=reuse, embedding_model=embedder.model_name)
        files = self.storage.list_pipeline_files(pipeline.id)
        for pf in files:
            if pf.status != "completed":
                continue
            if writer.link(self._segment_id(pf, config)):
                used.append(pf)
                continue
            try:
                record, emb = self._read_chunks(pipeline.id, pf)
            except (OSError, ValueError, KeyError) as exc:
                log.warning("chunks of %s in pipeline %s are unusable (%s): processing the file again",
                            pf.name, pipeline.id, exc)
                fresh = self._reprocess(job, pipeline.id, pf, chunking, progress)
                if fresh is None or fresh.status != "completed":
                    continue
                record, emb = self._read_chunks(pipeline.id, fresh)
                pf = fresh
            used.append(pf)
            entries = [engine.IndexEntry(
                chunk_id=f"{pf.file_id}:{c['chunk_index']}", file_id=pf.file_id, file_name=pf.name,
                chunk_index=c["chunk_index"], start_char=c["start_char"], end_char=c["end_char"],
                text=c["text"], title=record.get("title"), metadata=dict(pf.metadata)) for c in record["chunks"]]
            writer.add(self._segment_id(pf, config), entries, emb)
        if not used:
            files = self.storage.list_pipeline_files(pipeline.id)
            errors = [f"{pf.name}: {pf.error}" for pf in files if pf.status == "error"]
            detail = f"; first: {errors[0]}" if errors else ""
            raise _NothingToIndex(f"no file could be indexed ({len(errors)} of {len(files)} failed{detail})")
        n_chunks = int(writer.finish()["num_chunks"])
        log.info("pipeline %s: index of %d files, %d segments written, %d reused", pipeline.id, len(used),
                 writer.written, writer.linked)
        inputs = self._fingerprint(pipeline, used)
        (build_dir / self.INPUTS_FILE).write_text(inputs)
        self._check(pipeline.id)
        version = f"v{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"
        final = self.layout.index_dir(pipeline.id, version)
        os.replace(build_dir, final)
        # warm: the first query after the swap is fast; the loaded previous version's segments are reused
        index = engine.Index.load(final, embedder, reranker=self.indexes.reranker,
                                  previous=self.indexes.loaded(pipeline.id))
        # past ann_threshold the load made the HNSW graph (the previous one plus the appended chunks
        # when files were only added, else from all vectors); kept with the version so restarts and
        # other processes read it instead of building it
        index.save_graph(final)
        now = utc_now()
        previous = pipeline.index_version
        # the swap: one transaction makes the new index the current one and completes the job
        self.storage.update_job_and_pipeline(
            job.id, {"status": "completed", "completed_at": now, "num_chunks": n_chunks}, pipeline.id,
            {"index_version": version, "num_chunks": n_chunks, "last_synced_at": now, "status": "active",
             "error": None, "updated_at": now})
        self.indexes.put(pipeline.id, version, index)
        if self._fingerprint(pipeline) != inputs:
            self.request_sync(pipeline, trigger=job.trigger)  # files changed during the build: catch up
        current = self.storage.get_pipeline_any(pipeline.id)
        keep = {version} | ({previous} if previous else set())
        if current is not None:
            self.layout.prune_indexes(pipeline.id, keep)

    # -- data sources ----------------------------------------------------------------------
    def _scan_source(self, pipeline: Pipeline, source: DataSource) -> bool:
        """Bring the pipeline's files from ``source`` up to date; True when some were removed."""
        from llamaeval import engine

        if source.source_type != "directory":
            raise ValueError(f"unsupported source_type {source.source_type!r}")
        root = resolve_source_dir(self.config.sources_root_of(source.account_id), source.config.get("path"),
                                  self.config.sources_root)
        recursive = bool(source.config.get("recursive", True))
        candidates = sorted(root.rglob("*") if recursive else root.iterdir())
        seen: set[str] = set()
        now = utc_now()
        for path in candidates:
            rel_parts = path.relative_to(root).parts
            if any(part.startswith(".") for part in rel_parts) or not path.is_file():
                continue
            if not path.resolve().is_relative_to(root):  # a symlink leading out of the root
                continue
            if path.suffix.lower() not in engine.SUPPORTED_EXTENSIONS:
                continue
            if path.stat().st_size > self.config.max_upload_bytes:
                continue
            rel = "/".join(rel_parts)
            data = path.read_bytes()
            digest = _sha256(data)
            stored = self.storage.find_source_file(source.id, rel)
            if stored is None:
                stored = StoredFile(id=str(uuid.uuid4()), account_id=source.account_id,
                                    project_id=source.project_id, name=rel, file_size=len(data),
                                    content_type=mimetypes.guess_type(rel)[0] or "application/octet-stream",
                                    sha256=digest, created_at=now, updated_at=now,
                                    data_source_id=source.id, source_path=rel)
                file_store(self.storage, self.layout).write(stored.id, [data])
                self.storage.create_file(stored)
            elif stored.sha256 != digest:
                file_store(self.storage, self.layout).write(stored.id, [data])
                self.storage.update_file(stored.id, sha256=digest, file_size=len(data), updated_at=now)
            seen.add(stored.id)
            if self.storage.get_pipeline_file(pipeline.id, stored.id) is None:
                self.storage.upsert_pipeline_file(PipelineFile(
                    pipeline_id=pipeline.id, file_id=stored.id, name=rel, status="pending",
                    metadata={"data_source_id": source.id, "source_path": rel},
                    data_source_id=source.id, added_at=now, updated_at=now))
        removed = False
        for pf in self.storage.list_pipeline_files(pipeline.id):
            if pf.data_source_id == source.id and pf.file_id not in seen:
                self.storage.remove_pipeline_file(pipeline.id, pf.file_id)
                for p in self.layout.chunks_paths(pipeline.id, pf.file_id):
                    p.unlink(missing_ok=True)
                removed = True
        return removed
