"""The run widgets, driven: change a control, the chart/table/view changes accordingly."""

from __future__ import annotations

import pytest

from llamaeval import widgets
from llamaeval._errors import ConfigurationError


def test_dashboard_starts_on_ndcg10_with_every_mode(run, synthetic):
    dash = widgets.dashboard(run)
    assert dash.metric_name == "ndcg@10"
    assert bytes(dash.chart.value)[:4] == b"\x89PNG"
    for mode in synthetic.MODES:
        assert f"<td>{mode}</td>" in dash.table.value
    assert "ndcg@10" in dash.table.value
    assert "over 6 judged queries" in dash.status.value


def test_dashboard_metric_and_cutoff_change_table_and_chart(run):
    dash = widgets.dashboard(run)
    chart0, table0 = bytes(dash.chart.value), dash.table.value
    dash.metric.value = "recall"
    assert dash.metric_name == "recall@10"
    assert "recall@10" in dash.table.value and "ndcg@10" not in dash.table.value
    assert bytes(dash.chart.value) != chart0
    dash.cutoff.value = 3
    assert "recall@3" in dash.table.value
    # recall@3 for advanced at top_k=3 is 1.0 by construction of the synthetic run
    recall3 = run.evaluate(["recall@3"])
    value = recall3[(recall3["mode"] == "advanced") & (recall3["top_k"] == 3)]["recall@3"].iloc[0]
    assert value == pytest.approx(1.0)
    assert "1.0000" in dash.table.value
    assert dash.table.value != table0


def test_dashboard_mode_selection_filters_rows(run):
    dash = widgets.dashboard(run)
    dash.modes.value = ("fast",)
    assert "<td>fast</td>" in dash.table.value
    assert "<td>advanced</td>" not in dash.table.value and "<td>accurate</td>" not in dash.table.value
    dash.modes.value = ()
    assert "select at least one mode" in dash.status.value
    assert dash.table.value == ""


def test_dashboard_rejects_unknown_metric(run):
    with pytest.raises(ConfigurationError):
        widgets.dashboard(run, metric="bleu")


def test_query_inspector_shows_every_mode_and_highlights_relevant(run, synthetic):
    qi = widgets.query_inspector(run)
    view = qi.view.value
    assert qi.query.value == "q0"
    for mode in synthetic.MODES:
        assert f"data-mode='{mode}'" in view
    # q0's relevant docs are d0 (grade 2) and d6 (grade 1): highlighted rows
    assert "<tr class='le-rel2'><td>1</td><td>d0</td>" in view  # advanced ranks d0 first
    assert "class='le-rel1'" in view
    assert "what is topic 0?" in view
    assert "latency" in view and " ms" in view


def test_query_inspector_follows_query_and_top_k(run):
    qi = widgets.query_inspector(run)
    before = qi.view.value
    qi.query.value = "q1"
    assert qi.view.value != before
    assert "what is topic 1?" in qi.view.value and "<td>d1</td>" in qi.view.value
    qi.top_k.value = 1
    # with top_k=1 fast finds neither relevant doc for q1; it says so
    fast = qi.view.value.split("data-mode='fast'")[1].split("data-mode=")[0]
    assert "found 0/2 relevant" in fast and "missed: d1, d7" in fast


def test_query_inspector_shows_failed_request(run):
    qi = widgets.query_inspector(run, query_id="q4")
    fast = qi.view.value.split("data-mode='fast'")[1].split("data-mode=")[0]
    assert "status 500" in fast and "HTTP 500: boom" in fast and "no results" in fast
    accurate = qi.view.value.split("data-mode='accurate'")[1].split("data-mode=")[0]
    assert "status 200" in accurate and "no results" not in accurate


def test_query_inspector_titles_from_corpus(run):
    import pandas as pd

    corpus = pd.DataFrame({"doc_id": ["d0"], "title": ["Wing <flutter>"], "text": ["..."]})
    qi = widgets.query_inspector(run, corpus=corpus)
    assert "Wing &lt;flutter&gt;" in qi.view.value  # escaped


def test_query_inspector_unknown_query(run):
    with pytest.raises(ConfigurationError, match="nope"):
        widgets.query_inspector(run, query_id="nope")


def test_widgets_display_as_ipywidgets(run):
    dash = widgets.dashboard(run)
    bundle = dash._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
