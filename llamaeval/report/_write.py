"""Self-contained HTML report and Markdown summary of a benchmark run (Jinja2 templates)."""

from __future__ import annotations

import base64
import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from llamaeval._errors import ConfigurationError, EvaluationError, LlamaEvalError
from llamaeval._keys import CONFIG_KEY, DEFAULT_METRICS, REQUEST_KEY
from llamaeval.metrics._frames import sort_configs
from llamaeval.report._summary import latency_column, summary_table

if TYPE_CHECKING:
    import pandas as pd

_LATENCY_SHOWN = ("p50_s", "p95_s", "mean_s")


def _env():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("llamaeval.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "html.j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def default_baseline(run: Any, metric: str = "ndcg@10") -> dict[str, Any]:
    """The first configuration in display order (the cheapest mode, else the first given) at the
    cutoff of ``metric`` (or the largest top_k): the usual reference."""
    configs = sort_configs(run.requests[list(CONFIG_KEY)].drop_duplicates())
    if configs.empty:
        raise EvaluationError("the run has no requests")
    first = configs.iloc[0]
    _, _, cut = metric.partition("@")
    ks = sorted({int(k) for k in configs["top_k"]})
    k = int(cut) if cut.isdigit() and int(cut) in ks else ks[-1]
    sub = configs[(configs["pipeline_id"] == first["pipeline_id"]) & (configs["top_k"] == k)]
    mode = sub.iloc[0]["mode"] if len(sub) else first["mode"]
    return {"pipeline_id": first["pipeline_id"], "mode": mode, "top_k": k}


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    try:
        import pandas as pd

        if pd.isna(value):
            return ""
    except (TypeError, ValueError):
        pass
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        return f"{value:.{digits}f}"
    return str(value)


def display_table(table: "pd.DataFrame", metrics: Sequence[str], *, primary: str | None = None) -> "pd.DataFrame":
    """Summary for humans, one row per configuration in natural order: the pipeline by name
    (when there are several), mode, top_k, the metrics (the ``primary`` one with its CI),
    ``recall@top_k``, queries, latency in milliseconds (``†`` where the value was measured by a
    larger top_k request, with ``share_k``), failed requests."""
    import pandas as pd

    cols = [c for c in CONFIG_KEY if c in table.columns]
    if "pipeline_id" in cols:
        cols.remove("pipeline_id")
        if table["pipeline_id"].nunique() > 1:
            cols.insert(0, "pipeline" if "pipeline" in table.columns else "pipeline_id")
    out = pd.DataFrame(table[cols]).copy()
    primary = primary or (metrics[0] if metrics else None)
    for m in metrics:
        if m not in table.columns:
            continue
        out[m] = table[m]
        if m == primary and f"{m}_low" in table.columns:
            out[f"{m} 95% CI"] = [f"{lo:.3f}–{hi:.3f}" if lo == lo else ""
                                  for lo, hi in zip(table[f"{m}_low"], table[f"{m}_high"])]
    if "recall@top_k" in table.columns and "recall@top_k" not in out.columns:
        out["recall@top_k"] = table["recall@top_k"]
    if "n_queries" in table.columns:
        out["queries"] = table["n_queries"]
    shared = _shared_rows(table)
    for name in _LATENCY_SHOWN:
        if name in table.columns:
            label = f"{name.removesuffix('_s')} ms"
            if shared.any():
                out[label] = [("" if v != v else f"{v * 1000:.1f}{'†' if sh else ''}")
                              for v, sh in zip(table[name], shared)]
            else:
                out[label] = table[name] * 1000.0
    if "n_failed" in table.columns:
        out["failed"] = table["n_failed"]
    out.attrs["shared_note"] = _shared_note(table, shared)
    return out


def _shared_rows(table: "pd.DataFrame") -> "Any":
    """Rows whose latency was measured by a larger top_k request (share_k)."""
    import numpy as np

    if "latency_top_k" in table.columns and "top_k" in table.columns:
        return (table["latency_top_k"].to_numpy() != table["top_k"].to_numpy())
    return np.zeros(len(table), dtype=bool)


def _shared_note(table: "pd.DataFrame", shared: Any) -> str:
    if not shared.any():
        return ""
    ks = sorted({int(k) for k in table.loc[shared, "latency_top_k"]})
    return ("† latency of the top_k=" + "/".join(map(str, ks)) + " request these results were cut from "
            "(share_k: one request per query at the largest top_k), not of a request at this top_k.")


def markdown_table(frame: "pd.DataFrame", digits: int = 4) -> str:
    """A GitHub-flavoured pipe table (floats with ``digits`` decimals)."""
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    sep = "|" + "|".join("---:" if frame[c].dtype.kind in "if" or str(c).endswith((" ms", "CI")) else "---"
                         for c in frame.columns) + "|"
    rows = []
    for rec in frame.itertuples(index=False):
        cells = []
        for col, value in zip(frame.columns, rec):
            d = 1 if str(col).endswith(" ms") else digits
            cells.append(_fmt(value, d).replace("|", "\\|"))
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join([header, sep, *rows])


def _html_table(frame: "pd.DataFrame", digits: int = 4) -> str:
    if frame is None or frame.empty:
        return "<p class='muted'>(none)</p>"
    shown = frame.copy()
    for col in shown.columns:
        d = 1 if str(col).endswith(" ms") else digits
        shown[col] = [_fmt(v, d) for v in shown[col]]
    return shown.to_html(index=False, escape=True, border=0, classes="tbl")


def _png_data_uri(fig: Any, dpi: int = 100) -> str:
    from llamaeval.plots import to_png

    return "data:image/png;base64," + base64.b64encode(to_png(fig, dpi=dpi)).decode("ascii")


def _manifest_rows(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for key, value in manifest.items():
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        if len(text) > 160:
            text = text[:157] + "…"
        rows.append((str(key), text))
    return rows


def _figures(run: Any, table: "pd.DataFrame", primary: str, baseline: dict, best: dict) -> list[dict[str, str]]:
    from matplotlib.figure import Figure

    from llamaeval import plots

    figs: list[dict[str, str]] = []

    def add(title: str, caption: str, draw: Any, size: tuple[float, float] = (7.0, 4.2)) -> None:
        fig = Figure(figsize=size, layout="constrained")
        try:
            draw(fig.add_subplot())
        except LlamaEvalError as exc:  # e.g. no measured latency: say so instead of failing the report
            figs.append({"title": title, "caption": f"not drawn: {exc}", "src": ""})
            return
        figs.append({"title": title, "caption": caption, "src": _png_data_uri(fig)})

    add(f"{primary} by top_k", f"{primary} (mean over judged queries) per requested top_k; one line per mode.",
        lambda ax: plots.metric_vs_top_k(table, primary, ax=ax))
    add("Quality vs latency", f"Each configuration's {primary} against its median client latency; the dashed "
        "line is the Pareto frontier (no configuration is both better and faster).",
        lambda ax: plots.quality_vs_latency(table, primary, ax=ax))
    add("Latency per mode", "Client wall time per measured request (shared larger-k responses counted once).",
        lambda ax: plots.latency_distribution(run, kind="box", ax=ax))
    add("Latency ECDF", "Fraction of requests answered within a latency, per mode.",
        lambda ax: plots.latency_distribution(run, kind="ecdf", ax=ax))
    if best != baseline:
        add("Per-query difference", f"Per-query {primary} of the best configuration minus the baseline.",
            lambda ax: plots.per_query_difference(run, baseline, best, primary, ax=ax), size=(9.0, 4.2))
    return figs


def stage_table(requests: "pd.DataFrame") -> "pd.DataFrame":
    """Mean milliseconds per server stage (Server-Timing) and client wall time, per pipeline and mode.

    Counts each request sent once (share_k rows collapsed) and successful requests only.
    """
    import pandas as pd

    from llamaeval.plots import physical_requests

    req = requests
    if "status" in req.columns:
        req = req[req["status"].between(200, 299)]
    req = physical_requests(req)
    stages = [c for c in req.columns if c.startswith("server_") and c.endswith("_s") and c != "server_total_s"]
    keys = [k for k in ("pipeline_id", "mode") if k in req.columns]
    if req.empty or not keys:
        return pd.DataFrame()
    cols = ["latency_s", *(["server_total_s"] if "server_total_s" in req.columns else []), *stages]
    means = req.groupby(keys, sort=False)[cols].mean() * 1000.0
    means = means.dropna(axis=1, how="all")
    means.columns = ["client ms" if c == "latency_s" else c.removeprefix("server_").removesuffix("_s") + " ms"
                     for c in means.columns]
    means.insert(0, "requests", req.groupby(keys, sort=False).size())
    out = sort_configs(means.reset_index())
    if "pipeline_id" in out.columns and out["pipeline_id"].nunique() == 1:
        out = out.drop(columns="pipeline_id")
    return out


def _best_config(table: "pd.DataFrame", metric: str) -> dict[str, Any]:
    row = table.sort_values(metric, ascending=False, kind="stable").iloc[0]
    return {k: (int(row[k]) if k == "top_k" else row[k]) for k in CONFIG_KEY if k in table}


_SIG_COLUMNS = ("mean_diff", "cohens_d", "wins", "losses", "ties", "p_ttest_adj", "p_permutation_adj", "mark")


def _significance_view(sig: "pd.DataFrame", primary: str, *, with_effect: bool = True,
                       names: dict[str, str] | None = None) -> "pd.DataFrame":
    """The readable columns of a ``metrics.compare`` table (config, metric, difference, p-values,
    mark); several pipelines are shown by name (``names``: id -> name)."""
    from llamaeval._display import pipeline_label

    cols = [c for c in CONFIG_KEY if c in sig.columns]
    if "pipeline_id" in cols and sig["pipeline_id"].nunique() == 1:
        cols.remove("pipeline_id")
    wanted = [c for c in _SIG_COLUMNS if with_effect or c not in ("cohens_d", "ties")]
    view = sig[cols + [c for c in [primary, *wanted] if c in sig.columns]]
    if "pipeline_id" in cols:
        view = view.assign(pipeline_id=[pipeline_label(p, names) for p in view["pipeline_id"]])
        view = view.rename(columns={"pipeline_id": "pipeline"})
    return view


def _manifest_for_display(value: Any, depth: int = 0) -> Any:
    """The manifest with long number lists (learned model weights) summarised, so the report
    stays readable; the full manifest is the run folder's manifest.json."""
    if isinstance(value, dict):
        return {k: _manifest_for_display(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        if len(value) > 8 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return f"[{len(value)} numbers]"
        return [_manifest_for_display(v, depth + 1) for v in value]
    return value


def _failure_note(run: Any) -> str:
    """The run's failed-request summary ("" when none failed), said before any score."""
    from llamaeval.runner._run import failure_summary

    requests = getattr(run, "requests", None)
    return (failure_summary(requests) or "") if requests is not None else ""


def _recommendation(run: Any, primary: str) -> tuple[Any, str]:
    """(Recommendation or None, note) for the report's first section."""
    recommend = getattr(run, "recommend", None)
    if recommend is None:
        return None, "not computed: the run has no recommend()"
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # failures are reported in their own section
            return recommend(primary), ""
    except LlamaEvalError as exc:
        return None, f"not computed: {exc}"


def _significance(run: Any, primary: str, baseline: dict) -> tuple["pd.DataFrame | None", str]:
    from llamaeval.metrics import compare

    try:
        sig = compare(run.results, run.qrels, baseline=baseline, metric=primary)
    except EvaluationError as exc:
        return None, f"not computed: {exc}"
    return sort_configs(sig), ""


def build_context(run: Any, *, metrics: Sequence[str] = DEFAULT_METRICS, primary: str | None = None,
                  baseline: dict | None = None, title: str | None = None,
                  gate: dict[str, float] | None = None) -> dict[str, Any]:
    """Everything the templates show, computed once (tables as DataFrames; figures are drawn by render_html)."""
    from llamaeval.metrics import pareto_frontier

    from llamaeval._display import pipeline_names

    metrics = list(dict.fromkeys(metrics))
    if not metrics:
        raise ConfigurationError("give at least one metric, e.g. 'ndcg@10'")
    primary = primary or metrics[0]
    if primary not in metrics:
        metrics.insert(0, primary)
    failure_note = _failure_note(run)
    table = summary_table(run, metrics)
    rec, rec_note = _recommendation(run, primary)
    display = display_table(table, metrics, primary=primary)
    baseline = baseline or default_baseline(run, primary)
    best = _best_config(table, primary)
    cost = latency_column(table)
    front = pareto_frontier(table.dropna(subset=[primary, cost]), quality=primary, cost=cost)
    sig, sig_note = _significance(run, primary, baseline)
    from llamaeval.plots import physical_requests

    sent = physical_requests(run.requests)  # share_k copies count once
    failures = sent[~sent["status"].between(200, 299)] if "status" in sent else None
    manifest = dict(getattr(run, "manifest", {}) or {})
    n_queries = int(table["n_queries"].max()) if "n_queries" in table and len(table) else 0
    gate_rows = []
    for metric, floor in (gate or {}).items():
        value = float(table[metric].max()) if metric in table else float("nan")
        gate_rows.append({"metric": metric, "required": floor, "best": value, "passed": value >= floor})
    qs = manifest.get("queryset")
    qs_name = qs.get("name") if isinstance(qs, dict) else qs
    return {
        "title": title or f"llamaeval benchmark{f': {qs_name}' if qs_name else ''}",
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "metrics": metrics,
        "primary": primary,
        "n_queries": n_queries,
        "n_configs": len(table),
        "n_requests": len(sent),
        "n_failed": 0 if failures is None else len(failures),
        "baseline": baseline,
        "best": best,
        "best_value": float(table[primary].max()),
        "table": table,
        "display": display,
        "frontier": display_table(sort_configs(front), [primary], primary=primary),
        "shared_note": display.attrs.get("shared_note", ""),
        "recommendation": rec,
        "recommendation_note": rec_note,
        "failure_note": failure_note,
        "names": pipeline_names(getattr(run, "manifest", None)),
        "significance": sig,
        "significance_note": sig_note,
        "failures": failures,
        "stages": stage_table(run.requests),
        "manifest": manifest,
        "gate": gate_rows,
        "_run": run,
    }


def _labeller(table: "pd.DataFrame", names: dict[str, str] | None = None) -> Any:
    """``config_label(cfg)`` for templates: ``mode · top_k=10``, the pipeline by name first when
    the run has several (``names``: id -> name)."""
    from llamaeval._display import config_label, pipeline_label

    single = "pipeline_id" not in table.columns or table["pipeline_id"].nunique() <= 1

    def label(cfg: dict[str, Any]) -> str:
        pipeline = None if single or "pipeline_id" not in cfg else pipeline_label(cfg["pipeline_id"], names)
        return config_label(cfg.get("mode"), cfg.get("top_k"), pipeline)

    return label


def render_html(context: dict[str, Any]) -> str:
    """The HTML report for a context from :func:`build_context` (figures drawn here)."""
    from llamaeval._display import pipeline_label

    ctx = dict(context)
    run = ctx.pop("_run")
    names = ctx["names"]
    figures = _figures(run, ctx["table"], ctx["primary"], ctx["baseline"], ctx["best"])
    failures = ctx["failures"]
    fail_cols = [c for c in (*REQUEST_KEY, "status", "error") if failures is not None
                 and c in failures.columns]
    failures_view = None
    if ctx["n_failed"]:
        failures_view = failures[fail_cols].head(50)
        if "pipeline_id" in failures_view:
            failures_view = failures_view.assign(
                pipeline_id=[pipeline_label(p, names) for p in failures_view["pipeline_id"]]
            ).rename(columns={"pipeline_id": "pipeline"})
    rec = ctx["recommendation"]
    return _env().get_template("report.html.j2").render(
        **{k: v for k, v in ctx.items() if k not in _FRAMES_IN_CONTEXT},
        figures=figures,
        recommendation_html=rec.html(max_rows=60) if rec is not None else "",
        summary_html=_html_table(ctx["display"]),
        frontier_html=_html_table(ctx["frontier"]),
        significance_html=_html_table(_significance_view(ctx["significance"], ctx["primary"], names=names))
        if ctx["significance"] is not None else "",
        failures_html=_html_table(failures_view) if failures_view is not None else "",
        stages_html=_html_table(ctx["stages"], digits=2) if len(ctx["stages"]) else "",
        manifest_rows=_manifest_rows(_manifest_for_display(ctx["manifest"])),
        manifest_json=json.dumps(_manifest_for_display(ctx["manifest"]), indent=2, sort_keys=True, default=str),
        config_label=_labeller(ctx["table"], names),
    )


_FRAMES_IN_CONTEXT = ("table", "display", "frontier", "significance", "failures", "stages", "recommendation")


def render_markdown(context: dict[str, Any]) -> str:
    """The Markdown summary (for CI logs and terminals) for a context from :func:`build_context`."""
    ctx = {k: v for k, v in context.items() if k != "_run"}
    sig = ctx["significance"]
    sig_md = ""
    if sig is not None and len(sig):
        sig_md = markdown_table(_significance_view(sig, ctx["primary"], with_effect=False, names=ctx["names"]))
    rec = ctx["recommendation"]
    return _env().get_template("summary.md.j2").render(
        **{k: v for k, v in ctx.items() if k not in _FRAMES_IN_CONTEXT},
        recommendation_text=str(rec) if rec is not None else "",
        summary_md=markdown_table(ctx["display"]),
        significance_md=sig_md,
        config_label=_labeller(ctx["table"], ctx["names"]),
    )


def write_report(run: Any, path: str | os.PathLike[str], *, metrics: Sequence[str] = DEFAULT_METRICS,
                 primary: str | None = None, baseline: dict | None = None, title: str | None = None,
                 gate: dict[str, float] | None = None, markdown: bool = True) -> Path:
    """Write a self-contained HTML report of ``run`` to ``path`` (figures embedded as PNG).

    Also writes the Markdown summary next to it (``<stem>.md``) unless ``markdown`` is
    False. ``primary`` (default: the first metric) drives the figures, the Pareto
    frontier and the significance tests against ``baseline`` (a configuration
    selector; default: the cheapest mode at the primary metric's cutoff).
    Returns the HTML path.
    """
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ConfigurationError(f"report path must end in .html, got {path.name!r}")
    with _failures_said_once():
        context = build_context(run, metrics=metrics, primary=primary, baseline=baseline, title=title, gate=gate)
        path.parent.mkdir(parents=True, exist_ok=True)
        html = render_html(context)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, path)
    if markdown:
        path.with_suffix(".md").write_text(render_markdown(context), encoding="utf-8")
    return path


def markdown_summary(run: Any, *, metrics: Sequence[str] = DEFAULT_METRICS, primary: str | None = None,
                     baseline: dict | None = None, gate: dict[str, float] | None = None) -> str:
    """A short Markdown summary of ``run``: the configuration table, best setting, significance, gate."""
    with _failures_said_once():
        return render_markdown(build_context(run, metrics=metrics, primary=primary, baseline=baseline, gate=gate))


def _failures_said_once() -> Any:
    """Silence the per-evaluation FailedRequestsWarning: the report states the failures first."""
    import contextlib
    import warnings

    from llamaeval.runner._run import FailedRequestsWarning

    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore", FailedRequestsWarning)
    return stack
