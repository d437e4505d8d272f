"""Shipping a recommendation (issue 23): the chosen configuration becomes the pipeline's
``preset_retrieval_parameters`` exactly as the client sends its retrieve, a dry run writes nothing,
the simplified API says it has no presets; and against the local server's real mount a retrieve
without parameters then ranks as the benchmarked configuration did."""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import httpx
import pytest

import llamaeval as le
from llamaeval import BenchmarkConfig, ConfigurationError
from llamaeval.metrics._apply import ShipPlan, apply_recommendation
from llamaeval.runner._chosen import BenchmarkedRequest

FILTERS = {"filters": [{"key": "topic", "operator": "==", "value": "law"}], "condition": "and"}


class FakeRealPipeline:
    """A real-dialect server holding one pipeline: GET answers it, PUT replaces its presets."""

    def __init__(self, presets):
        self.presets = dict(presets)
        self.puts = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            body = json.loads(request.content)
            self.puts.append(body)
            self.presets = body["preset_retrieval_parameters"]
        return httpx.Response(200, json={"id": "p1", "name": "docs", "project_id": "P",
                                         "preset_retrieval_parameters": self.presets})


def _rec(name="fast alpha=0.3", mode="fast", top_k=5, params=None, **kw):
    request = BenchmarkedRequest(pipeline_id="p1", name=name, mode=mode, top_k=top_k,
                                 params={"alpha": 0.3} if params is None else params,
                                 sent_top_k=kw.pop("sent_top_k", top_k), dialect=kw.pop("dialect", "llamacloud"),
                                 pipeline_presets=kw.pop("pipeline_presets", {"retrieval_mode": "chunks"}))
    return SimpleNamespace(benchmarked_request=request, names={"p1": "docs"})


def _client(server):
    return le.LlamaCloud(api_key="k", base_url="http://cloud.test", dialect="llamacloud", max_retries=0,
                         transport=httpx.MockTransport(server))


def test_the_choice_becomes_the_real_request_as_presets_and_a_dry_run_writes_nothing():
    server = FakeRealPipeline({"alpha": 0.9, "search_filters": FILTERS, "rerank_top_n": None})
    with _client(server) as lc:
        plan = apply_recommendation(_rec(), lc, "p1")
        assert isinstance(plan, ShipPlan) and server.puts == [] and not plan.written
        # fast = no reranking, so top_k=5 is the candidate counts; the benchmarked pipeline's presets
        # (retrieval_mode) fill the rest; this pipeline's search_filters were not there: removed
        assert plan.recommended == {"retrieval_mode": "chunks", "enable_reranking": False, "alpha": 0.3,
                                    "dense_similarity_top_k": 5, "sparse_similarity_top_k": 5}
        rows = {r.parameter: (r.current, r.recommended, r.change) for r in plan.changes.itertuples()}
        assert rows == {"retrieval_mode": ("(unset)", "chunks", "added"),
                        "enable_reranking": ("(unset)", "False", "added"), "alpha": ("0.9", "0.3", "changed"),
                        "dense_similarity_top_k": ("(unset)", "5", "added"),
                        "sparse_similarity_top_k": ("(unset)", "5", "added"),
                        "search_filters": (json.dumps(FILTERS, sort_keys=True, separators=(",", ":")), "(unset)",
                                           "removed")}
        text = str(plan)
        assert text.startswith("Dry run: 6 preset_retrieval_parameters of pipeline docs would change")
        assert "alpha" in text and "0.9 -> 0.3" in text and "dry_run=False" in text
        assert "data-le='ship-plan'" in plan._repr_html_() and "search_filters" in plan._repr_html_()

        written = apply_recommendation(_rec(), lc, "p1", dry_run=False)
        assert server.puts == [{"preset_retrieval_parameters": plan.recommended}] and written.written
        assert written.stored == plan.recommended and written.notes == []
        assert str(written).startswith("Wrote 6 preset_retrieval_parameters to pipeline docs")
        again = apply_recommendation(_rec(), lc, "p1", dry_run=False)
        assert len(server.puts) == 1 and len(again.changes) == 0 and "nothing to change" in str(again)


def test_top_k_maps_to_the_knob_the_client_uses():
    server = FakeRealPipeline({})
    with _client(server) as lc:
        accurate = apply_recommendation(_rec("accurate", "accurate", 7, {}), lc, "p1").recommended
        assert accurate == {"retrieval_mode": "chunks", "enable_reranking": True, "alpha": 0.5,
                            "dense_similarity_top_k": 100, "sparse_similarity_top_k": 100, "rerank_top_n": 7}
        alone = apply_recommendation(_rec("dense", None, 3, {"alpha": 1.0}), lc, "p1").recommended
        assert alone == {"retrieval_mode": "chunks", "alpha": 1.0, "enable_reranking": True, "rerank_top_n": 3}
        with pytest.raises(ConfigurationError, match="'advanced' has no equivalent in the real LlamaCloud API"):
            apply_recommendation(_rec("advanced", "advanced", 5, {}), lc, "p1")
        with pytest.raises(ConfigurationError, match="top_k must be <= 100"):
            apply_recommendation(_rec("fast", "fast", 200, {}), lc, "p1")
    assert server.puts == []


def test_the_plan_says_where_the_shipped_request_can_differ():
    with _client(FakeRealPipeline({})) as lc:
        shared = apply_recommendation(_rec(sent_top_k=50), lc, "p1")
        assert any("top_k=50 requests (share_k)" in n for n in shared.notes)
        moved = apply_recommendation(_rec(), lc, "p2")
        assert any("ran on pipeline docs, not this one" in n for n in moved.notes)
        simplified_run = apply_recommendation(_rec(dialect="simplified", pipeline_presets=None), lc, "p1")
        assert any("measured through the simplified API" in n for n in simplified_run.notes)
        unrecorded = apply_recommendation(_rec(pipeline_presets=None), lc, "p1")
        assert any("did not record the benchmarked pipeline's presets" in n for n in unrecorded.notes)
        with pytest.raises(ConfigurationError, match="made from frames alone"):
            apply_recommendation(SimpleNamespace(choice={"mode": "fast"}, benchmarked_request=None), lc, "p1")
        with pytest.raises(ConfigurationError, match="dry_run must be True or False"):
            apply_recommendation(_rec(), lc, "p1", dry_run="no")


# --- against the local server's real mount (/cloud) ---------------------------------------------

N_QUERIES = 12
CONFIGS = [{"name": "sparse", "alpha": 0, "enable_reranking": False},
           {"name": "reranked", "alpha": 0.5, "enable_reranking": True}]


@pytest.fixture(scope="module")
def shipped(live_server, adi_pipeline, adi_queryset, tmp_path_factory):
    """A saved run of two real-knob configurations on adi through /cloud; the pipeline's presets are
    restored after the module (the pipeline is shared by the session)."""
    out = tmp_path_factory.mktemp("ship-run")
    real = le.LlamaCloud(api_key=live_server.api_key, base_url=live_server.base_url + "/cloud")
    original = real.pipelines.get(adi_pipeline).extra.get("preset_retrieval_parameters") or {}
    queries = list(adi_queryset.judged_query_ids)[:N_QUERIES]
    run = le.benchmark(real, adi_pipeline, adi_queryset, top_k=5, params=CONFIGS, concurrency=4, out=out,
                       config=BenchmarkConfig(progress=False, warmup=0, queries=queries))
    try:
        yield SimpleNamespace(run=run, out=out, real=real, pid=adi_pipeline, server=live_server)
    finally:
        real.pipelines.update(adi_pipeline, preset_retrieval_parameters=original)
        real.close()


def _benchmarked_chunks(run, choice):
    return {r["query_id"]: [h[4] for h in r["hits"]] for r in run._records
            if r["mode"] == choice["mode"] and int(r["top_k"]) == int(choice["top_k"])}


def _chunks_without_parameters(real, pid, run):
    text = dict(zip(run.queries["query_id"], run.queries["text"]))
    return {q: list(real.pipelines.retrieve(pid, text[q]).frame["chunk_id"]) for q in text}


def test_apply_stores_the_presets_and_a_bare_retrieve_ranks_as_benchmarked(shipped):
    sdk = pytest.importorskip("llama_cloud")
    run, real, pid = shipped.run, shipped.real, shipped.pid
    rec = run.recommend("ndcg@5", within=1.0, n_permutations=200, n_boot=200, validation=None)
    measured = _benchmarked_chunks(run, rec.choice)
    assert len(measured) == N_QUERIES and all(len(c) == 5 for c in measured.values())
    assert _chunks_without_parameters(real, pid, run) != measured  # the service's defaults rank otherwise

    before = real.pipelines.get(pid).extra["preset_retrieval_parameters"]
    dry = apply_recommendation(rec, real, pid)
    assert not dry.written and len(dry.changes) > 0
    assert real.pipelines.get(pid).extra["preset_retrieval_parameters"] == before  # nothing written
    plan = apply_recommendation(rec, real, pid, dry_run=False)
    assert plan.written and plan.notes == []
    official = sdk.LlamaCloud(api_key=shipped.server.api_key, base_url=shipped.server.base_url + "/cloud")
    with warnings.catch_warnings():  # llama-cloud 2.x marks every pipelines method "deprecated"
        warnings.simplefilter("ignore", DeprecationWarning)
        stored = official.pipelines.get(pid).preset_retrieval_parameters.to_dict(exclude_none=True)
    assert {k: stored[k] for k in plan.recommended} == plan.recommended
    assert _chunks_without_parameters(real, pid, run) == measured  # same nodes, same order


def test_the_simplified_api_has_no_presets_and_says_what_to_pass(shipped):
    before = shipped.real.pipelines.get(shipped.pid).extra["preset_retrieval_parameters"]
    with le.LlamaCloud(api_key=shipped.server.api_key, base_url=shipped.server.base_url) as simple:
        plan = shipped.run.ship(simple, shipped.pid, "ndcg@5", 1.0, dry_run=False, n_permutations=200, n_boot=200,
                                validation=None)  # = run.recommend(...).apply(...)
        with pytest.raises(ConfigurationError, match="simplified API has no pipeline update"):
            simple.pipelines.update(shipped.pid, preset_retrieval_parameters={"alpha": 0.1})
    assert plan.dialect == "simplified" and not plan.has_presets and not plan.written
    assert str(plan).startswith("The simplified API has no preset_retrieval_parameters: nothing was written")
    assert "lc.pipelines.retrieve(pipeline_id, query, top_k=5, alpha=" in str(plan)
    assert any("under <base_url>/cloud" in n for n in plan.notes)  # alpha is a real-API knob
    assert shipped.real.pipelines.get(shipped.pid).extra["preset_retrieval_parameters"] == before
