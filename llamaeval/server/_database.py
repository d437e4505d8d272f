"""Which database holds the server's metadata: the ``--database`` URL, parsed and opened.

- ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (SQLAlchemy's spelling; a
  relative path is under the data dir): :class:`~llamaeval.server._sqlite.SQLiteStorage`.
  No URL (the default) is ``<data dir>/llamaeval.db``, exactly as before there was a choice.
- ``postgresql://user:password@host:port/dbname`` (also ``postgres://`` and
  ``postgresql+psycopg://``; any libpq parameter in the query string, e.g.
  ``?host=/run/postgresql`` for a Unix socket): :class:`~llamaeval.server._postgres.PostgresStorage`,
  which creates and migrates its schema when it opens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from llamaeval._errors import ConfigurationError
from llamaeval.server._storage import Storage

__all__ = ["Database", "parse_database", "open_storage", "DB_NAME", "SQLITE", "POSTGRES"]

#: The SQLite file under the data dir when no database is named.
DB_NAME = "llamaeval.db"
SQLITE = "sqlite"
POSTGRES = "postgresql"
_POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")


@dataclass(frozen=True)
class Database:
    """A parsed database URL: ``kind`` (``"sqlite"`` or ``"postgresql"``), the SQLite ``path``
    or the PostgreSQL ``url`` (libpq form), and ``shown``: the URL without its password."""

    kind: str
    path: Path | None = None
    url: str | None = None
    shown: str = ""

    @property
    def is_postgres(self) -> bool:
        return self.kind == POSTGRES


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def parse_database(url: str | None, data_dir: Path | str) -> Database:
    """The database ``url`` names (None or empty: SQLite in ``data_dir``); ConfigurationError
    naming the problem for anything else."""
    data_dir = Path(data_dir)
    if url is None or not str(url).strip():
        path = data_dir / DB_NAME
        return Database(SQLITE, path=path, shown=f"sqlite:///{path}")
    if not isinstance(url, str):
        raise ConfigurationError(f"database must be a URL string, got {type(url).__name__}")
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ConfigurationError(f"database {url!r} is not a URL: use sqlite:///PATH or "
                                 "postgresql://USER:PASSWORD@HOST:PORT/DBNAME")
    if scheme == SQLITE:
        if not rest.startswith("/") or rest == "/":
            raise ConfigurationError(f"database {url!r}: a SQLite URL is sqlite:///relative/path.db or "
                                     "sqlite:////absolute/path.db")
        raw = rest[1:]  # sqlite:///x.db -> "x.db" (relative); sqlite:////abs/x.db -> "/abs/x.db"
        if "?" in raw or "\x00" in raw:
            raise ConfigurationError(f"database {url!r}: a SQLite URL takes a file path only (no options)")
        path = Path(raw).expanduser()
        path = path if path.is_absolute() else data_dir / path
        return Database(SQLITE, path=path, shown=f"sqlite:///{path}")
    if scheme in _POSTGRES_SCHEMES:
        libpq = "postgresql://" + rest
        try:
            parts = urlsplit(libpq)
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number
        except ValueError as exc:
            raise ConfigurationError(f"database {_without_password(url)!r} is not a valid PostgreSQL URL: "
                                     f"{exc}") from None
        if not parts.path.strip("/") and "dbname=" not in parts.query:
            raise ConfigurationError(f"database {_without_password(url)!r} names no database: "
                                     "postgresql://USER:PASSWORD@HOST:PORT/DBNAME")
        return Database(POSTGRES, url=libpq, shown=_without_password(libpq))
    raise ConfigurationError(f"database {url!r}: unsupported scheme {scheme!r}; use sqlite:///PATH or "
                             "postgresql://USER:PASSWORD@HOST:PORT/DBNAME")


def open_storage(url: str | None, data_dir: Path | str) -> Storage:
    """Open the metadata storage ``url`` names (see :func:`parse_database`); a PostgreSQL
    database is migrated to the current schema first."""
    database = parse_database(url, data_dir)
    if database.is_postgres:
        from llamaeval.server._postgres import PostgresStorage

        return PostgresStorage(database.url or "")
    from llamaeval.server._sqlite import SQLiteStorage

    return SQLiteStorage(database.path or Path(data_dir) / DB_NAME)
