"""Server test fixtures: one real server on loopback (own data dir, sources root, small upload limit),
on SQLite — and, for modules marked ``both_backends``, also on PostgreSQL (a real one: pgserver)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from server_helpers import MAX_UPLOAD_MB, api, database_for, load_corpus, upload, wait_job

from llamaeval.server import EmbeddedServer

#: The metadata databases the server runs on; ``pytestmark = pytest.mark.both_backends`` runs a
#: module's tests on each (the others run on SQLite, the default).
BACKENDS = ("sqlite", "postgres")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "both_backends: run the test against the SQLite and PostgreSQL servers")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        both = metafunc.definition.get_closest_marker("both_backends") is not None
        metafunc.parametrize("backend", BACKENDS if both else BACKENDS[:1], indirect=True, scope="session")


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    """"sqlite" or "postgres" (parametrised by ``pytest_generate_tests``)."""
    return request.param


@pytest.fixture(scope="session")
def pg_cluster():
    """A real PostgreSQL 16 (with pgvector) from the pgserver wheel, in a temporary directory of its
    own (not under pytest's basetemp, which a concurrent pytest session may prune), stopped and
    removed at the end."""
    import psycopg

    with _quiet():
        import pgserver
    folder = tempfile.mkdtemp(prefix="llamaeval-pg-")
    try:
        with _quiet():
            cluster = pgserver.get_server(folder, cleanup_mode="stop")
            admin = cluster.get_uri()
        with psycopg.connect(admin, autocommit=True) as conn:  # a throw-away cluster: no durability needed
            for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                conn.execute(f"ALTER SYSTEM SET {setting} = off")
            conn.execute("SELECT pg_reload_conf()")
        yield cluster
        from pgserver._commands import pg_ctl

        with _quiet():  # a throw-away cluster: an immediate stop, no shutdown checkpoint (that took 20 s)
            pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=cluster.pgdata, user=cluster.system_user)
            cluster.cleanup()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Without platformdirs' "XDG_RUNTIME_DIR is not set" warning (pgserver's lock files)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        yield


@pytest.fixture(scope="session")
def new_database(pg_cluster: Any) -> Callable[[], str]:
    """``new_database()``: the URL of a fresh, empty database of ``pg_cluster`` (tests never share one)."""
    import psycopg

    with _quiet():
        admin = pg_cluster.get_uri()

    def make() -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return admin.replace("/postgres?", f"/{name}?", 1)

    return make


@pytest.fixture(scope="session")
def sources_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sources")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, sources_root: Path, backend: str,
           request: pytest.FixtureRequest):
    """The server most tests share (state persists across tests: use fresh projects)."""
    with EmbeddedServer(data_dir=tmp_path_factory.mktemp("srv"), sources_root=sources_root,
                        max_upload_mb=MAX_UPLOAD_MB, shared_sources_root=False,  # as `serve` by default
                        database=database_for(backend, request)) as srv:
        yield srv


@pytest.fixture(scope="session")
def account_sources(server: EmbeddedServer, sources_root: Path) -> Path:
    """The folder the default key's ``directory`` data sources resolve under (per account)."""
    folder = sources_root / server.account_id
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture()
def c(server: EmbeddedServer):
    with api(server) as client:
        yield client


@pytest.fixture()
def project(c: httpx.Client) -> str:
    r = c.post("/projects", json={"name": "test"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.fixture(scope="session")
def adi_corpus(shared_datasets: Path) -> list[dict[str, str]]:
    return load_corpus(shared_datasets / "adi")


@pytest.fixture(scope="session")
def adi_synced(server: EmbeddedServer, adi_corpus: list[dict[str, str]]) -> dict[str, Any]:
    """adi uploaded one file per document (doc_id metadata), synced: ids and the first job."""
    with api(server) as c:
        project_id = c.post("/projects", json={"name": "adi"}).json()["id"]
        files = []
        for doc in adi_corpus:
            r = upload(c, project_id, f"adi-{doc['_id']}.txt", f"{doc['title']}\n\n{doc['text']}".encode())
            assert r.status_code == 200, r.text
            files.append({"file_id": r.json()["id"], "metadata": {"doc_id": doc["_id"]}})
        pipeline = c.post("/pipelines", json={"name": "adi", "project_id": project_id}).json()
        r = c.put(f"/pipelines/{pipeline['id']}/files", json=files)
        assert r.status_code == 200, r.text
        job = c.post(f"/pipelines/{pipeline['id']}/sync").json()
        done = wait_job(c, pipeline["id"], job["id"])
        assert done["status"] == "completed", done
        return {"project_id": project_id, "pipeline_id": pipeline["id"], "job": done, "files": files}
