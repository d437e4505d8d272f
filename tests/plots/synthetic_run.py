"""A small, hand-checkable benchmark run shaped exactly like ``llamaeval.runner.BenchmarkRun``.

Used by the plots, widgets and report unit tests so they run in milliseconds
without a server. Frames follow CONTRACTS.md (runner section); when the real
``BenchmarkRun`` accepts frames, the run is a real one, else a duck-typed
stand-in with the same attributes and methods delegating to ``llamaeval.metrics``.

Design: 6 judged queries over 12 documents; query ``q{i}`` has relevant docs
``d{i}`` (grade 2) and ``d{i+6}`` (grade 1). Mode quality is ordered
fast < accurate < advanced by construction, latency the other way round.
The run uses share_k (one request per mode and query); fast's request for q4 failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

MODES = ("fast", "accurate", "advanced")
TOP_K = (1, 3, 5, 10)
QUERY_IDS = [f"q{i}" for i in range(6)]
DOC_IDS = [f"d{i}" for i in range(12)]
PIPELINE = "pipe-1"
# Mode -> (position of the grade-2 doc in the ranking, median latency in seconds)
_MODE_SHAPE = {"fast": (3, 0.004), "accurate": (1, 0.012), "advanced": (0, 0.030)}


def _ranking(mode: str, qi: int) -> list[str]:
    """A deterministic 10-doc ranking; better modes put the relevant doc higher."""
    pos, _ = _MODE_SHAPE[mode]
    if mode == "fast" and qi % 3 == 0:
        pos = 9  # fast misses some queries badly: gives per-query differences
    others = [d for d in DOC_IDS if d not in (f"d{qi}", f"d{qi + 6}")]
    ranking = others[:8]
    ranking.insert(min(pos, len(ranking)), f"d{qi}")
    ranking.insert(min(pos + 2, len(ranking)), f"d{qi + 6}")
    return ranking[:10]


def frames(seed: int = 0) -> dict[str, pd.DataFrame]:
    """results, requests, qrels, queries frames per CONTRACTS.md."""
    rng = np.random.default_rng(seed)
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    results, requests = [], []
    order = 0
    for mode in MODES:
        for qi, qid in enumerate(QUERY_IDS):
            ranking = _ranking(mode, qi)
            latency = float(_MODE_SHAPE[mode][1] * rng.lognormal(0.0, 0.25))
            # share_k as the runner does it: ONE request at the largest top_k per (mode, query);
            # every smaller top_k row is cut from it, carries shared=True and the request's order/latency.
            failed = mode == "fast" and qid == "q4"
            for k in TOP_K:
                requests.append({
                    "pipeline_id": PIPELINE, "mode": mode, "top_k": k, "query_id": qid,
                    "latency_s": latency, "server_total_s": latency * 0.8,
                    "server_embed_s": latency * 0.3, "status": 500 if failed else 200,
                    "error": "HTTP 500: boom" if failed else None,
                    "n_results": 0 if failed else k, "shared": k != max(TOP_K),
                    "started_at": t0 + timedelta(seconds=order * 0.05), "order": order,
                })
                if failed:
                    results.append({
                        "pipeline_id": PIPELINE, "mode": mode, "top_k": k, "query_id": qid,
                        "rank": pd.NA, "doc_id": pd.NA, "chunk_id": pd.NA, "file_id": pd.NA,
                        "score": np.nan, "latency_s": latency, "status": 500,
                        "error": "HTTP 500: boom", "shared": k != max(TOP_K),
                    })
                    continue
                for rank, doc in enumerate(ranking[:k], start=1):
                    results.append({
                        "pipeline_id": PIPELINE, "mode": mode, "top_k": k, "query_id": qid,
                        "rank": rank, "doc_id": doc, "chunk_id": f"c-{doc}-0", "file_id": f"f-{doc}",
                        "score": round(1.0 - 0.07 * rank, 4), "latency_s": latency,
                        "status": 200, "error": None, "shared": k != max(TOP_K),
                    })
            order += 1
    results = pd.DataFrame(results)
    results["rank"] = results["rank"].astype("Int64")
    qrels = pd.DataFrame(
        [{"query_id": q, "doc_id": f"d{i}", "relevance": 2} for i, q in enumerate(QUERY_IDS)]
        + [{"query_id": q, "doc_id": f"d{i + 6}", "relevance": 1} for i, q in enumerate(QUERY_IDS)]
    )
    queries = pd.DataFrame({"query_id": QUERY_IDS,
                            "text": [f"what is topic {i}?" for i in range(len(QUERY_IDS))]})
    return {"results": results, "requests": pd.DataFrame(requests), "qrels": qrels, "queries": queries}


def manifest() -> dict:
    return {
        "llamaeval_version": "0.1.0", "queryset": {"name": "synthetic", "split": "test", "hash": "abc123"},
        "pipelines": [PIPELINE], "modes": list(MODES), "top_k": list(TOP_K),
        "concurrency": 2, "share_k": True, "started_at": "2026-01-01T00:00:00+00:00",
        "retrieval_config": {"fast": {"fusion": "rrf"}},
    }


@dataclass
class FrameRun:
    """Duck-typed BenchmarkRun (only used if the real class cannot be built from frames)."""

    results: pd.DataFrame
    requests: pd.DataFrame
    qrels: pd.DataFrame
    queries: pd.DataFrame
    manifest: dict = field(default_factory=dict)

    def evaluate(self, metrics=("ndcg@10", "recall@20", "mrr", "map"), **kw):
        from llamaeval.metrics import evaluate
        return evaluate(self.results, self.qrels, list(metrics), **kw)

    def latency(self, **kw):
        from llamaeval.metrics import latency_stats
        return latency_stats(self.requests, **kw)


def make_run(seed: int = 0):
    """The synthetic run, as a real ``BenchmarkRun`` when the runner can hold these frames."""
    f = frames(seed)
    try:
        from llamaeval.runner import BenchmarkRun
        return BenchmarkRun(results=f["results"], requests=f["requests"], qrels=f["qrels"],
                            queries=f["queries"], manifest=manifest())
    except (ImportError, TypeError):
        return FrameRun(manifest=manifest(), **f)
