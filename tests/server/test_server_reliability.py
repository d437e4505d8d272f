"""Reliability of the server's parts: a 500 keeps the connection and is logged once, state changes
are one transaction, a poisoned database is repaired, the index cache keeps to its budget,
uploads are streamed with their limit, settings come from the environment."""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from llamaeval._errors import ConfigurationError
from llamaeval.server import ServerConfig, SQLiteStorage, create_api_key
from llamaeval.server._config import DataLayout
from llamaeval.server._storage import Job, Pipeline, PipelineFile, utc_now
from llamaeval.server._sync import IndexCache


class _Embedder:
    """Enough of an embedder for routes that never embed."""

    model_name = "dummy"
    dimensions = 384


class _FaultyStorage(SQLiteStorage):
    """Fails unexpectedly when a project is named 'boom' (a stand-in for any bug)."""

    def create_project(self, account_id: str, name: str) -> Any:
        if name == "boom":
            raise RuntimeError("injected fault")
        return super().create_project(account_id, name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def faulty_server(tmp_path):
    import uvicorn

    from llamaeval.server import create_app

    storage = _FaultyStorage(tmp_path / "db.sqlite")
    key, _ = create_api_key(storage, "t")
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(ServerConfig(data_dir=tmp_path / "d"), storage=storage,
                                                      embedder=_Embedder()),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield port, key
    server.should_exit = True
    thread.join(15)
    storage.close()


def _exchange(sock: socket.socket, method: str, path: str, key: str, body: bytes = b"") -> tuple[int, bytes]:
    """One HTTP/1.1 request on an open (kept-alive) socket; (status, body)."""
    head = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    sock.sendall(head + body)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
    header, _, rest = data.partition(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        rest += chunk
    return int(lines[0].split()[1]), rest[:length]


@pytest.mark.parametrize("root", ["/api/v1", "/cloud/api/v1"])
def test_a_500_keeps_the_connection_alive_and_is_logged_once(faulty_server, root, caplog):
    port, key = faulty_server
    caplog.set_level(logging.INFO)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        status, body = _exchange(sock, "POST", f"{root}/projects", key, b'{"name": "boom"}')
        assert status == 500 and json.loads(body) == {"detail": "internal server error (RuntimeError)"}
        for _ in range(3):  # the same connection keeps answering
            status, body = _exchange(sock, "GET", f"{root}/projects", key)
            assert status == 200, body
        status, _ = _exchange(sock, "POST", f"{root}/projects", key, b'{"name": "fine"}')
        assert status in (200, 201)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert "injected fault" in errors[0].getMessage() and errors[0].exc_info is not None


def _pipeline(storage: SQLiteStorage, acct: str, project: str, pid: str = "pl") -> Pipeline:
    now = utc_now()
    return storage.create_pipeline(Pipeline(
        id=pid, account_id=acct, project_id=project, name="p", status="idle", sync_interval=None,
        retrieval_config={}, chunking_config={}, embedding_model="m", created_at=now, updated_at=now))


def test_job_and_pipeline_status_change_in_one_transaction(tmp_path):
    storage = SQLiteStorage(tmp_path / "db.sqlite")
    try:
        acct = storage.create_account("a").id
        project = storage.create_project(acct, "p").id
        _pipeline(storage, acct, project)
        job = storage.create_job(Job(id="j", pipeline_id="pl", account_id=acct, status="pending",
                                     created_at=utc_now()), pipeline_changes={"status": "syncing"})
        assert storage.get_pipeline(acct, "pl").status == "syncing" and storage.get_job(job.id).status == "pending"
        storage.update_job_and_pipeline("j", {"status": "failed", "error": "x"}, "pl",
                                        {"status": "error", "error": "x"})
        assert (storage.get_job("j").status, storage.get_pipeline(acct, "pl").status) == ("failed", "error")
        with pytest.raises(ValueError):  # a bad pipeline change rolls the job change back too
            storage.update_job_and_pipeline("j", {"status": "completed"}, "pl", {"no_such_field": 1})
        assert storage.get_job("j").status == "failed"
    finally:
        storage.close()


def test_a_database_poisoned_by_a_lone_surrogate_is_repaired_at_open(tmp_path):
    path = tmp_path / "db.sqlite"
    storage = SQLiteStorage(path)
    acct = storage.create_account("a").id
    project = storage.create_project(acct, "p").id
    _pipeline(storage, acct, project)
    now = utc_now()
    storage.upsert_pipeline_file(PipelineFile(pipeline_id="pl", file_id="f", name="f.txt", status="pending",
                                              metadata={"doc_id": "d\udfff", "ok": "caf\u00e9 \U0001F600"},
                                              added_at=now, updated_at=now))
    storage.close()
    db = sqlite3.connect(path)  # as a database of the previous release left it
    db.execute("PRAGMA user_version=2")
    db.commit()
    db.close()
    storage = SQLiteStorage(path)
    try:
        (pf,) = storage.list_pipeline_files("pl")
        assert pf.metadata == {"doc_id": "d\ufffd", "ok": "caf\u00e9 \U0001F600"}  # valid pairs kept
        json.dumps(pf.metadata, ensure_ascii=False).encode("utf-8")  # answerable again
    finally:
        storage.close()


def test_the_index_cache_unloads_the_least_recently_used_beyond_its_budget(tmp_path):
    layout = DataLayout(tmp_path)
    for pid in ("a", "b", "c"):
        d = layout.index_dir(pid, "v1")
        d.mkdir(parents=True)
        (d / "embeddings.npy").write_bytes(b"x" * 400)
    cache = IndexCache(layout, embedder=None, budget_bytes=1000)
    cache.put("a", "v1", "A")
    cache.put("b", "v1", "B")
    assert cache.get("a", "v1") == "A"  # a is now the most recently used
    cache.put("c", "v1", "C")  # 1200 bytes > 1000: b (least recent) goes
    assert cache.stats() == {"loaded": 2, "bytes": 800, "budget_bytes": 1000, "evictions": 1}
    assert cache.get("a", "v1") == "A" and cache.get("c", "v1") == "C"
    small = IndexCache(layout, embedder=None, budget_bytes=10)
    small.put("a", "v1", "A")  # larger than the whole budget: the index in use still stays
    assert small.stats()["loaded"] == 1


def test_new_settings_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMAEVAL_DATA_DIR", str(tmp_path))
    cfg = ServerConfig.from_env()
    assert (cfg.max_query_chars, cfg.max_json_bytes, cfg.shared_sources_root) == (4096, 10 * 1024 * 1024, False)
    monkeypatch.setenv("LLAMAEVAL_MAX_QUERY_CHARS", "100")
    monkeypatch.setenv("LLAMAEVAL_MAX_JSON_MB", "0.5")
    monkeypatch.setenv("LLAMAEVAL_INDEX_CACHE_MB", "64")
    monkeypatch.setenv("LLAMAEVAL_SHARED_SOURCES_ROOT", "1")
    cfg = ServerConfig.from_env(sources_root=tmp_path)
    assert (cfg.max_query_chars, cfg.max_json_bytes, cfg.index_cache_bytes) == (100, 512 * 1024, 64 * 1024 * 1024)
    assert cfg.shared_sources_root and cfg.sources_root_of("acct") == tmp_path.resolve()
    monkeypatch.setenv("LLAMAEVAL_SHARED_SOURCES_ROOT", "0")
    assert ServerConfig.from_env(sources_root=tmp_path).sources_root_of("acct") == tmp_path.resolve() / "acct"
    for var, value in (("LLAMAEVAL_MAX_QUERY_CHARS", "ten"), ("LLAMAEVAL_MAX_QUERY_CHARS", "0"),
                       ("LLAMAEVAL_MAX_QUERY_CHARS", "2.5"), ("LLAMAEVAL_SHARED_SOURCES_ROOT", "maybe")):
        monkeypatch.setenv(var, value)
        with pytest.raises(ConfigurationError):
            ServerConfig.from_env()
        monkeypatch.delenv(var)


def test_an_upload_is_streamed_to_disk_and_a_streamed_oversized_one_is_413(server):
    import httpx

    limit = server_limit = int(0.25 * 1024 * 1024)
    headers = {"Authorization": f"Bearer {server.api_key}"}
    with httpx.Client(base_url=server.api_url, headers=headers, timeout=60) as c:
        project = c.post("/projects", json={"name": "stream"}).json()["id"]
        files_dir = Path(server.data_dir) / "files"
        before = {p.name for p in files_dir.iterdir()}

        def body(size: int):  # a chunked multipart body (no Content-Length): counted as it streams
            yield (b'--B\r\nContent-Disposition: form-data; name="file"; filename="s.txt"\r\n'
                   b"Content-Type: text/plain\r\n\r\n")
            sent = 0
            while sent < size:
                n = min(64 * 1024, size - sent)
                yield b"a" * n
                sent += n
            yield b"\r\n--B--\r\n"

        mp = {"Content-Type": "multipart/form-data; boundary=B"}
        r = c.post("/files", params={"project_id": project}, content=body(limit + 2 * 1024 * 1024), headers=mp)
        assert r.status_code == 413 and "upload limit" in r.json()["detail"], r.text
        r = c.post("/files", params={"project_id": project}, content=body(server_limit), headers=mp)
        assert r.status_code == 200, r.text
        assert r.json()["file_size"] == server_limit
        added = {p.name for p in files_dir.iterdir()} - before
        assert added == {r.json()["id"]}  # no temporary file left behind


def test_the_search_gate_admits_first_come_first_served_and_leaves_a_sync_a_slot():
    from llamaeval.server._sync import SearchGate

    syncing = {"on": False}
    gate = SearchGate(2, reserve=lambda: syncing["on"])
    assert gate.capacity() == 2
    syncing["on"] = True
    assert gate.capacity() == 1
    order: list[int] = []
    running = {"now": 0, "max": 0}
    lock = threading.Lock()

    def search(i: int) -> None:
        with gate:
            with lock:
                order.append(i)
                running["now"] += 1
                running["max"] = max(running["max"], running["now"])
            time.sleep(0.02)
            with lock:
                running["now"] -= 1

    with gate:  # hold the one slot while the others queue up, one after the other
        threads = []
        for i in range(6):
            threads.append(threading.Thread(target=search, args=(i,)))
            threads[-1].start()
            deadline = time.monotonic() + 10
            while len(gate._waiting) < i + 1 and time.monotonic() < deadline:
                time.sleep(0.001)
    for t in threads:
        t.join(10)
    assert order == list(range(6)) and running["max"] == 1
    syncing["on"] = False
    threads = [threading.Thread(target=search, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert running["max"] == 2


def test_a_stalled_body_gets_408_instead_of_holding_a_worker(faulty_server, monkeypatch):
    from llamaeval.server import _auth

    monkeypatch.setattr(_auth, "BODY_IDLE_TIMEOUT_S", 0.5)
    port, key = faulty_server
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall((f"POST /api/v1/projects HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                      "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\": ").encode())
        t = time.monotonic()
        data = b""
        while b"request timed out" not in data and time.monotonic() - t < 10:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"HTTP/1.1 408"), data
        assert b"request timed out" in data and time.monotonic() - t < 10


def test_a_body_far_over_its_limit_is_refused_unread_and_one_just_over_keeps_the_connection(faulty_server):
    port, key = faulty_server
    head = (f"POST /api/v1/pipelines/p/retrieve HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            "Content-Type: application/json\r\nContent-Length: {n}\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        # 5 MB announced, 11 bytes sent: the 413 comes at once, and the server closes the connection
        sock.sendall(head.replace("{n}", str(5 * 2 ** 20)).encode() + b'{"query": "')
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"HTTP/1.1 413") and b"connection: close" in data.lower(), data
        assert b"llamaeval_max_query_chars" in data.lower()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        body = b'{"query": "' + b"w" * 100_000 + b'"}'  # just over: read, refused, the connection kept
        status, answer = _exchange(sock, "POST", "/api/v1/pipelines/p/retrieve", key, body)
        assert status == 413 and b"retrieve requests" in answer
        assert _exchange(sock, "GET", "/api/v1/projects", key)[0] == 200
