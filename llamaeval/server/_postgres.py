"""PostgreSQL implementation of the server's :class:`~llamaeval.server._storage.Storage`.

The statements and the row mapping are :class:`~llamaeval.server._sql_storage.SQLStorage`'s, shared
with :class:`~llamaeval.server._sqlite.SQLiteStorage`: the same records and semantics. Every call is
one transaction on a connection of a small pool (psycopg 3), so API threads, the sync worker,
the scheduler — and other server processes on other hosts — share one database.

The schema is created and migrated when the storage opens (:func:`migrate`): the numbered
files of ``llamaeval/server/migrations/postgres/`` are applied in order, one transaction each,
recorded in ``schema_version``, under an advisory lock so processes starting together apply
each file once. Connections are checked when taken from the pool, so after a PostgreSQL
restart the next call reconnects.
"""

from __future__ import annotations

import importlib.resources
import re
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Iterator

from llamaeval._errors import ConfigurationError
from llamaeval.server._sql_storage import SQLStorage

__all__ = ["PostgresStorage", "migrate", "migrations", "schema_version", "DatabaseUnavailable"]

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


@lru_cache(maxsize=512)
def _placeholders(sql: str) -> str:
    """``sql`` written with ``?`` placeholders in psycopg's ``%s``."""
    return sql.replace("%", "%%").replace("?", "%s")


def _text(value: str) -> str:
    """A string PostgreSQL can store: NUL and lone surrogates (refused at the request boundary,
    so only server-made text such as an error message could carry one) become U+FFFD."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    return _LONE_SURROGATE.sub("\ufffd", value)


class PostgresStorage(SQLStorage):
    """Metadata in the PostgreSQL database at ``url`` (libpq URL), migrated on open.

    ``pool_size``: most connections this process keeps open at once; ``timeout``: seconds a call
    waits for a connection (e.g. while PostgreSQL restarts) before it fails."""

    _SEQ = "seq"
    _PIPELINE_TABLES = (*SQLStorage._PIPELINE_TABLES, "chunks", "index_versions")

    def __init__(self, url: str, *, pool_size: int = 10, timeout: float = 10.0) -> None:
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        self.url = url
        migrate(url)
        self._pool = ConnectionPool(url, min_size=1, max_size=pool_size, timeout=timeout, open=False,
                                    kwargs={"row_factory": dict_row, "options": "-c TimeZone=UTC"},
                                    check=ConnectionPool.check_connection, name="llamaeval")
        self._pool.open(wait=True, timeout=timeout)

    # -- the hooks of SQLStorage ----------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A pooled connection inside one transaction (committed on success, rolled back on error)."""
        with self._pool.connection() as conn:
            yield conn

    def _sql(self, sql: str) -> str:
        return _placeholders(sql)

    def _param(self, value: Any) -> Any:
        return _text(value) if isinstance(value, str) else value

    def close(self) -> None:
        self._pool.close()

    def __repr__(self) -> str:
        from llamaeval.server._database import _without_password

        return f"PostgresStorage({_without_password(self.url)!r})"
