"""Benchmark dashboard: the recommendation first; pick metric, cutoff and configurations;
the chart and a short table follow."""

from __future__ import annotations

import warnings
from typing import Any, Sequence

from llamaeval._display import STYLE, esc, frame_html, plural
from llamaeval._errors import ConfigurationError, LlamaEvalError
from llamaeval._keys import MODES, natural_order
from llamaeval.metrics._frames import sort_configs
from llamaeval.report._summary import summary_table
from llamaeval.widgets._html import error_html

METRIC_FAMILIES: tuple[str, ...] = ("ndcg", "recall", "precision", "mrr", "map", "hit_rate")

_HINT = ("<span class='le-muted' style='font-size:11px'>Ctrl/⌘-click to add or remove one, "
         "Shift-click for a range</span>")


def _widgets():
    import ipywidgets

    return ipywidgets


def short_table(table: Any, metric: str) -> Any:
    """The dashboard's table: configuration (pipeline by name when several, mode, top_k),
    ``metric`` with its 95% CI, ``recall@top_k``, p50/p95 in ms (``†`` = measured by the
    larger top_k request under share_k), failed requests."""
    import pandas as pd

    out = pd.DataFrame(index=table.index)
    if "pipeline_id" in table.columns and table["pipeline_id"].nunique() > 1:
        out["pipeline"] = table["pipeline"] if "pipeline" in table.columns else table["pipeline_id"]
    out["mode"] = table["mode"]
    out["top_k"] = table["top_k"]
    out[metric] = table[metric]
    if f"{metric}_low" in table.columns:
        out["95% CI"] = [f"{lo:.3f}–{hi:.3f}" if lo == lo else ""
                         for lo, hi in zip(table[f"{metric}_low"], table[f"{metric}_high"])]
    if "recall@top_k" in table.columns and metric != "recall@top_k":
        out["recall@top_k"] = table["recall@top_k"]
    shared = (table["latency_top_k"] != table["top_k"]) if "latency_top_k" in table.columns else None
    for stat in ("p50", "p95"):
        col = f"{stat}_s"
        if col in table.columns:
            out[f"{stat} ms"] = [("" if v != v else f"{v * 1000:.1f}{'†' if shared is not None and sh else ''}")
                                 for v, sh in zip(table[col], shared if shared is not None else [False] * len(table))]
    if "n_failed" in table.columns:
        out["failed"] = table["n_failed"].astype("Int64")
    return out.reset_index(drop=True)


class BenchmarkDashboard:
    """The recommendation (``recommendation``), controls (``metric``, ``cutoff``, ``modes``:
    the modes or configurations shown) and what follows them: ``chart`` (PNG) and ``table``
    (HTML: configuration, metric with CI, recall@top_k, p50/p95 ms, failures).

    ``widget`` is the ipywidgets box to display; the Jupyter repr displays it too.
    Tables are computed once per metric name (``metric@cutoff``) and cached; the
    recommendation follows the metric and the configurations selected.
    """

    def __init__(self, run: Any, *, metric: str = "ndcg", cutoff: int = 10,
                 metrics: Sequence[str] = METRIC_FAMILIES, cutoffs: Sequence[int] | None = None) -> None:
        w = _widgets()
        if metric not in metrics:
            raise ConfigurationError(f"metric {metric!r} not in {list(metrics)}")
        self.run = run
        modes = natural_order(run.requests["mode"]) if len(run.requests) else []
        if not modes:
            raise ConfigurationError("the run has no requests to show")
        ks = sorted({int(k) for k in run.requests["top_k"]} | {10})
        cutoffs = sorted({int(c) for c in (cutoffs or ks)})
        if cutoff not in cutoffs:
            cutoffs = sorted(set(cutoffs) | {cutoff})
        self._cache: dict[Any, Any] = {}
        self._failures = self._failure_note()
        narrow = {"description_width": "initial"}
        self.metric = w.Dropdown(options=list(metrics), value=metric, description="metric",
                                 style=narrow, layout=w.Layout(width="180px"))
        self.cutoff = w.Dropdown(options=cutoffs, value=cutoff, description="@ cutoff",
                                 style=narrow, layout=w.Layout(width="150px"))
        label = "modes" if all(m in MODES for m in modes) else "configs"
        self.modes = w.SelectMultiple(options=modes, value=tuple(modes), description=label,
                                      rows=min(len(modes), 6), style=narrow,
                                      layout=w.Layout(width="auto", min_width="220px", max_width="460px"))
        self.hint = w.HTML(_HINT)
        self.recommendation = w.HTML()
        self.chart = w.Image(format="png", layout=w.Layout(max_width="100%"))
        self.table = w.HTML()
        self.status = w.HTML()
        for control in (self.metric, self.cutoff, self.modes):
            control.observe(self._on_change, names="value")
        controls = w.HBox([self.metric, self.cutoff, w.VBox([self.modes, self.hint])],
                          layout=w.Layout(flex_flow="row wrap", align_items="flex-start"))
        self.widget = w.VBox([self.recommendation, controls, self.status, self.chart, self.table],
                             layout=w.Layout(max_width="1100px"))
        self.update()

    @property
    def metric_name(self) -> str:
        """The metric currently shown, e.g. ``"ndcg@10"``."""
        return f"{self.metric.value}@{self.cutoff.value}"

    def _failure_note(self) -> str:
        from llamaeval.runner._run import failure_summary

        message = failure_summary(self.run.requests)
        return f"<div class='le-warn'>{esc(message)}</div>" if message else ""

    def _table(self, name: str):
        if name not in self._cache:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # failed requests are said once, above
                self._cache[name] = summary_table(self.run, [name])
        return self._cache[name]

    def _recommend(self, name: str, modes: list[str]) -> str:
        key = ("rec", name, tuple(modes))
        if key not in self._cache:
            from llamaeval._display import pipeline_names
            from llamaeval.metrics._recommend import recommend

            run = self.run
            res, req = run.results, run.requests
            try:
                rec = recommend(res[res["mode"].isin(modes)], run.qrels, req[req["mode"].isin(modes)], name,
                                names=pipeline_names(getattr(run, "manifest", None)))
                self._cache[key] = _rec_box(rec)
            except LlamaEvalError as exc:
                self._cache[key] = f"<p class='le-muted'>no recommendation: {esc(exc)}</p>"
        return self._cache[key]

    def _on_change(self, _change: dict) -> None:
        self.update()

    def _hide_chart(self) -> None:
        self.chart.layout.display = "none"

    def update(self) -> None:
        """Recompute the recommendation, chart and table for the current control values."""
        from matplotlib.figure import Figure

        from llamaeval import plots

        name, modes = self.metric_name, list(self.modes.value)
        if not modes:
            noun = "mode" if self.modes.description == "modes" else "configuration"
            self.status.value = (f"<p class='le-err'>select at least one {noun} "
                                 f"(Ctrl/⌘-click an entry of the list)</p>")
            self.table.value = ""
            self.recommendation.value = STYLE + self._failures
            self._hide_chart()
            return
        try:
            table = self._table(name)
            table = sort_configs(table[table["mode"].isin(modes)])
            self.recommendation.value = STYLE + self._failures + self._recommend(name, modes)
            fig = Figure(figsize=(11, 3.6), layout="constrained")
            ax1, ax2 = fig.subplots(1, 2)
            plots.metric_vs_top_k(table, name, ax=ax1)
            plots.quality_vs_latency(table, name, ax=ax2)
            self.chart.value = plots.to_png(fig, dpi=80)
            self.chart.layout.display = None
            shown = short_table(table, name)
            note = ("<p class='le-muted'>† latency of the larger top_k request these rows were cut from "
                    "(share_k)</p>" if any("†" in str(v) for v in shown.get("p50 ms", [])) else "")
            self.table.value = STYLE + "<div class='le-card'>" + frame_html(shown, max_rows=60) + note + "</div>"
            n = int(table["n_queries"].max()) if "n_queries" in table and len(table) else 0
            noun = "mode" if self.modes.description == "modes" else "configuration"
            self.status.value = (f"<b>{esc(name)}</b> over {plural(n, 'judged query', 'judged queries')} · "
                                 f"{plural(len(modes), noun)}: {esc(', '.join(modes))}")
        except LlamaEvalError as exc:
            self.status.value = error_html(exc)
            self.table.value = ""
            self._hide_chart()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def _rec_box(rec: Any) -> str:
    """The recommendation sentence as a box, then its honest estimate (the same box as the report's)."""
    return f"<div class='le-card'>{rec.box_html()}</div>"


def dashboard(run: Any, *, metric: str = "ndcg", cutoff: int = 10) -> BenchmarkDashboard:
    """An interactive comparison of a BenchmarkRun's configurations (display it in Jupyter)."""
    return BenchmarkDashboard(run, metric=metric, cutoff=cutoff)
