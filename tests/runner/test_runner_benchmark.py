"""The runner against a fake API (httpx.MockTransport): grid, failures, resume, save/load, share_k, order."""

from __future__ import annotations

import asyncio
import json

import httpx
import pandas as pd
import pytest
from _runner_fake import FAKE_URL, FakeCloud, failing, make_async_client

from llamaeval import AlignmentError, BenchmarkConfig, BenchmarkRun, ConfigurationError, NotFoundError, benchmark
from llamaeval.runner import abenchmark

MODES = ("fast", "accurate", "advanced")
KS = (1, 3, 5)
QUIET = BenchmarkConfig(progress=False, warmup=0)
DOC_LEVEL = ["pipeline_id", "mode", "top_k", "query_id", "rank", "doc_id", "chunk_id", "file_id", "score", "status"]


def expected_docs(fake: FakeCloud, pipeline: str, query: str, mode: str, k: int) -> list[tuple[str, str]]:
    """Hand-derived collapse: the first k chunks, each document at its first (best) chunk."""
    seen, out = set(), []
    for r in fake.ranking(pipeline, query, mode)[:k]:
        md = r["metadata"]
        if md["doc_id"] not in seen:
            seen.add(md["doc_id"])
            out.append((md["doc_id"], md["chunk_id"]))
    return out


def run(fake, qs, **kw) -> BenchmarkRun:
    handler = kw.pop("handler", fake)
    kw.setdefault("config", QUIET)
    return benchmark(make_async_client(handler), kw.pop("pipeline_id", "pipe-a"), qs,
                     kw.pop("modes", MODES), kw.pop("top_k", KS), **kw)


def test_grid_has_every_cell_with_collapsed_documents(fake, tiny_queryset):
    result = run(fake, tiny_queryset, concurrency=4)
    judged = ["q1", "q2", "q3", "q4", "q5"]  # q6 has no judgement: not run by default
    cells = {(m, k, q) for m in MODES for k in KS for q in judged}
    req = result.requests
    assert len(req) == len(cells)
    assert set(zip(req["mode"], req["top_k"], req["query_id"])) == cells
    assert (req["status"] == 200).all() and req["error"].isna().all()
    assert sorted(req["order"]) == list(range(len(cells)))
    assert set(zip(result.results["mode"], result.results["top_k"], result.results["query_id"])) == cells
    text = dict(zip(tiny_queryset.queries["query_id"], tiny_queryset.queries["text"]))
    for (m, k, q), rows in result.results.groupby(["mode", "top_k", "query_id"]):
        exp = expected_docs(fake, "pipe-a", text[q], m, k)
        assert list(rows["rank"]) == list(range(1, len(exp) + 1))
        assert list(zip(rows["doc_id"], rows["chunk_id"])) == exp
    # every request was sent exactly once, with the query's text
    assert sum(fake.calls.values()) == len(cells) and set(fake.calls.values()) == {1}
    assert list(result.results.columns) == ["pipeline_id", "mode", "top_k", "query_id", "rank", "doc_id",
                                            "chunk_id", "file_id", "score", "latency_s", "status", "error",
                                            "shared"]


def test_requests_carry_latency_server_timing_and_manifest(fake, tiny_queryset):
    result = run(fake, tiny_queryset, modes="fast", top_k=5)
    req = result.requests
    assert (req["latency_s"] > 0).all()
    assert req["server_total_s"].eq(0.002).all() and req["server_embed_s"].eq(0.0015).all()
    assert {"server_bm25_s", "server_fuse_s"} <= set(req.columns)
    assert str(req["started_at"].dt.tz) == "UTC"
    assert (req["n_results"] == 5).all() and not req["shared"].any()
    m = result.manifest
    json.dumps(m)  # JSON-safe
    assert m["queryset"] == {"name": "tiny", "split": "test", "content_hash": tiny_queryset.content_hash(),
                             "n_queries": 5, "n_qrels": 7}
    assert m["pipelines"][0]["retrieval_config"] == {"k1": 0.9, "b": 0.4, "fusion": "rrf"}
    assert m["server"]["version"] == "fake-1.0"
    assert m["parameters"]["modes"] == ["fast"] and m["parameters"]["top_k"] == [5]
    assert m["machine"]["cpu_count"] >= 1 and m["client"]["llamaeval"]
    assert set(result.qrels["query_id"]) == {"q1", "q2", "q3", "q4", "q5"}


def test_failures_are_recorded_and_the_run_goes_on(fake, tiny_queryset):
    def should_fail(body):
        if body["query"] == "boundary layer" and body["mode"] == "accurate":
            return "400"
        if body["query"] == "heat transfer" and body["top_k"] == 3:
            return "connect"
        return None

    result = run(fake, tiny_queryset, handler=failing(fake, should_fail), concurrency=3)
    req = result.requests
    assert len(req) == 3 * 3 * 5
    bad400 = req[(req["query_id"] == "q2") & (req["mode"] == "accurate")]
    assert (bad400["status"] == 400).all() and len(bad400) == 3
    assert bad400["error"].str.contains("injected 400").all()
    conn = req[(req["query_id"] == "q3") & (req["top_k"] == 3)]
    assert (conn["status"] == 0).all() and len(conn) == 3
    assert conn["error"].str.contains("APIConnectionError").all()
    assert (conn["latency_s"] > 0).all()
    assert len(result.failures) == 6
    ok = req[req["status"] == 200]
    assert len(ok) == 45 - 6
    # a failed request keeps exactly one results row with NA rank/doc_id
    res = result.results
    failed_rows = res[res["status"] != 200]
    assert len(failed_rows) == 6 and failed_rows["rank"].isna().all() and failed_rows["doc_id"].isna().all()
    assert res[res["status"] == 200]["rank"].notna().all()


def test_interrupted_run_resumed_equals_uninterrupted(fake, tiny_queryset, tmp_path):
    full = run(fake, tiny_queryset, out=tmp_path / "full", concurrency=2)
    n_total = len(full.requests)

    fake2 = FakeCloud(pipelines=("pipe-a",))
    out = tmp_path / "resumed"
    stop_after = 17

    async def interrupted():
        task = None

        def handler(request):
            if request.url.path.endswith("/retrieve") and len(fake2.log) == stop_after:
                task.cancel()
            return fake2(request)

        task = asyncio.ensure_future(abenchmark(make_async_client(handler), "pipe-a", tiny_queryset, MODES, KS,
                                                concurrency=2, out=out, config=QUIET))
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(interrupted())
    journal = (out / "journal.jsonl").read_text().splitlines()
    journaled = len(journal) - 1  # header line
    assert 0 < journaled < n_total
    assert not (out / "manifest.json").exists()

    before = len(fake2.log)
    resumed = run(fake2, tiny_queryset, out=out, concurrency=2)
    assert len(fake2.log) - before == n_total - journaled  # only the missing requests were sent
    assert not (out / "journal.jsonl").exists()
    cols = [c for c in full.results.columns if c != "latency_s"]
    pd.testing.assert_frame_equal(resumed.results[cols], full.results[cols])
    rcols = ["pipeline_id", "mode", "top_k", "query_id", "status", "n_results", "shared", "order"]
    pd.testing.assert_frame_equal(resumed.requests[rcols], full.requests[rcols])
    assert len(resumed.manifest["sessions"]) == 1  # first session never finished; one completed session
    # a third call finds everything done and sends nothing
    again = run(fake2, tiny_queryset, out=out)
    assert len(fake2.log) == before + n_total - journaled
    assert len(again.manifest["sessions"]) == 2 and again.manifest["counts"]["sent_this_session"] == 0


def test_save_load_round_trip_and_trec(fake, tiny_queryset, tmp_path):
    result = run(fake, tiny_queryset, handler=failing(fake, lambda b: "503" if b["query"] == "shock waves" else None),
                 pipeline_id=["pipe-a", "pipe-b"], modes=("fast", "advanced"), top_k=(2, 4))
    folder = result.save(tmp_path / "saved")
    loaded = BenchmarkRun.load(folder)
    for name in ("results", "requests", "qrels", "queries"):
        pd.testing.assert_frame_equal(getattr(loaded, name), getattr(result, name), check_exact=True)
    assert loaded.manifest == result.manifest
    assert repr(loaded) == repr(result)

    files = loaded.to_trec(tmp_path / "trec")
    assert len(files) == 2 * 2 * 2
    one = tmp_path / "trec" / "pipe-a_fast_k4.trec"
    lines = one.read_text().splitlines()
    sel = result.results[(result.results.pipeline_id == "pipe-a") & (result.results["mode"] == "fast")
                         & (result.results.top_k == 4)].dropna(subset=["rank"])
    assert len(lines) == len(sel)
    qid, q0, doc, rank, score, tag = lines[0].split()
    first = sel.iloc[0]
    assert (qid, q0, doc, int(rank), float(score)) == (first.query_id, "Q0", first.doc_id, 1, 4.0)
    assert "q4" not in {ln.split()[0] for ln in lines}  # failed requests write nothing

    with pytest.raises(ConfigurationError):
        BenchmarkRun.load(tmp_path / "nothing-here")


def test_share_k_truncates_one_request(fake, tiny_queryset):
    shared = run(fake, tiny_queryset, config=BenchmarkConfig(progress=False, warmup=0, share_k=True))
    assert sum(fake.calls.values()) == 3 * 5  # one request per (mode, query) at the largest k
    assert {k for (_, _, k, _) in fake.calls} == {5}
    fake_b = FakeCloud()
    separate = run(fake_b, tiny_queryset)
    pd.testing.assert_frame_equal(shared.results[DOC_LEVEL], separate.results[DOC_LEVEL])
    for frame in (shared.results, shared.requests):  # rows cut from the top_k=5 request are shared
        assert (frame["shared"] == (frame["top_k"] < 5)).all()
    req = shared.requests
    per = req.groupby(["mode", "query_id"])
    assert (per["latency_s"].nunique() == 1).all() and (per["order"].nunique() == 1).all()
    assert list(req[(req["mode"] == "fast") & (req["query_id"] == "q1")].sort_values("top_k")["n_results"]) == [1, 3, 5]


def test_seeded_order_interleaves_modes(tiny_queryset):
    def log_for(seed):
        f = FakeCloud()
        run(f, tiny_queryset, concurrency=1, config=BenchmarkConfig(progress=False, warmup=0, seed=seed))
        return f.log

    log0, log0b, log1 = log_for(0), log_for(0), log_for(1)
    assert log0 == log0b and log0 != log1
    modes = [m for (_, m, _, _) in log0]
    n = len(modes)
    # not blocked by mode: every mode appears in each third of the run
    for third in range(3):
        assert set(modes[third * n // 3:(third + 1) * n // 3]) == set(MODES)
    # and no mode is favoured by position: mean send position of each mode near the middle
    for m in MODES:
        pos = [i for i, x in enumerate(modes) if x == m]
        assert abs(sum(pos) / len(pos) - (n - 1) / 2) < n * 0.15
    assert [k for (_, _, k, _) in log0] != sorted(k for (_, _, k, _) in log0)


def test_warmup_is_sent_but_excluded(fake, tiny_queryset):
    result = run(fake, tiny_queryset, modes=("fast", "accurate"), top_k=(3,),
                 config=BenchmarkConfig(progress=False, warmup=3))
    assert len(fake.log) == 2 * 5 + 2 * 3
    warm = fake.log[:6]
    assert sorted(m for (_, m, _, _) in warm) == ["accurate"] * 3 + ["fast"] * 3
    assert len(result.requests) == 10 and result.manifest["sessions"][0]["warmup_sent"] == 6


def test_rate_limit_spaces_request_starts(fake, tiny_queryset):
    result = run(fake, tiny_queryset, modes="fast", top_k=(3,), concurrency=4,
                 config=BenchmarkConfig(progress=False, warmup=0, rate_limit=40.0))
    starts = result.requests.sort_values("started_at")["started_at"]
    # the i-th start is scheduled at t0 + i/rate: the whole run cannot be faster than the limit
    span = (starts.iloc[-1] - starts.iloc[0]).total_seconds()
    assert span >= (len(starts) - 1) / 40 - 0.005


def test_sync_client_and_running_event_loop(fake, tiny_queryset):
    from llamaeval import LlamaCloud

    with LlamaCloud(api_key="test-key", base_url=FAKE_URL, max_retries=0,
                    transport=httpx.MockTransport(fake)) as lc:
        async def inside_a_notebook_loop():
            return benchmark(lc, "pipe-a", tiny_queryset, "fast", 2, config=QUIET)

        result = asyncio.run(inside_a_notebook_loop())
    assert len(result.requests) == 5 and (result.requests["status"] == 200).all()
    assert result.manifest["client"]["class"] == "LlamaCloud"


def test_retry_failed_on_resume(fake, tiny_queryset, tmp_path):
    broken = failing(fake, lambda b: "400" if b["query"] == "wing flutter" else None)
    first = run(fake, tiny_queryset, handler=broken, modes="fast", top_k=(2,), out=tmp_path)
    assert len(first.failures) == 1
    second = run(fake, tiny_queryset, modes="fast", top_k=(2,), out=tmp_path)
    assert len(second.failures) == 0
    assert fake.calls[("pipe-a", "fast", 2, "wing flutter")] == 1  # the 400 never reached the fake
    assert sum(fake.calls.values()) == 5


def test_extended_grid_sends_only_new_cells(fake, tiny_queryset, tmp_path, capsys):
    run(fake, tiny_queryset, modes="fast", top_k=(2,), out=tmp_path)
    bigger = run(fake, tiny_queryset, modes=("fast", "advanced"), top_k=(2,), out=tmp_path,
                 config=BenchmarkConfig(warmup=0, progress=True), on_existing="extend")
    assert len(bigger.requests) == 10 and sum(fake.calls.values()) == 10
    bar = capsys.readouterr().err
    assert "benchmark" in bar and "5/10" in bar and "10/10" in bar  # resumed bar starts at what was done


def test_resume_refuses_a_different_run(fake, tiny_queryset, tmp_path):
    run(fake, tiny_queryset, modes="fast", top_k=(2,), out=tmp_path)
    with pytest.raises(ConfigurationError, match="different"):
        run(fake, tiny_queryset, modes="fast", top_k=(2,), out=tmp_path,
            config=BenchmarkConfig(progress=False, warmup=0, share_k=True))


@pytest.mark.parametrize("kwargs", [
    {"top_k": 0}, {"top_k": (5, True)}, {"modes": ()}, {"modes": ("fast", "")},
    {"concurrency": 0}, {"pipeline_id": []},
])
def test_bad_arguments_raise_before_sending(fake, tiny_queryset, kwargs):
    with pytest.raises(ConfigurationError):
        run(fake, tiny_queryset, **kwargs)
    assert fake.log == []


@pytest.mark.parametrize("kwargs", [
    {"warmup": -1}, {"rate_limit": 0}, {"rate_limit": float("inf")}, {"retrieve_params": {"top_k": 3}},
    {"queries": "q1"}, {"queries": []}, {"seed": 1.5},
])
def test_bad_config_raises(kwargs):
    with pytest.raises(ConfigurationError):
        BenchmarkConfig(**kwargs)


def test_unknown_pipeline_fails_fast(fake, tiny_queryset):
    with pytest.raises(NotFoundError):
        run(fake, tiny_queryset, pipeline_id="nope")
    assert fake.log == []


def test_query_subset_and_unknown_ids(fake, tiny_queryset):
    result = run(fake, tiny_queryset, modes="fast", top_k=(2,),
                 config=BenchmarkConfig(progress=False, warmup=0, queries=["q6", "q1"]))
    assert list(result.queries["query_id"]) == ["q6", "q1"]
    assert set(result.requests["query_id"]) == {"q1", "q6"}
    with pytest.raises(ConfigurationError, match="not in the query set"):
        run(fake, tiny_queryset, config=BenchmarkConfig(progress=False, queries=["zzz"]))


def test_interrupting_the_notebook_thread_cancels_the_worker(tiny_queryset, tmp_path):
    """In Jupyter the run happens on a worker thread; an interrupt of the caller must stop it there too."""
    import _thread
    import signal
    import time

    f = FakeCloud()

    def handler(request):
        if request.url.path.endswith("/retrieve"):
            time.sleep(0.01)  # keep the worker busy so the interrupt lands mid-run
            if len(f.log) == 10:
                _thread.interrupt_main()  # what "interrupt kernel" does to the calling thread
        return f(request)

    async def notebook_cell():
        return run(f, tiny_queryset, handler=handler, out=tmp_path, concurrency=1)

    loop = asyncio.new_event_loop()  # a running loop without asyncio.run's own SIGINT handling, like ipykernel's
    # a kernel handles SIGINT; a process started in the background by a shell without job control
    # (as `cmd &` in a script) inherits it ignored, and then interrupt_main() does nothing
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(notebook_cell())
    finally:
        signal.signal(signal.SIGINT, previous)
        loop.close()
    sent = len(f.log)
    assert 10 <= sent < 45
    time.sleep(0.1)
    assert len(f.log) == sent  # the worker stopped; nothing runs behind the user's back
    journaled = len((tmp_path / "journal.jsonl").read_text().splitlines()) - 1
    assert journaled <= sent
    resumed = run(f, tiny_queryset, out=tmp_path)
    assert len(resumed.requests) == 45 and len(f.log) == sent + 45 - journaled


def test_evaluate_and_latency_delegate_to_metrics(fake, tiny_queryset):
    result = run(fake, tiny_queryset, modes=("fast", "advanced"), top_k=(10,))
    table = result.evaluate(["mrr"], alignment="off")  # the fake ranks at random
    assert len(table) == 2 and (table["n_queries"] == 5).all()
    # hand-computed MRR from the run's own rows
    res, rel = result.results, set(zip(tiny_queryset.qrels["query_id"], tiny_queryset.qrels["doc_id"]))
    for mode in ("fast", "advanced"):
        rr = []
        for q in ["q1", "q2", "q3", "q4", "q5"]:
            rows = res[(res["mode"] == mode) & (res["query_id"] == q)]
            ranks = [int(r) for r, d in zip(rows["rank"], rows["doc_id"]) if (q, d) in rel]
            rr.append(1 / min(ranks) if ranks else 0.0)
        assert table.loc[table["mode"] == mode, "mrr"].item() == pytest.approx(sum(rr) / 5)
    lat = result.latency()
    assert len(lat) == 2


def test_retrieve_params_are_sent_and_recorded(fake, tiny_queryset):
    # server extensions of the simplified API (the client refuses real LlamaCloud knobs there)
    cfg = BenchmarkConfig(progress=False, warmup=1, retrieve_params={"k1": 0.3, "filters": {"lang": "en"}})
    result = run(fake, tiny_queryset, modes="fast", top_k=(2,), config=cfg)
    assert fake.extras == [{"k1": 0.3, "filters": {"lang": "en"}}] * 6  # warm-up included
    assert result.manifest["parameters"]["retrieve_params"] == {"k1": 0.3, "filters": {"lang": "en"}}


def test_client_retries_count_in_latency_and_manifest(fake, tiny_queryset):
    """Retries are the client's: a request that succeeds on its second attempt is a success,
    its latency spans both attempts, and the manifest counts it as retried."""
    from llamaeval import AsyncLlamaCloud
    from llamaeval.client import RetryPolicy

    seen = set()

    async def flaky(request):
        await asyncio.sleep(0)
        body = json.loads(request.content) if request.url.path.endswith("/retrieve") else {}
        key = (body.get("query"), body.get("mode"))
        if body.get("query") == "wing flutter" and key not in seen:
            seen.add(key)
            return httpx.Response(503, json={"detail": "busy"})
        return fake(request)

    client = AsyncLlamaCloud(api_key="test-key", base_url=FAKE_URL, max_retries=1,
                             retry=RetryPolicy(backoff_base=0.0, jitter=False), transport=httpx.MockTransport(flaky))
    result = benchmark(client, ["pipe-a", "pipe-b"], tiny_queryset, ("fast", "accurate"), 2, config=QUIET)
    assert (result.requests["status"] == 200).all()
    assert result.manifest["counts"]["retried"] == 2  # q1 once per mode (first pipeline to ask)
    assert [p["id"] for p in result.manifest["pipelines"]] == ["pipe-a", "pipe-b"]


def test_document_mapping_is_configurable(fake, tiny_queryset):
    from llamaeval import DocumentMapping

    by_file = run(fake, tiny_queryset, modes="fast", top_k=(6,),
                  config=BenchmarkConfig(progress=False, warmup=0, mapping=DocumentMapping(metadata_key="file_id")))
    default = run(fake, tiny_queryset, modes="fast", top_k=(6,))
    assert list(by_file.results["doc_id"]) == ["file-" + d[1:] for d in default.results["doc_id"]]
    chunks = run(fake, tiny_queryset, modes="fast", top_k=(6,),
                 config=BenchmarkConfig(progress=False, warmup=0, mapping=DocumentMapping(level="chunk")))
    assert (chunks.requests["n_results"] == 6).all()
    assert chunks.results.groupby("query_id").size().eq(6).all()  # chunk level: nothing collapses
    assert chunks.results["doc_id"].str.fullmatch(r"D\d+#\d").all()
    assert chunks.manifest["parameters"]["mapping"]["level"] == "chunk"
    with pytest.raises(ConfigurationError, match="clashes"):
        run(fake, tiny_queryset, config=BenchmarkConfig(mapping=DocumentMapping(metadata_key="rank")))


def test_trec_file_scores_like_the_run(fake, tiny_queryset, tmp_path):
    """A single configuration exports to one file; trec tools read back the same ranking."""
    import ir_measures
    from ir_measures import RR, nDCG

    result = run(fake, tiny_queryset, modes="advanced", top_k=(8,))
    (path,) = result.to_trec(tmp_path / "run.trec")
    assert path == tmp_path / "run.trec"
    qrels = list(ir_measures.read_trec_qrels(
        "\n".join(f"{q} 0 {d} {r}" for q, d, r in tiny_queryset.qrels.itertuples(index=False))))
    theirs = ir_measures.calc_aggregate([RR, nDCG @ 8], qrels, list(ir_measures.read_trec_run(str(path))))
    ours = result.evaluate(["mrr", "ndcg@8"], alignment="off").iloc[0]  # the fake ranks at random
    assert theirs[RR] == pytest.approx(ours["mrr"]) and theirs[nDCG @ 8] == pytest.approx(ours["ndcg@8"])


def test_evaluate_guards_alignment(fake, tiny_queryset):
    """The fake ranks documents at random: evaluate refuses to score it unless told."""
    result = run(fake, tiny_queryset, modes="fast", top_k=(8,))
    with pytest.raises(AlignmentError, match="misaligned"):
        result.evaluate(["mrr"])
    with pytest.warns(UserWarning, match="misaligned"):
        result.evaluate(["mrr"], alignment="warn")
    with pytest.raises(ConfigurationError, match="alignment"):
        result.evaluate(["mrr"], alignment="sometimes")


def test_resume_refuses_to_drop_part_of_the_saved_grid(fake, tiny_queryset, tmp_path):
    run(fake, tiny_queryset, modes=("fast", "advanced"), top_k=(2, 3), out=tmp_path)
    with pytest.raises(ConfigurationError, match="would replace it, dropping configuration 'advanced', top_k=3"):
        run(fake, tiny_queryset, modes="fast", top_k=(2,), out=tmp_path)
    again = run(fake, tiny_queryset, modes=("fast", "advanced"), top_k=(2, 3), out=tmp_path)
    assert len(again.configurations) == 4  # the same grid still resumes


def test_failed_requests_warn_at_the_callers_line(fake, tiny_queryset):
    from llamaeval.runner._run import FailedRequestsWarning

    broken = failing(fake, lambda b: "400" if b["query"] == "wing flutter" else None)
    with pytest.warns(FailedRequestsWarning, match="1 of 5 requests failed") as caught:
        run(fake, tiny_queryset, handler=broken, modes="fast", top_k=(2,))
    assert caught[0].filename.endswith("test_runner_benchmark.py") or "runner" not in caught[0].filename
