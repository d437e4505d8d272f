"""SQLite implementation of the server's :class:`~llamaeval.server._storage.Storage`.

One connection in WAL mode, serialised by a lock (each call is one short
transaction), so the API threads, the sync worker and the scheduler can share it.
A state change that touches a job and its pipeline is one call and one transaction
(``create_job(..., pipeline_changes)``, ``update_job_and_pipeline``).
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import uuid
from contextlib import contextmanager
from dataclasses import asdict, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from llamaeval.server._storage import (
    Account,
    ApiKey,
    DataSink,
    DataSource,
    Job,
    Pipeline,
    PipelineFile,
    Project,
    StoredFile,
    utc_now,
)
from llamaeval.server._storage import JSON_FIELDS as _JSON_FIELDS
from llamaeval.server._storage import UPDATABLE

__all__ = ["SQLiteStorage"]

T = TypeVar("T")

_SCHEMA_VERSION = 4
_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY, account_id TEXT NOT NULL REFERENCES accounts(id),
    name TEXT NOT NULL, prefix TEXT NOT NULL, key_hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS projects (
    id TEXT PRIMARY KEY, account_id TEXT NOT NULL, name TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS projects_account ON projects(account_id);
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY, account_id TEXT NOT NULL, project_id TEXT NOT NULL, name TEXT NOT NULL,
    file_size INTEGER NOT NULL, content_type TEXT NOT NULL, sha256 TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    data_source_id TEXT, source_path TEXT, external_file_id TEXT, purpose TEXT);
CREATE INDEX IF NOT EXISTS files_source ON files(data_source_id, source_path);
CREATE TABLE IF NOT EXISTS pipelines (
    id TEXT PRIMARY KEY, account_id TEXT NOT NULL, project_id TEXT NOT NULL, name TEXT NOT NULL,
    status TEXT NOT NULL, sync_interval INTEGER, retrieval_config TEXT NOT NULL,
    chunking_config TEXT NOT NULL, embedding_model TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, num_chunks INTEGER NOT NULL DEFAULT 0,
    last_synced_at TEXT, index_version TEXT, error TEXT, last_sync_started_at TEXT,
    attributes TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS pipelines_project ON pipelines(account_id, project_id);
CREATE TABLE IF NOT EXISTS pipeline_files (
    pipeline_id TEXT NOT NULL, file_id TEXT NOT NULL, name TEXT NOT NULL, status TEXT NOT NULL,
    metadata TEXT NOT NULL, error TEXT, num_chunks INTEGER NOT NULL DEFAULT 0, processed_key TEXT,
    data_source_id TEXT, added_at TEXT, updated_at TEXT,
    PRIMARY KEY (pipeline_id, file_id));
CREATE TABLE IF NOT EXISTS data_sources (
    id TEXT PRIMARY KEY, account_id TEXT NOT NULL, project_id TEXT NOT NULL, name TEXT NOT NULL,
    source_type TEXT NOT NULL, config TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pipeline_data_sources (
    pipeline_id TEXT NOT NULL, data_source_id TEXT NOT NULL, added_at TEXT NOT NULL,
    PRIMARY KEY (pipeline_id, data_source_id));
CREATE TABLE IF NOT EXISTS data_sinks (
    id TEXT PRIMARY KEY, account_id TEXT NOT NULL, project_id TEXT NOT NULL, name TEXT NOT NULL,
    sink_type TEXT NOT NULL, component TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, pipeline_id TEXT NOT NULL, account_id TEXT NOT NULL, status TEXT NOT NULL,
    created_at TEXT NOT NULL, trigger TEXT NOT NULL, started_at TEXT, completed_at TEXT, error TEXT,
    num_files INTEGER NOT NULL DEFAULT 0, num_processed INTEGER NOT NULL DEFAULT 0,
    num_failed INTEGER NOT NULL DEFAULT 0, num_chunks INTEGER NOT NULL DEFAULT 0,
    num_chunks_total INTEGER NOT NULL DEFAULT 0, num_chunks_done INTEGER NOT NULL DEFAULT 0,
    num_chunks_cached INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS jobs_pipeline ON jobs(pipeline_id, created_at);
"""

# numbered migrations: version -> statements that bring a database of version - 1 to it
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: ("ALTER TABLE pipelines ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}'",
        "ALTER TABLE files ADD COLUMN external_file_id TEXT",
        "ALTER TABLE files ADD COLUMN purpose TEXT"),
}
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
#: JSON columns a client's values are stored in (metadata, configs, settings).
_CLIENT_JSON = {"pipelines": ("retrieval_config", "chunking_config", "attributes"), "pipeline_files": ("metadata",),
                "data_sources": ("config",), "data_sinks": ("component",)}


def _without_lone_surrogates(value: Any) -> Any:
    """``value`` with every lone UTF-16 surrogate (keys too) replaced by U+FFFD."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_without_lone_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_without_lone_surrogates(k): _without_lone_surrogates(v) for k, v in value.items()}
    return value


def _repair_surrogates(db: sqlite3.Connection) -> None:
    """Version 3: values stored before the request boundary refused lone surrogates (e.g. metadata
    ``{"doc_id": "d\\udfff"}``) made every listing of their pipeline a 500 and every sync fail;
    they are stored again with U+FFFD in place of each lone surrogate."""
    for table, columns in _CLIENT_JSON.items():
        for column in columns:
            rows = db.execute(f"SELECT rowid, {column} FROM {table} WHERE {column} LIKE '%\\ud%'").fetchall()
            for rowid, raw in rows:
                try:
                    value = json.loads(raw)
                except ValueError:
                    continue
                fixed = _without_lone_surrogates(value)
                if fixed != value:
                    db.execute(f"UPDATE {table} SET {column} = ? WHERE rowid = ?", (json.dumps(fixed), rowid))


def _add_job_chunk_counters(db: sqlite3.Connection) -> None:
    """Version 4: a running job's chunk counters (``num_chunks_total|done|cached``), added
    where missing."""
    have = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    for column in ("num_chunks_total", "num_chunks_done", "num_chunks_cached"):
        if column not in have:
            db.execute(f"ALTER TABLE jobs ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")


#: migrations that need code: version -> function run on the connection after the statements
_CODE_MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {3: _repair_surrogates,
                                                                      4: _add_job_chunk_counters}


def _encode(name: str, value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if name in _JSON_FIELDS:
        return json.dumps(value)
    return value


def _decode(cls: type[T], row: sqlite3.Row) -> T:
    keys = set(row.keys())
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name not in keys:
            continue
        value = row[f.name]
        if f.name in _JSON_FIELDS:
            value = json.loads(value)
        elif isinstance(value, str) and (f.name.endswith("_at")):
            value = datetime.fromisoformat(value)
        values[f.name] = value
    return cls(**values)


class SQLiteStorage:
    """Metadata in one SQLite file (``path``); created with its schema on first use."""

    def __init__(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30.0)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._lock:
            self._migrate()

    def _migrate(self) -> None:
        """Create the schema on a new database; bring an older one up to ``_SCHEMA_VERSION``."""
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        existing = self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'pipelines'"
                                    ).fetchone()
        if existing is not None and version == 0:
            version = 1  # databases of the first release did not always record their version
        if existing is not None:
            for target in range(version + 1, _SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS.get(target, ()):
                    self._db.execute(statement)
                if target in _CODE_MIGRATIONS:
                    _CODE_MIGRATIONS[target](self._db)
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")

    # -- helpers --------------------------------------------------------------------
    def _one(self, cls: type[T], sql: str, args: tuple = ()) -> T | None:
        with self._lock:
            row = self._db.execute(sql, args).fetchone()
        return _decode(cls, row) if row is not None else None

    def _all(self, cls: type[T], sql: str, args: tuple = ()) -> list[T]:
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [_decode(cls, r) for r in rows]

    def _insert(self, table: str, record: Any, skip: tuple[str, ...] = ()) -> None:
        data = {k: _encode(k, v) for k, v in asdict(record).items() if k not in skip}
        cols = ", ".join(data)
        marks = ", ".join("?" for _ in data)
        with self._lock:
            self._db.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", tuple(data.values()))

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One transaction over several statements (the lock is held throughout)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _update(self, table: str, where: str, args: tuple, changes: dict[str, Any]) -> None:
        if not changes:
            return
        bad = set(changes) - UPDATABLE[table]
        if bad:
            raise ValueError(f"cannot update {table} field(s): {', '.join(sorted(bad))}")
        sets = ", ".join(f"{k} = ?" for k in changes)
        values = tuple(_encode(k, v) for k, v in changes.items())
        with self._lock:
            self._db.execute(f"UPDATE {table} SET {sets} WHERE {where}", values + args)

    # -- accounts and keys ------------------------------------------------------------
    def create_account(self, name: str) -> Account:
        account = Account(id=str(uuid.uuid4()), name=name, created_at=utc_now())
        self._insert("accounts", account)
        return account

    def get_account(self, account_id: str) -> Account | None:
        return self._one(Account, "SELECT * FROM accounts WHERE id = ?", (account_id,))

    def create_api_key(self, account_id: str, name: str, key_hash: str, prefix: str) -> ApiKey:
        key = ApiKey(id=str(uuid.uuid4()), account_id=account_id, name=name, prefix=prefix, created_at=utc_now())
        with self._lock:
            self._db.execute(
                "INSERT INTO api_keys (id, account_id, name, prefix, key_hash, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (key.id, account_id, name, prefix, key_hash, key.created_at.isoformat()),
            )
        return key

    def account_for_key_hash(self, key_hash: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT account_id FROM api_keys WHERE key_hash = ?", (key_hash,)).fetchone()
        return row[0] if row else None

    def list_api_keys(self) -> list[ApiKey]:
        return self._all(ApiKey, "SELECT * FROM api_keys ORDER BY created_at")

    # -- projects ---------------------------------------------------------------------
    def create_project(self, account_id: str, name: str) -> Project:
        now = utc_now()
        project = Project(id=str(uuid.uuid4()), account_id=account_id, name=name, created_at=now, updated_at=now)
        self._insert("projects", project)
        return project

    def get_project(self, account_id: str, project_id: str) -> Project | None:
        return self._one(Project, "SELECT * FROM projects WHERE id = ? AND account_id = ?", (project_id, account_id))

    def list_projects(self, account_id: str) -> list[Project]:
        return self._all(Project, "SELECT * FROM projects WHERE account_id = ? ORDER BY created_at, id", (account_id,))

    # -- files ------------------------------------------------------------------------
    def create_file(self, record: StoredFile) -> StoredFile:
        self._insert("files", record)
        return record

    def get_file(self, account_id: str, file_id: str) -> StoredFile | None:
        return self._one(StoredFile, "SELECT * FROM files WHERE id = ? AND account_id = ?", (file_id, account_id))

    def update_file(self, file_id: str, **changes: Any) -> None:
        self._update("files", "id = ?", (file_id,), changes)

    def find_source_file(self, data_source_id: str, source_path: str) -> StoredFile | None:
        return self._one(StoredFile, "SELECT * FROM files WHERE data_source_id = ? AND source_path = ?",
                         (data_source_id, source_path))

    def list_files(self, account_id: str, project_id: str) -> list[StoredFile]:
        return self._all(StoredFile, "SELECT * FROM files WHERE account_id = ? AND project_id = ? "
                         "ORDER BY created_at, id", (account_id, project_id))

    def delete_file(self, file_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM files WHERE id = ?", (file_id,))

    # -- pipelines --------------------------------------------------------------------
    _PIPELINE_SELECT = (
        "SELECT p.*, (SELECT COUNT(*) FROM pipeline_files pf WHERE pf.pipeline_id = p.id) AS num_files "
        "FROM pipelines p"
    )

    def create_pipeline(self, record: Pipeline) -> Pipeline:
        self._insert("pipelines", record, skip=("num_files",))
        return record

    def get_pipeline(self, account_id: str, pipeline_id: str) -> Pipeline | None:
        return self._one(Pipeline, f"{self._PIPELINE_SELECT} WHERE p.id = ? AND p.account_id = ?",
                         (pipeline_id, account_id))

    def get_pipeline_any(self, pipeline_id: str) -> Pipeline | None:
        return self._one(Pipeline, f"{self._PIPELINE_SELECT} WHERE p.id = ?", (pipeline_id,))

    def get_pipeline_index(self, account_id: str, pipeline_id: str) -> tuple[str, str | None] | None:
        with self._lock:
            row = self._db.execute("SELECT status, index_version FROM pipelines WHERE id = ? AND account_id = ?",
                                   (pipeline_id, account_id)).fetchone()
        return (row["status"], row["index_version"]) if row is not None else None

    def get_pipeline_attributes(self, account_id: str, pipeline_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT attributes FROM pipelines WHERE id = ? AND account_id = ?",
                                   (pipeline_id, account_id)).fetchone()
        return json.loads(row[0]) if row is not None else None

    def list_pipelines(self, account_id: str, project_id: str) -> list[Pipeline]:
        return self._all(Pipeline, f"{self._PIPELINE_SELECT} WHERE p.account_id = ? AND p.project_id = ? "
                         "ORDER BY p.created_at, p.id", (account_id, project_id))

    def list_all_pipelines(self) -> list[Pipeline]:
        return self._all(Pipeline, f"{self._PIPELINE_SELECT} ORDER BY p.created_at, p.id")

    def update_pipeline(self, pipeline_id: str, **changes: Any) -> None:
        self._update("pipelines", "id = ?", (pipeline_id,), changes)

    def delete_pipeline(self, pipeline_id: str) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for table in ("pipeline_files", "pipeline_data_sources", "jobs"):
                    self._db.execute(f"DELETE FROM {table} WHERE pipeline_id = ?", (pipeline_id,))
                self._db.execute("DELETE FROM pipelines WHERE id = ?", (pipeline_id,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # -- files in pipelines -----------------------------------------------------------------
    def upsert_pipeline_file(self, record: PipelineFile) -> PipelineFile:
        data = {k: _encode(k, v) for k, v in asdict(record).items()}
        cols = ", ".join(data)
        marks = ", ".join("?" for _ in data)
        updates = ", ".join(f"{k} = excluded.{k}" for k in data if k not in ("pipeline_id", "file_id", "added_at"))
        with self._lock:
            self._db.execute(
                f"INSERT INTO pipeline_files ({cols}) VALUES ({marks}) "
                f"ON CONFLICT (pipeline_id, file_id) DO UPDATE SET {updates}",
                tuple(data.values()),
            )
        return record

    def get_pipeline_file(self, pipeline_id: str, file_id: str) -> PipelineFile | None:
        return self._one(PipelineFile, "SELECT * FROM pipeline_files WHERE pipeline_id = ? AND file_id = ?",
                         (pipeline_id, file_id))

    def list_pipeline_files(self, pipeline_id: str) -> list[PipelineFile]:
        return self._all(PipelineFile, "SELECT * FROM pipeline_files WHERE pipeline_id = ? "
                         "ORDER BY added_at, rowid", (pipeline_id,))

    def update_pipeline_file(self, pipeline_id: str, file_id: str, **changes: Any) -> None:
        self._update("pipeline_files", "pipeline_id = ? AND file_id = ?", (pipeline_id, file_id), changes)

    def remove_pipeline_file(self, pipeline_id: str, file_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM pipeline_files WHERE pipeline_id = ? AND file_id = ?",
                             (pipeline_id, file_id))

    # -- data sources ---------------------------------------------------------------------
    def create_data_source(self, record: DataSource) -> DataSource:
        self._insert("data_sources", record)
        return record

    def get_data_source(self, account_id: str, data_source_id: str) -> DataSource | None:
        return self._one(DataSource, "SELECT * FROM data_sources WHERE id = ? AND account_id = ?",
                         (data_source_id, account_id))

    def list_data_sources(self, account_id: str, project_id: str) -> list[DataSource]:
        return self._all(DataSource, "SELECT * FROM data_sources WHERE account_id = ? AND project_id = ? "
                         "ORDER BY created_at, id", (account_id, project_id))

    def attach_data_source(self, pipeline_id: str, data_source_id: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO pipeline_data_sources (pipeline_id, data_source_id, added_at) VALUES (?, ?, ?)",
                (pipeline_id, data_source_id, utc_now().isoformat()),
            )

    def list_pipeline_data_sources(self, pipeline_id: str) -> list[DataSource]:
        return self._all(DataSource, "SELECT d.* FROM data_sources d JOIN pipeline_data_sources pd "
                         "ON pd.data_source_id = d.id WHERE pd.pipeline_id = ? ORDER BY pd.added_at, d.id",
                         (pipeline_id,))

    def update_data_source(self, data_source_id: str, **changes: Any) -> None:
        self._update("data_sources", "id = ?", (data_source_id,), changes)

    def detach_data_source(self, pipeline_id: str, data_source_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM pipeline_data_sources WHERE pipeline_id = ? AND data_source_id = ?",
                             (pipeline_id, data_source_id))

    def delete_data_source(self, data_source_id: str) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.execute("DELETE FROM pipeline_data_sources WHERE data_source_id = ?", (data_source_id,))
                self._db.execute("DELETE FROM data_sources WHERE id = ?", (data_source_id,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # -- data sinks -------------------------------------------------------------------------
    def create_data_sink(self, record: DataSink) -> DataSink:
        self._insert("data_sinks", record)
        return record

    def get_data_sink(self, account_id: str, data_sink_id: str) -> DataSink | None:
        return self._one(DataSink, "SELECT * FROM data_sinks WHERE id = ? AND account_id = ?",
                         (data_sink_id, account_id))

    def list_data_sinks(self, account_id: str, project_id: str) -> list[DataSink]:
        return self._all(DataSink, "SELECT * FROM data_sinks WHERE account_id = ? AND project_id = ? "
                         "ORDER BY created_at, id", (account_id, project_id))

    def update_data_sink(self, data_sink_id: str, **changes: Any) -> None:
        self._update("data_sinks", "id = ?", (data_sink_id,), changes)

    def delete_data_sink(self, data_sink_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM data_sinks WHERE id = ?", (data_sink_id,))

    # -- jobs -------------------------------------------------------------------------------
    def create_job(self, record: Job, pipeline_changes: dict[str, Any] | None = None) -> Job:
        with self._transaction():
            self._insert("jobs", record)
            if pipeline_changes:
                self._update("pipelines", "id = ?", (record.pipeline_id,), pipeline_changes)
        return record

    def get_job(self, job_id: str) -> Job | None:
        return self._one(Job, "SELECT * FROM jobs WHERE id = ?", (job_id,))

    def list_jobs(self, pipeline_id: str) -> list[Job]:
        return self._all(Job, "SELECT * FROM jobs WHERE pipeline_id = ? ORDER BY created_at, rowid", (pipeline_id,))

    def list_unfinished_jobs(self) -> list[Job]:
        return self._all(Job, "SELECT * FROM jobs WHERE status IN ('pending', 'running') ORDER BY created_at, rowid")

    def update_job(self, job_id: str, **changes: Any) -> None:
        self._update("jobs", "id = ?", (job_id,), changes)

    def update_job_and_pipeline(self, job_id: str, job_changes: dict[str, Any], pipeline_id: str,
                                pipeline_changes: dict[str, Any]) -> None:
        with self._transaction():
            self._update("jobs", "id = ?", (job_id,), job_changes)
            self._update("pipelines", "id = ?", (pipeline_id,), pipeline_changes)

    def close(self) -> None:
        with self._lock:
            self._db.close()
