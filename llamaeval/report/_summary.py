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


def quality_table(run: Any, metrics: Sequence[str] = DEFAULT_METRICS) -> "pd.DataFrame":
    """``run.evaluate(metrics)`` sorted by configuration (one row per pipeline, mode, top_k)."""
    metrics = list(metrics)
    if not metrics:
        raise ConfigurationError("give at least one metric, e.g. 'ndcg@10'")
    return sort_configs(run.evaluate(metrics))


def latency_table(run: Any) -> "pd.DataFrame":
    """``run.latency()`` (seconds) sorted by configuration."""
    return sort_configs(run.latency())


def latency_column(table: "pd.DataFrame", preferred: str = "p50_s") -> str:
    """The name of the median-latency column in a latency table (seconds)."""
    for name in (preferred, "p50_s", "p50", "median_s", "mean_s", "mean"):
        if name in table.columns:
            return name
    raise ConfigurationError(f"no latency column like {preferred!r} in {list(table.columns)}")


def summary_table(run: Any, metrics: Sequence[str] = DEFAULT_METRICS) -> "pd.DataFrame":
    """Quality metrics joined with latency statistics (seconds) per configuration."""
    quality = quality_table(run, metrics)
    latency = latency_table(run)
    keys = [k for k in _keys(quality) if k in latency.columns]
    extra = [c for c in latency.columns if c not in quality.columns or c in keys]
    return sort_configs(quality.merge(latency[extra], on=keys, how="left"))


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
