"""A pipeline's embedding model, chosen through ``embedding_config`` in both dialects: it embeds the
pipeline's chunks and queries (a MiniLM pipeline over the same files is unaffected); an unknown
model is a 4xx naming the allowed ones."""

from __future__ import annotations

import importlib.util
import json

import httpx
import pytest
from server_helpers import upload, wait_job

from llamaeval.engine._embed import DEFAULT_MODEL_NAME
from llamaeval.engine._static_embed import WORDLLAMA_MODEL_NAME

pytestmark = pytest.mark.skipif(importlib.util.find_spec("wordllama") is None,
                                reason="the fast-embed extra (wordllama) is not installed")

DOCS = {
    "wing.txt": "Transonic flow over a swept wing: shock waves and boundary layer separation near the wing tip.",
    "heart.txt": "Cardiac arrhythmia in elderly patients treated with beta blockers after a heart attack.",
    "library.txt": "Cataloguing rules for library collections and the indexing of periodicals by subject.",
}


@pytest.fixture()
def cloud(server):
    with httpx.Client(base_url=server.base_url + "/cloud/api/v1", timeout=60.0,
                      headers={"Authorization": f"Bearer {server.api_key}"}) as client:
        yield client


def _synced(c, project: str, files: list[str], name: str, embedding_config=None) -> tuple[dict, dict]:
    body = {"name": name, "project_id": project}
    if embedding_config is not None:
        body["embedding_config"] = embedding_config
    r = c.post("/pipelines", json=body)
    assert r.status_code == 201, r.text
    pipeline = r.json()
    c.put(f"/pipelines/{pipeline['id']}/files", json=[{"file_id": f} for f in files]).raise_for_status()
    job = wait_job(c, pipeline["id"], c.post(f"/pipelines/{pipeline['id']}/sync").json()["id"])
    assert job["status"] == "completed", job
    return pipeline, job


def _manifest(server, c, pipeline_id: str) -> dict:
    location = c.get(f"/pipelines/{pipeline_id}/data-sinks").json()[0]["config"]
    return {**location, **json.loads((server.data_dir / location["location"] / "manifest.json").read_text())}


@pytest.mark.both_backends  # on PostgreSQL the 256-dimension vectors are stored zero-padded (pgvector column)
def test_a_pipeline_embeds_with_its_model_and_a_minilm_one_is_unaffected(server, c, cloud, project):
    files = [upload(c, project, name, text.encode()).json()["id"] for name, text in DOCS.items()]
    minilm, _ = _synced(c, project, files, "minilm")
    static, job = _synced(c, project, files, "static", {"model_name": "wordllama"})
    assert minilm["embedding_model"] == DEFAULT_MODEL_NAME and static["embedding_model"] == WORDLLAMA_MODEL_NAME
    # the embedding cache is keyed by model: MiniLM's vectors of the same chunks are not reused ...
    assert job["num_chunks_cached"] == 0 and job["num_chunks_total"] == 3
    # ... but a second pipeline of the same model finds all of them
    again, job = _synced(c, project, files, "static-2", {"model_name": WORDLLAMA_MODEL_NAME})
    assert job["num_chunks_cached"] == 3
    a, b = _manifest(server, c, minilm["id"]), _manifest(server, c, static["id"])
    assert (a["embedding_model"], a["dimensions"]) == (DEFAULT_MODEL_NAME, 384)
    assert (b["embedding_model"], b["dimensions"]) == (WORDLLAMA_MODEL_NAME, 256)
    dense = {}
    for p in (minilm, static):
        r = c.post(f"/pipelines/{p['id']}/retrieve", json={"query": "beta blockers after a heart attack", "top_k": 3})
        assert r.status_code == 200, r.text
        hits = r.json()["results"]
        assert hits[0]["metadata"]["file_name"] == "heart.txt"
        dense[p["id"]] = [h["metadata"]["scores"]["dense"] for h in hits]
    assert dense[minilm["id"]] != pytest.approx(dense[static["id"]], abs=1e-3)  # different vectors, each its own
    # switching a pipeline's model: its index keeps answering with the model it was built with until
    # the next sync re-embeds every chunk with the new one (here from the cache MiniLM's pipeline filled)
    hf = {"type": "HUGGINGFACE_API_EMBEDDING", "component": {"model_name": "sentence-transformers/all-MiniLM-L6-v2"}}
    assert cloud.put(f"/pipelines/{again['id']}", json={"embedding_config": hf}).json()["embedding_model"] == \
        DEFAULT_MODEL_NAME
    assert _manifest(server, c, again["id"])["embedding_model"] == WORDLLAMA_MODEL_NAME
    r = c.post(f"/pipelines/{again['id']}/retrieve", json={"query": "library cataloguing", "top_k": 1})
    assert r.status_code == 200 and r.json()["results"][0]["metadata"]["file_name"] == "library.txt"
    job = wait_job(c, again["id"], c.post(f"/pipelines/{again['id']}/sync").json()["id"])
    assert job["status"] == "completed" and job["num_files"] == 3 and job["num_chunks_cached"] == 3
    m = _manifest(server, c, again["id"])
    assert (m["embedding_model"], m["dimensions"]) == (DEFAULT_MODEL_NAME, 384)
    r = c.post(f"/pipelines/{again['id']}/retrieve", json={"query": "library cataloguing", "top_k": 1})
    assert r.status_code == 200 and r.json()["results"][0]["metadata"]["file_name"] == "library.txt"


def test_an_unknown_model_is_a_4xx_naming_the_allowed_ones(server, c, cloud, project):
    r = c.post("/pipelines", json={"name": "x", "project_id": project, "embedding_config": {"model_name": "bge-m3"}})
    assert r.status_code == 400
    assert "bge-m3" in r.json()["detail"] and DEFAULT_MODEL_NAME in r.json()["detail"]
    assert WORDLLAMA_MODEL_NAME in r.json()["detail"]
    r = c.post("/pipelines", json={"name": "x", "project_id": project, "embedding_config": {"model": "wordllama"}})
    assert r.status_code == 400 and "unknown key(s): model" in r.json()["detail"]
    assert all(p["name"] != "x" for p in c.get("/pipelines", params={"project_id": project}).json())
    assert WORDLLAMA_MODEL_NAME in httpx.get(server.base_url + "/health").json()["embedding_models"]

    # the real dialect: a Hugging Face config names one of the server's models ...
    hf = {"type": "HUGGINGFACE_API_EMBEDDING", "component": {"model_name": "BAAI/bge-small-en-v1.5"}}
    r = cloud.post("/pipelines", params={"project_id": project}, json={"name": "y", "embedding_config": hf})
    assert r.status_code == 422 and WORDLLAMA_MODEL_NAME in r.text and "BAAI/bge-small-en-v1.5" in r.text
    hf["component"]["model_name"] = "dleemiller/word-llama-l2-supercat"
    p = cloud.post("/pipelines", params={"project_id": project}, json={"name": "y", "embedding_config": hf}).json()
    assert p["embedding_model"] == WORDLLAMA_MODEL_NAME
    # ... a hosted provider's config is recorded and embedded with the default; an update switches model
    openai = {"type": "OPENAI_EMBEDDING", "component": {"model_name": "text-embedding-3-small"}}
    q = cloud.post("/pipelines", params={"project_id": project}, json={"name": "z", "embedding_config": openai}).json()
    assert q["embedding_model"] == DEFAULT_MODEL_NAME and q["embedding_config"] == openai
    hf["component"]["model_name"] = "wordllama"
    q = cloud.put(f"/pipelines/{q['id']}", json={"embedding_config": hf}).json()
    assert q["embedding_model"] == WORDLLAMA_MODEL_NAME
    r = cloud.put(f"/pipelines/{q['id']}", json={"embedding_config": {**hf, "component": {"model_name": "nope"}}})
    assert r.status_code == 422 and c.get(f"/pipelines/{q['id']}").json()["embedding_model"] == WORDLLAMA_MODEL_NAME
