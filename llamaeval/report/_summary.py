"""One tidy table per run: quality metrics joined with latency, one row per configuration."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from llamaeval._errors import ConfigurationError
from llamaeval._keys import CONFIG_KEY, DEFAULT_METRICS
from llamaeval.metrics._frames import sort_configs

if TYPE_CHECKING:
    import pandas as pd


def _keys(frame: "pd.DataFrame") -> list[str]:
    return [k for k in CONFIG_KEY if k in frame.columns]


def quality_table(run: Any, metrics: Sequence[str] = DEFAULT_METRICS, *, ci: float | None = 0.95) -> "pd.DataFrame":
    """``run.evaluate(metrics, ci=ci)`` sorted by configuration (one row per pipeline, mode, top_k):
    each metric with its bootstrap interval (``<metric>_low``/``_high``; none when ``ci`` is None)."""
    metrics = list(metrics)
    if not metrics:
        raise ConfigurationError("give at least one metric, e.g. 'ndcg@10'")
    return sort_configs(run.evaluate(metrics) if ci is None else run.evaluate(metrics, ci=ci))


def latency_table(run: Any) -> "pd.DataFrame":
    """``run.latency()`` (seconds) sorted by configuration."""
    return sort_configs(run.latency())


def latency_column(table: "pd.DataFrame", preferred: str = "p50_s") -> str:
    """The name of the median-latency column in a latency table (seconds)."""
    for name in (preferred, "p50_s", "p50", "median_s", "mean_s", "mean"):
        if name in table.columns:
            return name
    raise ConfigurationError(f"no latency column like {preferred!r} in {list(table.columns)}")


def summary_table(run: Any, metrics: Sequence[str] = DEFAULT_METRICS, *, ci: float | None = 0.95) -> "pd.DataFrame":
    """Quality metrics (with ``<metric>_low``/``_high`` bootstrap intervals) joined with latency
    statistics (seconds) per configuration, plus:

    - ``pipeline``: the pipeline's name (from the run's manifest; its short id when unknown);
    - ``recall@top_k``: recall at k = the configuration's own top_k (what a top_k can find);
    - ``latency_top_k``: the top_k of the request whose latency the row carries (with
      ``share_k`` smaller top_k are cut from the largest request and carry its latency).
    """
    import pandas as pd

    from llamaeval._display import pipeline_label, pipeline_names
    from llamaeval.metrics._relevance import recall_at_top_k

    quality = quality_table(run, metrics, ci=ci)
    latency = latency_table(run)
    keys = [k for k in _keys(quality) if k in latency.columns]
    extra = [c for c in latency.columns if c not in quality.columns or c in keys]
    table = quality.merge(latency[extra], on=keys, how="left")
    results, qrels = getattr(run, "results", None), getattr(run, "qrels", None)
    if "recall@top_k" not in table.columns and isinstance(results, pd.DataFrame) and "top_k" in results:
        recall = recall_at_top_k(results, qrels)
        on = [k for k in keys if k in recall.columns]
        table = table.merge(recall, on=on, how="left")
    if "pipeline_id" in table.columns:
        names = pipeline_names(getattr(run, "manifest", None))
        table.insert(list(table.columns).index("pipeline_id") + 1, "pipeline",
                     [pipeline_label(p, names) for p in table["pipeline_id"]])
    if "top_k" in table.columns and "n_shared" in table.columns:
        table["latency_top_k"] = _latency_top_k(table, getattr(run, "requests", None))
    return sort_configs(table)


def _latency_top_k(table: "pd.DataFrame", requests: Any) -> list[int]:
    """Per row: its own top_k, or (all its latency shared) the largest top_k sent for its mode."""
    import pandas as pd

    sent: dict[tuple[str, str], int] = {}
    if isinstance(requests, pd.DataFrame) and {"mode", "top_k", "shared"} <= set(requests.columns):
        real = requests[~requests["shared"].fillna(False).astype(bool)]
        group = [c for c in ("pipeline_id", "mode") if c in real.columns]
        for key, ks in real.groupby(group, sort=False)["top_k"]:
            key = key if isinstance(key, tuple) else (key,)
            sent[tuple(map(str, key))] = int(ks.max())
    out = []
    for row in table.to_dict("records"):
        own = int(row["top_k"])
        shared = row.get("n", 0) and row.get("n_shared", 0) >= row.get("n", 0)
        key = tuple(str(row[c]) for c in ("pipeline_id", "mode") if c in row)
        out.append(sent.get(key, own) if shared else own)
    return out


def parse_thresholds(specs: Sequence[str]) -> dict[str, float]:
    """``["ndcg@10=0.30", "mrr=0.5"]`` -> ``{"ndcg@10": 0.30, "mrr": 0.5}``; ConfigurationError if malformed."""
    out: dict[str, float] = {}
    for spec in specs:
        for part in str(spec).split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, value = part.partition("=")
            if not sep or not name.strip():
                raise ConfigurationError(f"quality gate {part!r} must look like METRIC=VALUE, e.g. ndcg@10=0.30")
            try:
                out[name.strip()] = float(value)
            except ValueError:
                raise ConfigurationError(f"quality gate {part!r}: {value!r} is not a number") from None
    return out


def check_thresholds(table: "pd.DataFrame", thresholds: dict[str, float]) -> list[str]:
    """Failures of a quality gate: the BEST configuration must reach each threshold.

    Returns human-readable failure lines (empty when the gate passes).
    """
    failures = []
    for metric, floor in thresholds.items():
        if metric not in table.columns:
            raise ConfigurationError(f"quality gate names {metric!r}, which was not computed")
        best = table[metric].max()
        if not best >= floor:
            failures.append(f"{metric}: best {best:.4f} < required {floor:.4f}")
    return failures
