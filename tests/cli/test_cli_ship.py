"""``llamaeval ship RUN_DIR --pipeline ID [--yes]`` against the local server's real mount: without
--yes it shows the change and writes nothing, with --yes it writes the presets and says so."""

from __future__ import annotations

import pytest

import llamaeval as le
from llamaeval import BenchmarkConfig
from llamaeval.cli import main

CONFIGS = [{"name": "sparse", "alpha": 0, "enable_reranking": False},
           {"name": "reranked", "alpha": 0.5, "enable_reranking": True}]
#: Each configuration's real request at top_k=5 (top_k is rerank_top_n with reranking, else the candidate counts).
PRESETS = {"sparse": {"alpha": 0, "enable_reranking": False, "dense_similarity_top_k": 5, "sparse_similarity_top_k": 5},
           "reranked": {"alpha": 0.5, "enable_reranking": True, "rerank_top_n": 5}}


@pytest.fixture(scope="module")
def saved_run(live_server, adi_pipeline, adi_queryset, tmp_path_factory):
    """A saved two-configuration run on adi through /cloud; the shared pipeline's presets are restored."""
    out = tmp_path_factory.mktemp("ship-cli")
    real = le.LlamaCloud(api_key=live_server.api_key, base_url=live_server.base_url + "/cloud")
    original = real.pipelines.get(adi_pipeline).extra.get("preset_retrieval_parameters") or {}
    le.benchmark(real, adi_pipeline, adi_queryset, top_k=5, params=CONFIGS, concurrency=4, out=out,
                 config=BenchmarkConfig(progress=False, warmup=0, queries=list(adi_queryset.judged_query_ids)[:8]))
    try:
        yield out, real
    finally:
        real.pipelines.update(adi_pipeline, preset_retrieval_parameters=original)
        real.close()


def test_ship_shows_then_writes(saved_run, live_server, adi_pipeline, capsys):
    out_dir, real = saved_run
    pid = adi_pipeline
    real.pipelines.update(pid, preset_retrieval_parameters={"rerank_top_n": 2})
    argv = ["ship", str(out_dir), "--pipeline", pid, "--metric", "ndcg@5", "--within", "1",
            "--base-url", live_server.base_url + "/cloud", "--api-key", live_server.api_key]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("Ship ") and "Dry run:" in out and "rerank_top_n" in out and "--yes" in out
    assert real.pipelines.get(pid).extra["preset_retrieval_parameters"] == {"rerank_top_n": 2}
    assert main([*argv, "--yes"]) == 0
    out = capsys.readouterr().out
    assert "Wrote " in out and "a retrieve without parameters now sends" in out
    stored = real.pipelines.get(pid).extra["preset_retrieval_parameters"]
    name = out.split("now sends ", 1)[1].split(" · ", 1)[0]
    assert stored == PRESETS[name]  # the benchmarked request; the unbenchmarked rerank_top_n=2 is gone
    assert main(["ship", str(out_dir / "missing"), "--pipeline", pid, "--base-url", "http://127.0.0.1:9",
                 "--api-key", "k"]) == 1
    assert "no saved benchmark run" in capsys.readouterr().err
