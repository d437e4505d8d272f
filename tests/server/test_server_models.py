"""The second-stage model by reference: a pipeline resource names its model (name, version, SHA-256)
and stays small in both dialects; inline weights go to the server's model store by hash and the
pipeline ranks with them; unknown references are a 400 naming them; pipelines of earlier releases,
which stored the weights inline, are migrated at start-up."""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest
from server_helpers import api, upload, wait_job

from llamaeval.engine._models import ModelStore, default_model_reference, read_packaged
from llamaeval.server import EmbeddedServer

#: a tiny user model: two features, no trees (what someone training their own would send)
CUSTOM = {"description": "test model", "models": {
    "accurate": {"features": ["bm25_z", "dense_z"], "weights": [0.2, 1.0], "mean": [0.0, 0.0], "std": [1.0, 1.0]}}}


@pytest.fixture()
def cloud(server: EmbeddedServer):
    with httpx.Client(base_url=server.base_url + "/cloud/api/v1", timeout=60.0,
                      headers={"Authorization": f"Bearer {server.api_key}"}) as client:
        yield client


def test_a_pipeline_resource_names_its_model_and_stays_under_4_kb_in_both_dialects(server, cloud):
    with api(server) as c:
        project_id = c.post("/projects", json={"name": "small-resource"}).json()["id"]
        created = c.post("/pipelines", json={"name": "p", "project_id": project_id})
        assert created.status_code == 201, created.text
        pid = created.json()["id"]
        simplified = c.get(f"/pipelines/{pid}")
    real = cloud.get(f"/pipelines/{pid}")
    real_created = cloud.post("/pipelines", params={"project_id": project_id}, json={"name": "q"})
    assert real_created.status_code == 200, real_created.text
    for response in (created, simplified, real, real_created):
        assert response.status_code in (200, 201) and len(response.content) < 4096, len(response.content)
    assert simplified.json()["retrieval_config"]["ltr_model"] == default_model_reference()
    # the reference is the shipped file's hash
    ref = simplified.json()["retrieval_config"]["ltr_model"]
    assert hashlib.sha256(read_packaged(ref["version"])).hexdigest() == ref["sha256"]


def test_inline_weights_are_stored_by_hash_and_the_pipeline_ranks_with_them(server, cloud, adi_corpus):
    store = ModelStore(server.data_dir / "models")
    canonical = json.dumps(CUSTOM, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    sha = hashlib.sha256(canonical).hexdigest()
    with api(server) as c:
        project_id = c.post("/projects", json={"name": "custom-model"}).json()["id"]
        r = c.post("/pipelines", json={"name": "p", "project_id": project_id,
                                       "retrieval_config": {"ltr_model": CUSTOM}})
        assert r.status_code == 201, r.text
        assert len(r.content) < 4096
        assert r.json()["retrieval_config"]["ltr_model"] == {"name": "custom", "version": sha[:12], "sha256": sha}
        assert sha in store and store.get(sha) == CUSTOM
        pid = r.json()["id"]
        files = []
        for doc in adi_corpus[:6]:
            up = upload(c, project_id, f"adi-{doc['_id']}.txt", f"{doc['title']}\n\n{doc['text']}".encode())
            files.append({"file_id": up.json()["id"], "metadata": {"doc_id": doc["_id"]}})
        assert c.put(f"/pipelines/{pid}/files", json=files).status_code == 200
        job = c.post(f"/pipelines/{pid}/sync").json()
        assert wait_job(c, pid, job["id"])["status"] == "completed"
        hits = c.post(f"/pipelines/{pid}/retrieve", json={"query": "information retrieval", "mode": "accurate",
                                                           "top_k": 6}).json()
        assert hits["retrieval_config"]["ltr_model"]["sha256"] == sha
        scores = [h["metadata"]["scores"] for h in hits["results"]]
        # the custom model's score: 0.2 * z(bm25) + 1.0 * z(cosine) over the reranked pool
        assert all("ltr" in s for s in scores) and len(scores) == 6
        # a reference the server cannot resolve is refused, naming it
        bad = {"name": "custom", "version": "x", "sha256": "0" * 64}
        r = c.post("/pipelines", json={"name": "q", "project_id": project_id, "retrieval_config": {"ltr_model": bad}})
        assert r.status_code == 400 and "000000000000" in r.text
    # an update through the real dialect: a shipped version under a wrong hash is refused too
    r = cloud.put(f"/pipelines/{pid}", json={"retrieval_config": {"ltr_model": {"name": "llamaeval-ltr", "version": 1,
                                                                                "sha256": "1" * 64}}})
    assert r.status_code == 400 and "SHA-256" in r.text, r.text
    with api(server) as c:  # nothing stored was lost
        assert c.get(f"/pipelines/{pid}").json()["retrieval_config"]["ltr_model"]["sha256"] == sha


def test_pipelines_stored_with_inline_weights_are_migrated_at_start(tmp_path):
    from llamaeval.server._config import DataLayout
    from llamaeval.server._services import store_inline_models
    from llamaeval.server._sqlite import SQLiteStorage
    from llamaeval.server._storage import Pipeline, utc_now

    layout = DataLayout(tmp_path)
    layout.create()
    storage = SQLiteStorage(layout.db_path)
    try:
        acct = storage.create_account("a").id
        project = storage.create_project(acct, "p").id
        v1 = json.loads(read_packaged(1))
        inline_v1 = {"description": v1["description"], "models": v1["models"]}  # as version 1 pipelines stored it
        for pid, model in (("old", inline_v1), ("mine", CUSTOM), ("new", default_model_reference())):
            now = utc_now()
            storage.create_pipeline(Pipeline(
                id=pid, account_id=acct, project_id=project, name=pid, status="idle", sync_interval=None,
                retrieval_config={"bm25_k1": 1.2, "ltr_model": model}, chunking_config={}, embedding_model="m",
                created_at=now, updated_at=now, attributes={}))
        assert store_inline_models(storage, layout) == 2
        got = {p.id: p.retrieval_config["ltr_model"] for p in storage.list_all_pipelines()}
        assert got["old"] == {"name": "llamaeval-ltr", "version": 1,
                              "sha256": hashlib.sha256(read_packaged(1)).hexdigest()}
        assert got["mine"]["name"] == "custom" and ModelStore(layout.models_dir).get(got["mine"]["sha256"]) == CUSTOM
        assert got["new"] == default_model_reference()
        assert store_inline_models(storage, layout) == 0  # idempotent
        assert all(p.retrieval_config["bm25_k1"] == 1.2 for p in storage.list_all_pipelines())
    finally:
        storage.close()
