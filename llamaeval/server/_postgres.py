"""PostgreSQL implementation of the server's :class:`~llamaeval.server._storage.Storage`.

Same records and semantics as :class:`~llamaeval.server._sqlite.SQLiteStorage`: every call is
one transaction on a connection of a small pool (psycopg 3), so API threads, the sync worker,
the scheduler — and other server processes on other hosts — share one database. A state change
that touches a job and its pipeline is one call and one transaction. JSON values are stored as
the same JSON text SQLite holds (a client's key order and numbers come back as sent).

The schema is created and migrated when the storage opens (:func:`migrate`): the numbered
files of ``llamaeval/server/migrations/postgres/`` are applied in order, one transaction each,
recorded in ``schema_version``, under an advisory lock so processes starting together apply
each file once. Connections are checked when taken from the pool, so after a PostgreSQL
restart the next call reconnects.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import uuid
from contextlib import contextmanager
from dataclasses import asdict, fields
from typing import Any, Callable, Iterator, TypeVar

from llamaeval._errors import ConfigurationError
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

__all__ = ["PostgresStorage", "migrate", "migrations", "schema_version", "DatabaseUnavailable"]

T = TypeVar("T")

#: pg_advisory_lock key held while migrating (any constant shared by every llamaeval process)
_MIGRATION_LOCK = 0x6C6C616D61657661  # "llamaeva"
_MIGRATION_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class DatabaseUnavailable(ConfigurationError):
    """The PostgreSQL server cannot be reached (or refused the connection): its address and why."""


def migrations() -> list[tuple[int, str, str]]:
    """The shipped schema migrations as (version, name, SQL), in order; versions run 1..N."""
    folder = importlib.resources.files("llamaeval.server.migrations.postgres")
    found = []
    for entry in folder.iterdir():
        m = _MIGRATION_FILE.match(entry.name)
        if m:
            found.append((int(m.group(1)), m.group(2), entry.read_text("utf-8")))
    found.sort()
    if [v for v, _, _ in found] != list(range(1, len(found) + 1)):
        raise ConfigurationError(f"PostgreSQL migrations are not numbered 1..N: {[v for v, _, _ in found]}")
    return found


def _connect(url: str, **kwargs: Any) -> Any:
    import psycopg

    try:
        return psycopg.connect(url, **kwargs)
    except psycopg.OperationalError as exc:
        from llamaeval.server._database import _without_password

        raise DatabaseUnavailable(f"cannot connect to PostgreSQL at {_without_password(url)}: "
                                  f"{str(exc).strip()}") from None


def schema_version(url: str) -> int:
    """The highest migration applied to the database at ``url`` (0: none)."""
    with _connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('schema_version')").fetchone()[0]
        if exists is None:
            return 0
        return int(conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0])


def migrate(url: str) -> int:
    """Bring the database at ``url`` to the newest schema (each pending migration in its own
    transaction, recorded in ``schema_version``); returns the version. A database migrated by a
    newer llamaeval is refused (ConfigurationError) rather than used with a schema it does not know."""
    import psycopg

    known = migrations()
    with _connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                         "name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
            applied = {int(r[0]) for r in conn.execute("SELECT version FROM schema_version")}
            newest = max(applied, default=0)
            if newest > len(known):
                raise ConfigurationError(f"the database's schema is version {newest}, newer than this llamaeval "
                                         f"knows ({len(known)}): upgrade llamaeval to use it")
            for version, name, sql in known:
                if version in applied:
                    continue
                try:
                    with conn.transaction():
                        conn.execute(sql)
                        conn.execute("INSERT INTO schema_version (version, name) VALUES (%s, %s)",
                                     (version, name))
                except psycopg.Error as exc:  # e.g. pgvector not installed, or no right to create it
                    raise ConfigurationError(f"PostgreSQL schema migration {version:03d}_{name}.sql failed: "
                                             f"{str(exc).strip()}") from None
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    return len(known)


def _text(value: str) -> str:
    """A string PostgreSQL can store: NUL and lone surrogates (refused at the request boundary,
    so only server-made text such as an error message could carry one) become U+FFFD."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    return _LONE_SURROGATE.sub("\ufffd", value)


def _encode(name: str, value: Any) -> Any:
    if name in JSON_FIELDS:
        return json.dumps(value)
    if isinstance(value, str):
        return _text(value)
    return value


def _arg(value: Any) -> Any:
    return _text(value) if isinstance(value, str) else value


def _decode(cls: type[T], row: dict[str, Any]) -> T:
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name in row:
            value = row[f.name]
            values[f.name] = json.loads(value) if f.name in JSON_FIELDS and value is not None else value
    return cls(**values)


class PostgresStorage:
    """Metadata in the PostgreSQL database at ``url`` (libpq URL), migrated on open.

    ``pool_size``: most connections this process keeps open at once; ``timeout``: seconds a call
    waits for a connection (e.g. while PostgreSQL restarts) before it fails."""

    def __init__(self, url: str, *, pool_size: int = 10, timeout: float = 10.0) -> None:
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        self.url = url
        #: called as ``on_index_swap(conn, pipeline_id, index_version)`` inside the transaction that
        #: changes a pipeline's index version (``_shared_index.IndexPublisher``: the version's chunks)
        self.on_index_swap: Callable[[Any, str, str | None], None] | None = None
        migrate(url)
        self._pool = ConnectionPool(url, min_size=1, max_size=pool_size, timeout=timeout, open=False,
                                    kwargs={"row_factory": dict_row, "options": "-c TimeZone=UTC"},
                                    check=ConnectionPool.check_connection, name="llamaeval")
        self._pool.open(wait=True, timeout=timeout)

    # -- helpers --------------------------------------------------------------------
    @contextmanager
    def _conn(self) -> Iterator[Any]:
        """A pooled connection inside one transaction (committed on success, rolled back on error)."""
        with self._pool.connection() as conn:
            yield conn

    def _one(self, cls: type[T], sql: str, args: tuple = ()) -> T | None:
        with self._conn() as conn:
            row = conn.execute(sql, tuple(_arg(a) for a in args)).fetchone()
        return _decode(cls, row) if row is not None else None

    def _all(self, cls: type[T], sql: str, args: tuple = ()) -> list[T]:
        with self._conn() as conn:
            rows = conn.execute(sql, tuple(_arg(a) for a in args)).fetchall()
        return [_decode(cls, r) for r in rows]

    def _value(self, sql: str, args: tuple = ()) -> Any:
        """The first column of the first row (None when there is no row)."""
        with self._conn() as conn:
            row = conn.execute(sql, tuple(_arg(a) for a in args)).fetchone()
        return None if row is None else next(iter(row.values()))

    def _run(self, sql: str, args: tuple = (), conn: Any = None) -> None:
        if conn is not None:
            conn.execute(sql, tuple(_arg(a) for a in args))
            return
        with self._conn() as own:
            own.execute(sql, tuple(_arg(a) for a in args))

    @staticmethod
    def _insert_sql(table: str, record: Any, skip: tuple[str, ...] = ()) -> tuple[str, tuple]:
        data = {k: _encode(k, v) for k, v in asdict(record).items() if k not in skip}
        cols = ", ".join(data)
        marks = ", ".join("%s" for _ in data)
        return f"INSERT INTO {table} ({cols}) VALUES ({marks})", tuple(data.values())

    def _insert(self, table: str, record: Any, skip: tuple[str, ...] = (), conn: Any = None) -> None:
        sql, args = self._insert_sql(table, record, skip)
        if conn is not None:
            conn.execute(sql, args)
        else:
            with self._conn() as own:
                own.execute(sql, args)

    def _update(self, table: str, where: str, args: tuple, changes: dict[str, Any], conn: Any = None) -> None:
        if not changes:
            return
        bad = set(changes) - UPDATABLE[table]
        if bad:
            raise ValueError(f"cannot update {table} field(s): {', '.join(sorted(bad))}")
        sets = ", ".join(f"{k} = %s" for k in changes)
        values = tuple(_encode(k, v) for k, v in changes.items())
        self._run(f"UPDATE {table} SET {sets} WHERE {where}", values + args, conn)

    # -- accounts and keys ------------------------------------------------------------
    def create_account(self, name: str) -> Account:
        account = Account(id=str(uuid.uuid4()), name=name, created_at=utc_now())
        self._insert("accounts", account)
        return account

    def get_account(self, account_id: str) -> Account | None:
        return self._one(Account, "SELECT * FROM accounts WHERE id = %s", (account_id,))

    def create_api_key(self, account_id: str, name: str, key_hash: str, prefix: str) -> ApiKey:
        key = ApiKey(id=str(uuid.uuid4()), account_id=account_id, name=name, prefix=prefix, created_at=utc_now())
        self._run("INSERT INTO api_keys (id, account_id, name, prefix, key_hash, created_at) "
                  "VALUES (%s, %s, %s, %s, %s, %s)", (key.id, account_id, name, prefix, key_hash, key.created_at))
        return key

    def account_for_key_hash(self, key_hash: str) -> str | None:
        return self._value("SELECT account_id FROM api_keys WHERE key_hash = %s", (key_hash,))

    def list_api_keys(self) -> list[ApiKey]:
        return self._all(ApiKey, "SELECT * FROM api_keys ORDER BY created_at, id")

    # -- projects ---------------------------------------------------------------------
    def create_project(self, account_id: str, name: str) -> Project:
        now = utc_now()
        project = Project(id=str(uuid.uuid4()), account_id=account_id, name=name, created_at=now, updated_at=now)
        self._insert("projects", project)
        return project

    def get_project(self, account_id: str, project_id: str) -> Project | None:
        return self._one(Project, "SELECT * FROM projects WHERE id = %s AND account_id = %s",
                         (project_id, account_id))

    def list_projects(self, account_id: str) -> list[Project]:
        return self._all(Project, "SELECT * FROM projects WHERE account_id = %s ORDER BY created_at, id",
                         (account_id,))

    # -- files ------------------------------------------------------------------------
    def create_file(self, record: StoredFile) -> StoredFile:
        self._insert("files", record)
        return record

    def get_file(self, account_id: str, file_id: str) -> StoredFile | None:
        return self._one(StoredFile, "SELECT * FROM files WHERE id = %s AND account_id = %s", (file_id, account_id))

    def update_file(self, file_id: str, **changes: Any) -> None:
        self._update("files", "id = %s", (file_id,), changes)

    def find_source_file(self, data_source_id: str, source_path: str) -> StoredFile | None:
        return self._one(StoredFile, "SELECT * FROM files WHERE data_source_id = %s AND source_path = %s "
                         "ORDER BY created_at, id LIMIT 1", (data_source_id, source_path))

    def list_files(self, account_id: str, project_id: str) -> list[StoredFile]:
        return self._all(StoredFile, "SELECT * FROM files WHERE account_id = %s AND project_id = %s "
                         "ORDER BY created_at, id", (account_id, project_id))

    def delete_file(self, file_id: str) -> None:
        self._run("DELETE FROM files WHERE id = %s", (file_id,))

    # -- pipelines --------------------------------------------------------------------
    _PIPELINE_SELECT = (
        "SELECT p.*, (SELECT COUNT(*) FROM pipeline_files pf WHERE pf.pipeline_id = p.id) AS num_files "
        "FROM pipelines p"
    )

    def create_pipeline(self, record: Pipeline) -> Pipeline:
        self._insert("pipelines", record, skip=("num_files",))
        return record

    def get_pipeline(self, account_id: str, pipeline_id: str) -> Pipeline | None:
        return self._one(Pipeline, f"{self._PIPELINE_SELECT} WHERE p.id = %s AND p.account_id = %s",
                         (pipeline_id, account_id))

    def get_pipeline_any(self, pipeline_id: str) -> Pipeline | None:
        return self._one(Pipeline, f"{self._PIPELINE_SELECT} WHERE p.id = %s", (pipeline_id,))

    def get_pipeline_index(self, account_id: str, pipeline_id: str) -> tuple[str, str | None] | None:
        with self._conn() as conn:
            row = conn.execute("SELECT status, index_version FROM pipelines WHERE id = %s AND account_id = %s",
                               (_arg(pipeline_id), _arg(account_id))).fetchone()
        return (row["status"], row["index_version"]) if row is not None else None

    def get_pipeline_attributes(self, account_id: str, pipeline_id: str) -> dict[str, Any] | None:
        raw = self._value("SELECT attributes FROM pipelines WHERE id = %s AND account_id = %s",
                          (pipeline_id, account_id))
        return json.loads(raw) if raw is not None else None

    def list_pipelines(self, account_id: str, project_id: str) -> list[Pipeline]:
        return self._all(Pipeline, f"{self._PIPELINE_SELECT} WHERE p.account_id = %s AND p.project_id = %s "
                         "ORDER BY p.created_at, p.id", (account_id, project_id))

    def list_all_pipelines(self) -> list[Pipeline]:
        return self._all(Pipeline, f"{self._PIPELINE_SELECT} ORDER BY p.created_at, p.id")

    def update_pipeline(self, pipeline_id: str, **changes: Any) -> None:
        self._update("pipelines", "id = %s", (pipeline_id,), changes)

    def delete_pipeline(self, pipeline_id: str) -> None:
        with self._conn() as conn:
            for table in ("pipeline_files", "pipeline_data_sources", "jobs", "chunks", "index_versions"):
                self._run(f"DELETE FROM {table} WHERE pipeline_id = %s", (pipeline_id,), conn)
            self._run("DELETE FROM pipelines WHERE id = %s", (pipeline_id,), conn)

    # -- files in pipelines -----------------------------------------------------------------
    def upsert_pipeline_file(self, record: PipelineFile) -> PipelineFile:
        data = {k: _encode(k, v) for k, v in asdict(record).items()}
        cols = ", ".join(data)
        marks = ", ".join("%s" for _ in data)
        updates = ", ".join(f"{k} = excluded.{k}" for k in data if k not in ("pipeline_id", "file_id", "added_at"))
        self._run(f"INSERT INTO pipeline_files ({cols}) VALUES ({marks}) "
                  f"ON CONFLICT (pipeline_id, file_id) DO UPDATE SET {updates}", tuple(data.values()))
        return record

    def get_pipeline_file(self, pipeline_id: str, file_id: str) -> PipelineFile | None:
        return self._one(PipelineFile, "SELECT * FROM pipeline_files WHERE pipeline_id = %s AND file_id = %s",
                         (pipeline_id, file_id))

    def list_pipeline_files(self, pipeline_id: str) -> list[PipelineFile]:
        return self._all(PipelineFile, "SELECT * FROM pipeline_files WHERE pipeline_id = %s "
                         "ORDER BY added_at, seq", (pipeline_id,))

    def update_pipeline_file(self, pipeline_id: str, file_id: str, **changes: Any) -> None:
        self._update("pipeline_files", "pipeline_id = %s AND file_id = %s", (pipeline_id, file_id), changes)

    def remove_pipeline_file(self, pipeline_id: str, file_id: str) -> None:
        self._run("DELETE FROM pipeline_files WHERE pipeline_id = %s AND file_id = %s", (pipeline_id, file_id))

    # -- data sources ---------------------------------------------------------------------
    def create_data_source(self, record: DataSource) -> DataSource:
        self._insert("data_sources", record)
        return record

    def get_data_source(self, account_id: str, data_source_id: str) -> DataSource | None:
        return self._one(DataSource, "SELECT * FROM data_sources WHERE id = %s AND account_id = %s",
                         (data_source_id, account_id))

    def list_data_sources(self, account_id: str, project_id: str) -> list[DataSource]:
        return self._all(DataSource, "SELECT * FROM data_sources WHERE account_id = %s AND project_id = %s "
                         "ORDER BY created_at, id", (account_id, project_id))

    def attach_data_source(self, pipeline_id: str, data_source_id: str) -> None:
        self._run("INSERT INTO pipeline_data_sources (pipeline_id, data_source_id, added_at) VALUES (%s, %s, %s) "
                  "ON CONFLICT DO NOTHING", (pipeline_id, data_source_id, utc_now()))

    def list_pipeline_data_sources(self, pipeline_id: str) -> list[DataSource]:
        return self._all(DataSource, "SELECT d.* FROM data_sources d JOIN pipeline_data_sources pd "
                         "ON pd.data_source_id = d.id WHERE pd.pipeline_id = %s ORDER BY pd.added_at, d.id",
                         (pipeline_id,))

    def update_data_source(self, data_source_id: str, **changes: Any) -> None:
        self._update("data_sources", "id = %s", (data_source_id,), changes)

    def detach_data_source(self, pipeline_id: str, data_source_id: str) -> None:
        self._run("DELETE FROM pipeline_data_sources WHERE pipeline_id = %s AND data_source_id = %s",
                  (pipeline_id, data_source_id))

    def delete_data_source(self, data_source_id: str) -> None:
        with self._conn() as conn:
            self._run("DELETE FROM pipeline_data_sources WHERE data_source_id = %s", (data_source_id,), conn)
            self._run("DELETE FROM data_sources WHERE id = %s", (data_source_id,), conn)

    # -- data sinks -------------------------------------------------------------------------
    def create_data_sink(self, record: DataSink) -> DataSink:
        self._insert("data_sinks", record)
        return record

    def get_data_sink(self, account_id: str, data_sink_id: str) -> DataSink | None:
        return self._one(DataSink, "SELECT * FROM data_sinks WHERE id = %s AND account_id = %s",
                         (data_sink_id, account_id))

    def list_data_sinks(self, account_id: str, project_id: str) -> list[DataSink]:
        return self._all(DataSink, "SELECT * FROM data_sinks WHERE account_id = %s AND project_id = %s "
                         "ORDER BY created_at, id", (account_id, project_id))

    def update_data_sink(self, data_sink_id: str, **changes: Any) -> None:
        self._update("data_sinks", "id = %s", (data_sink_id,), changes)

    def delete_data_sink(self, data_sink_id: str) -> None:
        self._run("DELETE FROM data_sinks WHERE id = %s", (data_sink_id,))

    # -- jobs -------------------------------------------------------------------------------
    def create_job(self, record: Job, pipeline_changes: dict[str, Any] | None = None) -> Job:
        with self._conn() as conn:  # one transaction: the job and its pipeline's status together
            self._insert("jobs", record, conn=conn)
            if pipeline_changes:
                self._update("pipelines", "id = %s", (record.pipeline_id,), pipeline_changes, conn)
        return record

    def get_job(self, job_id: str) -> Job | None:
        return self._one(Job, "SELECT * FROM jobs WHERE id = %s", (job_id,))

    def list_jobs(self, pipeline_id: str) -> list[Job]:
        return self._all(Job, "SELECT * FROM jobs WHERE pipeline_id = %s ORDER BY created_at, seq", (pipeline_id,))

    def list_unfinished_jobs(self) -> list[Job]:
        return self._all(Job, "SELECT * FROM jobs WHERE status IN ('pending', 'running') ORDER BY created_at, seq")

    def update_job(self, job_id: str, **changes: Any) -> None:
        self._update("jobs", "id = %s", (job_id,), changes)

    def update_job_and_pipeline(self, job_id: str, job_changes: dict[str, Any], pipeline_id: str,
                                pipeline_changes: dict[str, Any]) -> None:
        with self._conn() as conn:
            self._update("jobs", "id = %s", (job_id,), job_changes, conn)
            if self.on_index_swap is not None and "index_version" in pipeline_changes:
                self.on_index_swap(conn, pipeline_id, pipeline_changes["index_version"])
            self._update("pipelines", "id = %s", (pipeline_id,), pipeline_changes, conn)

    def close(self) -> None:
        self._pool.close()

    def __repr__(self) -> str:
        from llamaeval.server._database import _without_password

        return f"PostgresStorage({_without_password(self.url)!r})"
