"""Self-test of the realshape double: the official llama-cloud 2.19.0 SDK, in strict mode, drives it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import llama_cloud
import pytest
from conftest_realshape import realshape_server  # noqa: F401  (fixture)
from llama_cloud import LlamaCloud
from llama_cloud.types import FileRetrieveResponse
from llama_cloud.types.pipeline_create_params import PipelineCreateParams
from llama_cloud.types.pipeline_retrieve_params import PipelineRetrieveParams
from realshape import PipelineBody, RealShapeServer, RetrieveBody

pytestmark = pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # SDK marks v1 pipelines deprecated
PENDING = ("NOT_STARTED", "IN_PROGRESS")
EMBEDDING = {"type": "OPENAI_EMBEDDING", "component": {"model_name": "text-embedding-3-small"}}


def text(topic: str, words: int = 130) -> bytes:
    """`words` words about `topic`: three ~60-word chunks."""
    return " ".join(f"{topic} filler{i}" if i % 2 == 0 else f"w{i}" for i in range(words)).encode()


@pytest.fixture()
def sdk(realshape_server: RealShapeServer) -> Iterator[LlamaCloud]:  # noqa: F811
    with LlamaCloud(api_key=realshape_server.api_key, base_url=realshape_server.base_url,
                    _strict_response_validation=True, max_retries=2) as client:
        yield client


def setup_pipeline(sdk: LlamaCloud, files: dict[str, dict[str, Any]]) -> tuple[str, dict[str, str]]:
    """Create pipeline "idx", upload and attach `files` ({name: custom_metadata}); -> (id, {name: file id})."""
    project = sdk.projects.list(project_name="Default")[0]
    pipe = sdk.pipelines.create(name="idx", project_id=project.id, embedding_config=EMBEDDING,
                                transform_config={"mode": "auto", "chunk_size": 512, "chunk_overlap": 50})
    ids = {}
    for fname in files:
        up = sdk.files.create(file=(fname, text(fname.split(".")[0])), purpose="user_data", project_id=project.id)
        ids[fname] = up.id
    body = [{"file_id": ids[f], "custom_metadata": m} for f, m in files.items()]
    added = sdk.pipelines.files.create(pipe.id, body=body)  # type: ignore[arg-type]
    assert [f.status for f in added] == ["NOT_STARTED"] * len(files)
    assert [f.custom_metadata for f in added] == list(files.values())
    return pipe.id, ids


def wait(get: Any) -> list[str]:
    seen = [get().status]
    while seen[-1] in PENDING and len(seen) < 10:
        seen.append(get().status)
    return seen


def test_sdk_strict_happy_path(sdk: LlamaCloud, realshape_server: RealShapeServer) -> None:  # noqa: F811
    projects = sdk.projects.list()
    assert [(p.name, p.is_default) for p in projects] == [("Default", True)]
    assert sdk.projects.get(projects[0].id).id == projects[0].id

    files = {"apples.txt": {"doc_id": "d1", "lang": "en"}, "pears.txt": {"doc_id": "d2", "lang": "en"},
             "plums.txt": {"doc_id": "d3", "lang": "fr"}}
    pid, ids = setup_pipeline(sdk, files)
    assert sdk.pipelines.list(pipeline_name="idx")[0].id == pid
    assert wait(lambda: sdk.pipelines.files.get_status(ids["apples.txt"], pipeline_id=pid)) == [
        "NOT_STARTED", "IN_PROGRESS", "SUCCESS"]
    assert wait(lambda: sdk.pipelines.get_status(pid))[-1] == "SUCCESS"

    first = sdk.pipelines.files.list(pid)  # files2, page size 2: a client reading one page misses a file
    assert len(first.files) == 2 and first.total_count == 3 and first.has_next_page()
    listed = list(sdk.pipelines.files.list(pid))
    assert sorted(f.file_id for f in listed) == sorted(ids.values())
    assert all(f.status == "SUCCESS" and f.id != f.file_id for f in listed)

    res = sdk.pipelines.retrieve(pid, query="pears filler", dense_similarity_top_k=4, enable_reranking=False,
                                 search_filters={"filters": [{"key": "lang", "value": "en", "operator": "=="}]})
    assert len(res.retrieval_nodes) == 4 and res.pipeline_id == pid
    top = res.retrieval_nodes[0]
    assert top.node.extra_info == {"doc_id": "d2", "lang": "en", "file_id": ids["pears.txt"],
                                   "file_name": "pears.txt"}
    assert top.node.id and top.node.relationships and top.node.relationships["1"].node_id == ids["pears.txt"]
    assert top.score is not None and top.score >= res.retrieval_nodes[-1].score  # type: ignore[operator]
    assert {n.node.extra_info["lang"] for n in res.retrieval_nodes} == {"en"}  # type: ignore[index]
    assert all(isinstance(v, float) for v in (res.retrieval_latency or {}).values())
    node = top.node
    assert node.text == text("pears").decode()[node.start_char_idx:node.end_char_idx]

    in_filter = {"filters": [{"key": "doc_id", "value": ["d1", "d3"], "operator": "in"}]}
    res = sdk.pipelines.retrieve(pid, query="plums", enable_reranking=True, rerank_top_n=2,
                                 search_filters=in_filter)  # type: ignore[arg-type]
    assert len(res.retrieval_nodes) == 2
    assert res.retrieval_nodes[0].node.extra_info["doc_id"] == "d3"  # type: ignore[index]

    docs = sdk.pipelines.documents.create(pid, body=[{"text": f"note {i} about kiwis", "metadata": {"n": i},
                                                      "id": f"doc-{i}"} for i in range(3)])
    assert [d.id for d in docs] == ["doc-0", "doc-1", "doc-2"]
    assert sorted(d.id for d in sdk.pipelines.documents.list(pid)) == ["doc-0", "doc-1", "doc-2"]  # auto-pages
    assert wait(lambda: sdk.pipelines.documents.get_status("doc-1", pipeline_id=pid))[-1] == "SUCCESS"
    assert sdk.pipelines.documents.get("doc-1", pipeline_id=pid).metadata == {"n": 1}
    sdk.pipelines.documents.delete("doc-2", pipeline_id=pid)
    assert sdk.pipelines.documents.list(pid).total_count == 2  # type: ignore[attr-defined]

    assert sdk.pipelines.sync.create(pid).id == pid
    assert sdk.pipelines.sync.cancel(pid).id == pid
    jobs: Any = sdk.get("/api/v1/jobs", cast_to=object, options={"params": {"project_id": projects[0].id}})
    assert jobs["total_count"] == 2 and {j["job_record"]["status"] for j in jobs["jobs"]} <= {"SUCCESS", "CANCELLED"}


def test_pipeline_crud_and_legacy_upload(sdk: LlamaCloud, realshape_server: RealShapeServer) -> None:  # noqa: F811
    a = sdk.pipelines.upsert(name="p", embedding_config=None, transform_config={})  # LlamaCloudIndex's body
    b = sdk.pipelines.upsert(name="p", pipeline_type="PLAYGROUND")
    assert a.id == b.id and b.pipeline_type == "PLAYGROUND"
    assert b.transform_config is not None and b.transform_config.mode == "auto"
    assert sdk.pipelines.update(a.id, preset_retrieval_parameters={"dense_similarity_top_k": 7}) \
        .preset_retrieval_parameters.dense_similarity_top_k == 7  # type: ignore[union-attr]
    sdk.pipelines.delete(a.id)
    with pytest.raises(llama_cloud.NotFoundError):
        sdk.pipelines.get(a.id)

    headers = {"Authorization": f"Bearer {realshape_server.api_key}"}
    url = f"{realshape_server.base_url}/api/v1/files"
    r = httpx.post(url, headers=headers, files={"upload_file": ("x.txt", b"hi")})
    assert r.status_code == 200 and FileRetrieveResponse.model_validate(r.json()).name == "x.txt"
    r = httpx.post(url, headers=headers, files={"file": ("x.txt", b"hi")})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "upload_file"]
    assert httpx.get(f"{realshape_server.base_url}/api/v1/projects").status_code == 401


@pytest.mark.parametrize("extra", [{"top_k": 3}, {"mode": "hybrid"}, {"dense_similarity_top_k": 0},
                                   {"dense_similarity_top_k": 101}, {"alpha": 1.5}, {"files_top_k": 6}])
def test_retrieve_rejects_unreal_params(sdk: LlamaCloud, extra: dict[str, Any]) -> None:
    pid = sdk.pipelines.create(name="r").id
    with pytest.raises(llama_cloud.UnprocessableEntityError) as err:
        sdk.pipelines.retrieve(pid, query="q", extra_body=extra)
    assert all({"loc", "msg", "type"} <= set(d) for d in err.value.body["detail"])  # type: ignore[index]


def test_other_422s(sdk: LlamaCloud) -> None:
    with pytest.raises(llama_cloud.UnprocessableEntityError):
        sdk.pipelines.create(name="x", extra_body={"project_id": sdk.projects.list()[0].id})
    with pytest.raises(llama_cloud.UnprocessableEntityError):  # refused by the SDK's own Pipeline model
        sdk.pipelines.create(name="x", embedding_config={"type": "BOGUS"})  # type: ignore[typeddict-item]
    pid = sdk.pipelines.create(name="x").id
    up = sdk.files.create(file=("a.txt", b"a"), purpose="user_data")
    with pytest.raises(llama_cloud.UnprocessableEntityError):
        sdk.pipelines.files.create(pid, body=[{"file_id": up.id, "metadata": {"a": 1}}])  # type: ignore[typeddict-item]


def test_request_models_match_sdk_params() -> None:
    query_only = {"project_id", "organization_id"}
    assert set(RetrieveBody.model_fields) == set(PipelineRetrieveParams.__annotations__) - query_only
    assert set(PipelineBody.model_fields) == set(PipelineCreateParams.__annotations__) - query_only


def test_quirk_null_scores(sdk: LlamaCloud, realshape_server: RealShapeServer) -> None:  # noqa: F811
    pid, _ = setup_pipeline(sdk, {"a.txt": {}})
    wait(lambda: sdk.pipelines.get_status(pid))
    realshape_server.state.null_scores = True
    nodes = sdk.pipelines.retrieve(pid, query="a").retrieval_nodes
    assert nodes and all(n.score is None for n in nodes)


def test_quirk_unknown_enums(sdk: LlamaCloud, realshape_server: RealShapeServer) -> None:  # noqa: F811
    pid, ids = setup_pipeline(sdk, {"a.txt": {}})
    realshape_server.state.unknown_enums = True
    with pytest.raises(llama_cloud.APIResponseValidationError):  # strict SDK refuses the unknown value
        sdk.pipelines.files.get_status(ids["a.txt"], pipeline_id=pid)
    with LlamaCloud(api_key=realshape_server.api_key, base_url=realshape_server.base_url) as lax:
        assert lax.pipelines.get(pid).status == "QUEUED_FOR_LATER"
        assert [f.status for f in lax.pipelines.files.list(pid)] == ["IN_PROGRESS"]  # advanced by the poll above
        assert wait(lambda: lax.pipelines.get_status(pid)) == ["IN_PROGRESS", "SUCCESS"]


def test_quirk_partial_success(sdk: LlamaCloud, realshape_server: RealShapeServer) -> None:  # noqa: F811
    realshape_server.state.partial_success = True
    pid, ids = setup_pipeline(sdk, {"bad.txt": {}, "good.txt": {}})
    wait(lambda: sdk.pipelines.get_status(pid))
    status = sdk.pipelines.get_status(pid)
    assert status.status == "PARTIAL_SUCCESS"
    assert [(e.step, e.job_id) for e in status.error or []] == [("PARSE", status.job_id)]
    assert {f.name: f.status for f in sdk.pipelines.files.list(pid)} == {"bad.txt": "ERROR", "good.txt": "SUCCESS"}
    assert {n.node.extra_info["file_name"] for n in sdk.pipelines.retrieve(pid, query="bad good").retrieval_nodes} \
        == {"good.txt"}  # type: ignore[index]


def test_quirk_fail_next(sdk: LlamaCloud, realshape_server: RealShapeServer) -> None:  # noqa: F811
    state = realshape_server.state
    state.fail(503, times=2, retry_after=0.01)
    assert sdk.projects.list()[0].name == "Default"  # the SDK retried twice
    assert state.requests == ["GET /api/v1/projects"] * 3
    state.fail(429, retry_after=0.01)
    with pytest.raises(llama_cloud.RateLimitError) as err:
        sdk.with_options(max_retries=0).projects.list()
    assert err.value.response.headers["retry-after"] == "0.01"
