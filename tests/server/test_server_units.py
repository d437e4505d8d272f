"""Fast unit tests of the server's parts (no process): keys, storage, config, validation messages."""

from __future__ import annotations

import os

import pytest

from llamaeval._errors import ConfigurationError
from llamaeval.cli import main
from llamaeval.server import ServerConfig, SQLiteStorage, Storage, create_api_key, create_api_key_in
from llamaeval.server._boundary import validation_message as _validation_message
from llamaeval.server._keys import hash_key
from llamaeval.server._storage import Pipeline, PipelineFile, utc_now
from llamaeval.server._sync import resolve_source_dir
from server_helpers import synced_pipeline


def test_keys_create_prints_the_key_alone_on_the_last_line_and_stores_only_a_hash(tmp_path, capsys):
    assert main(["keys", "create", "--data-dir", str(tmp_path), "--name", "ci"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    key = out[-1]
    assert key.startswith("llx-") and " " not in key and len(key) > 40
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("llamaeval.db*"))
    assert key.encode() not in raw and hash_key(key).encode() in raw
    storage = SQLiteStorage(tmp_path / "llamaeval.db")
    try:
        assert storage.account_for_key_hash(hash_key(key)) is not None
        assert storage.account_for_key_hash(hash_key(key + "x")) is None
        assert [k.name for k in storage.list_api_keys()] == ["ci"]
    finally:
        storage.close()
    assert main(["keys", "list", "--data-dir", str(tmp_path)]) == 0
    listed = capsys.readouterr().out
    assert "ci" in listed and key not in listed


def test_keys_create_into_unknown_account_fails(tmp_path, capsys):
    assert main(["keys", "create", "--data-dir", str(tmp_path), "--account", "nope"]) == 1
    assert "no account" in capsys.readouterr().err


def test_sqlite_storage_is_a_storage_and_scopes_by_account(tmp_path):
    storage = SQLiteStorage(tmp_path / "db.sqlite")
    try:
        assert isinstance(storage, Storage)
        a, b = storage.create_account("a"), storage.create_account("b")
        project = storage.create_project(a.id, "p")
        assert storage.get_project(a.id, project.id) == project
        assert storage.get_project(b.id, project.id) is None
        now = utc_now()
        pipeline = storage.create_pipeline(Pipeline(
            id="pl", account_id=a.id, project_id=project.id, name="x", status="idle", sync_interval=None,
            retrieval_config={"k": 1}, chunking_config={}, embedding_model="m", created_at=now, updated_at=now))
        storage.upsert_pipeline_file(PipelineFile(pipeline_id="pl", file_id="f1", name="f1.txt", status="pending",
                                                  metadata={"doc_id": "7"}, added_at=now, updated_at=now))
        storage.upsert_pipeline_file(PipelineFile(pipeline_id="pl", file_id="f1", name="f1.txt", status="pending",
                                                  metadata={"doc_id": "8"}, added_at=now, updated_at=now))
        got = storage.get_pipeline(a.id, "pl")
        assert got is not None and got.num_files == 1 and got.retrieval_config == {"k": 1}
        assert got.created_at == pipeline.created_at and got.created_at.tzinfo is not None
        assert storage.get_pipeline(b.id, "pl") is None
        assert storage.get_pipeline_index(a.id, "pl") == ("idle", None)
        storage.update_pipeline("pl", status="active", index_version="v1")
        assert storage.get_pipeline_index(a.id, "pl") == ("active", "v1")
        assert storage.get_pipeline_index(b.id, "pl") is None
        assert storage.list_pipeline_files("pl")[0].metadata == {"doc_id": "8"}
        with pytest.raises(ValueError, match="cannot update"):
            storage.update_pipeline("pl", account_id=b.id)
        storage.delete_pipeline("pl")
        assert storage.get_pipeline_any("pl") is None and storage.list_pipeline_files("pl") == []
        key, record = create_api_key(storage, "k", account_id=b.id)
        assert storage.account_for_key_hash(hash_key(key)) == b.id == record.account_id
    finally:
        storage.close()


def test_directory_sources_stay_under_the_root(tmp_path):
    root = (tmp_path / "root").resolve()
    (root / "docs" / "deep").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", root / "escape")
    assert resolve_source_dir(root, "docs") == root / "docs"
    assert resolve_source_dir(root, str(root / "docs" / "deep")) == root / "docs" / "deep"
    for bad, word in [("../outside", "outside"), ("/etc", "outside"), ("escape", "outside"),
                      ("docs/../../outside", "outside"), ("nothing", "not a folder"), ("", "non-empty"),
                      (5, "non-empty")]:
        with pytest.raises(ValueError, match=word):
            resolve_source_dir(root, bad)
    with pytest.raises(ValueError, match="--sources-root"):
        resolve_source_dir(None, "docs")


def test_server_config_from_arguments_env_and_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMAEVAL_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("LLAMAEVAL_MAX_UPLOAD_MB", "2")
    cfg = ServerConfig.from_env()
    assert cfg.data_dir == (tmp_path / "env").resolve() and cfg.max_upload_bytes == 2 * 1024 * 1024
    assert cfg.sources_root is None
    cfg = ServerConfig.from_env(tmp_path / "arg", tmp_path, 0.5)
    assert cfg.data_dir == (tmp_path / "arg").resolve() and cfg.sources_root == tmp_path.resolve()
    assert cfg.max_upload_bytes == 512 * 1024
    monkeypatch.setenv("LLAMAEVAL_MAX_UPLOAD_MB", "lots")
    with pytest.raises(ConfigurationError, match="LLAMAEVAL_MAX_UPLOAD_MB"):
        ServerConfig.from_env()
    with pytest.raises(ConfigurationError, match="not a directory"):
        ServerConfig(data_dir=tmp_path, sources_root=tmp_path / "missing")
    with pytest.raises(ConfigurationError):
        ServerConfig.from_env(tmp_path, None, 0)
    monkeypatch.delenv("LLAMAEVAL_MAX_UPLOAD_MB")
    monkeypatch.setenv("LLAMAEVAL_ONNX_THREADS", "1")
    assert ServerConfig.from_env().onnx_threads == 1
    monkeypatch.setenv("LLAMAEVAL_ONNX_THREADS", "many")
    with pytest.raises(ConfigurationError, match="LLAMAEVAL_ONNX_THREADS"):
        ServerConfig.from_env()


def test_validation_messages_name_the_field_and_the_problem():
    msg = _validation_message([{"type": "int_type", "loc": ("body", "top_k"), "msg": "Input should be a valid integer"}])
    assert msg == "invalid request: top_k: Input should be a valid integer"
    msg = _validation_message([{"type": "json_invalid", "loc": ("body", 12), "msg": "JSON decode error",
                                "ctx": {"error": "Expecting value"}}])
    assert msg == "invalid request: malformed JSON body (Expecting value)"
    msg = _validation_message([{"type": "missing", "loc": ("query", "project_id"), "msg": "Field required"}])
    assert msg == "invalid request: query parameter project_id: Field required"
    many = [{"type": "missing", "loc": ("body", i, "file_id"), "msg": "Field required"} for i in range(7)]
    assert _validation_message(many).endswith("(and 2 more)")
    assert "0.file_id: Field required" in _validation_message(many)


def test_embedded_server_rejects_bad_arguments():
    from llamaeval.server import EmbeddedServer

    with pytest.raises(ConfigurationError):
        EmbeddedServer(port=70000)
    with pytest.raises(ConfigurationError):
        EmbeddedServer(startup_timeout=0)
    with pytest.raises(ConfigurationError, match="not started"):
        _ = EmbeddedServer().base_url


def test_importing_the_server_package_starts_nothing():
    import subprocess
    import sys

    code = ("import sys, threading, llamaeval.server; "
            "heavy = [m for m in ('fastapi', 'uvicorn', 'onnxruntime', 'numpy') if m in sys.modules]; "
            "print(heavy, threading.active_count())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[] 1"


def test_serve_rejects_a_missing_sources_root(tmp_path, capsys):
    assert main(["serve", "--data-dir", str(tmp_path), "--sources-root", str(tmp_path / "nope")]) == 1
    assert "not a directory" in capsys.readouterr().err


def test_app_starts_its_workers_and_embedder_at_startup_and_stops_them(tmp_path):
    import threading

    from fastapi.testclient import TestClient

    from llamaeval.server import create_app

    def workers() -> set[str]:
        return {t.name for t in threading.enumerate() if t.name.startswith("llamaeval-")}

    assert not workers()
    apps = [create_app(ServerConfig(data_dir=tmp_path / name)) for name in ("a", "b")]
    assert not workers() and not (tmp_path / "a").exists()  # creating the app does nothing
    with TestClient(apps[0]) as one, TestClient(apps[1]) as two:
        assert workers() == {"llamaeval-sync", "llamaeval-scheduler"}
        a, b = apps[0].state.llamaeval, apps[1].state.llamaeval
        assert a.embedder is not b.embedder  # one embedder per app, never a global
        assert one.get("/health").json()["status"] == "ok"
        assert two.get("/api/v1/projects").status_code == 401
        assert (tmp_path / "a" / "llamaeval.db").exists()
        from threadpoolctl import threadpool_info

        blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
        assert blas and all(p["num_threads"] == 1 for p in blas)  # BLAS single-threaded while serving
    assert not workers()


def test_a_plug_in_reranker_is_used_by_the_indexes(tmp_path):
    from fastapi.testclient import TestClient

    from llamaeval.server import create_app

    with pytest.raises(ConfigurationError, match="module:factory"):
        ServerConfig(data_dir=tmp_path, reranker="no_colon")
    with pytest.raises(ConfigurationError, match="cannot load"):
        ServerConfig(data_dir=tmp_path, reranker="no_such_module_x:make").load_reranker()
    app = create_app(ServerConfig(data_dir=tmp_path / "d", reranker="server_rerank_plugin:make"))
    key, _ = create_api_key_in(tmp_path / "d")
    with TestClient(app, base_url="http://testserver/api/v1", headers={"Authorization": f"Bearer {key}"}) as c:
        pipeline = synced_pipeline(c, {"a.txt": "Airships and blimps float with helium.",
                                       "b.txt": "A zeppelin is a rigid airship.",
                                       "c.txt": "Airships carried mail across the Atlantic."})
        r = c.post(f"/pipelines/{pipeline}/retrieve",
                   json={"query": "airships floating with helium", "mode": "accurate", "top_k": 3}).json()
        assert r["results"][0]["metadata"]["file_name"] == "b.txt"
        assert "rerank" in r["results"][0]["metadata"]["scores"]
