"""The SQL of the server's :class:`~llamaeval.server._storage.Storage`, once for both databases.

:class:`SQLStorage` holds every statement and the mapping between rows and records;
:class:`~llamaeval.server._sqlite.SQLiteStorage` and :class:`~llamaeval.server._postgres.PostgresStorage`
only say how to reach their database and where the dialects differ, through small hooks:

- ``transaction()``: a connection inside one transaction (SQLite: its one connection under a lock,
  ``BEGIN IMMEDIATE``; PostgreSQL: a pooled connection); ``_session()``: the same for one statement;
- ``_sql(sql)``: the statement in the driver's placeholders (written here with ``?``);
- ``_param(value)``: a Python value as the driver stores it (SQLite: datetimes as ISO text;
  PostgreSQL: text without NUL characters or lone surrogates);
- ``_SEQ``: the column of insertion order that breaks ties in listings (``rowid`` / ``seq``);
- ``_PIPELINE_TABLES``: the tables whose rows die with a pipeline.

Both store JSON values as the same JSON text (a client's key order and numbers come back as sent),
read datetimes back timezone-aware, and make every call one transaction; a change of a job and its
pipeline is one call, one transaction, with ``on_index_swap`` called inside it when the pipeline's
index version changes.
"""

from __future__ import annotations

import json
import uuid
from contextlib import AbstractContextManager
from dataclasses import asdict, fields
from datetime import datetime
from typing import Any, Callable, TypeVar

from llamaeval.server._storage import (
    JSON_FIELDS,
    UPDATABLE,
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

__all__ = ["SQLStorage"]

T = TypeVar("T")

_PIPELINE_SELECT = (
    "SELECT p.*, (SELECT COUNT(*) FROM pipeline_files pf WHERE pf.pipeline_id = p.id) AS num_files "
    "FROM pipelines p"
)


def _encode(name: str, value: Any) -> Any:
    return json.dumps(value) if name in JSON_FIELDS else value


def _decode(cls: type[T], row: Any) -> T:
    """The record ``cls`` of a row (a mapping of column names: sqlite3.Row or psycopg's dict_row)."""
    keys = set(row.keys())
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name not in keys:
            continue
        value = row[f.name]
        if f.name in JSON_FIELDS and value is not None:
            value = json.loads(value)
        elif isinstance(value, str) and f.name.endswith("_at"):  # SQLite keeps datetimes as ISO text
            value = datetime.fromisoformat(value)
        values[f.name] = value
    return cls(**values)


class SQLStorage:
    """Every ``Storage`` call as SQL over the hooks a database's subclass provides."""

    #: the insertion-order column, the tie-breaker of listings
    _SEQ = "rowid"
    #: tables whose rows of a pipeline are deleted with it
    _PIPELINE_TABLES: tuple[str, ...] = ("pipeline_files", "pipeline_data_sources", "jobs")

    #: called as ``on_index_swap(conn, pipeline_id, index_version)`` inside the transaction that
    #: changes a pipeline's index version (PostgreSQL: ``_shared_index.IndexPublisher``, the version's chunks)
    on_index_swap: Callable[[Any, str, str | None], None] | None = None

    # -- the hooks of a database ------------------------------------------------------------
    def transaction(self) -> AbstractContextManager[Any]:
        """A connection inside one transaction: committed when the block ends, rolled back on error."""
        raise NotImplementedError

    def _session(self) -> AbstractContextManager[Any]:
        """A connection for one statement (its own transaction)."""
        return self.transaction()

    def _sql(self, sql: str) -> str:
        """``sql`` (written with ``?`` placeholders) as the driver takes it."""
        return sql

    def _param(self, value: Any) -> Any:
        """A parameter as the driver stores it."""
        return value

    # -- statements ---------------------------------------------------------------------------
    def _execute(self, conn: Any, sql: str, args: tuple = ()) -> Any:
        return conn.execute(self._sql(sql), tuple(self._param(a) for a in args))

    def _one(self, cls: type[T], sql: str, args: tuple = ()) -> T | None:
        with self._session() as conn:
            row = self._execute(conn, sql, args).fetchone()
        return _decode(cls, row) if row is not None else None

    def _all(self, cls: type[T], sql: str, args: tuple = ()) -> list[T]:
        with self._session() as conn:
            rows = self._execute(conn, sql, args).fetchall()
        return [_decode(cls, r) for r in rows]

    def _row(self, sql: str, args: tuple = ()) -> Any:
        with self._session() as conn:
            return self._execute(conn, sql, args).fetchone()

    def _run(self, sql: str, args: tuple = (), conn: Any = None) -> None:
        if conn is not None:
            self._execute(conn, sql, args)
            return
        with self._session() as own:
            self._execute(own, sql, args)

    def _insert(self, table: str, record: Any, skip: tuple[str, ...] = (), conn: Any = None) -> None:
        data = {k: _encode(k, v) for k, v in asdict(record).items() if k not in skip}
        marks = ", ".join("?" for _ in data)
        self._run(f"INSERT INTO {table} ({', '.join(data)}) VALUES ({marks})", tuple(data.values()), conn)

    def _update(self, table: str, where: str, args: tuple, changes: dict[str, Any], conn: Any = None) -> None:
        if not changes:
            return
        bad = set(changes) - UPDATABLE[table]
        if bad:
            raise ValueError(f"cannot update {table} field(s): {', '.join(sorted(bad))}")
        sets = ", ".join(f"{k} = ?" for k in changes)
        values = tuple(_encode(k, v) for k, v in changes.items())
        self._run(f"UPDATE {table} SET {sets} WHERE {where}", values + args, conn)

    # -- accounts and keys ------------------------------------------------------------
    def create_account(self, name: str) -> Account:
        account = Account(id=str(uuid.uuid4()), name=name, created_at=utc_now())
        self._insert("accounts", account)
        return account

    def get_account(self, account_id: str) -> Account | None:
        return self._one(Account, "SELECT * FROM accounts WHERE id = ?", (account_id,))

    def create_api_key(self, account_id: str, name: str, key_hash: str, prefix: str) -> ApiKey:
        key = ApiKey(id=str(uuid.uuid4()), account_id=account_id, name=name, prefix=prefix, created_at=utc_now())
        self._run("INSERT INTO api_keys (id, account_id, name, prefix, key_hash, created_at) "
                  "VALUES (?, ?, ?, ?, ?, ?)", (key.id, account_id, name, prefix, key_hash, key.created_at))
        return key

    def account_for_key_hash(self, key_hash: str) -> str | None:
        row = self._row("SELECT account_id FROM api_keys WHERE key_hash = ?", (key_hash,))
        return row["account_id"] if row is not None else None

    def list_api_keys(self) -> list[ApiKey]:
        return self._all(ApiKey, "SELECT * FROM api_keys ORDER BY created_at, id")

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
        return self._one(StoredFile, "SELECT * FROM files WHERE data_source_id = ? AND source_path = ? "
                         "ORDER BY created_at, id LIMIT 1", (data_source_id, source_path))

    def list_files(self, account_id: str, project_id: str) -> list[StoredFile]:
        return self._all(StoredFile, "SELECT * FROM files WHERE account_id = ? AND project_id = ? "
                         "ORDER BY created_at, id", (account_id, project_id))

    def delete_file(self, file_id: str) -> None:
        self._run("DELETE FROM files WHERE id = ?", (file_id,))

    # -- pipelines --------------------------------------------------------------------
    def create_pipeline(self, record: Pipeline) -> Pipeline:
        self._insert("pipelines", record, skip=("num_files",))
        return record

    def get_pipeline(self, account_id: str, pipeline_id: str) -> Pipeline | None:
        return self._one(Pipeline, f"{_PIPELINE_SELECT} WHERE p.id = ? AND p.account_id = ?",
                         (pipeline_id, account_id))

    def get_pipeline_any(self, pipeline_id: str) -> Pipeline | None:
        return self._one(Pipeline, f"{_PIPELINE_SELECT} WHERE p.id = ?", (pipeline_id,))

    def get_pipeline_index(self, account_id: str, pipeline_id: str) -> tuple[str, str | None] | None:
        row = self._row("SELECT status, index_version FROM pipelines WHERE id = ? AND account_id = ?",
                        (pipeline_id, account_id))
        return (row["status"], row["index_version"]) if row is not None else None

    def get_pipeline_attributes(self, account_id: str, pipeline_id: str) -> dict[str, Any] | None:
        row = self._row("SELECT attributes FROM pipelines WHERE id = ? AND account_id = ?", (pipeline_id, account_id))
        return json.loads(row["attributes"]) if row is not None else None

    def list_pipelines(self, account_id: str, project_id: str) -> list[Pipeline]:
        return self._all(Pipeline, f"{_PIPELINE_SELECT} WHERE p.account_id = ? AND p.project_id = ? "
                         "ORDER BY p.created_at, p.id", (account_id, project_id))

    def list_all_pipelines(self) -> list[Pipeline]:
        return self._all(Pipeline, f"{_PIPELINE_SELECT} ORDER BY p.created_at, p.id")

    def list_scheduled_pipelines(self) -> list[Pipeline]:
        """Pipelines with a ``sync_interval`` (the scheduler's once-a-second look decodes no others)."""
        return self._all(Pipeline, f"{_PIPELINE_SELECT} WHERE p.sync_interval > 0 ORDER BY p.created_at, p.id")

    def update_pipeline(self, pipeline_id: str, **changes: Any) -> None:
        self._update("pipelines", "id = ?", (pipeline_id,), changes)

    def delete_pipeline(self, pipeline_id: str) -> None:
        with self.transaction() as conn:
            for table in self._PIPELINE_TABLES:
                self._run(f"DELETE FROM {table} WHERE pipeline_id = ?", (pipeline_id,), conn)
            self._run("DELETE FROM pipelines WHERE id = ?", (pipeline_id,), conn)

    # -- files in pipelines -----------------------------------------------------------------
    def upsert_pipeline_file(self, record: PipelineFile) -> PipelineFile:
        data = {k: _encode(k, v) for k, v in asdict(record).items()}
        marks = ", ".join("?" for _ in data)
        updates = ", ".join(f"{k} = excluded.{k}" for k in data if k not in ("pipeline_id", "file_id", "added_at"))
        self._run(f"INSERT INTO pipeline_files ({', '.join(data)}) VALUES ({marks}) "
                  f"ON CONFLICT (pipeline_id, file_id) DO UPDATE SET {updates}", tuple(data.values()))
        return record

    def get_pipeline_file(self, pipeline_id: str, file_id: str) -> PipelineFile | None:
        return self._one(PipelineFile, "SELECT * FROM pipeline_files WHERE pipeline_id = ? AND file_id = ?",
                         (pipeline_id, file_id))

    def list_pipeline_files(self, pipeline_id: str) -> list[PipelineFile]:
        return self._all(PipelineFile, "SELECT * FROM pipeline_files WHERE pipeline_id = ? "
                         f"ORDER BY added_at, {self._SEQ}", (pipeline_id,))

    def update_pipeline_file(self, pipeline_id: str, file_id: str, **changes: Any) -> None:
        self._update("pipeline_files", "pipeline_id = ? AND file_id = ?", (pipeline_id, file_id), changes)

    def remove_pipeline_file(self, pipeline_id: str, file_id: str) -> None:
        self._run("DELETE FROM pipeline_files WHERE pipeline_id = ? AND file_id = ?", (pipeline_id, file_id))

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
        self._run("INSERT INTO pipeline_data_sources (pipeline_id, data_source_id, added_at) VALUES (?, ?, ?) "
                  "ON CONFLICT DO NOTHING", (pipeline_id, data_source_id, utc_now()))

    def list_pipeline_data_sources(self, pipeline_id: str) -> list[DataSource]:
        return self._all(DataSource, "SELECT d.* FROM data_sources d JOIN pipeline_data_sources pd "
                         "ON pd.data_source_id = d.id WHERE pd.pipeline_id = ? ORDER BY pd.added_at, d.id",
                         (pipeline_id,))

    def update_data_source(self, data_source_id: str, **changes: Any) -> None:
        self._update("data_sources", "id = ?", (data_source_id,), changes)

    def detach_data_source(self, pipeline_id: str, data_source_id: str) -> None:
        self._run("DELETE FROM pipeline_data_sources WHERE pipeline_id = ? AND data_source_id = ?",
                  (pipeline_id, data_source_id))

    def delete_data_source(self, data_source_id: str) -> None:
        with self.transaction() as conn:
            self._run("DELETE FROM pipeline_data_sources WHERE data_source_id = ?", (data_source_id,), conn)
            self._run("DELETE FROM data_sources WHERE id = ?", (data_source_id,), conn)

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
        self._run("DELETE FROM data_sinks WHERE id = ?", (data_sink_id,))

    # -- jobs -------------------------------------------------------------------------------
    def create_job(self, record: Job, pipeline_changes: dict[str, Any] | None = None) -> Job:
        with self.transaction() as conn:  # one transaction: the job and its pipeline's status together
            self._insert("jobs", record, conn=conn)
            if pipeline_changes:
                self._update("pipelines", "id = ?", (record.pipeline_id,), pipeline_changes, conn)
        return record

    def get_job(self, job_id: str) -> Job | None:
        return self._one(Job, "SELECT * FROM jobs WHERE id = ?", (job_id,))

    def list_jobs(self, pipeline_id: str) -> list[Job]:
        return self._all(Job, f"SELECT * FROM jobs WHERE pipeline_id = ? ORDER BY created_at, {self._SEQ}",
                         (pipeline_id,))

    def list_unfinished_jobs(self) -> list[Job]:
        return self._all(Job, "SELECT * FROM jobs WHERE status IN ('pending', 'running') "
                         f"ORDER BY created_at, {self._SEQ}")

    def update_job(self, job_id: str, **changes: Any) -> None:
        self._update("jobs", "id = ?", (job_id,), changes)

    def update_job_and_pipeline(self, job_id: str, job_changes: dict[str, Any], pipeline_id: str,
                                pipeline_changes: dict[str, Any]) -> None:
        with self.transaction() as conn:
            self._update("jobs", "id = ?", (job_id,), job_changes, conn)
            if self.on_index_swap is not None and "index_version" in pipeline_changes:
                self.on_index_swap(conn, pipeline_id, pipeline_changes["index_version"])
            self._update("pipelines", "id = ?", (pipeline_id,), pipeline_changes, conn)
