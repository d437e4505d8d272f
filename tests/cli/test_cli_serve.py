"""``llamaeval serve`` flags for the server's limits: a flag wins over its environment variable,
which wins over the default; a bad value is refused in one line naming the flag (or variable)."""

from __future__ import annotations

import pytest

from llamaeval.cli import build_parser, main
from llamaeval.cli import _serve as serve_cli

MB = 1024 * 1024
VARIABLES = ("LLAMAEVAL_MAX_UPLOAD_MB", "LLAMAEVAL_MAX_JSON_MB", "LLAMAEVAL_MAX_QUERY_CHARS",
             "LLAMAEVAL_INDEX_CACHE_MB", "LLAMAEVAL_ONNX_THREADS", "LLAMAEVAL_SHARED_SOURCES_ROOT",
             "LLAMAEVAL_DATA_DIR", "LLAMAEVAL_SOURCES_ROOT", "LLAMAEVAL_DATABASE", "LLAMAEVAL_RERANKER")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    for var in VARIABLES:
        monkeypatch.delenv(var, raising=False)


def _config(*argv: str):
    """The ServerConfig ``llamaeval serve ARGV`` would run with (what ``_serve`` builds)."""
    args = build_parser().parse_args(["serve", *argv])
    return serve_cli._server_config(args, serve_cli._numbers(args))


def _limits(cfg) -> tuple:
    return (cfg.max_upload_bytes, cfg.max_json_bytes, cfg.max_query_chars, cfg.index_cache_bytes, cfg.onnx_threads,
            cfg.shared_sources_root)


def test_a_flag_wins_over_its_variable_which_wins_over_the_default(tmp_path, monkeypatch):
    data = ("--data-dir", str(tmp_path))
    assert _limits(_config(*data)) == (50 * MB, 10 * MB, 4096, 1024 * MB, None, False)
    for var, value in (("LLAMAEVAL_MAX_UPLOAD_MB", "5"), ("LLAMAEVAL_MAX_JSON_MB", "2"),
                       ("LLAMAEVAL_MAX_QUERY_CHARS", "2000"), ("LLAMAEVAL_INDEX_CACHE_MB", "64"),
                       ("LLAMAEVAL_ONNX_THREADS", "2"), ("LLAMAEVAL_SHARED_SOURCES_ROOT", "1")):
        monkeypatch.setenv(var, value)
    assert _limits(_config(*data)) == (5 * MB, 2 * MB, 2000, 64 * MB, 2, True)
    flags = ("--max-upload-mb", "1", "--max-json-mb", "0.5", "--max-query-chars", "300", "--index-cache-mb", "16",
             "--onnx-threads", "1", "--no-shared-sources-root")
    assert _limits(_config(*data, *flags)) == (1 * MB, MB // 2, 300, 16 * MB, 1, False)
    # a given flag is all that counts: its variable is not even read
    monkeypatch.setenv("LLAMAEVAL_MAX_QUERY_CHARS", "not a number")
    assert _config(*data, "--max-query-chars", "100").max_query_chars == 100
    monkeypatch.setenv("LLAMAEVAL_SHARED_SOURCES_ROOT", "0")
    assert _config(*data, "--shared-sources-root", "--max-query-chars", "100").shared_sources_root is True


@pytest.mark.parametrize("flag, value, words", [
    ("--max-query-chars", "0", "whole number >= 1 (characters)"),
    ("--max-query-chars", "2.5", "whole number >= 1"),
    ("--max-query-chars", "many", "whole number"),
    ("--max-json-mb", "0", "number > 0 (MB)"),
    ("--max-json-mb", "-1", "number > 0"),
    ("--max-upload-mb", "inf", "number > 0"),
    ("--index-cache-mb", "nan", "number > 0"),
    ("--onnx-threads", "0", "(threads)"),
])
def test_a_bad_flag_is_refused_in_one_line_naming_it(tmp_path, capsys, flag, value, words):
    data_dir = tmp_path / "never-created"
    assert main(["serve", "--data-dir", str(data_dir), flag, value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"llamaeval serve: error: {flag} must be a") and words in err and repr(value) in err, err
    assert not data_dir.exists()  # refused before anything started


def test_a_bad_variable_is_refused_naming_the_variable(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LLAMAEVAL_MAX_JSON_MB", "0")
    assert main(["serve", "--data-dir", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert err == "llamaeval serve: error: LLAMAEVAL_MAX_JSON_MB must be a number > 0 (MB), got '0'\n"


def test_help_gives_each_limit_its_unit_variable_and_default(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["serve", "--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    text = text[text.index("limits and resources:"):]  # the descriptions, after the usage line
    for flag, words in (("--max-upload-mb MB", ("megabytes", "$LLAMAEVAL_MAX_UPLOAD_MB or 50")),
                        ("--max-json-mb MB", ("megabytes", "$LLAMAEVAL_MAX_JSON_MB or 10")),
                        ("--max-query-chars N", ("in characters", "$LLAMAEVAL_MAX_QUERY_CHARS or 4096")),
                        ("--index-cache-mb MB", ("megabytes", "$LLAMAEVAL_INDEX_CACHE_MB or 1024")),
                        ("--onnx-threads N", ("threads", "$LLAMAEVAL_ONNX_THREADS")),
                        ("--shared-sources-root, --no-shared-sources-root", ("$LLAMAEVAL_SHARED_SOURCES_ROOT",))):
        at = text.index(flag)
        described = text[at:at + 260]
        assert all(w in described for w in words), (flag, described)
