"""benchmark(out=folder, on_existing=...): a folder that already holds a run is resumed on the same
grid, extended to the union, or replaced — never silently narrowed or widened (issue 18)."""

from __future__ import annotations

import asyncio
import json

import pytest
from _runner_fake import FakeCloud, make_async_client, recording_client

from llamaeval import BenchmarkConfig, ConfigurationError, benchmark
from llamaeval.runner import abenchmark

QUIET = BenchmarkConfig(progress=False, warmup=0)
N_Q = 5  # judged queries of the tiny query set


def bench(fake, qs, out, **kw):
    client, recorder = recording_client(fake)
    kw.setdefault("config", QUIET)
    return benchmark(client, "pipe-a", qs, out=out, **kw), recorder


def test_the_default_refuses_another_grid_and_names_both_choices(tiny_queryset, tmp_path):
    fake = FakeCloud()
    bench(fake, tiny_queryset, tmp_path, modes="fast", top_k=2)
    saved = (tmp_path / "manifest.json").read_text()
    for kw in ({"modes": ("fast", "advanced"), "top_k": 2}, {"modes": "fast", "top_k": (2, 3)}):
        with pytest.raises(ConfigurationError) as err:
            bench(fake, tiny_queryset, tmp_path, **kw)
        assert "holds a run of 1 configuration (fast) x top_k 2" in str(err.value)
        assert 'on_existing="extend"' in str(err.value) and 'on_existing="replace"' in str(err.value)
    with pytest.raises(ConfigurationError, match="on_existing must be one of 'resume', 'extend', 'replace'"):
        bench(fake, tiny_queryset, tmp_path, modes="fast", top_k=2, on_existing="merge")
    assert (tmp_path / "manifest.json").read_text() == saved  # nothing stored was touched


def test_extend_benchmarks_the_union_and_sends_only_the_new_cells(tiny_queryset, tmp_path):
    fake = FakeCloud()
    first, _ = bench(fake, tiny_queryset, tmp_path, modes="fast", top_k=2)
    run, rec = bench(fake, tiny_queryset, tmp_path, modes="advanced", top_k=3, on_existing="extend")
    cells = {(m, k) for m in ("fast", "advanced") for k in (2, 3)}
    assert set(zip(run.requests["mode"], run.requests["top_k"])) == cells and len(run.requests) == 4 * N_Q
    sent = {(kw["mode"], kw["top_k"]) for _, _, kw in rec.calls}
    assert sent == cells - {("fast", 2)}  # the saved cell is not sent again
    assert run.manifest["parameters"]["top_k"] == [2, 3]
    assert [c["name"] for c in run.manifest["parameters"]["configurations"]] == ["fast", "advanced"]
    kept = run.results[(run.results["mode"] == "fast") & (run.results["top_k"] == 2)].reset_index(drop=True)
    assert kept[["query_id", "rank", "doc_id"]].equals(first.results[["query_id", "rank", "doc_id"]])
    again, rec = bench(fake, tiny_queryset, tmp_path, modes=("fast", "advanced"), top_k=(2, 3))
    assert rec.calls == [] and len(again.requests) == 4 * N_Q  # now the same grid: resumes


def test_extend_a_parameter_grid_and_refuse_a_name_that_changed_meaning(tiny_queryset, tmp_path):
    fake = FakeCloud()
    bench(fake, tiny_queryset, tmp_path, top_k=2, params={"alpha": [0, 1]})
    run, rec = bench(fake, tiny_queryset, tmp_path, top_k=2, params={"alpha": [0.5]}, on_existing="extend")
    assert list(dict.fromkeys(run.requests["mode"])) == ["alpha=0", "alpha=1", "alpha=0.5"]
    assert [kw for _, _, kw in rec.calls] == [{"mode": None, "top_k": 2, "alpha": 0.5}] * N_Q
    assert sorted(run.configurations["alpha"]) == [0, 0.5, 1]
    with pytest.raises(ConfigurationError, match="'alpha=0' is a different request"):
        bench(fake, tiny_queryset, tmp_path, top_k=2, params=[{"name": "alpha=0", "alpha": 0.3}],
              on_existing="extend")
    with pytest.raises(ConfigurationError, match="different query set"):  # another run is never extended
        bench(fake, tiny_queryset, tmp_path, top_k=2, params={"alpha": [0]}, on_existing="extend",
              config=BenchmarkConfig(progress=False, warmup=0, share_k=True))


def test_replace_discards_the_saved_run_and_nothing_else(tiny_queryset, tmp_path):
    fake = FakeCloud()
    bench(fake, tiny_queryset, tmp_path, modes=("fast", "advanced"), top_k=(2, 3))
    (tmp_path / "report.html").write_text("mine")
    run, rec = bench(fake, tiny_queryset, tmp_path, modes="fast", top_k=2, on_existing="replace")
    assert len(rec.calls) == N_Q and len(run.requests) == N_Q  # everything sent again, only the new grid
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["parameters"]["top_k"] == [2] and len(manifest["sessions"]) == 1
    assert (tmp_path / "report.html").read_text() == "mine"
    # a run of another query set's identity may be replaced too
    other = bench(fake, tiny_queryset, tmp_path, modes="fast", top_k=2, on_existing="replace",
                  config=BenchmarkConfig(progress=False, warmup=0, share_k=True))[0]
    assert other.manifest["fingerprint"]["share_k"] is True


def test_an_interrupted_run_is_extended_with_its_journal(tiny_queryset, tmp_path):
    """An unfinished run (journal only): extending keeps what it sent and re-heads the journal."""
    fake = FakeCloud()

    async def interrupted():
        task = None

        def handler(request):
            if request.url.path.endswith("/retrieve") and len(fake.log) == 3:
                task.cancel()
            return fake(request)

        task = asyncio.ensure_future(abenchmark(make_async_client(handler), "pipe-a", tiny_queryset,
                                                top_k=2, params={"boost": [0]}, concurrency=1, out=tmp_path,
                                                config=QUIET))
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(interrupted())
    journaled = len((tmp_path / "journal.jsonl").read_text().splitlines()) - 1
    assert 0 < journaled < N_Q and not (tmp_path / "manifest.json").exists()
    with pytest.raises(ConfigurationError, match="dropping configuration 'boost=0'"):
        bench(fake, tiny_queryset, tmp_path, top_k=2, params={"boost": [1]})
    run, rec = bench(fake, tiny_queryset, tmp_path, top_k=2, params={"boost": [1]}, on_existing="extend")
    assert len(rec.calls) == 2 * N_Q - journaled and len(run.requests) == 2 * N_Q
    assert (run.requests["status"] == 200).all() and not (tmp_path / "journal.jsonl").exists()
