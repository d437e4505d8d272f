"""Metrics over runner output: relevance (ranx), latency, significance, trade-offs, per-query views.

Pure functions over DataFrames; nothing here talks to a server. Typical use::

    from llamaeval import metrics
    table = metrics.evaluate(run.results, run.qrels, ["ndcg@10", "recall@20", "mrr", "map"])
    lat = metrics.latency_stats(run.requests)
    sig = metrics.compare(run.results, run.qrels, baseline={"mode": "fast", "top_k": 10})
    cover = metrics.judged(run.results, pooled_qrels, k=10)   # Judged@10: share of the top 10 judged
    best = metrics.cheapest_within(metrics.summarize(run.results, run.qrels, run.requests),
                                   "ndcg@10", "p50_s", tolerance=0.01)
    verdict = metrics.gate(new_run, baseline_run, "ndcg@10", max_drop=0.01)   # regression gate (exit_code 0/3)

Conventions: nDCG uses linear gain (trec_eval), ``ndcg_burges`` exponential gain;
every judged query is scored (a query the configuration did not answer scores 0);
latency in seconds over successful requests. Bad input raises EvaluationError.
"""

from __future__ import annotations

from llamaeval._errors import IncomparableRunsError
from llamaeval.metrics._frames import CONFIG_COLUMNS
from llamaeval.metrics._gate import GateResult, gate
from llamaeval.metrics._judged import judged, judged_per_query
from llamaeval.metrics._latency import latency_stats
from llamaeval.metrics._measures import MEASURES, Measure, parse_measure
from llamaeval.metrics._per_query import hardest_queries, no_relevant, wins_losses
from llamaeval.metrics._relevance import DEFAULT_METRICS, evaluate
from llamaeval.metrics._significance import adjust_pvalues, cohens_d, compare, paired_t_test, permutation_test
from llamaeval.metrics._summary import summarize
from llamaeval.metrics._tradeoffs import cheapest_within, pareto_frontier

__all__ = [
    "CONFIG_COLUMNS", "DEFAULT_METRICS", "MEASURES", "Measure", "parse_measure",
    "evaluate", "latency_stats", "summarize",
    "compare", "paired_t_test", "permutation_test", "cohens_d", "adjust_pvalues",
    "pareto_frontier", "cheapest_within",
    "wins_losses", "hardest_queries", "no_relevant",
    "judged", "judged_per_query",
    "gate", "GateResult", "IncomparableRunsError",
]
