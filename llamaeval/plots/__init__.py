"""Figures of a benchmark run (matplotlib). Every function returns the Axes it drew on.

    metric_vs_top_k        quality metric against top_k, one line per mode
    latency_distribution   client latency per mode, box plot or ECDF (ms)
    quality_vs_latency     configurations as points, with the Pareto frontier
    per_query_difference   per-query metric difference between two configurations
    overview               the first three side by side, as one Figure
    physical_requests      requests actually sent (shared top_k rows once)
    to_png                 PNG bytes of a Figure/Axes (for reports and widgets)
"""

from llamaeval.plots._figures import (
    latency_distribution,
    metric_vs_top_k,
    overview,
    physical_requests,
    per_query_difference,
    quality_vs_latency,
    to_png,
)

__all__ = [
    "metric_vs_top_k",
    "latency_distribution",
    "quality_vs_latency",
    "per_query_difference",
    "overview",
    "physical_requests",
    "to_png",
]
