"""Client overhead per ``retrieve``: llamaeval's clients vs a bare httpx loop, same server.

    .venv/bin/python benchmarks/client_overhead.py [--rounds 5] [--micro 2000] [--out benchmarks/results/client.md]

Live part: an EmbeddedServer (subprocess on loopback) holds the bundled ``adi``
corpus (82 documents, uploaded with ``files.upload_documents``). Every variant sends
the 35 adi queries (mode ``fast``, top_k 10) one at a time, ``--rounds`` times; for each
query every variant runs once, in a shuffled order, so load from other processes hits
all variants alike (paired samples):

* ``httpx`` — ``httpx.Client.post(url, json=body)`` + ``response.json()``
* ``LlamaCloud.retrieve`` — validation, retries wrapper, Server-Timing parsing (frame not built)
* ``LlamaCloud.retrieve + .frame`` — the same plus building the typed DataFrame
* ``httpx async`` / ``AsyncLlamaCloud.retrieve`` — the async equivalents, awaited in sequence

Per-request latency is the caller's wall time (``time.perf_counter``) around one call.
The ratio is median(client) / median(httpx). Micro part: the same comparison with an
``httpx.MockTransport`` returning a canned real response, so no server noise: the
difference is the client's own CPU cost per call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llamaeval.client import AsyncLlamaCloud, LlamaCloud  # noqa: E402

TOP_K = 10
MODE = "fast"


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "median": statistics.median(ordered),
        "p90": ordered[int(0.9 * (len(ordered) - 1))],
        "mean": statistics.fmean(ordered),
    }


def _setup(server, progress: bool) -> tuple[str, list[str]]:
    from llamaeval.datasets import load_queryset

    qs = load_queryset("adi")
    with LlamaCloud(api_key=server.api_key, base_url=server.base_url) as lc:
        project = lc.projects.create("client-bench")
        pipe = lc.pipelines.create("adi", project.id)
        lc.files.upload_documents(qs.corpus, project.id, pipe.id, progress=progress)
        lc.pipelines.sync(pipe.id)
        lc.pipelines.wait_for_sync(pipe.id, progress=progress)
    return pipe.id, qs.queries["text"].astype(str).tolist()


def _live(server, pipeline_id: str, queries: list[str], rounds: int, seed: int) -> dict[str, list[float]]:
    """Per query, every variant once in a shuffled order (paired samples under the same load)."""
    url = f"{server.base_url}/api/v1/pipelines/{pipeline_id}/retrieve"
    headers = {"Authorization": f"Bearer {server.api_key}"}
    rng = random.Random(seed)

    http = httpx.Client(timeout=60.0)
    lc = LlamaCloud(api_key=server.api_key, base_url=server.base_url)

    def bare(q: str) -> None:
        r = http.post(url, json={"query": q, "mode": MODE, "top_k": TOP_K}, headers=headers)
        r.raise_for_status()
        r.json()

    def client(q: str) -> None:
        lc.pipelines.retrieve(pipeline_id, q, mode=MODE, top_k=TOP_K)

    def client_frame(q: str) -> None:
        lc.pipelines.retrieve(pipeline_id, q, mode=MODE, top_k=TOP_K).frame  # noqa: B018 - build it

    variants = {"httpx": bare, "LlamaCloud.retrieve": client, "LlamaCloud.retrieve + .frame": client_frame}
    samples: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for round_ in range(rounds + 1):  # round 0 warms up connections and server caches
            for q in queries:
                for name in rng.sample(list(variants), len(variants)):
                    t0 = time.perf_counter()
                    variants[name](q)
                    if round_:
                        samples[name].append(time.perf_counter() - t0)
    finally:
        http.close()
        lc.close()

    async def async_part() -> dict[str, list[float]]:
        ahttp = httpx.AsyncClient(timeout=60.0)
        alc = AsyncLlamaCloud(api_key=server.api_key, base_url=server.base_url)
        out: dict[str, list[float]] = {"httpx async": [], "AsyncLlamaCloud.retrieve": []}
        try:
            for round_ in range(rounds + 1):
                for q in queries:
                    for name in rng.sample(list(out), 2):
                        t0 = time.perf_counter()
                        if name == "httpx async":
                            r = await ahttp.post(url, json={"query": q, "mode": MODE, "top_k": TOP_K},
                                                 headers=headers)
                            r.raise_for_status()
                            r.json()
                        else:
                            await alc.pipelines.retrieve(pipeline_id, q, mode=MODE, top_k=TOP_K)
                        if round_:
                            out[name].append(time.perf_counter() - t0)
        finally:
            await ahttp.aclose()
            await alc.aclose()
        return out

    samples.update(asyncio.run(async_part()))
    return samples


def _micro(server, pipeline_id: str, query: str, calls: int) -> dict[str, list[float]]:
    """The same comparison against a MockTransport replaying one real response: client CPU only."""
    with LlamaCloud(api_key=server.api_key, base_url=server.base_url) as lc:
        real = lc.pipelines.retrieve(pipeline_id, query, mode=MODE, top_k=TOP_K)
    body = json.dumps(real.raw).encode()
    timing = ", ".join(f"{k};dur={v * 1000:.3f}" for k, v in real.server_timing.items())

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "application/json",
                                                          "server-timing": timing})

    transport = httpx.MockTransport(handler)
    url = f"http://bench.local/api/v1/pipelines/{pipeline_id}/retrieve"
    http = httpx.Client(transport=transport)
    lc = LlamaCloud(api_key="bench-key-0000", base_url="http://bench.local", transport=transport)
    out: dict[str, list[float]] = {"httpx": [], "LlamaCloud.retrieve": [], "LlamaCloud.retrieve + .frame": []}
    try:
        for i in range(calls + 200):
            for name in out:
                t0 = time.perf_counter()
                if name == "httpx":
                    http.post(url, json={"query": query, "mode": MODE, "top_k": TOP_K},
                              headers={"Authorization": "Bearer bench-key-0000"}).json()
                else:
                    res = lc.pipelines.retrieve(pipeline_id, query, mode=MODE, top_k=TOP_K)
                    if name.endswith(".frame"):
                        res.frame  # noqa: B018
                if i >= 200:  # warm-up excluded
                    out[name].append(time.perf_counter() - t0)
    finally:
        http.close()
        lc.close()
    return out


def _paired(samples: list[float], base: list[float], seed: int = 0) -> tuple[float, float, float]:
    """Median of per-request ratios (variant / baseline, same query, same moment) with a 95% bootstrap CI."""
    ratios = [a / b for a, b in zip(samples, base, strict=True)]
    rng = random.Random(seed)
    boots = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(1000))
    return statistics.median(ratios), boots[25], boots[974]


def _table(samples: dict[str, list[float]], baseline: str, names: list[str]) -> list[str]:
    base = _summary(samples[baseline])
    lines = ["| variant | n | median ms | p90 ms | mean ms | ratio of medians | paired ratio [95% CI] "
             "| overhead µs (median) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in names:
        s = _summary(samples[name])
        mid, lo, hi = _paired(samples[name], samples[baseline])
        lines.append(f"| {name} | {s['n']} | {s['median'] * 1e3:.3f} | {s['p90'] * 1e3:.3f} | "
                     f"{s['mean'] * 1e3:.3f} | {s['median'] / base['median']:.3f} | "
                     f"{mid:.3f} [{lo:.3f}, {hi:.3f}] | {(s['median'] - base['median']) * 1e6:.0f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="passes over the 35 queries per variant")
    parser.add_argument("--micro", type=int, default=2000, help="calls per variant in the MockTransport part")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "client.md")
    args = parser.parse_args()

    from llamaeval.server import EmbeddedServer

    with EmbeddedServer() as server:
        pipeline_id, queries = _setup(server, progress=False)
        live = _live(server, pipeline_id, queries, args.rounds, args.seed)
        micro = _micro(server, pipeline_id, queries[0], args.micro)

    sync_names = ["httpx", "LlamaCloud.retrieve", "LlamaCloud.retrieve + .frame"]
    report = [
        "# Client overhead per `retrieve`",
        "",
        f"Generated by `benchmarks/client_overhead.py --rounds {args.rounds} --micro {args.micro}` on "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; Python {platform.python_version()}, "
        f"httpx {httpx.__version__}, {platform.machine()} with 2 cores shared with other jobs "
        f"(load average at the end: {os.getloadavg()[0]:.1f}).",
        "",
        f"Server: `EmbeddedServer` subprocess on loopback, bundled `adi` corpus (82 docs), "
        f"{len(queries)} queries, mode `{MODE}`, top_k {TOP_K}, requests sent one at a time; "
        "latency = caller wall time per call (`perf_counter`), seconds shown as ms.",
        "",
        "## Live server (sync)",
        "",
        *_table(live, "httpx", sync_names),
        "",
        "## Live server (async, awaited in sequence)",
        "",
        *_table(live, "httpx async", ["httpx async", "AsyncLlamaCloud.retrieve"]),
        "",
        "## Client CPU only (MockTransport replaying one real response)",
        "",
        *_table(micro, "httpx", sync_names),
        "",
        "Reading: `ratio of medians` = median(variant) / median(bare httpx); `paired ratio` = the",
        "median over requests of variant/httpx for the same query sent back to back (robust to load",
        "from other processes), with a bootstrap 95% CI; the overhead column is the difference of",
        "medians. `.frame` is built lazily, so callers that only need `raw`",
        "(the benchmark runner) do not pay for the DataFrame.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(report), encoding="utf-8")
    print("\n".join(report))


if __name__ == "__main__":
    main()
