"""Constructed benchmark runs whose true quality is known exactly.

Each query has one relevant document (grade 1). A configuration ranks it at a rank drawn from
a known distribution, so its nDCG@10 on a query is 1/log2(rank + 1), or 0 when the rank is
beyond 10 — and the expected nDCG@10 of every configuration is computable by enumeration.

Query difficulty is shared by all configurations (a query's shift s in {0, 1, 2, 3} pushes the
relevant document down for everyone), so configurations are correlated across queries as
real ones are; a configuration's own luck is uniform on {1, ..., 8} on top of it.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

SHIFTS = (0, 1, 2, 3)
LUCK = tuple(range(1, 9))


def gain(ranks: np.ndarray) -> np.ndarray:
    """nDCG@10 of one relevant document at ``ranks`` (0 or > 10: not retrieved)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    found = (ranks >= 1) & (ranks <= 10)
    return np.where(found, 1.0 / np.log2(np.where(found, ranks, 1) + 1), 0.0)


def true_mean(boost: int = 0) -> float:
    """The expected nDCG@10 of a configuration (``boost``: ranks moved up by that many places)."""
    ranks = [max(1, s + u - boost) for s, u in itertools.product(SHIFTS, LUCK)]
    return float(gain(np.array(ranks)).mean())


def draw_ranks(rng: np.random.Generator, n_configs: int, n_queries: int,
               boost: dict[int, int] | None = None) -> np.ndarray:
    """Ranks (configurations x queries) of each query's relevant document."""
    shift = rng.choice(SHIFTS, size=n_queries)
    ranks = shift[None, :] + rng.choice(LUCK, size=(n_configs, n_queries))
    for c, b in (boost or {}).items():
        ranks[c] = np.maximum(1, ranks[c] - b)
    return ranks


def make_run(ranks: np.ndarray, latency_s: list[float], *, names: list[str] | None = None,
             params: list[dict] | None = None, pipeline: tuple[str, str] = ("pipe-1", "adi"),
             query_ids: list[str] | None = None, top_k: int = 10):
    """A BenchmarkRun of ``ranks`` (configurations x queries): configuration ``c`` answers each
    query with 10 documents, the relevant ``d<query>`` at its rank (absent when > top_k), each
    request taking ``latency_s[c]`` seconds (x a small seeded jitter). ``params``: the retrieve
    parameters of each configuration (a parameters-only configuration), else modes ``names``."""
    from llamaeval.runner import BenchmarkRun

    n_conf, n_q = ranks.shape
    names = names or [f"cfg{c:02d}" for c in range(n_conf)]
    query_ids = query_ids or [f"q{i}" for i in range(n_q)]
    pid, pname = pipeline
    jitter = np.random.default_rng(7).lognormal(0, 0.05, size=(n_conf, n_q))
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    results, requests = [], []
    for c in range(n_conf):
        for i, q in enumerate(query_ids):
            lat = float(latency_s[c] * jitter[c, i])
            order = c * n_q + i
            requests.append({"pipeline_id": pid, "mode": names[c], "top_k": top_k, "query_id": q,
                             "latency_s": lat, "server_total_s": lat * 0.8, "status": 200, "error": None,
                             "n_results": top_k, "shared": False, "started_at": t0 + timedelta(seconds=order),
                             "order": order})
            docs = [f"x{q}-{j}" for j in range(top_k)]
            if 1 <= ranks[c, i] <= top_k:
                docs[int(ranks[c, i]) - 1] = f"d{q}"
            for r, d in enumerate(docs, start=1):
                results.append({"pipeline_id": pid, "mode": names[c], "top_k": top_k, "query_id": q, "rank": r,
                                "doc_id": d, "chunk_id": f"c-{d}", "file_id": f"f-{d}", "score": 1 - r / 100,
                                "latency_s": lat, "status": 200, "error": None, "shared": False})
    queries = pd.DataFrame({"query_id": query_ids, "text": [f"what about topic {q}?" for q in query_ids]})
    qrels = pd.DataFrame({"query_id": query_ids, "doc_id": [f"d{q}" for q in query_ids], "relevance": 1})
    configs = [{"name": n, "mode": None if params else n, "params": (params[c] if params else {})}
               for c, n in enumerate(names)]
    manifest = {
        "queryset": {"name": "constructed", "split": "test", "n_queries": n_q},
        "pipelines": [{"id": pid, "name": pname, "retrieval_config": {}, "num_files": 10, "num_chunks": 10}],
        "server": {"version": "0.1.0"}, "client": {"llamaeval": "0.1.0", "dialect": "llamacloud"},
        "parameters": {"top_k": [top_k], "retrieve_params": {}, "configurations": configs},
    }
    return BenchmarkRun(pd.DataFrame(results).astype({"rank": "Int64"}), pd.DataFrame(requests), qrels,
                        queries, manifest)
