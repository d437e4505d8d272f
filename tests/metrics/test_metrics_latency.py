"""latency_stats(): hand-checked statistics, exclusions, shared rows and seeded bootstrap CIs."""

import numpy as np
import pandas as pd
import pytest

from llamaeval import EvaluationError
from llamaeval.metrics import latency_stats

T0 = pd.Timestamp("2026-01-01T00:00:00Z")


def _req(mode, latency, start, status=200, error=None, shared=False, warmup=False, top_k=10, query=None):
    return {"pipeline_id": "p", "mode": mode, "top_k": top_k, "query_id": query or f"q{start}",
            "latency_s": latency, "server_total_s": latency / 2, "status": status, "error": error,
            "n_results": top_k, "shared": shared, "warmup": warmup,
            "started_at": T0 + pd.Timedelta(seconds=start), "order": start}


REQUESTS = pd.DataFrame(
    # fast: five good requests started at 0..4 s, one failure (5.0 s, must not count), one warm-up
    [_req("fast", v, i) for i, v in enumerate([0.1, 0.2, 0.3, 0.4, 1.0])]
    + [_req("fast", 5.0, 10, status=500, error="HTTP 500"), _req("fast", 9.0, -20, warmup=True)]
    # accurate with share_k: one request per query at top_k=50 (orders 20, 21), whose results
    # also answer top_k=10 (same order, shared=True, the top_k=50 request's latency), and one
    # top_k=10 request sent on its own (order 22, say after a resume)
    + [_req("accurate", 0.5, 20, top_k=50, query="a"),
       _req("accurate", 0.5, 20, shared=True, top_k=10, query="a"),
       _req("accurate", 0.7, 21, top_k=50, query="b"),
       _req("accurate", 0.7, 21, shared=True, top_k=10, query="b"),
       _req("accurate", 0.2, 22, shared=False, top_k=10, query="c")]
    # advanced: only a connection failure (status 0)
    + [_req("advanced", 0.05, 0, status=0, error="refused")]
)


@pytest.fixture(scope="module")
def table():
    return latency_stats(REQUESTS).set_index(["mode", "top_k"])


def test_hand_checked_statistics(table):
    fast = table.loc[("fast", 10)]
    # latencies 0.1 0.2 0.3 0.4 1.0: mean 2.0/5 = 0.4; percentiles by linear interpolation at
    # position q*(n-1): p50 -> 0.3; p90 -> 3.6 -> 0.4 + 0.6*0.6 = 0.76; p95 -> 0.88; p99 -> 0.976
    assert fast["mean_s"] == pytest.approx(0.4)
    assert [fast["p50_s"], fast["p90_s"], fast["p95_s"], fast["p99_s"], fast["max_s"]] == pytest.approx(
        [0.3, 0.76, 0.88, 0.976, 1.0])
    assert fast["throughput_rps"] == pytest.approx(1 / 0.4)
    # wall span: first start 0 s, last finish 4 s + 1.0 s = 5 s -> 5 requests / 5 s
    assert fast["wall_rps"] == pytest.approx(1.0)
    assert fast["server_mean_s"] == pytest.approx(0.2)
    assert (fast["n"], fast["n_failed"], fast["n_warmup"], fast["n_shared"]) == (5, 1, 1, 0)


def test_another_duration_column():
    fast = latency_stats(REQUESTS, column="server_total_s").set_index(["mode", "top_k"]).loc[("fast", 10)]
    assert fast["mean_s"] == pytest.approx(0.2) and fast["max_s"] == pytest.approx(0.5)  # server = latency / 2
    assert fast["wall_rps"] == pytest.approx(1.0)  # the wall span still uses the client's wall time
    with pytest.raises(EvaluationError, match="server_embed_s"):
        latency_stats(REQUESTS, column="server_embed_s")


def test_failures_only_give_nan_and_a_count(table):
    adv = table.loc[("advanced", 10)]
    assert adv["n"] == 0 and adv["n_failed"] == 1 and np.isnan(adv["p50_s"])


def test_shared_rows_are_included_or_excluded_explicitly(table):
    # top_k=50 sent both requests itself: no copies whatever the choice
    k50 = table.loc[("accurate", 50)]
    assert (k50["n"], k50["n_shared"]) == (2, 0) and k50["mean_s"] == pytest.approx(0.6)
    # top_k=10, included: copies 0.5 and 0.7 plus its own 0.2 -> mean 1.4/3
    k10 = table.loc[("accurate", 10)]
    assert (k10["n"], k10["n_shared"]) == (3, 2) and k10["mean_s"] == pytest.approx(1.4 / 3)
    excluded = latency_stats(REQUESTS, shared="exclude").set_index(["mode", "top_k"])
    assert excluded.loc[("accurate", 50), "n"] == 2  # the sending configuration keeps its rows
    k10 = excluded.loc[("accurate", 10)]
    assert (k10["n"], k10["n_shared"]) == (1, 2) and k10["mean_s"] == pytest.approx(0.2)
    assert np.isnan(k10["mean_s_low"])  # one request: no interval


def test_bootstrap_intervals_are_seeded_and_bracket_the_estimate():
    rng = np.random.default_rng(0)
    req = pd.DataFrame({"mode": "fast", "latency_s": rng.lognormal(-4, 0.5, 300)})
    a = latency_stats(req, seed=1).iloc[0]
    assert latency_stats(req, seed=1).iloc[0].equals(a)
    assert not latency_stats(req, seed=2).iloc[0].equals(a)
    for stat in ("mean_s", "p50_s", "p90_s", "p95_s", "throughput_rps"):
        assert a[f"{stat}_low"] <= a[stat] <= a[f"{stat}_high"], stat
    wide = latency_stats(req, confidence=0.99, seed=1).iloc[0]
    assert wide["mean_s_high"] - wide["mean_s_low"] > a["mean_s_high"] - a["mean_s_low"]
    constant = latency_stats(pd.DataFrame({"latency_s": [0.25] * 20})).iloc[0]
    assert constant["p90_s_low"] == constant["p90_s_high"] == 0.25


def test_bad_input():
    with pytest.raises(EvaluationError, match="empty"):
        latency_stats(REQUESTS.iloc[0:0])
    with pytest.raises(EvaluationError, match="latency_s"):
        latency_stats(REQUESTS.drop(columns="latency_s"))
    with pytest.raises(EvaluationError, match="shared"):
        latency_stats(REQUESTS, shared="maybe")
    with pytest.raises(EvaluationError, match="confidence"):
        latency_stats(REQUESTS, confidence=95)
