"""Benchmark runner: send a labeled query set through ``retrieve`` for every configuration x top_k.

    run = benchmark(client, pipeline_id, queryset, modes=("fast", "accurate"), top_k=(5, 10),
                    out="runs/adi")          # resumable; saved as Parquet + JSON
    run = benchmark(client, pipeline_id, queryset, top_k=10,
                    params={"alpha": [0, 0.5, 1], "enable_reranking": [False, True]})  # 6 configurations
    run.results, run.requests, run.configurations, run.manifest
    run.evaluate(["ndcg@10", "mrr"]); run.latency(); run.to_trec("runs/adi-trec")

A configuration is a mode, a set of retrieve parameters, or both; its name fills the
``mode`` column of the run's frames (see :func:`benchmark`).
"""

from llamaeval.runner._benchmark import abenchmark, benchmark
from llamaeval.runner._config import BenchmarkConfig
from llamaeval.runner._run import BenchmarkRun

__all__ = ["benchmark", "abenchmark", "BenchmarkConfig", "BenchmarkRun"]
