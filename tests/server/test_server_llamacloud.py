"""The real LlamaCloud dialect at /cloud over HTTP: each retrieve knob changes the result as documented
(on adi, synced through the simplified API: both dialects serve the same pipelines)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from llamaeval.engine import RetrievalConfig
from llamaeval.server import EmbeddedServer

QUERY = "computerized information retrieval systems for scientific documents"


@pytest.fixture()
def cloud(server: EmbeddedServer):
    with httpx.Client(base_url=server.base_url + "/cloud/api/v1", timeout=60.0,
                      headers={"Authorization": f"Bearer {server.api_key}"}) as client:
        yield client


def retrieve(cloud: httpx.Client, pipeline_id: str, **params: Any) -> dict[str, Any]:
    r = cloud.post(f"/pipelines/{pipeline_id}/retrieve", json={"query": QUERY, **params})
    assert r.status_code == 200, r.text
    return r.json()


def doc_ids(response: dict[str, Any]) -> list[str]:
    return [n["node"]["extra_info"]["doc_id"] for n in response["retrieval_nodes"]]


def stage(response: dict[str, Any], name: str) -> list[float]:
    return [n["node"]["extra_info"]["scores"][name] for n in response["retrieval_nodes"]]


def test_response_has_the_real_shape(cloud, adi_synced):
    pid = adi_synced["pipeline_id"]
    body = retrieve(cloud, pid)
    assert body["pipeline_id"] == pid and body["image_nodes"] == [] and body["metadata"] == {"retrieval_mode": "chunks"}
    assert len(body["retrieval_nodes"]) == 6  # LlamaCloud's defaults: reranking on, rerank_top_n 6
    node = body["retrieval_nodes"][0]["node"]
    assert node["id_"].startswith(node["extra_info"]["file_id"]) and node["extra_info"]["doc_id"]
    assert node["text"] and 0 <= node["start_char_idx"] < node["end_char_idx"]
    assert node["relationships"]["1"]["node_id"] == node["extra_info"]["file_id"]
    assert {"embed", "bm25", "dense", "ltr", "total"} <= set(body["retrieval_latency"])


def test_alpha_zero_is_the_sparse_ranking_and_one_the_dense_ranking(cloud, adi_synced):
    pid = adi_synced["pipeline_id"]
    sparse = retrieve(cloud, pid, alpha=0.0, enable_reranking=False, sparse_similarity_top_k=10)
    dense = retrieve(cloud, pid, alpha=1.0, enable_reranking=False, dense_similarity_top_k=10)
    bm25 = stage(sparse, "bm25")
    assert len(bm25) == 10 and bm25 == sorted(bm25, reverse=True) and min(bm25) > 0
    cosine = stage(dense, "dense")
    assert len(cosine) == 10 and cosine == sorted(cosine, reverse=True)
    hybrid = retrieve(cloud, pid, alpha=0.5, enable_reranking=False, dense_similarity_top_k=10)
    assert doc_ids(hybrid) not in (doc_ids(sparse), doc_ids(dense))


def test_no_reranking_with_mode_pools_is_the_fast_mode(cloud, c, adi_synced):
    """The modes are presets of the same engine request: fast = hybrid, no second stage, pools of 100."""
    pid = adi_synced["pipeline_id"]
    alpha = RetrievalConfig().dense_weight  # the pipeline's (default) fusion weight
    real = retrieve(cloud, pid, alpha=alpha, enable_reranking=False, dense_similarity_top_k=100,
                    sparse_similarity_top_k=100)
    fast = c.post(f"/pipelines/{pid}/retrieve", json={"query": QUERY, "mode": "fast", "top_k": 100}).json()
    assert [n["node"]["id_"] for n in real["retrieval_nodes"]] == [r["metadata"]["chunk_id"] for r in fast["results"]]


def test_rerank_top_n_bounds_the_nodes_and_reranking_changes_the_order(cloud, adi_synced):
    pid = adi_synced["pipeline_id"]
    assert len(retrieve(cloud, pid, enable_reranking=True, rerank_top_n=3)["retrieval_nodes"]) == 3
    plain = retrieve(cloud, pid, enable_reranking=False, dense_similarity_top_k=7)
    assert len(plain["retrieval_nodes"]) == 7
    reranked = retrieve(cloud, pid, enable_reranking=True, rerank_top_n=7)
    assert "ltr" in reranked["retrieval_nodes"][0]["node"]["extra_info"]["scores"]
    assert doc_ids(reranked) != doc_ids(plain)


def test_dense_cutoff_drops_dissimilar_nodes(cloud, adi_synced):
    pid = adi_synced["pipeline_id"]
    nodes = retrieve(cloud, pid, enable_reranking=False, dense_similarity_top_k=50, dense_similarity_cutoff=0.4)
    assert 0 < len(nodes["retrieval_nodes"]) < 50 and min(stage(nodes, "dense")) >= 0.4


def test_search_filters_exclude_what_they_should(cloud, adi_synced):
    pid = adi_synced["pipeline_id"]
    wanted = ["1", "2", "3", "15", "40"]
    inside = retrieve(cloud, pid, search_filters={"filters": [{"key": "doc_id", "value": wanted, "operator": "in"}]})
    assert inside["retrieval_nodes"] and set(doc_ids(inside)) <= set(wanted)
    top = doc_ids(retrieve(cloud, pid, enable_reranking=False, dense_similarity_top_k=5))
    outside = retrieve(cloud, pid, enable_reranking=False, dense_similarity_top_k=5, search_filters={
        "condition": "not", "filters": [{"key": "doc_id", "value": top[0], "operator": "=="}]})
    assert top[0] not in doc_ids(outside) and len(outside["retrieval_nodes"]) == 5
    nested = retrieve(cloud, pid, search_filters={"condition": "and", "filters": [
        {"key": "doc_id", "value": wanted, "operator": "in"},
        {"condition": "or", "filters": [{"key": "doc_id", "value": "1", "operator": "=="},
                                        {"key": "doc_id", "value": "40", "operator": "=="}]}]})
    assert set(doc_ids(nested)) <= {"1", "40"}


def test_search_filters_see_file_name_and_file_id_as_extra_info_shows_them(cloud, adi_synced):
    pid = adi_synced["pipeline_id"]
    node = retrieve(cloud, pid, enable_reranking=False, dense_similarity_top_k=3)["retrieval_nodes"][1]["node"]
    name, file_id = node["extra_info"]["file_name"], node["extra_info"]["file_id"]
    by_name = retrieve(cloud, pid, search_filters={"filters": [{"key": "file_name", "value": name}]})
    assert by_name["retrieval_nodes"]
    assert {n["node"]["extra_info"]["file_id"] for n in by_name["retrieval_nodes"]} == {file_id}
    others = retrieve(cloud, pid, enable_reranking=False, dense_similarity_top_k=3, search_filters={
        "filters": [{"key": "file_id", "value": file_id, "operator": "!="}]})
    assert len(others["retrieval_nodes"]) == 3 and file_id not in {
        n["node"]["extra_info"]["file_id"] for n in others["retrieval_nodes"]}


def test_files_via_content_returns_whole_files(cloud, adi_synced, adi_corpus):
    pid = adi_synced["pipeline_id"]
    body = retrieve(cloud, pid, retrieval_mode="files_via_content", files_top_k=2)
    texts = {d["_id"]: f"{d['title']}\n\n{d['text']}".strip() for d in adi_corpus}
    nodes = [n["node"] for n in body["retrieval_nodes"]]
    assert len(nodes) == 2 and len({n["extra_info"]["file_id"] for n in nodes}) == 2
    for n in nodes:
        assert n["id_"] == n["extra_info"]["file_id"]
        assert " ".join(n["text"].split()) == " ".join(texts[n["extra_info"]["doc_id"]].split())
    chunks = doc_ids(retrieve(cloud, pid, enable_reranking=True, rerank_top_n=5))
    assert nodes[0]["extra_info"]["doc_id"] == chunks[0]


def test_files_via_metadata_and_auto_routing(cloud, adi_synced):
    pid = adi_synced["pipeline_id"]
    body = cloud.post(f"/pipelines/{pid}/retrieve", json={"query": "adi-17", "retrieval_mode": "files_via_metadata"})
    assert body.status_code == 200, body.text
    assert doc_ids(body.json()) == ["17"]  # the file name adi-17.txt holds the whole query
    routed = cloud.post(f"/pipelines/{pid}/retrieve", json={"query": "adi-17", "retrieval_mode": "auto_routed"}).json()
    assert routed["metadata"]["retrieval_mode"] == "files_via_metadata" and doc_ids(routed) == ["17"]
    content = retrieve(cloud, pid, retrieval_mode="auto_routed")
    assert content["metadata"]["retrieval_mode"] == "chunks" and len(content["retrieval_nodes"]) == 6


def test_preset_retrieval_parameters_fill_what_a_request_omits(cloud, adi_synced):
    pid = adi_synced["pipeline_id"]
    r = cloud.put(f"/pipelines/{pid}", json={"preset_retrieval_parameters": {"rerank_top_n": 4, "alpha": 0.0}})
    assert r.status_code == 200, r.text
    try:
        assert r.json()["preset_retrieval_parameters"] == {"rerank_top_n": 4, "alpha": 0.0}
        preset = retrieve(cloud, pid)
        assert len(preset["retrieval_nodes"]) == 4 and min(stage(preset, "bm25")) > 0
        assert len(retrieve(cloud, pid, rerank_top_n=2)["retrieval_nodes"]) == 2
    finally:
        cloud.put(f"/pipelines/{pid}", json={"preset_retrieval_parameters": {}})


@pytest.mark.parametrize("params, where", [
    ({"alpha": 1.5}, "alpha"), ({"dense_similarity_top_k": 0}, "dense_similarity_top_k"),
    ({"rerank_top_n": 101}, "rerank_top_n"), ({"files_top_k": 6}, "files_top_k"),
    ({"retrieval_mode": "everything"}, "retrieval_mode"), ({"query": ""}, "query"),
    ({"search_filters": {"filters": [{"key": "doc_id", "value": "1", "operator": "like"}]}}, "search_filters"),
])
def test_out_of_range_parameters_are_422_in_fastapi_shape(cloud, adi_synced, params, where):
    r = cloud.post(f"/pipelines/{adi_synced['pipeline_id']}/retrieve", json={"query": QUERY, **params})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, list) and where in detail[0]["loc"] and detail[0]["msg"]


def test_every_account_has_a_default_project(cloud):
    projects = cloud.get("/projects").json()
    default = [p for p in projects if p["is_default"]]
    assert len(default) == 1 and default[0]["name"] == "Default" and default[0]["organization_id"]
    assert cloud.get("/projects", params={"project_name": "Default"}).json() == default


def test_unknown_data_source_type_names_the_supported_ones(cloud):
    r = cloud.post("/data-sources", json={"name": "s3", "source_type": "S3", "component": {"bucket": "b"}})
    assert r.status_code == 422 and "directory" in r.json()["detail"][0]["msg"]


def test_unauthenticated_calls_are_401(server):
    r = httpx.get(server.base_url + "/cloud/api/v1/projects")
    assert r.status_code == 401


def test_deleting_the_last_document_leaves_an_empty_pipeline(cloud):
    pid = cloud.put("/pipelines", json={"name": "one-document"}).json()["id"]
    r = cloud.post(f"/pipelines/{pid}/documents", json=[{"id": "only", "text": "quetzal lighthouse marmalade",
                                                           "metadata": {"doc_id": "only"}}])
    assert r.status_code == 200, r.text
    assert _wait(cloud, pid)["status"] == "SUCCESS"
    assert doc_ids(cloud.post(f"/pipelines/{pid}/retrieve", json={"query": "quetzal"}).json()) == ["only"]
    assert cloud.delete(f"/pipelines/{pid}/documents/only").status_code == 204
    assert _wait(cloud, pid)["status"] == "SUCCESS"
    assert cloud.post(f"/pipelines/{pid}/retrieve", json={"query": "quetzal"}).json()["retrieval_nodes"] == []
    assert cloud.get(f"/pipelines/{pid}/documents/only").status_code == 404


def _wait(cloud: httpx.Client, pipeline_id: str, timeout: float = 60.0) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = cloud.get(f"/pipelines/{pipeline_id}/status").json()
        if status["status"] not in ("NOT_STARTED", "IN_PROGRESS"):
            return status
        time.sleep(0.1)
    raise AssertionError(f"pipeline {pipeline_id} still ingesting after {timeout} s")


def test_sync_cancel_stops_the_job_and_keeps_the_last_index(cloud, adi_corpus):
    pid = cloud.put("/pipelines", json={"name": "cancel-me"}).json()["id"]
    first = [{"id": "first", "text": "quetzal lighthouse marmalade", "metadata": {"doc_id": "first"}}]
    assert cloud.post(f"/pipelines/{pid}/documents", json=first).status_code == 200
    assert _wait(cloud, pid)["status"] == "SUCCESS"
    many = [{"id": f"d{d['_id']}", "text": f"{d['title']}\n\n{d['text']}", "metadata": {"doc_id": d["_id"]}}
            for d in adi_corpus]  # a sync of 82 documents takes seconds: the cancel lands during it
    assert cloud.post(f"/pipelines/{pid}/documents", json=many).status_code == 200
    r = cloud.post(f"/pipelines/{pid}/sync/cancel")
    assert r.status_code == 200 and r.json()["id"] == pid
    status = _wait(cloud, pid)
    assert status["status"] == "CANCELLED", status
    jobs = [j["job_record"] for j in cloud.get("/jobs").json()["jobs"] if j["job_record"]["partitions"]["pipeline_id"] == pid]
    assert jobs[0]["status"] == "CANCELLED"
    assert doc_ids(cloud.post(f"/pipelines/{pid}/retrieve", json={"query": "quetzal"}).json()) == ["first"]
