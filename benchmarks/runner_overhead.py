"""Runner overhead vs a bare httpx loop, and throughput at concurrency 1, 4, 16.

    .venv/bin/python benchmarks/runner_overhead.py [--repeats 3] [--out benchmarks/results/runner.md]

Starts a local server (EmbeddedServer, a subprocess) with the adi collection, then for
each concurrency sends the SAME requests (every judged adi query x fast/accurate/advanced,
top_k=10, in the runner's seeded order) twice per repeat, alternating which goes first:
  * bare:   an ``httpx.AsyncClient`` + ``asyncio.Semaphore`` posting the JSON bodies
            (at concurrency 1 a plain ``httpx.Client`` loop);
  * runner: ``llamaeval.runner.abenchmark`` (client, journal-free, warm-up 0, no progress bar),
            wall time of the whole call (pipeline/health look-ups and frame building included).
The ratio runner/bare is the price of the runner end to end. A second section replays one
canned response through ``httpx.MockTransport`` (no server) to isolate the runner's own
per-request cost in microseconds. Results go to a Markdown file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx

import llamaeval
from llamaeval import AsyncLlamaCloud, BenchmarkConfig, EmbeddedServer, LlamaCloud, ingest, load_queryset
from llamaeval.runner import abenchmark
from llamaeval.datasets import DocumentMapping
from llamaeval.runner._plan import build_plan, grid_cells
from llamaeval.runner._records import build_frames, record_key

from llamaeval._keys import MODES  # noqa: E402
TOP_K = 10
CONFIG = BenchmarkConfig(warmup=0, progress=False)


def bodies(qs, pipeline: str) -> list[tuple[str, bytes]]:
    text = dict(zip(qs.queries["query_id"], qs.queries["text"]))
    plan = build_plan([pipeline], MODES, [TOP_K], qs.judged_query_ids, share_k=False, seed=CONFIG.seed)
    return [(f"/api/v1/pipelines/{r.pipeline_id}/retrieve",
             json.dumps({"query": text[r.query_id], "mode": r.mode, "top_k": r.top_k}).encode()) for r in plan]


def bare_sync(base_url: str, key: str, reqs) -> float:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as http:
        t0 = time.perf_counter()
        for path, body in reqs:
            r = http.post(path, content=body)
            r.raise_for_status()
            r.json()
        return time.perf_counter() - t0


async def bare_async(base_url: str, key: str, reqs, concurrency: int, transport=None) -> float:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60, transport=transport) as http:
        async def one(path, body):
            async with sem:
                r = await http.post(path, content=body)
                r.raise_for_status()
                r.json()

        t0 = time.perf_counter()
        await asyncio.gather(*(one(p, b) for p, b in reqs))
        return time.perf_counter() - t0


async def runner(base_url: str, key: str, pipeline: str, qs, concurrency: int,
                 transport=None) -> tuple[float, object]:
    client = AsyncLlamaCloud(api_key=key, base_url=base_url, max_retries=0, transport=transport)
    async with client:
        t0 = time.perf_counter()
        run = await abenchmark(client, pipeline, qs, MODES, (TOP_K,), concurrency=concurrency, config=CONFIG)
        wall = time.perf_counter() - t0
    if len(run.failures):
        raise RuntimeError(f"runner saw failures: {run.failures[['status', 'error']].head()}")
    return wall, run


async def client_loop(base_url: str, key: str, pipeline: str, qs, concurrency: int, transport=None) -> float:
    """The llamaeval client alone: the same retrieve calls, results dropped."""
    text = dict(zip(qs.queries["query_id"], qs.queries["text"]))
    plan = build_plan([pipeline], MODES, [TOP_K], qs.judged_query_ids, share_k=False, seed=CONFIG.seed)
    sem = asyncio.Semaphore(concurrency)
    async with AsyncLlamaCloud(api_key=key, base_url=base_url, max_retries=0, transport=transport) as client:
        async def one(r):
            async with sem:
                await client.pipelines.retrieve(r.pipeline_id, text[r.query_id], mode=r.mode, top_k=r.top_k)

        t0 = time.perf_counter()
        await asyncio.gather(*(one(r) for r in plan))
        return time.perf_counter() - t0


def median(xs):
    return statistics.median(xs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "runner.md")
    args = ap.parse_args()

    qs = load_queryset("adi")
    rows, mock_rows = [], []
    with EmbeddedServer() as server:
        with LlamaCloud(api_key=server.api_key, base_url=server.base_url) as lc:
            pipeline = ingest(lc, qs, project="bench", pipeline="adi-runner", progress=False)
            sample = lc.pipelines.retrieve(pipeline, qs.queries["text"].iloc[0], mode="fast", top_k=TOP_K)
            server_version = lc.health().get("version")
        reqs = bodies(qs, pipeline)
        n = len(reqs)
        print(f"{n} requests per pass; warming up ...", file=sys.stderr)
        asyncio.run(bare_async(server.base_url, server.api_key, reqs, 4))
        asyncio.run(runner(server.base_url, server.api_key, pipeline, qs, 4))

        for c in args.concurrency:
            bare_t, client_t, run_t, lat_run = [], [], [], []
            for rep in range(args.repeats):
                # rotate who goes first so slow drift does not favour one
                order = ["bare", "client", "runner"]
                order = order[rep % 3:] + order[:rep % 3]
                for which in order:
                    if which == "bare":
                        if c == 1:
                            bare_t.append(bare_sync(server.base_url, server.api_key, reqs))
                        else:
                            bare_t.append(asyncio.run(bare_async(server.base_url, server.api_key, reqs, c)))
                    elif which == "client":
                        client_t.append(asyncio.run(client_loop(server.base_url, server.api_key, pipeline, qs, c)))
                    else:
                        wall, run = asyncio.run(runner(server.base_url, server.api_key, pipeline, qs, c))
                        run_t.append(wall)
                        lat_run.append(run.requests["latency_s"].median())
            b, cl, r = median(bare_t), median(client_t), median(run_t)
            # each repeat is a back-to-back group: medians of the paired ratios resist load drift
            ratios = sorted(rt / bt for rt, bt in zip(run_t, bare_t))
            over_client = sorted(rt / ct for rt, ct in zip(run_t, client_t))
            rows.append({"concurrency": c, "n": n, "bare_s": b, "client_s": cl, "runner_s": r,
                         "ratio": median(ratios), "ratio_lo": ratios[0], "ratio_hi": ratios[-1],
                         "over_client": median(over_client),
                         "bare_rps": n / b, "runner_rps": n / r, "runner_p50_ms": 1000 * median(lat_run)})
            print(rows[-1], file=sys.stderr)

    # The runner's own cost without a server: one canned real response for every request.
    canned_body = json.dumps(sample.raw).encode()
    timing = ",".join(f"{k};dur={v * 1000:.3f}" for k, v in sample.server_timing.items())

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            return httpx.Response(200, json={"status": "ok", "version": server_version})
        if request.method == "GET":
            return httpx.Response(200, json={"id": pipeline, "name": "adi-runner", "project_id": "p",
                                             "status": "active"})
        return httpx.Response(200, content=canned_body, headers={"Server-Timing": timing,
                                                                 "Content-Type": "application/json"})

    mock = httpx.MockTransport(handler)
    base = "http://mock.invalid"
    for c in (1, 16):
        bare_t, client_t, run_t = [], [], []
        for _ in range(max(args.repeats, 5)):
            bare_t.append(asyncio.run(bare_async(base, "k", reqs, c, transport=mock)))
            client_t.append(asyncio.run(client_loop(base, "k", pipeline, qs, c, transport=mock)))
            run_t.append(asyncio.run(runner(base, "k", pipeline, qs, c, transport=mock))[0])
        b, cl, r = median(bare_t), median(client_t), median(run_t)
        # the one-off part: building the frames from the finished records (chunk->document collapse)
        _, last = asyncio.run(runner(base, "k", pipeline, qs, c, transport=mock))
        cells = grid_cells([pipeline], MODES, [TOP_K], qs.judged_query_ids)
        records = {record_key(rec): rec for rec in last._records}
        t0 = time.perf_counter()
        for _ in range(5):
            build_frames(records, cells, DocumentMapping(), share_k=False)
        frames_s = (time.perf_counter() - t0) / 5
        mock_rows.append({"concurrency": c, "n": n, "bare_us": 1e6 * b / n, "client_us": 1e6 * cl / n,
                          "runner_us": 1e6 * r / n, "extra_us": 1e6 * (r - cl) / n, "frames_ms": 1e3 * frames_s,
                          "send_extra_us": 1e6 * (r - cl - frames_s) / n})
        print(mock_rows[-1], file=sys.stderr)

    write(args.out, rows, mock_rows, n, server_version, args.repeats)


def write(path: Path, rows, mock_rows, n, server_version, repeats) -> None:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Runner overhead and throughput",
        "",
        f"Measured {now} by `benchmarks/runner_overhead.py` on {platform.platform()}, "
        f"{os.cpu_count()} CPUs (shared with other jobs), Python {sys.version.split()[0]}, "
        f"llamaeval {llamaeval.__version__}, local server {server_version}.",
        f"Workload: adi, {n} requests per pass (35 judged queries x fast/accurate/advanced, top_k={TOP_K}), "
        f"the runner's seeded interleaved order; median of {repeats} back-to-back groups of passes "
        f"(bare httpx, the llamaeval client alone, the runner; rotating which goes first).",
        "",
        "## Against the local server (loopback, EmbeddedServer subprocess)",
        "",
        "| concurrency | bare httpx (s) | llamaeval client (s) | runner (s) | runner / bare (paired median, range) "
        "| runner / client | bare req/s | runner req/s | runner p50 latency (ms) | ratio expected from the isolated cost |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def isolated_ratio(r):
        """The ratio expected from the runner's isolated cost (mock section) alone."""
        m = min(mock_rows, key=lambda m: abs(m["concurrency"] - r["concurrency"]))
        return (r["bare_s"] + n * m["extra_us"] * 1e-6 + n * (m["client_us"] - m["bare_us"]) * 1e-6) / r["bare_s"]

    for r in rows:
        r["expected"] = isolated_ratio(r)
        lines.append(f"| {r['concurrency']} | {r['bare_s']:.3f} | {r['client_s']:.3f} | {r['runner_s']:.3f} | "
                     f"{r['ratio']:.2f} ({r['ratio_lo']:.2f}-{r['ratio_hi']:.2f}) | {r['over_client']:.2f} | "
                     f"{r['bare_rps']:.1f} | {r['runner_rps']:.1f} | {r['runner_p50_ms']:.2f} | {r['expected']:.3f} |")
    lines += [
        "",
        "Runner wall time covers the whole `abenchmark` call: pipeline + `/health` look-ups, sending, "
        "building the frames (chunk->document collapse). Bare = the same POST bodies, parsed JSON, nothing kept; "
        "at concurrency 1 a plain `httpx.Client` loop, otherwise `httpx.AsyncClient` + semaphore. "
        "Client = `AsyncLlamaCloud.pipelines.retrieve` for the same requests + semaphore, results dropped. "
        "The last column adds the client's and the runner's own cost measured without a server (next "
        "section) to the bare time: on a quiet machine the measured ratio should sit near it; the "
        "paired range shows how much the shared machine's load moves a single pass.",
        "",
        "## The runner's own cost (no server: one canned real response via httpx.MockTransport)",
        "",
        "| concurrency | bare httpx (µs/req) | llamaeval client (µs/req) | runner (µs/req) "
        "| runner on top of the client (µs/req) | of which one-off frame building (ms per run) "
        "| rest, per request (µs) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in mock_rows:
        lines.append(f"| {r['concurrency']} | {r['bare_us']:.0f} | {r['client_us']:.0f} | {r['runner_us']:.0f} "
                     f"| {r['extra_us']:.0f} | {r['frames_ms']:.0f} | {r['send_extra_us']:.0f} |")
    lines += ["", "Runner on top of the client = grid planning, records, the pipeline/`/health` look-ups and "
              "building the frames (chunk->document collapse), amortised over the requests."]
    lines += ["", "Numbers on a 2-core machine shared with other agents are noisy; rerun before quoting.", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
