"""The Storage protocol on both databases (SQLite and a real PostgreSQL): same records, same
ordering, same one-transaction state changes; PostgreSQL's migrations and database URLs."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import psycopg
import pytest

from llamaeval._errors import ConfigurationError
from llamaeval.cli import main
from llamaeval.server import Storage, create_api_key
from llamaeval.server._database import open_storage, parse_database
from llamaeval.server._keys import hash_key
from llamaeval.server._postgres import DatabaseUnavailable, PostgresStorage, migrate, migrations, schema_version
from llamaeval.server._storage import DataSource, Job, Pipeline, PipelineFile, StoredFile, utc_now

pytestmark = pytest.mark.both_backends


@pytest.fixture()
def database(backend, request, tmp_path) -> str:
    """The URL of an empty database of ``backend``."""
    return request.getfixturevalue("new_database")() if backend == "postgres" else f"sqlite:///{tmp_path}/m.db"


@pytest.fixture()
def storage(database, tmp_path):
    store = open_storage(database, tmp_path)
    yield store
    store.close()


def _pipeline(account: str, project: str, pid: str = "pl", **kw) -> Pipeline:
    now = utc_now()
    return Pipeline(id=pid, account_id=account, project_id=project, name="x", status="idle", sync_interval=None,
                    retrieval_config={"k": 1}, chunking_config={}, embedding_model="m", created_at=now,
                    updated_at=now, **kw)


def _job(pipeline: Pipeline, jid: str, status: str = "pending", at=None) -> Job:
    return Job(id=jid, pipeline_id=pipeline.id, account_id=pipeline.account_id, status=status,
               created_at=at or utc_now())


def test_records_round_trip_scoped_by_account(storage):
    assert isinstance(storage, Storage)
    a, b = storage.create_account("a"), storage.create_account("b")
    project = storage.create_project(a.id, "p")
    assert storage.get_project(a.id, project.id) == project and storage.get_project(b.id, project.id) is None
    assert storage.list_projects(a.id) == [project] and storage.list_projects(b.id) == []
    pipeline = storage.create_pipeline(_pipeline(a.id, project.id, attributes={"pipeline_type": "MANAGED"}))
    got = storage.get_pipeline(a.id, "pl")
    assert got == replace(pipeline, num_files=0) and got.created_at.tzinfo is not None
    assert storage.get_pipeline(b.id, "pl") is None and storage.get_pipeline_index(b.id, "pl") is None
    assert storage.get_pipeline_attributes(a.id, "pl") == {"pipeline_type": "MANAGED"}
    storage.update_pipeline("pl", status="active", index_version="v1", num_chunks=7)
    assert storage.get_pipeline_index(a.id, "pl") == ("active", "v1")
    with pytest.raises(ValueError, match="cannot update pipelines field"):
        storage.update_pipeline("pl", account_id=b.id)
    now = utc_now()
    f = storage.create_file(StoredFile(id="f1", account_id=a.id, project_id=project.id, name="a.txt", file_size=3,
                                       content_type="text/plain", sha256="00", created_at=now, updated_at=now,
                                       data_source_id="ds", source_path="sub/a.txt"))
    assert storage.get_file(a.id, "f1") == f and storage.get_file(b.id, "f1") is None
    assert storage.find_source_file("ds", "sub/a.txt") == f and storage.find_source_file("ds", "b") is None
    storage.update_file("f1", file_size=2 ** 40, sha256="ff")
    assert storage.get_file(a.id, "f1").file_size == 2 ** 40
    assert [x.id for x in storage.list_files(a.id, project.id)] == ["f1"] and storage.list_files(b.id, project.id) == []
    ds = storage.create_data_source(DataSource(id="ds", account_id=a.id, project_id=project.id, name="d",
                                               source_type="directory", config={"path": "x"}, created_at=now,
                                               updated_at=now))
    storage.attach_data_source("pl", "ds")
    storage.attach_data_source("pl", "ds")  # twice: still once
    assert storage.list_pipeline_data_sources("pl") == [ds] and storage.get_data_source(b.id, "ds") is None
    key, record = create_api_key(storage, "k", account_id=b.id)
    assert storage.account_for_key_hash(hash_key(key)) == b.id == record.account_id
    assert storage.account_for_key_hash(hash_key(key + "x")) is None
    assert [k.name for k in storage.list_api_keys()] == ["k"]
    storage.delete_data_source("ds")
    assert storage.list_pipeline_data_sources("pl") == [] and storage.get_data_source(a.id, "ds") is None


def test_json_values_come_back_as_sent(storage):
    a = storage.create_account("a")
    project = storage.create_project(a.id, "p")
    storage.create_pipeline(_pipeline(a.id, project.id))
    metadata = {"zeta": 1, "alpha": 1e308, "big": 2 ** 63 - 1, "neg": -0.5, "text": "naïve 😀 \u2028",
                "nested": {"b": [1, {"y": None, "x": True}], "a": []}}
    now = utc_now()
    storage.upsert_pipeline_file(PipelineFile(pipeline_id="pl", file_id="f", name="f.txt", status="pending",
                                              metadata=metadata, added_at=now, updated_at=now))
    got = storage.get_pipeline_file("pl", "f").metadata
    assert got == metadata and list(got) == list(metadata) and list(got["nested"]) == ["b", "a"]
    assert isinstance(got["alpha"], float) and isinstance(got["big"], int)


def test_listings_keep_insertion_order_on_equal_times(storage):
    a = storage.create_account("a")
    project = storage.create_project(a.id, "p")
    pipeline = storage.create_pipeline(_pipeline(a.id, project.id))
    now = utc_now()
    names = ["m", "c", "x", "a"]
    for name in names:
        storage.upsert_pipeline_file(PipelineFile(pipeline_id="pl", file_id=name, name=name, status="pending",
                                                  added_at=now, updated_at=now))
    storage.upsert_pipeline_file(PipelineFile(pipeline_id="pl", file_id="c", name="c2", status="completed",
                                              metadata={"v": 2}, added_at=now + timedelta(days=1), updated_at=now))
    files = storage.list_pipeline_files("pl")
    assert [f.file_id for f in files] == names  # an upsert keeps the file's place and its added_at
    assert files[1].name == "c2" and files[1].metadata == {"v": 2} and files[1].added_at == now
    assert storage.get_pipeline(a.id, "pl").num_files == 4
    for jid in ("j3", "j1", "j2"):
        storage.create_job(_job(pipeline, jid, at=now))
    assert [j.id for j in storage.list_jobs("pl")] == ["j3", "j1", "j2"]
    storage.update_job("j1", status="completed")
    assert [j.id for j in storage.list_unfinished_jobs()] == ["j3", "j2"]
    storage.remove_pipeline_file("pl", "x")
    assert [f.file_id for f in storage.list_pipeline_files("pl")] == ["m", "c", "a"]


def test_job_and_pipeline_change_in_one_transaction(storage):
    a = storage.create_account("a")
    project = storage.create_project(a.id, "p")
    pipeline = storage.create_pipeline(_pipeline(a.id, project.id))
    now = utc_now()
    storage.create_job(_job(pipeline, "j1"), pipeline_changes={"status": "syncing", "last_sync_started_at": now})
    assert storage.get_pipeline_any("pl").status == "syncing" and storage.get_job("j1").status == "pending"
    # a change that cannot be applied to the pipeline leaves the job unchanged too (rolled back)
    with pytest.raises(ValueError, match="cannot update pipelines"):
        storage.update_job_and_pipeline("j1", {"status": "completed"}, "pl", {"status": "active", "bogus": 1})
    assert storage.get_job("j1").status == "pending" and storage.get_pipeline_any("pl").status == "syncing"
    with pytest.raises(ValueError):
        storage.create_job(_job(pipeline, "j2"), pipeline_changes={"nope": 1})
    assert storage.get_job("j2") is None
    storage.update_job_and_pipeline("j1", {"status": "completed", "completed_at": now, "num_chunks": 5}, "pl",
                                    {"status": "active", "index_version": "v9", "num_chunks": 5})
    assert storage.get_job("j1").status == "completed" and storage.get_pipeline_index(a.id, "pl") == ("active", "v9")
    storage.update_job_and_pipeline("j1", {"error": "x"}, "gone", {"status": "error"})  # absent pipeline: no error
    assert storage.get_job("j1").error == "x"
    storage.upsert_pipeline_file(PipelineFile(pipeline_id="pl", file_id="f", name="f", status="pending"))
    storage.delete_pipeline("pl")
    assert storage.get_pipeline_any("pl") is None and storage.list_pipeline_files("pl") == []
    assert storage.list_jobs("pl") == [] and storage.get_job("j1") is None


def test_concurrent_writers_lose_no_update(storage):
    a = storage.create_account("a")
    project = storage.create_project(a.id, "p")
    pipeline = storage.create_pipeline(_pipeline(a.id, project.id))
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(15):
                storage.create_job(_job(pipeline, f"j{n}-{i}"), pipeline_changes={"status": "syncing"})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(storage.list_jobs("pl")) == 60


# -- PostgreSQL only: migrations, URLs, text it cannot hold --------------------------------------
def test_postgres_schema_is_migrated_once_and_a_newer_one_is_refused(new_database):
    database = new_database()
    versions = [v for v, _, _ in migrations()]
    assert versions == list(range(1, len(versions) + 1))
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def open_close() -> None:
        try:
            barrier.wait()
            PostgresStorage(database).close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_close) for _ in range(3)]  # processes starting together
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with psycopg.connect(database) as conn:
        rows = conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
        assert [r[0] for r in rows] == versions
        conn.execute("INSERT INTO schema_version (version, name) VALUES (%s, 'future')", (len(versions) + 1,))
    assert schema_version(database) == len(versions) + 1
    with pytest.raises(ConfigurationError, match="newer than this llamaeval"):
        migrate(database)


def test_postgres_stores_server_text_with_nul_and_names_an_unreachable_database(new_database, tmp_path):
    storage = PostgresStorage(new_database())
    try:
        _server_text(storage)
    finally:
        storage.close()
    with pytest.raises(DatabaseUnavailable,
                       match=r"cannot connect to PostgreSQL at postgresql://u:\*\*\*@127\.0\.0\.1:1/"):
        open_storage("postgresql://u:secret@127.0.0.1:1/nope?connect_timeout=2", tmp_path)


def _server_text(storage: PostgresStorage) -> None:
    a = storage.create_account("a")
    project = storage.create_project(a.id, "p")
    pipeline = storage.create_pipeline(_pipeline(a.id, project.id))
    storage.create_job(_job(pipeline, "j"))
    storage.update_job("j", error="parse failed at b'\x00\udcff'")
    assert storage.get_job("j").error == "parse failed at b'\ufffd\ufffd'"
    assert storage.get_pipeline(a.id, "pl\x00") is None  # a lookup, never a 500


def test_database_urls(tmp_path):
    assert parse_database(None, tmp_path).path == tmp_path / "llamaeval.db"
    assert parse_database("sqlite:///meta.db", tmp_path).path == tmp_path / "meta.db"
    assert parse_database(f"sqlite:///{tmp_path}/abs.db", tmp_path).path == tmp_path / "abs.db"
    pg = parse_database("postgres://me:pw@db.example:5432/llama", tmp_path)
    assert pg.is_postgres and pg.url == "postgresql://me:pw@db.example:5432/llama"
    assert pg.shown == "postgresql://me:***@db.example:5432/llama"
    socket = parse_database("postgresql+psycopg:///llama?host=/run/pg", tmp_path)
    assert socket.url == "postgresql:///llama?host=/run/pg"
    for bad, why in (("mysql://x/y", "unsupported scheme 'mysql'"), ("llama.db", "is not a URL"),
                     ("sqlite://", "SQLite URL is"), ("postgresql://h:notaport/db", "not a valid PostgreSQL URL"),
                     ("postgresql://me:pw@h/", "names no database")):
        with pytest.raises(ConfigurationError, match=why) as info:
            parse_database(bad, tmp_path)
        assert "pw" not in str(info.value)


def test_keys_and_serve_take_a_database(database, backend, tmp_path, capsys):
    assert main(["keys", "create", "--database", database, "--name", "ci"]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["keys", "list", "--database", database]) == 0
    listed = capsys.readouterr().out
    assert "ci" in listed and key not in listed
    store = open_storage(database, tmp_path)
    try:
        assert store.account_for_key_hash(hash_key(key)) is not None
    finally:
        store.close()
    assert main(["keys", "create"]) == 2
    assert "--data-dir DIR" in capsys.readouterr().err
    if backend == "sqlite":
        assert main(["serve", "--data-dir", str(tmp_path), "--database", "mysql://x/y"]) == 1
        assert "unsupported scheme 'mysql'" in capsys.readouterr().err


def test_postgres_storage_reconnects_after_its_connections_are_dropped(new_database):
    url = new_database()
    storage = PostgresStorage(url, pool_size=3)
    try:
        account = storage.create_account("a")
        with psycopg.connect(url, autocommit=True) as admin:  # what a PostgreSQL restart does to clients
            dropped = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                    "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()[0]
        assert dropped >= 1
        assert storage.get_account(account.id) == account  # the pool checks and replaces dead connections
        assert storage.create_project(account.id, "after").name == "after"
    finally:
        storage.close()
