"""The CLI says first what went wrong: failed requests, a baseline that names nothing, a resume
into another grid, an interrupt; and it shows progress outside a terminal."""

from __future__ import annotations

import argparse
import json

import pytest

from llamaeval.cli import main

SERVICE = ["--base-url", "http://127.0.0.1:9", "--api-key", "k"]


@pytest.fixture()
def fake_bench(monkeypatch, run):
    """benchmark() replaced by one that records its arguments and returns ``state["run"]``."""
    import llamaeval.runner

    state = {"run": run, "calls": []}

    def fake(client, pipeline_id, queryset, **kwargs):
        state["calls"].append(dict(kwargs, pipeline_id=pipeline_id))
        if isinstance(state["run"], BaseException):
            raise state["run"]
        return state["run"]

    monkeypatch.setattr(llamaeval.runner, "benchmark", fake)
    return state


def _argv(out, *extra):
    return ["bench", "adi", "--pipeline", "pipe-1", "--out", str(out), "--no-report", "-q", *extra, *SERVICE]


def test_every_request_failed_is_said_first_with_the_cause(fake_bench, synthetic, tmp_path, capsys):
    from llamaeval.runner import BenchmarkRun

    f = synthetic.frames()
    f["requests"] = f["requests"].assign(status=400, error="BadRequestError: HTTP 400: top_k must be <= 200")
    f["results"] = f["results"].assign(rank=None, doc_id=None, status=400)
    fake_bench["run"] = BenchmarkRun(f["results"], f["requests"], f["qrels"], f["queries"], synthetic.manifest())
    assert main(_argv(tmp_path / "run")) == 1
    err = capsys.readouterr().err
    assert "All 18 requests failed" in err and "top_k must be <= 200" in err
    assert "top_k above what the server accepts" in err
    assert "ids" not in err  # not the alignment (id trap) message


def test_some_failed_requests_warn_before_the_summary(fake_bench, tmp_path, capsys):
    assert main(_argv(tmp_path / "run")) == 0
    captured = capsys.readouterr()
    assert "warning: 1 of 18 requests failed" in captured.err and "HTTP 500" in captured.err
    assert "**Failed requests.**" in captured.out.split("|")[0]  # before the table


def test_a_baseline_that_names_no_configuration_is_refused(fake_bench, tmp_path, capsys):
    assert main(_argv(tmp_path / "run", "--baseline", "mode=slow")) == 1
    err = capsys.readouterr().err
    assert "names no configuration" in err and "fast, accurate, advanced" in err


def _saved(out, modes=("fast", "accurate"), top_k=(5, 10)):
    out.mkdir(parents=True)
    manifest = {"parameters": {"modes": list(modes), "top_k": list(top_k),
                               "configurations": [{"name": m, "mode": m, "params": {}} for m in modes]},
                "pipelines": [{"id": "pipe-1", "name": "adi"}]}
    (out / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def test_resume_into_another_grid_refuses_unless_extend_or_replace(fake_bench, tmp_path, capsys):
    out = tmp_path / "run"
    _saved(out)
    assert main(_argv(out, "--resume", "--modes", "fast", "--top-k", "5")) == 1
    err = capsys.readouterr().err
    assert "holds a run of 2 configurations (fast, accurate) x top_k 5,10" in err
    assert "--extend" in err and "--replace" in err
    assert fake_bench["calls"] == []  # nothing was sent

    # the runner applies the choice (tests/runner: the union is benchmarked, the saved run discarded)
    argv = [a for a in _argv(out, "--extend", "--modes", "advanced", "--top-k", "20") if a != "-q"]
    assert main(argv) == 0
    assert "extended, benchmarking fast, accurate, advanced x top_k 5,10,20" in capsys.readouterr().err
    call = fake_bench["calls"][-1]
    assert call["on_existing"] == "extend" and call["modes"] == ["advanced"] and call["top_k"] == [20]

    assert main(_argv(out, "--replace", "--modes", "fast", "--top-k", "5")) == 0
    assert fake_bench["calls"][-1]["on_existing"] == "replace" and fake_bench["calls"][-1]["modes"] == ["fast"]

    capsys.readouterr()
    _saved(tmp_path / "same")
    assert main(_argv(tmp_path / "same", "--resume", "--modes", "fast,accurate", "--top-k", "5,10")) == 0


def test_an_interrupt_says_how_to_resume(fake_bench, tmp_path, capsys):
    fake_bench["run"] = KeyboardInterrupt()
    assert main(_argv(tmp_path / "run")) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err


def test_heartbeat_lines_count_the_journal(tmp_path, monkeypatch):
    from llamaeval.cli import _bench

    journal = tmp_path / "journal.jsonl"
    journal.write_text('{"fingerprint": {}}\n' + "{}\n" * 30, encoding="utf-8")
    args = argparse.Namespace(quiet=False)
    beat = _bench._heartbeat(args, "benchmark", journal=journal, total=120, every=0.01)
    with beat:
        journal.write_text('{"fingerprint": {}}\n' + "{}\n" * 60, encoding="utf-8")
        line = beat.line()
    assert line.startswith("benchmark: 60/120 requests (50%)") and "req/s" in line and "ETA" in line
    plain = _bench._heartbeat(args, "ingesting adi")
    with plain:
        assert plain.line().startswith("ingesting adi: ") and "elapsed" in plain.line()


def test_heartbeat_prints_when_stderr_is_not_a_terminal(tmp_path, capsys):
    import time

    from llamaeval.cli import _bench

    with _bench._heartbeat(argparse.Namespace(quiet=False), "ingesting adi", every=0.02):
        time.sleep(0.1)
    assert "ingesting adi: " in capsys.readouterr().err  # pytest's stderr is not a TTY
    with _bench._heartbeat(argparse.Namespace(quiet=True), "quiet", every=0.02):
        time.sleep(0.06)
    assert "quiet" not in capsys.readouterr().err
