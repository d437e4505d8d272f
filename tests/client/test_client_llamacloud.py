"""The client in the real LlamaCloud dialect, against a server whose bodies are the official SDK's own
models (realshape) — every quirk of the real shapes — and the same calls against the simplified API."""

from __future__ import annotations

import math
import warnings

import pytest

import llamaeval as le
from llamaeval import BadRequestError, ConfigurationError
from llamaeval.client import MODE_PRESETS, metadata_filters
from llamaeval.engine import RetrievalConfig

DOCS = {
    "d1": "The nautilus shell grows in a logarithmic spiral of chambers.",
    "d2": "Glaciers carve valleys by grinding bedrock under moving ice.",
    "d3": "A logarithmic spiral appears in galaxies, shells and hurricanes.",
}


def _client(srv, **kwargs):
    return le.LlamaCloud(api_key=srv.api_key, base_url=srv.base_url, max_retries=2, **kwargs)


def _ingest(lc, topic_of=lambda d: "nature"):
    project = next(p for p in lc.projects.list().itertuples() if p.name == "Default").id
    pipe = lc.pipelines.create("shapes", project, chunking_config={"chunk_size": 128, "chunk_overlap": 16})
    files = lc.files.upload_documents(
        [{"doc_id": d, "text": t, "title": ""} for d, t in DOCS.items()], project, pipe.id, progress=False)
    lc.pipelines.wait_for_sync(pipe.id, poll_interval=0.01, progress=False)
    return pipe, files


def test_auto_dialect_probes_once_and_says_which(realshape_server):
    with _client(realshape_server) as lc:
        assert lc.dialect == "auto"
        lc.projects.list()
        lc.projects.list()
        assert lc.dialect == "llamacloud" and "dialect='llamacloud'" in repr(lc)
    assert sum(r.startswith("GET /api/v1/projects") for r in realshape_server.state.requests) == 2  # no extra probe


def test_llamacloud_hosts_need_no_probe():
    lc = le.LlamaCloud(api_key="llx-test", region="eu")
    assert lc.dialect == "llamacloud"
    assert le.LlamaCloud(api_key="k", base_url="http://127.0.0.1:9", dialect="simplified").dialect == "simplified"
    with pytest.raises(ConfigurationError, match="dialect"):
        le.LlamaCloud(api_key="k", dialect="cloudy")


def test_ingest_and_retrieve_in_the_real_shapes(realshape_server):
    with _client(realshape_server) as lc:
        pipe, files = _ingest(lc)
        assert list(files["doc_id"]) == ["d1", "d2", "d3"]
        sent = [r for r in realshape_server.state.requests if r.startswith(("POST /api/v1/beta/files",
                                                                             "PUT /api/v1/pipelines"))]
        assert sent[0].startswith("POST /api/v1/beta/files?project_id=")  # project_id in the query
        listed = lc.pipelines.files.list(pipe.id)  # files2 pages of 2: all three come back
        assert sorted(listed["metadata.doc_id"]) == ["d1", "d2", "d3"]
        assert set(listed["status"].astype(str)) == {"completed"} and set(listed["status_raw"]) == {"SUCCESS"}
        res = lc.pipelines.retrieve(pipe.id, "logarithmic spiral shells", top_k=2, enable_reranking=False,
                                    alpha=0.0)
        assert res.request["alpha"] == 0.0 and res.request["dense_similarity_top_k"] == 2  # explicit values
        assert list(res.frame["doc_id"]) == ["d3", "d1"] or list(res.frame["doc_id"]) == ["d1", "d3"]
        assert res.frame["chunk_id"].notna().all() and res.server_timing  # retrieval_latency kept
        top = lc.pipelines.retrieve(pipe.id, "glaciers ice", top_k=1,
                                    search_filters=metadata_filters(("doc_id", "in", ["d2", "d3"])))
        assert list(top.frame["doc_id"]) == ["d2"]


def test_null_scores_are_nan_not_zero(realshape_server):
    with _client(realshape_server) as lc:
        pipe, _ = _ingest(lc)
        realshape_server.state.null_scores = True
        res = lc.pipelines.retrieve(pipe.id, "spiral", top_k=2)
        assert len(res.frame) == 2 and all(math.isnan(s) for s in res.frame["score"])


def test_unknown_enum_values_are_kept_not_refused(realshape_server):
    with _client(realshape_server) as lc:
        pipe, _ = _ingest(lc)
        realshape_server.state.unknown_enums = True
        lc.files.upload_documents([{"doc_id": "d4", "text": "new text", "title": ""}],
                                  next(iter(realshape_server.state.projects)), pipe.id, progress=False)
        files = lc.pipelines.files.list(pipe.id)
        assert "QUEUED_FOR_LATER" in set(files["status_raw"])
        assert "queued_for_later" in set(files["status"].astype(str))
        assert lc.pipelines.get(pipe.id).extra["status_raw"] == "QUEUED_FOR_LATER"


def test_partial_success_warns_and_names_the_error_step(realshape_server):
    realshape_server.state.partial_success = True
    with _client(realshape_server) as lc, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _ingest(lc)
    assert any("PARTIAL_SUCCESS" in str(w.message) and "PARSE" in str(w.message) for w in caught)


def test_422_detail_lists_become_a_readable_error(realshape_server):
    with _client(realshape_server) as lc:
        pipe, _ = _ingest(lc)
        with pytest.raises(BadRequestError) as err:
            lc.pipelines.retrieve(pipe.id, "spiral", top_k=2, alpha=1.5)
        assert err.value.status_code == 422 and "alpha" in err.value.message and "[" not in err.value.message


def test_a_body_without_retrieval_nodes_is_an_error(realshape_server):
    import httpx

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[{"id": "p", "name": "Default", "organization_id": "o"}]
                              if request.url.path.endswith("/projects") else {"nodes": []})

    lc = le.LlamaCloud(api_key="k", base_url="http://x.test", transport=httpx.MockTransport(handler))
    with pytest.raises(le.APIError, match="retrieval_nodes"):
        lc.pipelines.retrieve("p1", "q")


def test_mode_presets_map_onto_real_knobs_and_advanced_is_refused(realshape_server):
    with _client(realshape_server) as lc:
        pipe, _ = _ingest(lc)
        fast = lc.pipelines.retrieve(pipe.id, "spiral", mode="fast", top_k=3)
        assert fast.request["enable_reranking"] is False and fast.request["dense_similarity_top_k"] == 3
        accurate = lc.pipelines.retrieve(pipe.id, "spiral", mode="accurate", top_k=2)
        assert accurate.request["rerank_top_n"] == 2
        assert accurate.request["dense_similarity_top_k"] == MODE_PRESETS["accurate"]["dense_similarity_top_k"]
        with pytest.raises(ConfigurationError, match="no equivalent"):
            lc.pipelines.retrieve(pipe.id, "spiral", mode="advanced")
        with pytest.raises(ConfigurationError, match="unknown retrieve parameter"):
            lc.pipelines.retrieve(pipe.id, "spiral", alpah=0.3)


def test_documents_api(realshape_server):
    with _client(realshape_server) as lc:
        pipe, _ = _ingest(lc)
        lc.pipelines.documents.upsert(pipe.id, [{"id": f"doc{i}", "text": f"text {i}", "metadata": {"n": i}}
                                                for i in range(3)])
        docs = lc.pipelines.documents.list(pipe.id)  # pages of 2
        assert list(docs["id"]) == ["doc0", "doc1", "doc2"] and list(docs["metadata.n"]) == [0, 1, 2]
        lc.pipelines.documents.delete(pipe.id, "doc1")
        assert list(lc.pipelines.documents.list(pipe.id)["id"]) == ["doc0", "doc2"]


async def test_async_client_speaks_the_same_dialect(realshape_server):
    async with le.AsyncLlamaCloud(api_key=realshape_server.api_key, base_url=realshape_server.base_url) as alc:
        projects = await alc.projects.list()
        assert alc.dialect == "llamacloud" and "Default" in set(projects["name"])


def test_the_local_servers_two_mounts(live_server):
    """The same calls, auto-detected: /cloud speaks the real dialect, the root the simplified one."""
    qs = le.load_queryset("adi")
    with le.LlamaCloud(api_key=live_server.api_key, base_url=live_server.base_url + "/cloud") as real, \
            le.LlamaCloud(api_key=live_server.api_key, base_url=live_server.base_url) as simple:
        pipeline_id = le.ingest(real, qs, project="Default", pipeline="adi-real", progress=False)
        assert real.dialect == "llamacloud"
        hits = real.pipelines.retrieve(pipeline_id, qs.queries["text"].iloc[0], top_k=5)
        assert len(hits.frame) == 5 and hits.frame["doc_id"].notna().all()
        same = simple.pipelines.retrieve(pipeline_id, qs.queries["text"].iloc[0], mode="fast", top_k=5)
        assert simple.dialect == "simplified" and same.frame["doc_id"].notna().all()
        fast_real = real.pipelines.retrieve(pipeline_id, qs.queries["text"].iloc[0], top_k=100,
                                            enable_reranking=False, alpha=RetrievalConfig().dense_weight,
                                            dense_similarity_top_k=100,
                                            sparse_similarity_top_k=100)
        fast_simple = simple.pipelines.retrieve(pipeline_id, qs.queries["text"].iloc[0], mode="fast", top_k=100)
        assert list(fast_real.frame["chunk_id"]) == list(fast_simple.frame["chunk_id"])


def test_check_ready_refuses_a_pipeline_with_nothing_searchable(realshape_server):
    with _client(realshape_server) as lc:
        project = next(p for p in lc.projects.list().itertuples() if p.name == "Default").id
        empty = lc.pipelines.create("empty", project)
        with pytest.raises(le.EmptyPipelineError, match="no ingested file"):
            lc.pipelines.check_ready(empty.id)
        pipe, _ = _ingest(lc)
        assert lc.pipelines.check_ready(pipe.id, query="spiral") == {"files": 3, "completed": 3, "smoke_results": 1}


def test_check_ready_catches_success_with_no_chunks():
    """The known trap: ingestion reports SUCCESS but nothing was indexed."""
    import httpx

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/files2"):
            return httpx.Response(200, json={"files": [{"id": "pf", "pipeline_id": "p1", "file_id": "f1",
                                                        "status": "SUCCESS"}], "total_count": 1, "offset": 0})
        return httpx.Response(200, json={"pipeline_id": "p1", "retrieval_nodes": []})

    lc = le.LlamaCloud(api_key="k", base_url="http://x.test", dialect="llamacloud",
                       transport=httpx.MockTransport(handler))
    with pytest.raises(le.EmptyPipelineError, match="found no chunk"):
        lc.pipelines.check_ready("p1")


def test_every_operation_in_the_real_dialect_against_the_local_mount(live_server, tmp_path):
    with le.LlamaCloud(api_key=live_server.api_key, base_url=live_server.base_url + "/cloud") as lc:
        project = lc.projects.create("every-op")
        assert lc.projects.get(project.id).name == "every-op"
        pipe = lc.pipelines.create("ops", project.id, chunking_config={"chunk_size": 64, "chunk_overlap": 8},
                                   preset_retrieval_parameters={"rerank_top_n": 3})
        assert lc.dialect == "llamacloud"  # decided by the first call whose wire format differs
        assert pipe.chunking_config == {"chunk_size": 64, "chunk_overlap": 8}
        assert list(lc.pipelines.list(project.id)["id"]) == [pipe.id]
        doc = tmp_path / "spiral.txt"
        doc.write_text("The nautilus shell grows in a logarithmic spiral. " * 20)
        f = lc.files.upload(doc, project.id)
        added = lc.pipelines.files.add(pipe.id, [{"file_id": f.id, "metadata": {"doc_id": "s"}}])
        assert list(added["metadata.doc_id"]) == ["s"]
        job = lc.pipelines.sync(pipe.id)
        assert job.pipeline_id == pipe.id and job.status in ("pending", "running", "completed")
        done = lc.pipelines.wait_for_sync(pipe.id, poll_interval=0.05, progress=False)
        assert done.status == "completed" and done.extra["status_raw"] == "SUCCESS"
        assert lc.pipelines.status(pipe.id).status == "completed"
        jobs = lc.pipelines.jobs.list(pipe.id)
        assert len(jobs) >= 1 and set(jobs["status"].astype(str)) == {"completed"}
        assert lc.pipelines.data_sinks.list(pipe.id).empty  # no sink configured
        assert lc.pipelines.data_sources.list(pipe.id).empty
        with pytest.raises(BadRequestError, match="directory"):
            lc.data_sources.create("s3", "S3", {"bucket": "b"}, project_id=project.id)
        assert lc.data_sources.list(project.id).empty
        res = lc.pipelines.retrieve(pipe.id, "logarithmic spiral")  # preset: rerank_top_n 3
        assert len(res.frame) == 3 and set(res.frame["doc_id"]) == {"s"}
        assert lc.pipelines.check_ready(pipe.id)["completed"] == 1
        lc.pipelines.delete(pipe.id)
        assert lc.pipelines.list(project.id).empty


def test_pipelines_list_without_a_project_lists_every_project(live_server):
    """It used to raise a TypeError; both dialects give one frame over all projects."""
    for base in (live_server.base_url, live_server.base_url + "/cloud"):
        with le.LlamaCloud(api_key=live_server.api_key, base_url=base) as lc:
            a = lc.projects.create("list-a")
            b = lc.projects.create("list-b")
            pa = lc.pipelines.create("pa", a.id)
            pb = lc.pipelines.create("pb", b.id)
            listed = set(lc.pipelines.list()["id"])
            assert {pa.id, pb.id} <= listed
