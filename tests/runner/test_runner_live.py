"""Acceptance: the runner against the real local server on the adi collection."""

from __future__ import annotations

import asyncio

import httpx
import pandas as pd
import pytest

from llamaeval import BenchmarkConfig, BenchmarkRun, benchmark
from llamaeval.runner import abenchmark

MODES = ("fast", "accurate", "advanced")
KS = (3, 10)
QUIET = BenchmarkConfig(progress=False, warmup=1)
STABLE = ["pipeline_id", "mode", "top_k", "query_id", "rank", "doc_id", "chunk_id", "file_id", "score",
          "status", "error", "shared"]


class HookTransport(httpx.AsyncBaseTransport):
    """A real loopback transport with a hook called before each retrieve request (may raise)."""

    def __init__(self, hook) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._hook = hook
        self.retrieves = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/retrieve"):
            self.retrieves += 1
            self._hook(request, self.retrieves)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def live_client(live_server, transport=None, max_retries: int = 0):
    from llamaeval import AsyncLlamaCloud

    return AsyncLlamaCloud(api_key=live_server.api_key, base_url=live_server.base_url,
                           max_retries=max_retries, transport=transport)


@pytest.fixture(scope="module")
def full_run(live_server, adi_pipeline, adi_queryset, tmp_path_factory):
    out = tmp_path_factory.mktemp("runner-full")
    from llamaeval import LlamaCloud

    with LlamaCloud(api_key=live_server.api_key, base_url=live_server.base_url) as lc:
        run = benchmark(lc, adi_pipeline, adi_queryset, MODES, KS, concurrency=4, out=out, config=QUIET)
    return run, out


def test_grid_has_every_mode_topk_query_row(full_run, adi_queryset, adi_pipeline):
    run, _ = full_run
    queries = adi_queryset.judged_query_ids
    cells = {(m, k, q) for m in MODES for k in KS for q in queries}
    req = run.requests
    assert len(req) == len(cells) == len(MODES) * len(KS) * 35
    assert set(zip(req["mode"], req["top_k"], req["query_id"])) == cells
    assert (req["status"] == 200).all(), run.failures
    assert set(zip(run.results["mode"], run.results["top_k"], run.results["query_id"])) == cells
    assert (req["server_total_s"] > 0).all() and (req["latency_s"] >= req["server_total_s"]).all()
    # documents, not chunks: ids are adi doc ids, unique per request, ranks 1..n
    res = run.results
    assert set(res["doc_id"]) <= set(adi_queryset.corpus["doc_id"])
    per = res.groupby(["mode", "top_k", "query_id"])
    assert (per["doc_id"].nunique() == per.size()).all()
    assert (per["rank"].max() == per.size()).all()
    assert (per.size() <= res.groupby(["mode", "top_k", "query_id"])["top_k"].first()).all()
    # the mapping lines up with the judgements: most queries find a relevant doc in the top 10
    relevant = set(zip(adi_queryset.qrels["query_id"], adi_queryset.qrels["doc_id"]))
    top10 = res[(res["top_k"] == 10) & (res["mode"] == "fast")]
    hit = {q for q, d in zip(top10["query_id"], top10["doc_id"]) if (q, d) in relevant}
    assert len(hit) >= 0.6 * len(queries)
    m = run.manifest
    assert m["pipelines"][0]["id"] == adi_pipeline and m["pipelines"][0]["retrieval_config"]
    assert m["server"]["version"] and m["queryset"]["name"] == "adi"


def test_failures_injected_mid_run_are_recorded(live_server, adi_pipeline, adi_queryset):
    def hook(request, n):
        if n % 9 == 4:
            raise httpx.ConnectError("injected reset", request=request)

    transport = HookTransport(hook)
    run = asyncio.run(abenchmark(live_client(live_server, transport), adi_pipeline, adi_queryset,
                                 ("fast", "accurate"), (5,), concurrency=4,
                                 config=BenchmarkConfig(progress=False, warmup=0)))
    req = run.requests
    assert len(req) == 70
    failed = run.failures
    assert len(failed) == sum(1 for n in range(1, 71) if n % 9 == 4) and (failed["status"] == 0).all()
    assert failed["error"].str.contains("injected reset").all()
    assert (req.loc[req["status"] != 0, "status"] == 200).all()
    assert run.results.loc[run.results["status"] == 0, "rank"].isna().all()


def test_interrupted_run_resumes_to_the_same_results(full_run, live_server, adi_pipeline, adi_queryset, tmp_path):
    full, _ = full_run
    stop_after = 60

    async def interrupted():
        task = None

        def hook(request, n):
            if n == stop_after:
                task.cancel()

        task = asyncio.ensure_future(abenchmark(live_client(live_server, HookTransport(hook)), adi_pipeline,
                                                adi_queryset, MODES, KS, concurrency=4, out=tmp_path,
                                                config=QUIET))
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(interrupted())
    journaled = len((tmp_path / "journal.jsonl").read_text().splitlines()) - 1
    assert 0 < journaled < len(full.requests)

    counter = HookTransport(lambda request, n: None)
    resumed = asyncio.run(abenchmark(live_client(live_server, counter), adi_pipeline, adi_queryset, MODES, KS,
                                     concurrency=4, out=tmp_path, config=BenchmarkConfig(progress=False, warmup=0)))
    assert counter.retrieves == len(full.requests) - journaled
    pd.testing.assert_frame_equal(resumed.results[STABLE], full.results[STABLE])
    assert list(resumed.requests["order"]) == list(full.requests["order"])


def test_saved_run_round_trips(full_run):
    run, out = full_run
    loaded = BenchmarkRun.load(out)
    for name in ("results", "requests", "qrels", "queries"):
        pd.testing.assert_frame_equal(getattr(loaded, name), getattr(run, name))
    assert loaded.manifest == run.manifest


def test_benchmark_inside_a_running_loop_with_a_used_async_client(live_server, adi_pipeline, adi_queryset):
    """Jupyter: a loop runs and the AsyncLlamaCloud already holds connections bound to it."""
    five = adi_queryset.judged_query_ids[:5]

    async def cell():
        async with live_client(live_server) as lc:
            await lc.health()
            run = benchmark(lc, adi_pipeline, adi_queryset, "fast", 3,
                            config=BenchmarkConfig(progress=False, warmup=0, queries=five))
            assert (await lc.health())["status"] == "ok"  # still usable on its own loop
        return run

    run = asyncio.run(cell())
    assert list(run.requests["query_id"]) == five and (run.requests["status"] == 200).all()


def test_grid_over_real_knobs_through_the_real_dialect(live_server, adi_pipeline, adi_queryset):
    """A params grid against the local server's real LlamaCloud API (/cloud): mode=None, the knobs
    sent as given, results read in that dialect; alpha=0 (sparse) and alpha=1 (dense) differ."""
    from llamaeval import LlamaCloud

    with LlamaCloud(api_key=live_server.api_key, base_url=live_server.base_url + "/cloud",
                    dialect="llamacloud") as lc:
        run = benchmark(lc, adi_pipeline, adi_queryset, top_k=5, concurrency=4,
                        params={"alpha": [0, 1], "enable_reranking": [False]}, config=QUIET)
    req = run.requests
    assert (req["status"] == 200).all() and (req["n_results"] > 0).all(), run.failures.head()
    names = ["alpha=0, enable_reranking=False", "alpha=1, enable_reranking=False"]
    assert list(dict.fromkeys(req["mode"])) == names
    table = run.evaluate(["ndcg@5", "recall@5"])  # aligned: the real dialect's results carry doc_id
    assert list(table["mode"]) == names and (table["ndcg@5"] > 0.1).all()
    by = {n: g.set_index("query_id")["doc_id"] for n, g in run.results.groupby("mode")}
    assert not by[names[0]].equals(by[names[1]])
    assert run.manifest["client"]["class"] == "LlamaCloud"
