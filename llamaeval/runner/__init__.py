"""Benchmark runner: send a labeled query set through ``retrieve`` for every mode x top_k.

    run = benchmark(client, pipeline_id, queryset, modes=("fast", "accurate"), top_k=(5, 10),
                    out="runs/adi")          # resumable; saved as Parquet + JSON
    run.results, run.requests, run.manifest
    run.evaluate(["ndcg@10", "mrr"]); run.latency(); run.to_trec("runs/adi-trec")
"""

from llamaeval.runner._benchmark import abenchmark, benchmark
from llamaeval.runner._config import BenchmarkConfig
from llamaeval.runner._run import BenchmarkRun

__all__ = ["benchmark", "abenchmark", "BenchmarkConfig", "BenchmarkRun"]
