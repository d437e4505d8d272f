"""Ingest jobs through PostgreSQL, for several API processes and ingest workers on one database.

A job is created ``pending`` by whichever process received the sync request. Every process that
ingests (``llamaeval worker``, and ``llamaeval serve`` unless ``--no-ingest``) polls the ``jobs``
table and *claims* the oldest job it may run: a pending one, or a running one whose lease expired
(its worker died), never a second job of a pipeline whose job is running under a live lease.
Claims are serialised by a transaction-level advisory lock, so two workers never take the same job.
The claimer holds a lease (``LLAMAEVAL_JOB_LEASE_S``, default 30 s) and renews it every third of
that while the job runs. A job claimed again after its worker died is run again from where the files
stand (files left ``processing`` start over; files already done are reused); after ``MAX_ATTEMPTS``
claims it ends ``failed`` ("interrupted ..."), the pipeline keeping its last completed index. A worker
that lost its lease (it stalled past it) stops without touching the job another worker now holds.
Cancels are a flag on the job that the running worker reads between files, whichever process got
the request. Nothing half-built is ever visible: a new index becomes current only in the swap
transaction (see ``_shared_index``).
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import uuid
from typing import Any

from llamaeval._errors import ConfigurationError
from llamaeval.server._config import DataLayout, ServerConfig
from llamaeval.server._storage import Pipeline, Storage
from llamaeval.server._sync import CANCELLED, IndexCache, SyncService, _Stop

__all__ = ["JobQueue", "QueuedSyncService", "sync_service_for", "DEFAULT_LEASE_S", "MAX_ATTEMPTS"]

log = logging.getLogger("llamaeval.server")

#: Seconds a claimed job stays a worker's without a heartbeat (``LLAMAEVAL_JOB_LEASE_S``).
DEFAULT_LEASE_S = 30.0
#: Claims of one job before it ends failed (its workers kept dying).
MAX_ATTEMPTS = 3
#: Seconds between polls of an idle worker.
POLL_S = 0.5
_CLAIM_LOCK = 0x6C6C616D61716B  # pg_advisory_xact_lock key serialising claims


class _LeaseLost(BaseException):
    """This worker's lease on its job expired and another worker may hold it: stop, touch nothing.
    (A BaseException, so the job runner's failure handling does not mark the job failed.)"""


def lease_seconds() -> float:
    raw = os.environ.get("LLAMAEVAL_JOB_LEASE_S", "").strip()
    if not raw:
        return DEFAULT_LEASE_S
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"LLAMAEVAL_JOB_LEASE_S must be a number of seconds, got {raw!r}") from None
    if not value > 0:
        raise ConfigurationError(f"LLAMAEVAL_JOB_LEASE_S must be > 0, got {raw!r}")
    return value


class JobQueue:
    """Claims, leases and cancel flags of the ``jobs`` table (migration 004) for worker ``owner``."""

    def __init__(self, url: str, owner: str, lease_s: float) -> None:
        from psycopg_pool import ConnectionPool

        self.owner = owner
        self.lease_s = float(lease_s)
        self._pool = ConnectionPool(url, min_size=1, max_size=3, timeout=10.0, open=False,
                                    kwargs={"options": "-c TimeZone=UTC"},
                                    check=ConnectionPool.check_connection, name="llamaeval-queue")
        self._pool.open(wait=True, timeout=10.0)

    def claim(self) -> tuple[str, int] | None:
        """The (job id, attempts including this one) this worker now holds, or None."""
        with self._pool.connection() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_CLAIM_LOCK,))
            row = conn.execute(
                "SELECT j.id FROM jobs j WHERE (j.status = 'pending' OR (j.status = 'running' AND "
                "(j.lease_expires IS NULL OR j.lease_expires < now()))) AND NOT EXISTS ("
                "SELECT 1 FROM jobs r WHERE r.pipeline_id = j.pipeline_id AND r.id <> j.id "
                "AND r.status = 'running' AND r.lease_expires >= now()) "
                "ORDER BY j.created_at, j.seq LIMIT 1 FOR UPDATE SKIP LOCKED").fetchone()
            if row is None:
                return None
            attempts = conn.execute(
                "UPDATE jobs SET status = 'running', lease_owner = %s, "
                "lease_expires = now() + make_interval(secs => %s), attempts = attempts + 1 "
                "WHERE id = %s RETURNING attempts", (self.owner, self.lease_s, row[0])).fetchone()[0]
        return str(row[0]), int(attempts)

    def renew(self, job_id: str) -> bool:
        """Extend the lease; False when this worker no longer holds the job."""
        with self._pool.connection() as conn:
            cur = conn.execute("UPDATE jobs SET lease_expires = now() + make_interval(secs => %s) "
                               "WHERE id = %s AND lease_owner = %s AND status = 'running'",
                               (self.lease_s, job_id, self.owner))
            return cur.rowcount == 1

    def release(self, job_id: str) -> None:
        with self._pool.connection() as conn:
            conn.execute("UPDATE jobs SET lease_owner = NULL, lease_expires = NULL WHERE id = %s AND lease_owner = %s",
                         (job_id, self.owner))

    def request_cancel(self, job_ids: list[str]) -> None:
        with self._pool.connection() as conn:
            conn.execute("UPDATE jobs SET cancel_requested = true WHERE id = ANY(%s)", (job_ids,))

    def cancel_requested(self, job_id: str) -> bool:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT cancel_requested FROM jobs WHERE id = %s", (job_id,)).fetchone()
        return bool(row and row[0])

    def close(self) -> None:
        self._pool.close()


class QueuedSyncService(SyncService):
    """``SyncService`` whose jobs go through :class:`JobQueue`; ``work=False``: this process only
    creates and cancels jobs (an API process beside dedicated workers)."""

    def __init__(self, storage: Storage, layout: DataLayout, config: ServerConfig, embedder: Any,
                 indexes: IndexCache, *, url: str, work: bool = True, lease_s: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(storage, layout, config, embedder, indexes, **kwargs)
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.queue = JobQueue(url, owner, lease_s if lease_s is not None else lease_seconds())
        self.work = work
        self._current: str | None = None
        self._lease_lost = threading.Event()

    def start(self) -> None:
        """Start claiming jobs (and the scheduler and heartbeat) when this process ingests. Nothing
        is recovered at start: other processes may be running jobs; expired leases do the recovery."""
        if not self.work:
            return
        for target, name in ((self._work, "llamaeval-sync"), (self._schedule, "llamaeval-scheduler"),
                             (self._heartbeat, "llamaeval-lease")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        self.queue.close()

    def request_sync(self, pipeline: Pipeline, trigger: str = "manual") -> Any:
        job = super().request_sync(pipeline, trigger)
        while True:  # workers claim jobs from the database, not from this process's in-memory queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return job

    def cancel(self, pipeline: Pipeline) -> int:
        running = [j.id for j in self.storage.list_jobs(pipeline.id) if j.status == "running"]
        n = super().cancel(pipeline)  # pending jobs end cancelled here
        if running:
            self.queue.request_cancel(running)  # the worker running it stops at its next file
        return n

    def _check(self, pipeline_id: str) -> None:
        if self._lease_lost.is_set():
            raise _LeaseLost()
        super()._check(pipeline_id)
        if self._current is not None and self.queue.cancel_requested(self._current):
            raise _Stop(CANCELLED)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.queue.lease_s / 3):
            current = self._current
            try:
                if current is not None and not self.queue.renew(current):
                    self._lease_lost.set()
            except Exception:
                log.exception("could not renew the lease of job %s", current)

    def _work(self) -> None:
        self._load_model()
        while not self._stop.is_set():
            try:
                claimed = self.queue.claim()
            except Exception:
                log.exception("could not claim a job")
                claimed = None
            if claimed is None:
                self._stop.wait(POLL_S)
                continue
            job_id, attempts = claimed
            self._current = job_id
            self._lease_lost.clear()
            try:
                self._run_claimed(job_id, attempts)
            except _LeaseLost:
                log.warning("lost the lease of job %s (this worker stalled): another worker runs it", job_id)
            except Exception:
                log.exception("sync job %s crashed", job_id)
            finally:
                self._current = None
                if not self._lease_lost.is_set():
                    self.queue.release(job_id)

    def _run_claimed(self, job_id: str, attempts: int) -> None:
        job = self.storage.get_job(job_id)
        pipeline = self.storage.get_pipeline_any(job.pipeline_id) if job is not None else None
        if job is None or pipeline is None:
            return
        if attempts > 1:  # the worker that held it died: its files in progress start over
            log.warning("job %s of pipeline %s claimed again (attempt %d): its worker stopped", job_id,
                        pipeline.id, attempts)
            self._reset_processing(pipeline.id)
            if attempts > MAX_ATTEMPTS:
                self._fail(job, pipeline, f"interrupted: {attempts - 1} workers stopped during this sync")
                return
        self._run(job)


def sync_service_for(storage: Storage, layout: DataLayout, config: ServerConfig, embedder: Any,
                     indexes: IndexCache, *, work: bool = True) -> SyncService:
    """The sync service of a server on ``storage``: the PostgreSQL job queue (this process claiming
    jobs when ``work``), or the single-process worker thread on SQLite."""
    from llamaeval.server._postgres import PostgresStorage

    if isinstance(storage, PostgresStorage):
        return QueuedSyncService(storage, layout, config, embedder, indexes, url=storage.url, work=work)
    return SyncService(storage, layout, config, embedder, indexes)
