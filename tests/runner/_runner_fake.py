"""A small in-process fake of the LlamaCloud API for runner tests (httpx.MockTransport handler).

Responses are structurally the real ones (spec + CONTRACTS.md): retrieve returns
chunk results with ``metadata`` (doc_id, file_id, file_name, chunk_id, chunk_index,
pipeline_id, scores) and a ``Server-Timing`` header in milliseconds. Rankings are a
deterministic function of (pipeline, query, mode[, retrieve parameters]), so a smaller
top_k is a prefix of a larger one and two runs give identical results.

``recording_client`` answers ``pipelines.retrieve`` in Python instead, recording the exact
keyword arguments of every call (``mode=None`` and real LlamaCloud knobs included).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
from collections import Counter
from types import SimpleNamespace
from typing import Any, Callable

import httpx

FAKE_URL = "http://fake.test"
N_DOCS = 12
CHUNKS_PER_DOC = 3


def _score(*parts: str) -> float:
    digest = hashlib.sha256("|".join(parts).encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


class FakeCloud:
    """Handler for ``httpx.MockTransport``; counts retrieve calls per (mode, top_k, query text)."""

    def __init__(self, pipelines: tuple[str, ...] = ("pipe-a",), version: str = "fake-1.0") -> None:
        self.pipelines = set(pipelines)
        self.version = version
        self.calls: Counter[tuple[str, str, int, str]] = Counter()
        self.log: list[tuple[str, str, int, str]] = []
        self.extras: list[dict] = []  # body fields beyond query/mode/top_k, per retrieve call
        self._lock = threading.Lock()

    def ranking(self, pipeline_id: str, query: str, mode: str | None, params: dict | None = None) -> list[dict]:
        """Every chunk, best first; retrieve ``params`` (if any) change the order too."""
        salt = [json.dumps(params, sort_keys=True)] if params else []
        chunks = []
        for d in range(N_DOCS):
            for c in range(CHUNKS_PER_DOC):
                s = _score(pipeline_id, query, str(mode), *salt, str(d), str(c))
                chunks.append({
                    "text": f"doc {d} chunk {c}",
                    "score": round(s, 6),
                    "metadata": {
                        "doc_id": f"D{d}", "file_id": f"file-{d}", "file_name": f"D{d}.txt",
                        "chunk_id": f"chunk-{d}-{c}", "chunk_index": c, "pipeline_id": pipeline_id,
                        "start_char": 100 * c, "end_char": 100 * c + 99, "scores": {"bm25": s, "dense": s / 2},
                    },
                })
        chunks.sort(key=lambda r: (-r["score"], r["metadata"]["chunk_id"]))
        return chunks

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/health":
            return httpx.Response(200, json={"status": "ok", "version": self.version})
        if request.headers.get("authorization") != "Bearer test-key":
            return httpx.Response(401, json={"detail": "invalid API key"})
        m = re.fullmatch(r"/api/v1/pipelines/([^/]+)(/retrieve)?", path)
        if not m:
            return httpx.Response(404, json={"detail": f"no route {path}"})
        pid = m.group(1)
        if pid not in self.pipelines:
            return httpx.Response(404, json={"detail": f"pipeline {pid} not found"})
        if m.group(2) is None:
            return httpx.Response(200, json={
                "id": pid, "name": f"name-{pid}", "project_id": "proj-1", "status": "active",
                "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
                "retrieval_config": {"k1": 0.9, "b": 0.4, "fusion": "rrf"},
                "chunking_config": {"chunk_size": 256, "chunk_overlap": 32},
                "embedding_model": "fake-minilm", "num_files": N_DOCS, "num_chunks": N_DOCS * CHUNKS_PER_DOC,
            })
        body = json.loads(request.content)
        query, mode, top_k = body["query"], body.get("mode", "fast"), int(body.get("top_k", 10))
        if mode not in ("fast", "accurate", "advanced"):
            return httpx.Response(400, json={"detail": f"unknown mode {mode!r}"})
        with self._lock:
            self.calls[(pid, mode, top_k, query)] += 1
            self.log.append((pid, mode, top_k, query))
            self.extras.append({k: v for k, v in body.items() if k not in ("query", "mode", "top_k")})
        results = self.ranking(pid, query, mode)[:top_k]
        timing = "embed;dur=1.5, bm25;dur=0.25, fuse;dur=0.05, total;dur=2.0"
        return httpx.Response(200, json={"results": results, "mode": mode, "top_k": top_k,
                                         "retrieval_config": {"k1": 0.9}},
                              headers={"Server-Timing": timing})


def failing(handler: Callable[[httpx.Request], httpx.Response],
            should_fail: Callable[[dict], str | None]) -> Callable[[httpx.Request], httpx.Response]:
    """Wrap a handler: retrieve requests for which ``should_fail(body)`` returns
    "400"/"503" get that status, "connect" raises a connection error; others pass through."""

    def wrapped(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/retrieve"):
            how = should_fail(json.loads(request.content))
            if how == "connect":
                raise httpx.ConnectError("connection refused (injected)", request=request)
            if how is not None:
                return httpx.Response(int(how), json={"detail": f"injected {how}"})
        return handler(request)

    return wrapped


def make_async_client(handler, max_retries: int = 0):
    """An AsyncLlamaCloud on the fake; each response yields to the event loop once, as real I/O does,
    so concurrent requests interleave and cancellation lands mid-run."""
    from llamaeval import AsyncLlamaCloud

    async def yielding(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)
        return handler(request)

    return AsyncLlamaCloud(api_key="test-key", base_url=FAKE_URL, max_retries=max_retries,
                           transport=httpx.MockTransport(yielding))


class RecordingPipelines:
    """Stands in for ``client.pipelines``: ``retrieve`` records ``(pipeline_id, query, kwargs)``
    exactly as called and answers from ``rank(pipeline_id, query, mode, params)`` (default: the
    fake's ranking); everything else goes to the real namespace."""

    def __init__(self, inner: Any, fake: FakeCloud, rank: Callable[..., list[dict]] | None = None) -> None:
        self._inner = inner
        self._rank = rank or fake.ranking
        self.calls: list[tuple[str, str, dict]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def retrieve(self, pipeline_id: str, query: str, **kwargs: Any) -> SimpleNamespace:
        self.calls.append((pipeline_id, query, dict(kwargs)))
        await asyncio.sleep(0)
        params = {k: v for k, v in kwargs.items() if k not in ("mode", "top_k")}
        results = self._rank(pipeline_id, query, kwargs["mode"], params)[: kwargs["top_k"]]
        return SimpleNamespace(results=results, latency_s=0.001, status_code=200, attempts=1,
                               server_timing={"total": 0.001})


def recording_client(fake: FakeCloud, rank: Callable[..., list[dict]] | None = None):
    """``(client, recorder)``: an AsyncLlamaCloud on ``fake`` whose ``pipelines.retrieve`` records its calls."""
    client = make_async_client(fake)
    recorder = RecordingPipelines(client.pipelines, fake, rank)
    client.pipelines = recorder
    return client, recorder
