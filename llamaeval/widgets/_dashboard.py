"""Benchmark dashboard: pick metric, cutoff and modes; the chart and the table follow."""

from __future__ import annotations

from typing import Any, Sequence

from llamaeval._errors import ConfigurationError, LlamaEvalError
from llamaeval._keys import MODES, natural_order
from llamaeval.metrics._frames import sort_configs
from llamaeval.report._summary import summary_table
from llamaeval.widgets._html import error_html, frame_html

METRIC_FAMILIES: tuple[str, ...] = ("ndcg", "recall", "precision", "mrr", "map", "hit_rate")


def _widgets():
    import ipywidgets

    return ipywidgets


class BenchmarkDashboard:
    """Controls (``metric``, ``cutoff``, ``modes``: the modes or configurations shown) driving
    ``chart`` (PNG) and ``table`` (HTML).

    ``widget`` is the ipywidgets box to display; the Jupyter repr displays it too.
    Quality tables are computed once per metric name (``metric@cutoff``) and cached.
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
        self._cache: dict[str, Any] = {}
        self.metric = w.Dropdown(options=list(metrics), value=metric, description="metric")
        self.cutoff = w.Dropdown(options=cutoffs, value=cutoff, description="cutoff @")
        label = "modes" if all(m in MODES for m in modes) else "configs"
        self.modes = w.SelectMultiple(options=modes, value=tuple(modes), description=label,
                                      rows=min(len(modes), 6))
        self.chart = w.Image(format="png", layout=w.Layout(max_width="100%"))
        self.table = w.HTML()
        self.status = w.HTML()
        for control in (self.metric, self.cutoff, self.modes):
            control.observe(self._on_change, names="value")
        self.widget = w.VBox([w.HBox([self.metric, self.cutoff, self.modes]), self.status,
                              self.chart, self.table])
        self.update()

    @property
    def metric_name(self) -> str:
        """The metric currently shown, e.g. ``"ndcg@10"``."""
        return f"{self.metric.value}@{self.cutoff.value}"

    def _table(self, name: str):
        if name not in self._cache:
            self._cache[name] = summary_table(self.run, [name])
        return self._cache[name]

    def _on_change(self, _change: dict) -> None:
        self.update()

    def update(self) -> None:
        """Recompute the chart and the table for the current control values."""
        from llamaeval import plots
        from matplotlib.figure import Figure

        name, modes = self.metric_name, list(self.modes.value)
        if not modes:
            noun = "mode" if self.modes.description == "modes" else "configuration"
            self.status.value = f"<p class='le-err'>select at least one {noun}</p>"
            self.table.value = ""
            self.chart.value = b""
            return
        try:
            table = self._table(name)
            table = sort_configs(table[table["mode"].isin(modes)])
            fig = Figure(figsize=(11, 3.8), layout="constrained")
            ax1, ax2 = fig.subplots(1, 2)
            plots.metric_vs_top_k(table, name, ax=ax1)
            plots.quality_vs_latency(table, name, ax=ax2)
            self.chart.value = plots.to_png(fig, dpi=80)
            self.table.value = frame_html(table)
            n = int(table["n_queries"].max()) if "n_queries" in table and len(table) else 0
            self.status.value = (f"<b>{name}</b> over {n} judged queries · {self.modes.description}: "
                                 f"{', '.join(modes)}")
        except LlamaEvalError as exc:
            self.status.value = error_html(exc)
            self.table.value = ""

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def dashboard(run: Any, *, metric: str = "ndcg", cutoff: int = 10) -> BenchmarkDashboard:
    """An interactive comparison of a BenchmarkRun's configurations (display it in Jupyter)."""
    return BenchmarkDashboard(run, metric=metric, cutoff=cutoff)
