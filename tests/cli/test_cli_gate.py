"""``llamaeval gate``: exit 3 on a planted drop, 0 on a rerun of the baseline, 2 when the query
sets differ — on saved constructed runs, and against the real local server (a pipeline holding
half of adi's documents is the planted drop)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llamaeval.cli import main



@pytest.fixture(scope="module")
def saved(tmp_path_factory, constructed):
    """Folders: base, rerun (same results, another pipeline id), drop (fast loses 4 places),
    fewer (30 of the 40 queries)."""
    c = constructed
    root = tmp_path_factory.mktemp("gate-runs")
    ranks = c.draw_ranks(np.random.default_rng(8), 2, 40)
    worse = ranks.copy()
    worse[0] += 4
    ids = [f"q{i}" for i in range(40)]
    runs = {"base": c.make_run(ranks, [0.01, 0.02], names=["fast", "accurate"]),
            "rerun": c.make_run(ranks, [0.01, 0.02], names=["fast", "accurate"], pipeline=("pipe-9", "adi")),
            "drop": c.make_run(worse, [0.01, 0.02], names=["fast", "accurate"], pipeline=("pipe-9", "adi")),
            "fewer": c.make_run(ranks[:, :30], [0.01, 0.02], names=["fast", "accurate"], query_ids=ids[:30])}
    return {name: str(run.save(root / name)) for name, run in runs.items()}


def test_gate_exit_codes_and_messages(saved, tmp_path, capsys):
    md = tmp_path / "summary.md"
    assert main(["gate", saved["drop"], "--baseline", saved["base"], "--metric", "ndcg@10,mrr",
                 "--max-drop", "0.01", "--alpha", "0.05", "--markdown", str(md)]) == 3
    out = capsys.readouterr().out
    assert out.startswith("llamaeval gate: FAILED — ")
    assert "of fast · top_k=10 dropped by" in out and "p = " in out and "queries that lost most: q" in out
    assert "accurate · top_k=10 ndcg@10" in out  # the untouched configuration, in the table
    assert md.read_text(encoding="utf-8").startswith("### ❌ llamaeval gate failed")

    assert main(["gate", saved["rerun"], "--baseline", saved["base"], "--markdown", str(md)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("llamaeval gate: passed — ") and "changed:  pipeline pipe-1 → pipe-9" in out
    assert md.read_text(encoding="utf-8").startswith("### ✅ llamaeval gate passed")

    assert main(["gate", saved["fewer"], "--baseline", saved["base"], "--markdown", str(md)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("llamaeval gate: refused — the runs were measured on different queries")
    assert "10 only in the baseline" in captured.err and captured.out == ""
    assert md.read_text(encoding="utf-8").startswith("### ⛔ llamaeval gate refused")

    assert main(["gate", saved["drop"], "--baseline", saved["base"], "--config", "mode=accurate,top_k=10"]) == 0
    assert "1 configuration × 1 metric" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["gate", "x"], "--baseline"),
    (["gate", "x", "--baseline", "y", "--max-drop", "-0.1"], "--max-drop"),
    (["gate", "x", "--baseline", "y", "--alpha", "1.5"], "between 0 and 1"),
    (["gate", "x", "--baseline", "y", "--metric", "bleu"], "bleu"),
])
def test_bad_arguments_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_a_missing_run_is_an_error_exit_1(saved, tmp_path, capsys):
    assert main(["gate", str(tmp_path / "nothing"), "--baseline", saved["base"]]) == 1
    assert "no saved benchmark run" in capsys.readouterr().err


def test_gate_against_the_live_server_half_the_documents_is_a_drop(live_server, adi_pipeline, adi_queryset, tmp_path,
                                                                    capsys):
    from llamaeval import BenchmarkConfig, BenchmarkRun, LlamaCloud, benchmark, ingest

    docs = sorted(adi_queryset.corpus["doc_id"])
    half = adi_queryset.subset(doc_ids=docs[::2], name="adi-half")
    quiet = BenchmarkConfig(progress=False, warmup=0)
    with LlamaCloud(api_key=live_server.api_key, base_url=live_server.base_url) as lc:
        half_pipeline = ingest(lc, half, project="tests", pipeline="adi-half", progress=False)
        grid = {"modes": ["fast"], "top_k": [10], "concurrency": 2, "config": quiet}
        benchmark(lc, adi_pipeline, adi_queryset, out=tmp_path / "base", **grid)
        benchmark(lc, adi_pipeline, adi_queryset, out=tmp_path / "rerun", **grid)
        benchmark(lc, half_pipeline, adi_queryset, out=tmp_path / "half", **grid)  # same queries, half the corpus
        fewer = BenchmarkConfig(progress=False, warmup=0, queries=list(adi_queryset.judged_query_ids)[:20])
        benchmark(lc, adi_pipeline, adi_queryset, ["fast"], [10], out=tmp_path / "fewer", config=fewer)

    manifest = json.loads((tmp_path / "half" / "manifest.json").read_text(encoding="utf-8"))
    identity = manifest["identity"]  # the archive: what was measured, by content
    assert identity == BenchmarkRun.load(tmp_path / "half").identity
    assert identity["queries_sha256"] == BenchmarkRun.load(tmp_path / "base").identity["queries_sha256"]
    assert [c["request"] for c in identity["configurations"]] == ['{"mode":"fast","params":{},"top_k":10}']
    assert identity["pipelines"][0]["num_files"] == 41 and identity["server_version"]
    assert main(["gate", str(tmp_path / "half"), "--baseline", str(tmp_path / "base")]) == 3
    out = capsys.readouterr().out
    assert out.startswith("llamaeval gate: FAILED — ndcg@10 of fast · top_k=10 dropped by")
    assert "queries that lost most" in out and "files 82 → 41" in out
    assert main(["gate", str(tmp_path / "rerun"), "--baseline", str(tmp_path / "base")]) == 0
    assert capsys.readouterr().out.startswith("llamaeval gate: passed")
    assert main(["gate", str(tmp_path / "fewer"), "--baseline", str(tmp_path / "base")]) == 2
    assert "different queries: baseline 35 queries" in capsys.readouterr().err
