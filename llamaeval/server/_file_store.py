"""Where uploaded file bytes live: the data dir (SQLite servers) or PostgreSQL (``--database
postgresql://...``), so ingest workers on other hosts read what an API process received.

- :class:`DiskFileStore`: ``<data dir>/files/<file id>``, written to a temporary file, fsynced and
  renamed (readers see the old or the new bytes, never a part).
- :class:`PostgresFileStore`: the ``file_contents`` table (migration 005), one row per piece of at
  most :data:`PIECE` bytes, a file written in one transaction. Pieces are written as they arrive
  and read one at a time, so an upload is never whole in memory while it is stored, and a read
  holds the file once. Files stored on disk before the migration have no rows: they are read from
  this process's data dir, and :meth:`PostgresFileStore.import_disk_files` copies them into the
  database when a server starts, so other hosts can read them too (the disk copy is kept).
"""

from __future__ import annotations

import io
import os
import tempfile
from functools import partial
from pathlib import Path
from typing import Any, Iterable, Protocol

from llamaeval.server._config import DataLayout
from llamaeval.server._storage import Storage

__all__ = ["FileStore", "DiskFileStore", "PostgresFileStore", "file_store", "PIECE"]

#: Largest piece of a file in one ``file_contents`` row (bytes).
PIECE = 1024 * 1024


class FileStore(Protocol):
    """The bytes of stored files, by file id."""

    def write(self, file_id: str, pieces: Iterable[bytes]) -> None:
        """Store the concatenation of ``pieces`` as the file's bytes, replacing any; all or nothing
        (an exception raised while ``pieces`` is consumed leaves the previous bytes)."""
        ...

    def read(self, file_id: str) -> bytes:
        """The file's bytes; FileNotFoundError when there are none."""
        ...

    def delete(self, file_id: str) -> None:
        """Forget the file's bytes (nothing happens when there are none)."""
        ...

    def import_disk_files(self) -> int:
        """Take in the files this data dir holds from before the store moved (how many)."""
        ...


class DiskFileStore:
    """File bytes under the data dir (``DataLayout.file_path``)."""

    def __init__(self, layout: DataLayout) -> None:
        self.layout = layout

    def write(self, file_id: str, pieces: Iterable[bytes]) -> None:
        path = self.layout.file_path(file_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                for piece in pieces:
                    out.write(piece)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp_name, path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    def read(self, file_id: str) -> bytes:
        return self.layout.file_path(file_id).read_bytes()

    def delete(self, file_id: str) -> None:
        self.layout.file_path(file_id).unlink(missing_ok=True)

    def import_disk_files(self) -> int:
        return 0  # they are where this store keeps them


class PostgresFileStore:
    """File bytes in PostgreSQL (``storage``'s connection pool); files stored on this host's disk
    before migration 005 are read from ``layout`` when the database has none."""

    def __init__(self, storage: Any, layout: DataLayout) -> None:
        self.storage = storage
        self.disk = DiskFileStore(layout)

    def write(self, file_id: str, pieces: Iterable[bytes]) -> None:
        self._store(file_id, pieces, replace=True)

    def _store(self, file_id: str, pieces: Iterable[bytes], replace: bool) -> bool:
        """Write the file in one transaction (the whole file or none of it); ``replace=False``: only
        when the database has no bytes of it yet. True when written."""
        with self.storage.transaction() as conn:
            # writers of one file (two processes storing one document) take turns
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (file_id,))
            if replace:
                conn.execute("DELETE FROM file_contents WHERE file_id = %s", (file_id,))
            elif conn.execute("SELECT 1 FROM file_contents WHERE file_id = %s LIMIT 1", (file_id,)).fetchone():
                return False
            seq = 0
            for piece in pieces:
                view = memoryview(piece)
                for start in range(0, len(view), PIECE):
                    conn.execute("INSERT INTO file_contents (file_id, seq, data) VALUES (%s, %s, %s)",
                                 (file_id, seq, view[start:start + PIECE]))
                    seq += 1
        return True

    def read(self, file_id: str) -> bytes:
        out = io.BytesIO()
        found = False
        with self.storage.transaction() as conn:
            with conn.cursor(name="llamaeval_file") as cur:  # a server-side cursor: one piece at a time
                cur.itersize = 4
                cur.execute("SELECT data FROM file_contents WHERE file_id = %s ORDER BY seq", (file_id,))
                for row in cur:
                    out.write(row["data"])
                    found = True
        if not found:
            return self.disk.read(file_id)  # stored before the bytes moved to the database
        return out.getvalue()

    def delete(self, file_id: str) -> None:
        with self.storage.transaction() as conn:
            conn.execute("DELETE FROM file_contents WHERE file_id = %s", (file_id,))
        self.disk.delete(file_id)

    def import_disk_files(self) -> int:
        """Copy into the database the files of this data dir that have a record but no bytes there
        (stored before migration 005), piece by piece; returns how many were copied."""
        folder = self.disk.layout.files_dir
        if not folder.is_dir():
            return 0
        names = [p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
        if not names:
            return 0
        with self.storage.transaction() as conn:
            rows = conn.execute("SELECT f.id FROM files f WHERE f.id = ANY(%s) AND NOT EXISTS "
                                "(SELECT 1 FROM file_contents c WHERE c.file_id = f.id)", (names,)).fetchall()
        copied = 0
        for row in rows:
            with open(self.disk.layout.file_path(row["id"]), "rb") as fh:
                copied += self._store(row["id"], iter(partial(fh.read, PIECE), b""), replace=False)
        return copied


def file_store(storage: Storage, layout: DataLayout) -> FileStore:
    """Where the file bytes of a server on ``storage`` live: PostgreSQL for a PostgreSQL server,
    the data dir (``layout``) otherwise."""
    from llamaeval.server._postgres import PostgresStorage

    if isinstance(storage, PostgresStorage):
        return PostgresFileStore(storage, layout)
    return DiskFileStore(layout)
