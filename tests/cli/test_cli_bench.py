"""The benchmarking CLI: argument errors (exit 2), llamaeval errors (exit 1), a real bench/report run."""

from __future__ import annotations

import json

import pytest

from llamaeval.cli import build_parser, main


@pytest.mark.parametrize("argv, message", [
    (["bench", "adi", "--out", "x", "--modes", "fast,slow"], "modes must be"),
    (["bench", "adi", "--out", "x", "--top-k", "0,5"], ">= 1"),
    (["bench", "adi", "--out", "x", "--top-k", "ten"], "integers"),
    (["bench", "adi", "--out", "x", "--fail-under", "ndcg@10"], "METRIC=VALUE"),
    (["bench", "adi", "--out", "x", "--fail-under", "ndcg@10=high"], "not a number"),
    (["bench", "adi", "--out", "x", "--metrics", "ndcg@10,bleu"], "bleu"),
    (["bench", "adi", "--out", "x", "--concurrency", "0"], "positive integer"),
    (["bench", "adi", "--out", "x", "--baseline", "speed=fast"], "baseline"),
    (["bench", "adi", "--out", "x", "--param", "alpha"], "alpha=0,0.5,1"),
    (["bench", "adi", "--out", "x", "--param", "alpha="], "--param must look like"),
    (["demo", "--param", "alpha=0"], "unrecognized"),
    (["bench", "adi"], "--out"),
    (["demo", "--top-k", "-1"], ">= 1"),
    (["report"], "run"),
])
def test_bad_arguments_exit_2_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


def test_demo_defaults_are_the_full_cranfield_grid():
    args = build_parser().parse_args(["demo"])
    assert args.queryset == "cranfield"
    assert args.modes == ["fast", "accurate", "advanced"]
    assert args.top_k == [1, 3, 5, 10, 20, 50]
    assert args.share_k is True and args.base_url is None and args.concurrency == 2
    args = build_parser().parse_args(["demo", "--fail-under", "ndcg@10=0.30", "--top-k", "10,1,10"])
    assert args.fail_under == [{"ndcg@10": 0.30}] and args.top_k == [1, 10]


def test_report_of_a_missing_run_is_an_error_exit_1(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing")]) == 1
    assert "no saved benchmark run" in capsys.readouterr().err


def test_bench_then_report_against_a_live_server(live_server, adi_pipeline, tmp_path, capsys):
    out = tmp_path / "run"
    service = ["--base-url", live_server.base_url, "--api-key", live_server.api_key]
    argv = ["bench", "adi", "--pipeline", adi_pipeline, "--modes", "fast,accurate", "--top-k", "1,5",
            "--concurrency", "2", "--warmup", "0", "--out", str(out), "--fail-under", "ndcg@10=0.05", "-q",
            *service]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert "35 judged queries · 4 configurations · 70 requests sent · 0 failed" in stdout  # share_k: 2 modes x 35 queries sent
    assert "| fast | 5 |" in stdout and "| accurate | 1 |" in stdout
    assert "ndcg@10 >= 0.0500" in stdout and "pass" in stdout
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in html and adi_pipeline in html
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest  # the run itself was saved by the runner

    # running again into the same folder needs --resume; with it nothing is re-sent
    assert main(argv) == 1
    assert "--resume" in capsys.readouterr().err
    assert main([*argv, "--resume", "--no-report"]) == 0
    assert "70 requests sent" in capsys.readouterr().out

    # the report command re-reads the saved run; an unreachable gate exits 3
    target = tmp_path / "again.html"
    assert main(["report", str(out), "--out", str(target), "--metrics", "mrr", "--fail-under", "mrr=1.01"]) == 3
    captured = capsys.readouterr()
    assert "quality gate failed: mrr" in captured.err
    assert target.exists() and target.with_suffix(".md").exists()


def test_ingest_prints_the_pipeline_id(live_server, adi_pipeline, capsys):
    argv = ["ingest", "adi", "--project", "tests", "--pipeline", "adi", "-q",
            "--base-url", live_server.base_url, "--api-key", live_server.api_key]
    assert main(argv) == 0  # idempotent: the adi pipeline already holds every document
    assert capsys.readouterr().out.strip().splitlines()[-1] == adi_pipeline


def test_reduced_demo_against_a_given_service(live_server, tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--queryset", "adi", "--modes", "fast", "--top-k", "1,10", "--warmup", "0", "-q",
            "--out", str(out), "--fail-under", "ndcg@10=0.99",
            "--base-url", live_server.base_url, "--api-key", live_server.api_key]
    assert main(argv) == 3  # the run works; the (unreachable) gate sets the exit code
    captured = capsys.readouterr()
    assert "| fast | 10 |" in captured.out
    assert "quality gate failed: ndcg@10" in captured.err
    assert (out / "report.html").exists() and (out / "run" / "manifest.json").exists()


def test_demo_with_embedded_server_reuses_its_data_dir(tmp_path, capsys):
    """The real demo path (EmbeddedServer), reduced to adi x fast x two cutoffs, run twice."""
    import re

    data, out = tmp_path / "server", tmp_path / "demo"
    argv = ["demo", "--queryset", "adi", "--modes", "fast", "--top-k", "1,5", "--warmup", "0",
            "--data-dir", str(data), "--out", str(out)]
    assert main(argv) == 0
    first = capsys.readouterr()
    assert "| fast | 5 |" in first.out
    key_file = data / "demo-api-key"
    assert key_file.stat().st_mode & 0o077 == 0  # the saved key is private
    pipeline = re.search(r"pipeline (\S+) synced", first.err).group(1)

    assert main([*argv, "--resume"]) == 0
    second = capsys.readouterr()
    assert re.search(r"pipeline (\S+) synced", second.err).group(1) == pipeline  # ingest found it
    assert second.out.split("report:")[0] == first.out.split("report:")[0]  # same run, nothing re-sent


def test_bench_params_build_a_grid(run, tmp_path, monkeypatch, capsys):
    """--param KEY=V1,V2 (repeatable) becomes benchmark(params={KEY: [values]}), values read as JSON
    scalars where possible; without --modes there is no mode."""
    import llamaeval.runner

    seen = {}

    def fake_benchmark(client, pipeline_id, queryset, **kwargs):
        seen.update(kwargs, pipeline_id=pipeline_id)
        return run

    monkeypatch.setattr(llamaeval.runner, "benchmark", fake_benchmark)
    argv = ["bench", "adi", "--pipeline", "pipe-1", "--out", str(tmp_path / "run"), "--no-report", "-q",
            "--param", "alpha=0,0.5,1", "--param", "enable_reranking=false,True",
            "--param", "retrieval_mode=chunks,\"null\",null", "--top-k", "5,10",
            "--base-url", "http://127.0.0.1:9", "--api-key", "k"]
    assert main(argv) == 0
    assert seen["params"] == {"alpha": [0, 0.5, 1], "enable_reranking": [False, True],
                              "retrieval_mode": ["chunks", "null", None]}
    assert seen["modes"] is None and seen["top_k"] == [5, 10] and seen["pipeline_id"] == "pipe-1"
    capsys.readouterr()
    assert main([*argv[:-4], "--modes", "fast", "--base-url", "http://127.0.0.1:9", "--api-key", "k"]) == 0
    assert seen["modes"] == ["fast"]
    assert main([*argv, "--param", "alpha=2"]) == 1
    assert "--param alpha is given twice" in capsys.readouterr().err
    without = build_parser().parse_args(["bench", "adi", "--out", "x"])
    assert without.modes is None and without.param == []  # the runner's default: the three modes


def test_bench_help_documents_param(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--param KEY=V1,V2" in text and "--param alpha=0,0.5,1" in text and "JSON" in text


def test_baseline_may_name_a_configuration():
    args = build_parser().parse_args(["report", "x", "--baseline", "mode=alpha=0, enable_reranking=False,top_k=10"])
    assert args.baseline == {"mode": "alpha=0, enable_reranking=False", "top_k": 10}
