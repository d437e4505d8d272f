"""What a user looks at renders readably: compact cards, short ids, names, ms, natural order,
a recommendation with its evidence, error bands, recall at k = top_k, shared latency marked."""

from __future__ import annotations

import warnings

import pytest

from llamaeval import _display
from llamaeval.runner._run import FailedRequestsWarning

UUID = "eb643dde-2450-497d-999f-82108179bc7d"
WEIGHTS = {"models": {"accurate": {"weights": [0.1] * 18, "features": ["bm25"] * 18}}}


@pytest.fixture(autouse=True)
def _quiet_failures():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FailedRequestsWarning)
        yield


def test_display_helpers():
    assert _display.plural(1, "configuration") == "1 configuration"
    assert _display.plural(2, "query", "queries") == "2 queries"
    assert _display.ms(0.01234) == "12.3 ms" and _display.ms(None) == ""
    assert _display.short_id(UUID) == "eb643dde"
    html = _display.id_html(UUID)
    assert "eb643dde…" in html and f"title='{UUID}'" in html
    assert _display.compact({"a": 1, "ltr_model": WEIGHTS}) == "{a: 1, ltr_model: {…1 key}}"
    assert _display.snippet("word " * 100, 20).endswith(" …") and len(_display.snippet("word " * 100, 20)) <= 22
    assert _display.pipeline_names({"pipelines": [{"id": "a1", "name": "x"}, {"id": "b2", "name": "x"},
                                                  {"id": "c3"}]}) == {"a1": "x (a1)", "b2": "x (b2)", "c3": "c3"}


def test_a_pipeline_record_is_a_compact_card_and_a_short_repr():
    from llamaeval.client._records import Pipeline

    config = {f"k{i}": i for i in range(18)} | {"ltr_model": WEIGHTS}
    pipe = Pipeline.from_json({"id": UUID, "name": "adi", "status": "active", "num_files": 82,
                               "retrieval_config": config, "created_at": "2026-01-01T00:00:00Z"})
    text = repr(pipe)
    assert len(text) < 300 and "0.1" not in text and "name='adi'" in text and UUID in text
    html = pipe._repr_html_()
    assert "Pipeline <b>adi</b>" in html and "eb643dde…" in html and UUID in html  # full id on hover
    assert "<details><summary>19 settings</summary>" in html  # folded, one click away
    assert "0.1, 0.1" not in html and "{…1 key}" in html  # the weights are summarised
    assert "2026-01-01 00:00:00 UTC" in html


def test_a_retrieve_result_is_a_ranked_table_with_snippets():
    from llamaeval.client._retrieval import RetrievalResult

    results = [{"text": f"document {i} " + "lorem ipsum " * 40, "score": 1 - i / 10,
                "metadata": {"doc_id": str(i), "file_name": f"{i}.txt", "chunk_id": UUID}} for i in range(3)]
    res = RetrievalResult(request={"pipeline_id": UUID, "query": "what is lift?", "mode": "fast", "top_k": 3},
                          raw={"results": results}, latency_s=0.0123, server_timing={"total": 0.01},
                          status_code=200)
    html = res._repr_html_()
    assert "3 results" in html and "what is lift?" in html and "12.3 ms (server 10.0 ms)" in html
    assert "<td>2.txt</td>" in html and "eb643dde…" in html and "document 1 lorem" in html
    assert html.count("lorem") < 3 * 30  # snippets, not the whole text


def test_a_run_card_names_pipelines_counts_and_failures(run):
    run.manifest["pipelines"] = [{"id": "pipe-1", "name": "adi-convex"}]
    html = run._repr_html_()
    assert "<b>adi-convex</b>" in html and "6 judged queries" in html
    assert "3: fast, accurate, advanced" in html and "share_k" not in html.split("top_k")[0]
    assert "18 requests sent" in html and "1 failed" in html and "HTTP 500" in html
    assert "run.recommend()" in html
    assert "configurations=12" in repr(run)


def test_evaluate_gives_bootstrap_intervals_and_recall_at_top_k(run):
    from llamaeval.metrics._relevance import evaluate, recall_at_top_k

    table = evaluate(run.results, run.qrels, ["ndcg@10"], ci=0.95)
    assert (table["ndcg@10_low"] <= table["ndcg@10"] + 1e-12).all()
    assert (table["ndcg@10"] <= table["ndcg@10_high"] + 1e-12).all()
    recall = recall_at_top_k(run.results, run.qrels)
    assert list(recall["mode"].drop_duplicates()) == ["fast", "accurate", "advanced"]
    row = recall[(recall["mode"] == "advanced") & (recall["top_k"] == 1)]
    assert row["recall@top_k"].iloc[0] == pytest.approx(0.5)  # d{i} found, d{i+6} not at k=1


def test_recommend_ships_the_cheapest_within_reach_of_the_best(run):
    best = run.recommend("ndcg@10", within=0.01)
    assert best.choice == {"pipeline_id": "pipe-1", "mode": "advanced", "top_k": 3}  # best; smallest such top_k
    assert str(best).startswith("Ship advanced · top_k=3: the best ndcg@10 (0.950")
    assert "measured at top_k=10" in str(best)  # share_k latency said
    cheaper = run.recommend("ndcg@10", within=0.4)
    assert cheaper.choice["mode"] == "accurate" and cheaper.choice["top_k"] == 5
    assert "faster than the best" in str(cheaper) and "after Holm" in str(cheaper)
    ev = cheaper.evidence
    assert list(ev["mode"].drop_duplicates()) == ["fast", "accurate", "advanced"]
    assert int(ev["chosen"].sum()) == 1 and {"p_adj", "mark", "ndcg@10_low"} <= set(ev.columns)
    html = cheaper._repr_html_()
    assert "data-le='recommendation'" in html and "<b>accurate · top_k=5</b>" in html and "p50 ms" in html
    with pytest.raises(Exception, match="latency must be"):
        run.recommend(latency="p42")


def test_summary_is_the_table_to_read(run):
    table = run.summary(["ndcg@10", "mrr"])
    assert list(table.columns[:3]) == ["mode", "top_k", "ndcg@10"]
    assert {"ndcg@10 95% CI", "recall@top_k", "p50 ms", "p95 ms", "failed"} <= set(table.columns)
    assert list(table["mode"].drop_duplicates()) == ["fast", "accurate", "advanced"]
    shared = table[table["top_k"] < 10]
    assert shared["p50 ms"].str.endswith("†").all()  # measured by the top_k=10 request
    assert not table[table["top_k"] == 10]["p50 ms"].str.endswith("†").any()
    assert "top_k=10 request" in table.attrs["shared_note"]


def test_report_says_failures_and_recommendation_first_and_folds_weights(run, tmp_path):
    run.manifest["pipelines"] = [{"id": "pipe-1", "name": "adi", "retrieval_config": {"ltr_model": WEIGHTS}}]
    path = run.report(tmp_path / "r.html")
    html = path.read_text(encoding="utf-8")
    assert html.index("id=\"failure-note\"") < html.index("id=\"recommendation\"") < html.index("id=\"summary\"")
    assert "Ship advanced · top_k=3" in html.replace("<b>", "").replace("</b>", "")
    assert "[18 numbers]" in html and "0.1, 0.1" not in html
    assert "† latency of the top_k=10 request" in html and "recall@top_k" in html
    md = path.with_suffix(".md").read_text(encoding="utf-8")
    assert md.index("**Failed requests.**") < md.index("**Recommendation.**") < md.index("| mode |")


def test_metric_plot_has_error_bands(run):
    from matplotlib.collections import PolyCollection

    from llamaeval import plots

    ax = plots.metric_vs_top_k(run, "ndcg@10")
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 3  # one band per mode
    assert "95% bootstrap CI" in ax.get_title()


def test_dashboard_recommends_first_and_hides_the_chart_when_nothing_is_selected(run):
    from llamaeval import widgets

    dash = widgets.dashboard(run)
    assert "Ship <b>advanced" in dash.recommendation.value and "1 of 18 requests failed" in dash.recommendation.value
    assert "Ctrl/⌘-click" in dash.hint.value
    assert "95% CI" in dash.table.value and "p50 ms" in dash.table.value and "server_" not in dash.table.value
    assert dash.table.value.count("<th>") <= 10  # a short table
    dash.modes.value = ("fast",)
    assert "Ship <b>fast" in dash.recommendation.value
    dash.modes.value = ()
    assert dash.chart.layout.display == "none" and dash.table.value == ""
    assert "select at least one mode" in dash.status.value
    dash.modes.value = ("fast", "accurate")
    assert dash.chart.layout.display is None and bytes(dash.chart.value)[:4] == b"\x89PNG"


def test_a_queryset_card_for_the_datasets_repr():
    from llamaeval import load_queryset

    html = _display.queryset_html(load_queryset("adi"))
    assert "QuerySet <b>adi</b>" in html and "35 judged" in html and "82 documents" in html
    assert "judgements of grade" in html and html.count("<tr><td><code>") == 3
