"""Where file bytes live: the data dir (SQLite servers) or PostgreSQL, piece by piece, all or
nothing — and files a data dir held before the bytes moved to PostgreSQL stay readable."""

from __future__ import annotations

import hashlib

import psycopg
import pytest

from llamaeval.server._config import DataLayout, write_atomic
from llamaeval.server._file_store import PIECE, DiskFileStore, PostgresFileStore, file_store
from llamaeval.server._postgres import PostgresStorage
from llamaeval.server._sqlite import SQLiteStorage
from llamaeval.server._storage import StoredFile, utc_now


class _Refused(Exception):
    pass


def _pieces_then_fail(data: bytes):
    yield data
    raise _Refused("the upload was cut off")


def _record(account: str, project: str, file_id: str, data: bytes) -> StoredFile:
    now = utc_now()
    return StoredFile(id=file_id, account_id=account, project_id=project, name="f.txt", file_size=len(data),
                      content_type="text/plain", sha256=hashlib.sha256(data).hexdigest(), created_at=now,
                      updated_at=now)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    layout = DataLayout(tmp_path / "data")
    if request.param == "sqlite":
        storage = SQLiteStorage(tmp_path / "data" / "llamaeval.db")
    else:
        storage = PostgresStorage(request.getfixturevalue("new_database")(), pool_size=2)
    try:
        yield storage, layout, file_store(storage, layout)
    finally:
        storage.close()


def test_bytes_round_trip_all_or_nothing(store):
    storage, layout, files = store
    big = bytes(range(256)) * (PIECE * 5 // 2 // 256) + b"tail"  # 2.5 pieces
    files.write("f1", [big[:1000], big[1000:]])
    assert files.read("f1") == big
    with pytest.raises(_Refused):  # an upload that fails midway leaves the previous bytes
        files.write("f1", _pieces_then_fail(b"new"))
    assert files.read("f1") == big
    files.write("f1", [b"second"])
    assert files.read("f1") == b"second"
    files.delete("f1")
    with pytest.raises(FileNotFoundError):
        files.read("f1")
    files.delete("f1")  # deleting nothing is fine
    if isinstance(files, DiskFileStore):
        assert layout.file_path("f1").exists() is False
    else:  # in the database, in pieces of at most PIECE bytes; nothing in the data dir
        files.write("f2", [big])
        with psycopg.connect(storage.url) as conn:
            sizes = [r[0] for r in conn.execute("SELECT length(data) FROM file_contents WHERE file_id = 'f2' "
                                                "ORDER BY seq")]
        assert sizes == [PIECE, PIECE, len(big) - 2 * PIECE]
        assert not layout.files_dir.exists() or not any(layout.files_dir.iterdir())


def test_files_on_disk_from_before_the_database_kept_them_stay_readable_and_are_copied_in(new_database,
                                                                                           tmp_path):
    layout = DataLayout(tmp_path / "data")
    storage = PostgresStorage(new_database(), pool_size=2)
    try:
        account = storage.create_account("a")
        project = storage.create_project(account.id, "p")
        old = b"stored by an earlier release\n" * 50_000  # 1.4 MB: two pieces
        storage.create_file(_record(account.id, project.id, "old", old))
        write_atomic(layout.file_path("old"), old)
        write_atomic(layout.file_path("stray"), b"no record: not copied")
        files = file_store(storage, layout)
        assert isinstance(files, PostgresFileStore)
        assert files.read("old") == old  # from the disk, before the copy
        assert files.import_disk_files() == 1
        assert files.import_disk_files() == 0  # once
        other_host = file_store(storage, DataLayout(tmp_path / "elsewhere"))
        assert other_host.read("old") == old  # from the database
        with pytest.raises(FileNotFoundError):
            other_host.read("stray")
        assert layout.file_path("old").read_bytes() == old  # the disk copy is kept
        files.delete("old")
        assert not layout.file_path("old").exists()
        with pytest.raises(FileNotFoundError):
            other_host.read("old")
    finally:
        storage.close()
