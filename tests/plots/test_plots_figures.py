"""Plots read back from their Axes: labels with units, one series per mode, the frontier."""

from __future__ import annotations

import numpy as np
import pytest

from llamaeval import plots
from llamaeval._errors import ConfigurationError, EvaluationError


def test_metric_vs_top_k_draws_one_line_per_mode_with_values(run, synthetic):
    ax = plots.metric_vs_top_k(run, "ndcg@10")
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == set(synthetic.MODES)
    table = run.evaluate(["ndcg@10"])
    for mode, line in lines.items():
        expected = table[table["mode"] == mode].sort_values("top_k")
        assert list(line.get_xdata()) == list(expected["top_k"])
        assert np.allclose(line.get_ydata(), expected["ndcg@10"])
    assert "top_k" in ax.get_xlabel()
    assert ax.get_ylabel() == "ndcg@10"


def test_metric_vs_top_k_mode_filter_and_unknown_mode(run):
    ax = plots.metric_vs_top_k(run, "recall@5", modes=["fast"])
    assert [line.get_label() for line in ax.get_lines()] == ["fast"]
    with pytest.raises(ConfigurationError, match="bogus"):
        plots.metric_vs_top_k(run, "recall@5", modes=["bogus"])


def test_metric_vs_top_k_missing_metric_in_table(run):
    with pytest.raises(ConfigurationError, match="mrr"):
        plots.metric_vs_top_k(run.evaluate(["ndcg@10"]), "mrr")


def test_latency_box_is_in_milliseconds_counts_shared_requests_once(run, synthetic):
    ax = plots.latency_distribution(run, kind="box")
    assert "ms" in ax.get_ylabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == list(synthetic.MODES)
    req = run.requests
    # one request per (mode, query) at the largest top_k; fast's q4 failed
    fast = req[(req["mode"] == "fast") & (req["top_k"] == 10) & (req["status"] == 200)]["latency_s"] * 1000
    assert len(fast) == len(synthetic.QUERY_IDS) - 1
    assert len(plots.physical_requests(req)) == len(synthetic.MODES) * len(synthetic.QUERY_IDS)
    # some drawn line (the first box's median) sits at the median of the measured fast requests, in ms
    ys = {round(float(y), 6) for line in ax.get_lines() for y in line.get_ydata()}
    assert round(float(np.median(fast)), 6) in ys


def test_latency_ecdf_steps_reach_one(run, synthetic):
    ax = plots.latency_distribution(run, kind="ecdf")
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["fast (n=5)", "accurate (n=6)", "advanced (n=6)"]
    for line in lines:
        assert line.get_ydata()[-1] == pytest.approx(1.0)
        assert np.all(np.diff(line.get_xdata()) >= 0)
    assert "ms" in ax.get_xlabel()


def test_latency_bad_kind_and_empty(run):
    with pytest.raises(ConfigurationError, match="kind"):
        plots.latency_distribution(run, kind="violin")
    with pytest.raises(EvaluationError):
        plots.latency_distribution(run, top_k=999)


def test_quality_vs_latency_draws_the_pareto_frontier(run):
    from llamaeval.metrics import pareto_frontier
    from llamaeval.report import summary_table

    ax = plots.quality_vs_latency(run, "ndcg@10")
    frontier_line = [line for line in ax.get_lines() if line.get_label() == "Pareto frontier"]
    assert len(frontier_line) == 1
    table = summary_table(run, ["ndcg@10"])
    front = pareto_frontier(table, "ndcg@10", "p50_s").sort_values("p50_s")
    assert np.allclose(frontier_line[0].get_xdata(), front["p50_s"] * 1000.0)
    assert np.allclose(frontier_line[0].get_ydata(), front["ndcg@10"])
    assert "ms" in ax.get_xlabel() and ax.get_ylabel() == "ndcg@10"
    # one scatter collection per mode, holding all of that mode's configurations
    assert sum(len(c.get_offsets()) for c in ax.collections) == len(table)


def test_per_query_difference_bars_are_b_minus_a(run, synthetic):
    a, b = {"mode": "fast", "top_k": 10}, {"mode": "advanced", "top_k": 10}
    ax = plots.per_query_difference(run, a, b, "ndcg@10")
    per_query = run.evaluate(["ndcg@10"], per_query=True)

    def side(cfg):
        sel = per_query[(per_query["mode"] == cfg["mode"]) & (per_query["top_k"] == cfg["top_k"])]
        return sel.set_index("query_id")["value"]

    expected = (side(b) - side(a)).sort_values(ascending=False)
    heights = [p.get_height() for p in ax.patches]
    assert np.allclose(heights, expected.to_numpy())
    assert len(heights) == len(synthetic.QUERY_IDS)
    assert "Δ ndcg@10" in ax.get_ylabel()


def test_per_query_difference_rejects_ambiguous_config(run):
    with pytest.raises(ConfigurationError, match="exactly 1"):
        plots.per_query_difference(run, {"mode": "fast"}, {"mode": "advanced", "top_k": 10})


def test_overview_and_png(run):
    fig = plots.overview(run)
    assert len(fig.axes) == 3
    png = plots.to_png(fig, dpi=40)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert plots.to_png(fig.axes[0], dpi=40)[:4] == b"\x89PNG"


def test_new_figures_use_pyplot_only_when_the_caller_does(run):
    import pathlib
    import subprocess
    import sys

    import matplotlib.pyplot as plt

    code = ("import sys; sys.path.insert(0, {path!r}); import synthetic_run; from llamaeval import plots; "
            "ax = plots.metric_vs_top_k(synthetic_run.frames()['results'].assign(**{{'ndcg@10': 0.5}})"
            ".drop_duplicates(['mode', 'top_k'])); "
            "plt = sys.modules.get('matplotlib.pyplot'); "
            "print(len(plt.get_fignums()) if plt else 0, type(ax.figure).__name__)")
    here = str(pathlib.Path(__file__).parent)
    out = subprocess.run([sys.executable, "-c", code.format(path=here)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "Figure"]  # a script without pyplot: a bare Figure, no global state

    ax = plots.metric_vs_top_k(run)
    assert ax.figure.number in plt.get_fignums()  # with pyplot in use (a notebook): shown and closable
