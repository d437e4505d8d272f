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


def display_table(table: "pd.DataFrame", metrics: Sequence[str]) -> "pd.DataFrame":
    """Summary for humans: configuration, metrics, n_queries, latency in milliseconds."""
    import pandas as pd

    cols = [c for c in CONFIG_KEY if c in table.columns]
    if "pipeline_id" in cols and table["pipeline_id"].nunique() == 1:
        cols.remove("pipeline_id")
    out = pd.DataFrame(table[cols + [m for m in metrics if m in table.columns]]).copy()
    if "n_queries" in table.columns:
        out["queries"] = table["n_queries"]
    for name in _LATENCY_SHOWN:
        if name in table.columns:
            out[f"{name.removesuffix('_s')} ms"] = table[name] * 1000.0
    if "n_failed" in table.columns:
        out["failed"] = table["n_failed"]
    return out


def markdown_table(frame: "pd.DataFrame", digits: int = 4) -> str:
    """A GitHub-flavoured pipe table (floats with ``digits`` decimals)."""
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    sep = "|" + "|".join("---:" if frame[c].dtype.kind in "if" else "---" for c in frame.columns) + "|"
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


def _significance_view(sig: "pd.DataFrame", primary: str, *, with_effect: bool = True) -> "pd.DataFrame":
    """The readable columns of a ``metrics.compare`` table (config, metric, difference, p-values, mark)."""
    cols = [c for c in CONFIG_KEY if c in sig.columns]
    if "pipeline_id" in cols and sig["pipeline_id"].nunique() == 1:
        cols.remove("pipeline_id")
    wanted = [c for c in _SIG_COLUMNS if with_effect or c not in ("cohens_d", "ties")]
    return sig[cols + [c for c in [primary, *wanted] if c in sig.columns]]


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

    metrics = list(dict.fromkeys(metrics))
    if not metrics:
        raise ConfigurationError("give at least one metric, e.g. 'ndcg@10'")
    primary = primary or metrics[0]
    if primary not in metrics:
        metrics.insert(0, primary)
    table = summary_table(run, metrics)
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
        "display": display_table(table, metrics),
        "frontier": display_table(sort_configs(front), [primary]),
        "significance": sig,
        "significance_note": sig_note,
        "failures": failures,
        "stages": stage_table(run.requests),
        "manifest": manifest,
        "gate": gate_rows,
        "_run": run,
    }


def _labeller(table: "pd.DataFrame") -> Any:
    """``config_label(cfg)`` for templates; leaves out pipeline_id when the run has one pipeline."""
    single = "pipeline_id" not in table.columns or table["pipeline_id"].nunique() <= 1

    def label(cfg: dict[str, Any]) -> str:
        return ", ".join(f"{k}={v}" for k, v in cfg.items() if not (single and k == "pipeline_id"))

    return label


def render_html(context: dict[str, Any]) -> str:
    """The HTML report for a context from :func:`build_context` (figures drawn here)."""
    ctx = dict(context)
    run = ctx.pop("_run")
    figures = _figures(run, ctx["table"], ctx["primary"], ctx["baseline"], ctx["best"])
    failures = ctx["failures"]
    fail_cols = [c for c in (*REQUEST_KEY, "status", "error") if failures is not None
                 and c in failures.columns]
    return _env().get_template("report.html.j2").render(
        **{k: v for k, v in ctx.items() if k not in ("table", "display", "frontier", "significance", "failures", "stages")},
        figures=figures,
        summary_html=_html_table(ctx["display"]),
        frontier_html=_html_table(ctx["frontier"]),
        significance_html=_html_table(_significance_view(ctx["significance"], ctx["primary"])) if ctx["significance"] is not None else "",
        failures_html=_html_table(failures[fail_cols].head(50)) if ctx["n_failed"] else "",
        stages_html=_html_table(ctx["stages"], digits=2) if len(ctx["stages"]) else "",
        manifest_rows=_manifest_rows(ctx["manifest"]),
        manifest_json=json.dumps(ctx["manifest"], indent=2, sort_keys=True, default=str),
        config_label=_labeller(ctx["table"]),
    )


def render_markdown(context: dict[str, Any]) -> str:
    """The Markdown summary (for CI logs and terminals) for a context from :func:`build_context`."""
    ctx = {k: v for k, v in context.items() if k != "_run"}
    sig = ctx["significance"]
    sig_md = ""
    if sig is not None and len(sig):
        sig_md = markdown_table(_significance_view(sig, ctx["primary"], with_effect=False))
    return _env().get_template("summary.md.j2").render(
        **{k: v for k, v in ctx.items()
           if k not in ("table", "display", "frontier", "significance", "failures", "stages")},
        summary_md=markdown_table(ctx["display"]),
        significance_md=sig_md,
        config_label=_labeller(ctx["table"]),
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
    return render_markdown(build_context(run, metrics=metrics, primary=primary, baseline=baseline, gate=gate))
