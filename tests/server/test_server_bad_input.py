"""Bad input gets a clear 4xx with a message; nothing stored is lost; the server keeps serving."""

from __future__ import annotations

import httpx
import pytest
from server_helpers import MAX_UPLOAD_MB, api, upload


def _detail(r: httpx.Response, status: int, *words: str) -> str:
    assert r.status_code == status, f"{r.status_code} {r.text}"
    detail = r.json()["detail"]
    assert isinstance(detail, str)
    for word in words:
        assert word.lower() in detail.lower(), f"{word!r} not in {detail!r}"
    return detail


@pytest.fixture()
def pipeline(c, project) -> str:
    return c.post("/pipelines", json={"name": "p", "project_id": project}).json()["id"]


def test_malformed_json_is_400(c):
    r = c.post("/projects", content=b'{"name": "x",', headers={"content-type": "application/json"})
    _detail(r, 400, "malformed JSON")
    r = c.post("/projects", content=b"", headers={"content-type": "application/json"})
    assert r.status_code == 400


@pytest.mark.parametrize("body, words", [
    ({"name": 5}, ["name", "string"]),
    ({}, ["name", "required"]),
    (["x"], ["object"]),
    ({"name": "   "}, ["empty"]),
])
def test_bad_project_bodies(c, body, words):
    _detail(c.post("/projects", json=body), 400, *words)


def test_bad_pipeline_bodies(c, project):
    base = {"name": "p", "project_id": project}
    _detail(c.post("/pipelines", json={**base, "sync_interval": "60"}), 400, "sync_interval")
    _detail(c.post("/pipelines", json={**base, "sync_interval": -1}), 400, "sync_interval")
    _detail(c.post("/pipelines", json={**base, "retrieval_config": {"bm25_k2": 1}}), 400, "bm25_k2")
    _detail(c.post("/pipelines", json={**base, "retrieval_config": {"dense_weight": 3}}), 400, "dense_weight")
    _detail(c.post("/pipelines", json={**base, "chunking_config": {"chunk_size": 4}}), 400, "chunk_size")
    _detail(c.post("/pipelines", json={"name": "p", "project_id": "nope"}), 404, "project")
    ok = c.post("/pipelines", json={**base, "retrieval_config": {"dense_weight": 0.7},
                                     "chunking_config": {"chunk_size": 128}})
    assert ok.status_code == 201
    assert ok.json()["retrieval_config"]["dense_weight"] == 0.7
    assert ok.json()["retrieval_config"]["bm25_k1"] > 0  # defaults filled in
    assert ok.json()["chunking_config"] == {"chunk_size": 128, "chunk_overlap": 32}


def test_bad_uploads(c, project):
    _detail(upload(c, project, "empty.txt", b""), 400, "empty")
    _detail(upload(c, project, "tool.exe", b"MZ..."), 400, "unsupported", ".txt")
    _detail(upload(c, project, "noext", b"text"), 400, "unsupported")
    for name in ("../../etc/passwd.txt", "a/b.txt", "..\\evil.txt", "..", "..hidden.txt"):
        _detail(upload(c, project, name, b"hello"), 400, "not allowed")
    _detail(upload(c, "no-such-project", "a.txt", b"hello"), 404, "project")
    _detail(c.post("/files", files={"file": ("a.txt", b"hello", "text/plain")}), 400, "project_id")
    _detail(c.post("/files", params={"project_id": project}, data={"x": "1"}), 400, "file")


def test_oversized_upload_is_413_and_limit_is_configurable(c, project):
    limit = int(MAX_UPLOAD_MB * 1024 * 1024)
    _detail(upload(c, project, "big.txt", b"a" * (limit + 1)), 413, "limit")
    _detail(upload(c, project, "huge.txt", b"a" * (limit + 2 * 1024 * 1024)), 413, "limit")
    assert upload(c, project, "fits.txt", b"a" * limit).status_code == 200


def test_bad_pipeline_file_lists(c, project, pipeline):
    good = upload(c, project, "a.txt", b"alpha beta").json()["id"]
    _detail(c.put(f"/pipelines/{pipeline}/files", json=[]), 400, "no files")
    _detail(c.put(f"/pipelines/{pipeline}/files", json={"file_id": good}), 400, "list")
    _detail(c.put(f"/pipelines/{pipeline}/files", json=[{"file_id": 1}]), 400, "file_id")
    _detail(c.put(f"/pipelines/{pipeline}/files", json=[{"metadata": {}}]), 400, "file_id", "required")
    _detail(c.put(f"/pipelines/{pipeline}/files", json=[{"file_id": good, "metadata": "x"}]), 400, "metadata")
    _detail(c.put(f"/pipelines/{pipeline}/files", json=[{"file_id": good}, {"file_id": "ghost"}]),
            400, "unknown file", "ghost")
    _detail(c.put(f"/pipelines/{pipeline}/files", json=[{"file_id": good, "metadata": {"file_id": "x"}}]),
            400, "reserved")
    assert c.get(f"/pipelines/{pipeline}/files").json() == []  # nothing half-added


def test_sync_of_empty_pipeline_and_retrieve_before_sync(c, pipeline):
    _detail(c.post(f"/pipelines/{pipeline}/sync"), 400, "empty")
    assert c.get(f"/pipelines/{pipeline}/jobs").json() == []
    _detail(c.post(f"/pipelines/{pipeline}/retrieve", json={"query": "x"}), 400, "no completed index", "sync")


@pytest.mark.parametrize("body, words", [
    ({"query": "x", "top_k": 0}, ["top_k"]),
    ({"query": "x", "top_k": 100000}, ["top_k", "200"]),
    ({"query": "x", "top_k": "5"}, ["top_k", "integer"]),
    ({"query": "x", "top_k": True}, ["top_k"]),
    ({"query": "x", "top_k": 2.5}, ["top_k"]),
    ({"query": "x", "mode": "turbo"}, ["mode", "fast"]),
    ({"query": ""}, ["query", "empty"]),
    ({"query": "   "}, ["query", "empty"]),
    ({"query": 42}, ["query", "string"]),
    ({"mode": "fast"}, ["query", "required"]),
])
def test_bad_retrieve_requests(server, adi_synced, body, words):
    with api(server) as c:
        _detail(c.post(f"/pipelines/{adi_synced['pipeline_id']}/retrieve", json=body), 400, *words)


def test_bad_data_sources(c, project, pipeline, account_sources):
    (account_sources / "ok").mkdir(exist_ok=True)
    base = {"name": "d", "project_id": project}
    _detail(c.post("/data-sources", json={**base, "source_type": "s3"}), 400, "unsupported", "directory")
    _detail(c.post("/data-sources", json={**base, "source_type": "directory", "config": {"path": "../"}}),
            400, "outside")
    _detail(c.post("/data-sources", json={**base, "source_type": "directory", "config": {"path": "/etc"}}),
            400, "outside")
    _detail(c.post("/data-sources", json={**base, "source_type": "directory", "config": {"path": "missing"}}),
            400, "not a folder")
    _detail(c.post("/data-sources", json={**base, "source_type": "directory", "config": {}}), 400, "path")
    _detail(c.post("/data-sources", json={**base, "source_type": "directory",
                                          "config": {"path": "ok", "glob": "*"}}), 400, "glob")
    _detail(c.post("/data-sources", json={"source_type": "directory"}), 400, "name")
    _detail(c.put(f"/pipelines/{pipeline}/data-sources", json=[{"data_source_id": "ghost"}]), 400, "ghost")
    _detail(c.put(f"/pipelines/{pipeline}/data-sources", json=[{"source_type": "ftp", "name": "x"}]),
            400, "directory")
    _detail(c.get("/data-sources"), 400, "project_id")
    assert c.get("/data-sources", params={"project_id": project}).json() == []


def test_server_keeps_serving_and_nothing_is_lost(server, c, project):
    before = c.get("/projects").json()
    for _ in range(3):
        c.post("/projects", content=b"{{{", headers={"content-type": "application/json"})
        upload(c, project, "../x.txt", b"x")
        c.post("/pipelines/nope/retrieve", json={"query": 1})
    assert httpx.get(server.base_url + "/health").json()["status"] == "ok"
    assert c.get("/projects").json() == before
    assert c.get("/not-an-endpoint").status_code == 404
