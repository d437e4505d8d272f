"""SQLite implementation of the server's :class:`~llamaeval.server._storage.Storage`.

One connection in WAL mode, serialised by a lock (each call is one short
transaction), so the API threads, the sync worker and the scheduler can share it.
The statements and the row mapping are :class:`~llamaeval.server._sql_storage.SQLStorage`'s,
shared with PostgreSQL; this module holds the schema, its migrations and the connection.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

from llamaeval.server._sql_storage import SQLStorage

__all__ = ["SQLiteStorage"]

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


class SQLiteStorage(SQLStorage):
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

    # -- the hooks of SQLStorage ----------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The connection inside one transaction (the lock is held throughout)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _session(self) -> Iterator[sqlite3.Connection]:
        with self._lock:  # one statement: its own transaction (autocommit)
            yield self._db

    def _param(self, value: Any) -> Any:
        return value.isoformat() if isinstance(value, datetime) else value

    def close(self) -> None:
        with self._lock:
            self._db.close()
