"""Matplotlib figures of a benchmark run. Each function draws on ``ax`` (or a new
figure) and returns the Axes, so figures compose and tests can read them back.

Latency is drawn in milliseconds (the data are seconds; axis labels say so).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from llamaeval._errors import ConfigurationError, EvaluationError
from llamaeval._keys import CONFIG_KEY, MODES, natural_order
from llamaeval.metrics._frames import sort_configs
from llamaeval.report._summary import latency_column, quality_table, summary_table

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

_MODE_COLORS = {"fast": "#1f77b4", "accurate": "#ff7f0e", "advanced": "#2ca02c"}
_MARKERS = ("o", "s", "^", "D", "v", "P")


def _new_axes(ax: "Axes | None", size: tuple[float, float] = (6.4, 4.0)) -> "Axes":
    """``ax``, or the Axes of a new figure.

    When the caller uses pyplot (it is imported, as in a notebook), the figure is made
    through pyplot so Jupyter shows it and ``plt.show()`` works; otherwise it is a bare
    ``Figure``: no global state, no GUI backend, safe in threads (reports, CLI).
    """
    if ax is not None:
        return ax
    import sys

    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt

        return plt.subplots(figsize=size, layout="constrained")[1]
    from matplotlib.figure import Figure

    return Figure(figsize=size, layout="constrained").add_subplot()


def _color(mode: str, i: int) -> str:
    import matplotlib as mpl

    return _MODE_COLORS.get(mode) or mpl.rcParams["axes.prop_cycle"].by_key()["color"][i % 10]


def _mode_list(present: Sequence[str], modes: Sequence[str] | None) -> list[str]:
    """The configurations (``mode`` values) to draw: ``modes`` as given, else all in display order."""
    present = list(dict.fromkeys(present))
    if modes is None:
        return natural_order(present)
    unknown = [m for m in modes if m not in present]
    if unknown:
        raise ConfigurationError(f"mode(s) {unknown} not in this run; it has {present}")
    return list(modes)


def _legend_title(names: Sequence[str]) -> str:
    """"mode" when every configuration is a mode, else "configuration"."""
    return "mode" if all(n in MODES for n in names) else "configuration"


def _series_label(pipeline: str, mode: str, n_pipelines: int) -> str:
    return mode if n_pipelines <= 1 else f"{pipeline} · {mode}"


def _pipeline_names(run_or_table: Any, table: Any) -> dict[str, str]:
    """``{pipeline_id: name}``: the table's ``pipeline`` column, else the run's manifest, else short ids."""
    from llamaeval._display import pipeline_names, short_id

    if "pipeline" in getattr(table, "columns", ()) and "pipeline_id" in table.columns:
        return {str(i): str(n) for i, n in zip(table["pipeline_id"], table["pipeline"])}
    names = pipeline_names(getattr(run_or_table, "manifest", None))
    if "pipeline_id" in getattr(table, "columns", ()):
        for pid in table["pipeline_id"]:
            names.setdefault(str(pid), short_id(pid))
    return names


def _is_frame(obj: Any) -> bool:
    import pandas as pd

    return isinstance(obj, pd.DataFrame)


def metric_vs_top_k(run_or_table: Any, metric: str = "ndcg@10", *, modes: Sequence[str] | None = None,
                    ax: "Axes | None" = None) -> "Axes":
    """One line per mode or configuration (and pipeline): ``metric`` against the requested ``top_k``.

    ``run_or_table`` is a BenchmarkRun or an ``evaluate()`` table holding ``metric``.
    """
    table = run_or_table if _is_frame(run_or_table) else quality_table(run_or_table, [metric])
    if metric not in table.columns:
        raise ConfigurationError(f"metric {metric!r} not in table columns {list(table.columns)}")
    table = sort_configs(table)
    ax = _new_axes(ax)
    pipelines = list(dict.fromkeys(table["pipeline_id"])) if "pipeline_id" in table else [None]
    names = _pipeline_names(run_or_table, table)
    bands = f"{metric}_low" in table.columns and f"{metric}_high" in table.columns
    for p_i, pipeline in enumerate(pipelines):
        sub_p = table if pipeline is None else table[table["pipeline_id"] == pipeline]
        for m_i, mode in enumerate(_mode_list(sub_p["mode"], modes)):
            sub = sub_p[sub_p["mode"] == mode].sort_values("top_k")
            color = _color(mode, m_i)
            ax.plot(sub["top_k"], sub[metric], marker=_MARKERS[p_i % len(_MARKERS)],
                    color=color, linestyle="-" if p_i == 0 else "--",
                    label=_series_label(names.get(str(pipeline), str(pipeline)), mode, len(pipelines)))
            if bands:
                ax.fill_between(sub["top_k"].to_numpy(float), sub[f"{metric}_low"].to_numpy(float),
                                sub[f"{metric}_high"].to_numpy(float), color=color, alpha=0.12, linewidth=0)
    ks = sorted(set(int(k) for k in table["top_k"]))
    if len(ks) > 1 and ks[-1] / max(ks[0], 1) >= 8:
        ax.set_xscale("log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("top_k (results requested per query)")
    ax.set_ylabel(metric)
    title = _legend_title(list(table["mode"]))
    ax.set_title(f"{metric} by top_k and {title}" + ("\n(bands: 95% bootstrap CI over queries)" if bands else ""),
                 fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(title=title)
    return ax


def _requests(run_or_requests: Any) -> "pd.DataFrame":
    frame = run_or_requests if _is_frame(run_or_requests) else run_or_requests.requests
    if "latency_s" not in frame.columns:
        raise ConfigurationError("requests frame has no 'latency_s' column")
    return frame


def physical_requests(requests: "pd.DataFrame") -> "pd.DataFrame":
    """One row per request actually sent: drops rows cut from a larger-k response (``shared``)."""
    if "shared" not in requests.columns or requests.empty:
        return requests
    return requests[~requests["shared"].fillna(False).astype(bool)]


def latency_distribution(run_or_requests: Any, *, kind: str = "box", top_k: int | None = None,
                         modes: Sequence[str] | None = None, ax: "Axes | None" = None) -> "Axes":
    """Distribution of client latency per mode or configuration, in milliseconds: ``kind="box"`` or ``"ecdf"``.

    Only successful requests count, each request once (with ``share_k`` the rows of
    every top_k come from one request; see :func:`physical_requests`). ``top_k``
    restricts to the requests of one cutoff.
    """
    import numpy as np

    if kind not in ("box", "ecdf"):
        raise ConfigurationError(f"kind must be 'box' or 'ecdf', not {kind!r}")
    req = _requests(run_or_requests)
    if "status" in req.columns:
        req = req[req["status"] == 200]
    if top_k is not None:
        req = req[req["top_k"] == top_k]
    req = physical_requests(req)
    if req.empty:
        raise EvaluationError("no successful requests to draw")
    ax = _new_axes(ax)
    mode_names = _mode_list(req["mode"], modes)
    title = _legend_title(mode_names)
    data = [req.loc[req["mode"] == m, "latency_s"].to_numpy(dtype=float) * 1000.0 for m in mode_names]
    if kind == "box":
        bp = ax.boxplot(data, tick_labels=mode_names, showfliers=True, patch_artist=True)
        for i, (patch, mode) in enumerate(zip(bp["boxes"], mode_names)):
            patch.set_facecolor(_color(mode, i))
            patch.set_alpha(0.5)
        if max(len(m) for m in mode_names) > 10:  # long configuration names: slanted labels
            ax.tick_params(axis="x", labelrotation=30)
            for label in ax.get_xticklabels():
                label.set_horizontalalignment("right")
        ax.set_xlabel(title)
        ax.set_ylabel("latency per request (ms)")
    else:
        for i, (mode, values) in enumerate(zip(mode_names, data)):
            xs = np.sort(values)
            ys = np.arange(1, len(xs) + 1) / len(xs)
            ax.step(xs, ys, where="post", color=_color(mode, i), label=f"{mode} (n={len(xs)})")
        ax.set_xlabel("latency per request (ms)")
        ax.set_ylabel("fraction of requests ≤ latency")
        ax.set_ylim(0, 1.02)
        ax.legend(title=title)
    if len(data) and max(float(np.max(v)) for v in data if len(v)) / max(
            min(float(np.min(v)) for v in data if len(v)), 1e-9) > 20:
        from matplotlib.ticker import FuncFormatter

        axis = ax.yaxis if kind == "box" else ax.xaxis
        (ax.set_yscale if kind == "box" else ax.set_xscale)("log")
        axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        # label the 2x and 5x minor ticks only, so the axis stays readable
        axis.set_minor_formatter(FuncFormatter(lambda v, _pos: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
    where = f", top_k={top_k}" if top_k is not None else ""
    ax.set_title(f"Client latency by {title}{where}")
    ax.grid(True, alpha=0.3)
    return ax


def quality_vs_latency(run_or_table: Any, quality: str = "ndcg@10", cost: str = "p50_s", *,
                       ax: "Axes | None" = None, annotate: bool = True) -> "Axes":
    """Each configuration as a point (x: latency in ms, y: ``quality``), Pareto frontier as a line.

    The frontier comes from ``llamaeval.metrics.pareto_frontier`` (configurations no
    other one beats on both quality and cost).
    """
    from llamaeval.metrics import pareto_frontier

    table = run_or_table if _is_frame(run_or_table) else summary_table(run_or_table, [quality])
    cost = latency_column(table, cost)
    if quality not in table.columns:
        raise ConfigurationError(f"quality metric {quality!r} not in table columns {list(table.columns)}")
    table = sort_configs(table.dropna(subset=[quality, cost]))
    if table.empty:
        raise EvaluationError("no configuration has both quality and latency")
    ax = _new_axes(ax)
    for i, mode in enumerate(_mode_list(table["mode"], None)):
        sub = table[table["mode"] == mode]
        ax.scatter(sub[cost] * 1000.0, sub[quality], color=_color(mode, i), label=mode, s=36, zorder=3)
        if annotate and "top_k" in sub.columns:
            # configurations drawn on the same spot (e.g. share_k: one latency per mode) share a label
            spots: dict[tuple[float, float], list[int]] = {}
            for x, y, k in zip(sub[cost] * 1000.0, sub[quality], sub["top_k"]):
                spots.setdefault((round(float(x), 6), round(float(y), 4)), []).append(int(k))
            for (x, y), ks in spots.items():
                ax.annotate("k=" + ",".join(map(str, sorted(ks))), (x, y), textcoords="offset points",
                            xytext=(4, 3), fontsize=7)
    if "latency_top_k" in table.columns and (table["latency_top_k"] != table["top_k"]).any():
        ax.text(0.99, 0.01, "latency of smaller top_k shared with the largest (share_k)",
                transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="#666")
    front = pareto_frontier(table, quality=quality, cost=cost).sort_values(cost)
    ax.plot(front[cost] * 1000.0, front[quality], color="black", linestyle="--", linewidth=1.2,
            marker="x", label="Pareto frontier", zorder=4)
    label = cost.removesuffix("_s")
    ax.set_xlabel(f"latency {label} (ms)")
    ax.set_ylabel(quality)
    ax.set_title(f"{quality} vs latency ({label})")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return ax


def _config_label(cfg: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in cfg.items())


def _select(frame: "pd.DataFrame", cfg: dict) -> "pd.DataFrame":
    mask = None
    for key, value in cfg.items():
        if key not in frame.columns:
            raise ConfigurationError(f"unknown configuration key {key!r}; use {', '.join(CONFIG_KEY)}")
        m = frame[key] == value
        mask = m if mask is None else (mask & m)
    return frame[mask] if mask is not None else frame


def per_query_difference(run: Any, a: dict, b: dict, metric: str = "ndcg@10", *,
                         ax: "Axes | None" = None) -> "Axes":
    """Per-query ``metric(b) - metric(a)``, sorted, one bar per judged query.

    ``a`` and ``b`` pick configurations, e.g. ``{"mode": "fast", "top_k": 10}``;
    each must match exactly one (pipeline, mode, top_k).
    """
    per_query = run.evaluate([metric], per_query=True) if not _is_frame(run) else run
    per_query = per_query[per_query["metric"] == metric] if "metric" in per_query.columns else per_query
    sides = []
    for cfg in (a, b):
        if not isinstance(cfg, dict) or not cfg:
            raise ConfigurationError("a and b must be non-empty dicts like {'mode': 'fast', 'top_k': 10}")
        sub = _select(per_query, cfg)
        n_cfg = sub[[c for c in CONFIG_KEY if c in sub.columns]].drop_duplicates()
        if len(n_cfg) != 1:
            raise ConfigurationError(f"{_config_label(cfg)} matches {len(n_cfg)} configurations, need exactly 1")
        sides.append(sub.set_index("query_id")["value"])
    diff = (sides[1] - sides[0]).dropna().sort_values(ascending=False)
    if diff.empty:
        raise EvaluationError("the two configurations share no scored query")
    ax = _new_axes(ax, size=(max(6.4, 0.12 * len(diff)), 4.0))
    colors = ["#2ca02c" if d > 0 else ("#d62728" if d < 0 else "#7f7f7f") for d in diff]
    ax.bar(range(len(diff)), diff.to_numpy(), color=colors, width=0.85)
    ax.axhline(0.0, color="black", linewidth=0.8)
    wins, losses = int((diff > 0).sum()), int((diff < 0).sum())
    if "pipeline_id" in per_query.columns and per_query["pipeline_id"].nunique() == 1:
        a, b = ({k: v for k, v in cfg.items() if k != "pipeline_id"} for cfg in (a, b))  # shorter titles
    else:
        names = _pipeline_names(run, per_query)
        a, b = ({("pipeline" if k == "pipeline_id" else k): (names.get(str(v), v) if k == "pipeline_id" else v)
                 for k, v in cfg.items()} for cfg in (a, b))
    ax.set_xlabel(f"query (sorted by difference; {len(diff)} queries)")
    ax.set_ylabel(f"Δ {metric} (B − A)")
    ax.set_title(f"B: {_config_label(b)}  vs  A: {_config_label(a)}\n"
                 f"B better on {wins}, worse on {losses}; mean Δ {diff.mean():+.3f}", fontsize=9)
    if len(diff) <= 40:
        ax.set_xticks(range(len(diff)), list(diff.index), rotation=90, fontsize=7)
    else:
        ax.set_xticks([])
    ax.grid(True, axis="y", alpha=0.3)
    return ax


def overview(run: Any, metric: str = "ndcg@10") -> "Any":
    """A 1×3 figure: metric vs top_k, quality vs latency with the frontier, latency per mode or configuration."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 4.2), layout="constrained")
    axes = fig.subplots(1, 3)
    table = summary_table(run, [metric])
    metric_vs_top_k(table, metric, ax=axes[0])
    quality_vs_latency(table, metric, ax=axes[1])
    latency_distribution(run, kind="box", ax=axes[2])
    return fig


def to_png(fig_or_ax: Any, dpi: int = 110) -> bytes:
    """PNG bytes of a Figure (or of the Figure an Axes belongs to)."""
    import io

    fig = getattr(fig_or_ax, "figure", None) if not hasattr(fig_or_ax, "savefig") else fig_or_ax
    if fig is None:
        raise ConfigurationError("expected a matplotlib Figure or Axes")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
