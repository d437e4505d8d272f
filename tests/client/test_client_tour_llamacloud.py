"""The README tour in the real LlamaCloud dialect, end to end, against a server whose bodies are the
official SDK's models: ingest a bundled set, benchmark a grid of real knobs, evaluate, compare, dashboard,
report. And the pre-flight: a pipeline with nothing searchable is refused before the run."""

from __future__ import annotations

import httpx
import pytest

import llamaeval as le

GRID = {"alpha": [0, 0.5, 1], "enable_reranking": [False, True]}


def test_tour_in_the_real_dialect(realshape_server, tmp_path):
    qs = le.load_queryset("adi")
    with le.LlamaCloud(api_key=realshape_server.api_key, base_url=realshape_server.base_url) as lc:
        pipeline_id = le.ingest(lc, qs, project="Default", progress=False)
        assert lc.dialect == "llamacloud"
        run = le.benchmark(lc, pipeline_id, qs, top_k=5, params=GRID, concurrency=4,
                           config=le.BenchmarkConfig(progress=False, warmup=1))
    assert run.manifest["client"]["dialect"] == "llamacloud"
    n_queries = len(qs.judged_queries())
    assert run.requests.groupby("mode").size().tolist() == [n_queries] * 6
    assert (run.requests["status"] == 200).all() and (run.requests["n_results"] > 0).all()
    assert set(run.results["alpha"].dropna()) == {0, 0.5, 1}
    assert set(run.results["enable_reranking"].dropna()) == {False, True}
    table = run.evaluate(["ndcg@5", "recall@5"])
    assert len(table) == 6 and (table["n_queries"] == n_queries).all() and (table["ndcg@5"] > 0).all()
    first = table["mode"].iloc[0]
    sig = le.metrics.compare(run.results, run.qrels, baseline={"mode": first, "top_k": 5}, metric="ndcg@5")
    assert len(sig) == 6
    board = le.widgets.dashboard(run, metric="ndcg", cutoff=5)
    assert len(board.modes.options) == 6 and "alpha=1, enable_reranking=False" in board.table.value
    run.report(tmp_path / "tour.html")
    assert "alpha=0.5, enable_reranking=True" in (tmp_path / "tour.html").read_text("utf-8")


def test_a_pipeline_with_nothing_searchable_is_refused_before_the_run():
    """The real service can report SUCCESS with no chunks: every warm-up answers nothing."""
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/projects"):
            return httpx.Response(200, json=[{"id": "p", "name": "Default", "organization_id": "o"}])
        if path.endswith("/retrieve"):
            return httpx.Response(200, json={"pipeline_id": "pl", "retrieval_nodes": []})
        if path.endswith("/pl"):
            return httpx.Response(200, json={"id": "pl", "name": "x", "project_id": "p",
                                             "embedding_config": {"type": "OPENAI_EMBEDDING"}})
        return httpx.Response(404, json={"detail": "no route"})

    lc = le.AsyncLlamaCloud(api_key="k", base_url="http://x.test", transport=httpx.MockTransport(handler))
    with pytest.raises(le.EmptyPipelineError, match="warm-up"):
        le.benchmark(lc, "pl", le.load_queryset("adi"), top_k=5, params={"alpha": [0.5]},
                     config=le.BenchmarkConfig(progress=False, warmup=2))
