"""The HTML report is self-contained and holds the tables, figures, significance and manifest."""

from __future__ import annotations

import base64
import re

import pytest

from llamaeval import report
from llamaeval._errors import ConfigurationError


@pytest.fixture(scope="module")
def html_path(synthetic, tmp_path_factory):
    """One report for the module (writing it draws five figures and runs the significance tests)."""
    run = synthetic.make_run()
    return report.write_report(run, tmp_path_factory.mktemp("report") / "out" / "report.html",
                               gate={"ndcg@10": 0.99})


def test_report_is_self_contained(html_path):
    html = html_path.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    # nothing is loaded from elsewhere: every src/href is inline data or a fragment
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", html)
    assert refs, "expected embedded figures"
    assert all(r.startswith("data:") or r.startswith("#") for r in refs), refs
    assert not re.search(r"https?://", html.split("<section id=\"manifest\">")[0])
    assert "<link" not in html and "<script" not in html


def test_report_embeds_decodable_png_figures(html_path):
    html = html_path.read_text(encoding="utf-8")
    pngs = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)
    assert len(pngs) >= 4  # metric vs top_k, quality vs latency, latency box, ECDF, per-query
    for b64 in pngs:
        assert base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_tables_values_and_manifest(run, html_path):
    html = html_path.read_text(encoding="utf-8")
    table = run.evaluate(["ndcg@10"])
    best = table["ndcg@10"].max()
    assert f"{best:.4f}" in html
    for section in ("summary", "figures", "stages", "frontier", "significance", "failures", "manifest", "gate"):
        assert f'<section id="{section}">' in html
    assert "embed ms" in html and "client ms" in html
    assert "p_ttest_adj" in html and "baseline" in html
    assert "abc123" in html  # the query set hash from the manifest
    assert "HTTP 500: boom" in html  # the failed request is listed
    assert "6</b>judged queries" in html


def test_report_gate_failure_is_shown(html_path):
    html = html_path.read_text(encoding="utf-8")
    gate = html.split('<section id="gate">')[1].split("</section>")[0]
    assert "FAIL" in gate and "0.9900" in gate


def test_markdown_summary_written_next_to_html(run, html_path):
    md = html_path.with_suffix(".md").read_text(encoding="utf-8")
    assert md == report.markdown_summary(run, gate={"ndcg@10": 0.99})
    lines = md.splitlines()
    header = next(line for line in lines if line.startswith("| mode"))
    assert "ndcg@10" in header and "p50 ms" in header
    rows = [line for line in lines if line.startswith("| fast") or line.startswith("| accurate")
            or line.startswith("| advanced")]
    assert len(rows) >= 12  # 12 configurations (+ significance rows)
    assert "FAIL" in md


def test_report_rejects_non_html_path(run, tmp_path):
    with pytest.raises(ConfigurationError, match=r"\.html"):
        report.write_report(run, tmp_path / "report.pdf")


def test_run_report_method_uses_write_report(run, tmp_path):
    if not hasattr(run, "report"):
        pytest.skip("runner BenchmarkRun not available")
    path = run.report(tmp_path / "r.html", metrics=["mrr"])
    assert "mrr" in path.read_text(encoding="utf-8")


def test_thresholds_parse_and_check(run):
    assert report.parse_thresholds(["ndcg@10=0.3", "mrr=0.5,map=0.1"]) == {"ndcg@10": 0.3, "mrr": 0.5, "map": 0.1}
    for bad in ("ndcg@10", "=0.3", "ndcg@10=high"):
        with pytest.raises(ConfigurationError):
            report.parse_thresholds([bad])
    table = report.summary_table(run, ["ndcg@10"])
    assert report.check_thresholds(table, {"ndcg@10": 0.5}) == []
    assert report.check_thresholds(table, {"ndcg@10": 0.99})[0].startswith("ndcg@10: best 0.9502")
    with pytest.raises(ConfigurationError, match="mrr"):
        report.check_thresholds(table, {"mrr": 0.1})


def test_stage_table_counts_each_request_once_in_milliseconds(run):
    from llamaeval.report._write import stage_table

    stages = stage_table(run.requests).set_index("mode")
    req = run.requests
    sent = req[(req["top_k"] == 10) & (req["status"] == 200)]  # share_k: one request per mode and query
    for mode, group in sent.groupby("mode"):
        assert stages.loc[mode, "requests"] == len(group)
        assert stages.loc[mode, "client ms"] == pytest.approx(group["latency_s"].mean() * 1000)
        assert stages.loc[mode, "embed ms"] == pytest.approx(group["server_embed_s"].mean() * 1000)
