"""benchmark(): send a query set through retrieve for every configuration x top_k, concurrently."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from llamaeval._errors import APIError, ConfigurationError, LlamaEvalError
from llamaeval._keys import MODES, REQUEST_KEY
from llamaeval.runner._clients import async_client, pipeline_info, server_info
from llamaeval.runner._config import BenchmarkConfig, _mapping_dict
from llamaeval.runner._configs import (
    Configuration, add_parameter_columns, build_configurations, parameter_keys,
)
from llamaeval.runner._journal import JOURNAL_NAME, Journal, read_journal
from llamaeval.runner._plan import (
    Key, PlannedRequest, build_plan, grid_cells, missing_requests, warmup_requests,
)
from llamaeval.runner._records import build_frames, hits_from_results, record_key
from llamaeval.runner._resume import adopt_journal, discard_run, identity, resolve_existing
from llamaeval.runner._run import MANIFEST_NAME, BenchmarkRun, load_records

DEFAULT_MODES = MODES
_RESERVED_COLUMNS = frozenset({*REQUEST_KEY, "rank", "score", "chunk_index"})


def benchmark(client: Any, pipeline_id: str | Sequence[str], queryset: Any,
              modes: str | Sequence[str] | None = None, top_k: int | Sequence[int] = (10,), *,
              params: Any = None, concurrency: int = 8, out: str | os.PathLike[str] | None = None,
              config: BenchmarkConfig | None = None, on_existing: str = "resume") -> BenchmarkRun:
    """Run every (pipeline, configuration, top_k, query) retrieve request and collect a BenchmarkRun.

    A configuration is a mode, a set of retrieve parameters, or a mode with a set:
    ``modes`` (default: fast, accurate, advanced; with ``params``: none) times the
    parameter sets of ``params``, which is one of

    - a grid: ``{"alpha": [0, 0.5, 1], "enable_reranking": [False, True]}`` (the cartesian
      product, first key slowest; cells named ``"alpha=0, enable_reranking=False"``);
    - named sets: ``{"hybrid": {"alpha": 0.5}, "sparse": {"alpha": 0}}``;
    - a list of sets, each named by its ``"name"`` or else by its items;
    - one flat dict of scalars (one set).

    A configuration's name (``"fast"``, ``"hybrid"``, ``"fast hybrid"``) is its value in
    the ``mode`` column of ``run.results`` / ``run.requests``; its parameters are columns
    there too, and in ``run.configurations``. Each request is
    ``retrieve(pipeline_id, query, mode=<mode or None>, top_k=k, **config.retrieve_params, **params)``.

    ``client`` is a ``LlamaCloud`` or ``AsyncLlamaCloud``; requests are sent
    asynchronously, at most ``concurrency`` at a time, in a seeded shuffled order
    that interleaves configurations and top_k. A failed request is recorded (status, error)
    and the run goes on. With ``out=folder`` every finished request is journaled
    at once, a re-run sends only the missing ones, and the finished run is saved there.
    When ``out`` already holds a run, ``on_existing`` says what to do: ``"resume"`` (default)
    continues it if this call asks for the same grid and refuses any other; ``"extend"``
    benchmarks the union of the saved grid and this one (only new requests are sent);
    ``"replace"`` discards the saved run (see :mod:`llamaeval.runner._resume`).

    Works in scripts and in notebooks: when an event loop is already running
    (Jupyter), the run happens on a worker thread with its own loop. In async code,
    ``await abenchmark(...)`` instead.
    """
    grid = _Grid(modes, top_k, params)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _said(asyncio.run(_benchmark(client, pipeline_id, queryset, grid, concurrency, out, config,
                                            on_existing=on_existing)))
    # An AsyncLlamaCloud made in the running loop may hold connections bound to it: the
    # worker loop uses a twin with the same settings instead.
    return _said(_run_in_thread(_benchmark(client, pipeline_id, queryset, grid, concurrency, out, config, twin=True,
                                           on_existing=on_existing)))


def _said(run: BenchmarkRun) -> BenchmarkRun:
    """Warn (FailedRequestsWarning, at the caller's line) when requests of the run failed:
    how many, the server's message, the likely cause."""
    import warnings

    from llamaeval.runner._run import FailedRequestsWarning, failure_summary

    message = failure_summary(run.requests)
    if message:
        warnings.warn(message, FailedRequestsWarning, stacklevel=3)
    return run


def _run_in_thread(coro: Any) -> Any:
    """Run ``coro`` on a fresh event loop in a worker thread (a loop already runs here, e.g. Jupyter).

    An interrupt of the calling thread (Ctrl-C, "interrupt kernel") cancels the run in
    the worker, so finished requests stay journaled and nothing keeps running behind.
    """
    loop = asyncio.new_event_loop()
    task = loop.create_task(coro)
    outcome: dict[str, Any] = {}
    finished = threading.Event()  # not Thread.join: an interrupted join can wrongly report the thread done

    def target() -> None:
        asyncio.set_event_loop(loop)
        try:
            outcome["value"] = loop.run_until_complete(task)
        except BaseException as exc:  # handed to the calling thread
            outcome["error"] = exc
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                finished.set()

    thread = threading.Thread(target=target, name="llamaeval-benchmark", daemon=True)
    thread.start()
    try:
        while not finished.wait(0.05):
            pass
    except BaseException:
        loop.call_soon_threadsafe(task.cancel)
        finished.wait()
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


async def abenchmark(client: Any, pipeline_id: str | Sequence[str], queryset: Any,
                     modes: str | Sequence[str] | None = None, top_k: int | Sequence[int] = (10,), *,
                     params: Any = None, concurrency: int = 8, out: str | os.PathLike[str] | None = None,
                     config: BenchmarkConfig | None = None, on_existing: str = "resume") -> BenchmarkRun:
    """The async form of :func:`benchmark` (same arguments, same result)."""
    return _said(await _benchmark(client, pipeline_id, queryset, _Grid(modes, top_k, params), concurrency, out,
                                  config, on_existing=on_existing))


class _Grid:
    """The checked grid arguments: the modes given, the configurations, the top_k values."""

    def __init__(self, modes: Any, top_k: Any, params: Any) -> None:
        self.modes = _as_str_list(modes, "modes") if modes is not None else None
        self.ks = _as_k_list(top_k)
        self.with_params = params is not None
        self.configs = build_configurations(
            self.modes if self.modes is not None or self.with_params else list(DEFAULT_MODES), params)
        self.names = [c.name for c in self.configs]


async def _benchmark(client: Any, pipeline_id: str | Sequence[str], queryset: Any, grid: _Grid,
                     concurrency: int, out: str | os.PathLike[str] | None,
                     config: BenchmarkConfig | None, *, twin: bool = False,
                     on_existing: str = "resume") -> BenchmarkRun:
    cfg = config if config is not None else BenchmarkConfig()
    if not isinstance(cfg, BenchmarkConfig):
        raise ConfigurationError(f"config must be a BenchmarkConfig, got {type(cfg).__name__}")
    pipelines = _as_str_list(pipeline_id, "pipeline_id")
    names, ks = grid.names, grid.ks
    both = sorted(set(cfg.retrieve_params) & set(parameter_keys(grid.configs)))
    if both:
        raise ConfigurationError(f"{both} set both in config.retrieve_params and in params: set each once")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigurationError(f"concurrency must be an int >= 1, got {concurrency!r}")
    mapping = _resolve_mapping(cfg.mapping)
    queries, qrels = _select_queries(queryset, cfg.queries)
    query_ids = list(queries["query_id"])
    fingerprint = {
        "queryset": {"name": getattr(queryset, "name", None), "split": getattr(queryset, "split", None),
                     "content_hash": queryset.content_hash()},
        "retrieve_params": _json_params(cfg.retrieve_params),
        "mapping": _mapping_dict(mapping),
        "share_k": bool(cfg.share_k),
    }
    folder = Path(out) if out is not None else None
    decision = resolve_existing(folder, grid.configs, ks, pipelines, on_existing, fingerprint=fingerprint)
    if decision.action == "replace":
        discard_run(folder)
    grid.configs, grid.ks = decision.configurations, decision.top_k
    names, ks, pipelines = [c.name for c in grid.configs], grid.ks, decision.pipelines or pipelines
    grid.names = names
    if grid.with_params or any(c.mode != c.name or c.params for c in grid.configs):
        # A configuration's name must mean the same request in every session; runs of modes
        # alone keep the fingerprint they always had.
        fingerprint["configurations"] = [c.to_dict() for c in grid.configs]
    if decision.action in ("resume", "extend"):
        adopt_journal(folder, fingerprint)
    records, previous_manifest = _load_previous(folder, fingerprint)

    cells = grid_cells(pipelines, names, ks, query_ids)
    plan = build_plan(pipelines, names, ks, query_ids, share_k=cfg.share_k, seed=cfg.seed)
    done = {k: r for k, r in records.items() if not cfg.retry_failed or _ok(r["status"])}
    todo = missing_requests(plan, cells, done, share_k=cfg.share_k)
    warm = warmup_requests(pipelines, names, ks, query_ids, cfg.warmup, cfg.seed) if todo else []

    session: dict[str, Any] = {"started_at": _now_iso(), "sent": 0, "warmup_sent": 0}
    async with async_client(client, twin=twin) as aclient:
        pipes = [await pipeline_info(aclient, p) for p in pipelines]
        server = await server_info(aclient)
        session["dialect"] = getattr(aclient, "dialect", None)
        sender = _Sender(aclient, dict(zip(query_ids, queries["text"])), dict(cfg.retrieve_params),
                         {c.name: c for c in grid.configs}, mapping, concurrency, cfg.rate_limit)
        journal = Journal(folder / JOURNAL_NAME, fingerprint) if folder is not None and todo else None
        with journal if journal is not None else contextlib.nullcontext():
            warmed: list[dict[str, Any]] = []
            session["warmup_sent"] = await sender.run(warm, warmed.append, progress=False)
            _preflight(pipes, warmed)

            def finished(rec: dict[str, Any]) -> None:
                records[record_key(rec)] = rec
                if journal is not None:
                    journal.append(rec)

            # The bar counts the whole plan, so a resumed run starts where the last one stopped.
            session["sent"] = await sender.run(todo, finished, progress=cfg.progress,
                                               already_done=len(plan) - len(todo))
    session["finished_at"] = _now_iso()

    requests, results = build_frames(records, cells, mapping, share_k=cfg.share_k)
    requests = add_parameter_columns(requests, grid.configs)
    results = add_parameter_columns(results, grid.configs)
    manifest = _manifest(queryset, queries, qrels, pipes, server, client, grid, concurrency, cfg,
                         fingerprint, session, previous_manifest, requests, list(records.values()))
    run = BenchmarkRun(results, requests, qrels, queries, manifest, list(records.values()))
    manifest["identity"] = run.identity  # what was measured, by content hash (the gate compares it)
    if folder is not None:
        run.save(folder)
        (folder / JOURNAL_NAME).unlink(missing_ok=True)
    return run


def _preflight(pipes: list[dict[str, Any]], warmed: list[dict[str, Any]]) -> None:
    """Refuse to benchmark a pipeline that holds nothing searchable: the server reports no
    chunks, or every warm-up request to it answered successfully with no result."""
    from llamaeval._errors import EmptyPipelineError

    for info in pipes:
        pid = info["id"]
        if info.get("num_chunks") == 0:
            raise EmptyPipelineError(f"pipeline {pid} reports 0 chunks: ingest and sync it before benchmarking")
        answered = [r for r in warmed if r["pipeline_id"] == pid and _ok(r["status"])]
        if answered and not any(r["hits"] for r in answered):
            raise EmptyPipelineError(f"pipeline {pid} answered all {len(answered)} warm-up queries with no result: "
                                     "its index is empty (check lc.pipelines.check_ready)")


def _resolve_mapping(mapping: Any) -> Any:
    """The configured DocumentMapping (default: metadata key ``doc_id``, else the file stem)."""
    if mapping is None:
        from llamaeval.datasets import DocumentMapping

        return DocumentMapping()
    key = getattr(mapping, "metadata_key", None)
    if not callable(getattr(mapping, "collapse", None)) or not isinstance(key, str):
        raise ConfigurationError("config.mapping must be a llamaeval.DocumentMapping")
    if key in _RESERVED_COLUMNS:
        raise ConfigurationError(f"mapping.metadata_key {key!r} clashes with a results column")
    return mapping


class _RateLimiter:
    """Spaces request starts at least 1/rate seconds apart (monotonic clock)."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
        if start > now:
            await asyncio.sleep(start - now)


class _Sender:
    """Sends planned requests with bounded concurrency and turns each into a record."""

    def __init__(self, aclient: Any, query_text: dict[str, str], params: dict[str, Any],
                 configs: dict[str, Configuration], mapping: Any, concurrency: int,
                 rate_limit: float | None) -> None:
        self._client = aclient
        self._text = query_text
        self._params = params
        self._configs = configs
        self._mapping = mapping
        self._concurrency = concurrency
        self._limiter = _RateLimiter(rate_limit) if rate_limit else None

    async def run(self, requests: list[PlannedRequest], on_done: Any, *, progress: bool,
                  already_done: int = 0) -> int:
        """Send all ``requests`` (in order, ``concurrency`` at a time); returns how many were sent.

        On cancellation or an unexpected exception the in-flight requests are
        cancelled and the exception propagates; finished ones were already passed to ``on_done``.
        """
        if not requests:
            return 0
        queue: asyncio.Queue[PlannedRequest] = asyncio.Queue()
        for r in requests:
            queue.put_nowait(r)
        bar = _progress_bar(len(requests) + already_done, already_done) if progress else None
        sent = 0

        async def worker() -> None:
            nonlocal sent
            while True:
                try:
                    req = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                if self._limiter is not None:
                    await self._limiter.wait()
                sent += 1
                rec = await self.send(req)
                if on_done is not None:
                    on_done(rec)
                if bar is not None:
                    bar.update(1)

        tasks = [asyncio.create_task(worker()) for _ in range(min(self._concurrency, len(requests)))]
        try:
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                if t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if bar is not None:
                bar.close()
        return sent

    async def send(self, req: PlannedRequest) -> dict[str, Any]:
        """One retrieve call -> record; errors from the API or the connection are recorded."""
        conf = self._configs[req.mode]
        record: dict[str, Any] = {
            "pipeline_id": req.pipeline_id, "mode": req.mode, "top_k": req.top_k,
            "query_id": req.query_id, "shared": req.shared, "order": req.order,
            "started_at": _now_iso(),
        }
        t0 = time.perf_counter()
        try:
            result = await self._client.pipelines.retrieve(
                req.pipeline_id, self._text[req.query_id], **conf.retrieve_arguments(req.top_k, self._params))
        except (LlamaEvalError, httpx.HTTPError) as exc:
            elapsed = time.perf_counter() - t0
            status = exc.status_code if isinstance(exc, APIError) and exc.status_code is not None else 0
            record |= {"latency_s": elapsed, "status": int(status),
                       "error": f"{type(exc).__name__}: {exc}", "server_timing": {}, "hits": []}
            return record
        elapsed = time.perf_counter() - t0
        latency = getattr(result, "latency_s", None)
        record |= {
            "latency_s": float(latency) if latency is not None else elapsed,
            "status": int(getattr(result, "status_code", 200) or 200),
            "attempts": int(getattr(result, "attempts", 1) or 1),
            "error": None,
            "server_timing": {str(k): float(v) for k, v in (getattr(result, "server_timing", None) or {}).items()},
            "hits": hits_from_results(_result_items(result), self._mapping),
        }
        return record


def _result_items(result: Any) -> Any:
    """The ranked result objects of a retrieve call: the client's ``results`` (either dialect);
    a result without them falls back to a simplified body's ``raw["results"]``."""
    items = getattr(result, "results", None)
    if items is None:
        raw = getattr(result, "raw", None)
        items = raw.get("results") if isinstance(raw, dict) else None
    return items


def _progress_bar(total: int, initial: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="benchmark", unit="req")


# --- inputs ------------------------------------------------------------------------------

def _as_str_list(value: Any, what: str) -> list[str]:
    items = [value] if isinstance(value, str) else list(value) if value is not None else []
    if not items or not all(isinstance(v, str) and v.strip() for v in items):
        raise ConfigurationError(f"{what} must be a non-empty string or a non-empty list of them, got {value!r}")
    return list(dict.fromkeys(items))


def _as_k_list(value: Any) -> list[int]:
    items = [value] if isinstance(value, int) else list(value) if value is not None else []
    if not items or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in items):
        raise ConfigurationError(f"top_k must be an int >= 1 or a non-empty list of them, got {value!r}")
    return sorted(set(items))


def _select_queries(queryset: Any, query_ids: Sequence[str] | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(queries, qrels) of the benchmarked queries: the given ids, else the judged queries."""
    for attr in ("queries", "qrels", "judged_queries", "content_hash"):
        if not hasattr(queryset, attr):
            raise ConfigurationError(f"queryset must be a llamaeval.QuerySet (missing {attr!r})")
    if query_ids is None:
        queries = queryset.judged_queries()
    else:
        wanted = list(dict.fromkeys(query_ids))
        known = set(queryset.queries["query_id"])
        unknown = [q for q in wanted if q not in known]
        if unknown:
            raise ConfigurationError(f"{len(unknown)} query id(s) not in the query set, e.g. {unknown[:5]}")
        queries = queryset.queries.set_index("query_id").loc[wanted].reset_index()
    queries = queries[["query_id", "text"]].reset_index(drop=True)
    if queries.empty:
        raise ConfigurationError("the query set has no judged queries to benchmark")
    qrels = queryset.qrels[queryset.qrels["query_id"].isin(set(queries["query_id"]))].reset_index(drop=True)
    # Fixed dtypes so a saved run loads back identical (Parquet keeps string, not object).
    queries = queries.astype({"query_id": "string", "text": "string"})
    qrels = qrels[["query_id", "doc_id", "relevance"]].astype(
        {"query_id": "string", "doc_id": "string", "relevance": "int64"})
    return queries, qrels


def _json_params(params: Any) -> dict[str, Any]:
    import json

    try:
        return json.loads(json.dumps(dict(params), sort_keys=True))
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"retrieve_params must be JSON-serialisable: {exc}") from exc


def _ok(status: int) -> bool:
    return 200 <= int(status) < 300


# --- resume ------------------------------------------------------------------------------

def _load_previous(folder: Path | None,
                   fingerprint: dict[str, Any]) -> tuple[dict[Key, dict[str, Any]], dict | None]:
    """Records already finished in ``folder`` (saved run + journal) and its manifest, if any."""
    if folder is None:
        return {}, None
    import json

    previous: dict | None = None
    records: dict[Key, dict[str, Any]] = {}
    manifest_path = folder / MANIFEST_NAME
    if manifest_path.exists():
        previous = json.loads(manifest_path.read_text(encoding="utf-8"))
        if identity(previous.get("fingerprint")) != identity(fingerprint):
            raise ConfigurationError(
                f"{folder} holds a run with a different query set, retrieve_params, mapping or share_k "
                f"({previous.get('fingerprint')}); use another `out` folder")
        for rec in load_records(folder):
            records[record_key(rec)] = rec
    journal_fp, journaled = read_journal(folder / JOURNAL_NAME)
    if journal_fp is not None and identity(journal_fp) != identity(fingerprint):
        raise ConfigurationError(f"{folder / JOURNAL_NAME} belongs to a different run; use another `out` folder")
    for rec in journaled:
        records[record_key(rec)] = rec
    return records, previous


# --- manifest ----------------------------------------------------------------------------

def _manifest(queryset: Any, queries: pd.DataFrame, qrels: pd.DataFrame, pipes: list[dict[str, Any]],
              server: dict[str, Any], client: Any, grid: _Grid, concurrency: int,
              cfg: BenchmarkConfig, fingerprint: dict[str, Any], session: dict[str, Any],
              previous: dict | None, requests: pd.DataFrame,
              records: list[dict[str, Any]]) -> dict[str, Any]:
    import httpx

    import llamaeval

    sessions = list((previous or {}).get("sessions", [])) + [session]
    # Requests that needed more than one attempt: their latency includes the client's retry waits.
    retried = sum(1 for r in records if int(r.get("attempts", 1)) > 1)
    ok = requests["status"].between(200, 299)
    return {
        "format": "llamaeval.BenchmarkRun/1",
        "queryset": {
            "name": getattr(queryset, "name", None), "split": getattr(queryset, "split", None),
            "content_hash": fingerprint["queryset"]["content_hash"],
            "n_queries": int(len(queries)), "n_qrels": int(len(qrels)),
        },
        "pipelines": pipes,
        "server": server,
        "client": {"llamaeval": llamaeval.__version__, "httpx": httpx.__version__,
                   "class": type(client).__name__, "dialect": session.get("dialect")},
        "parameters": {"modes": list(dict.fromkeys(c.mode for c in grid.configs if c.mode is not None)),
                       "top_k": grid.ks, "concurrency": concurrency, **cfg.to_dict(),
                       "mapping": fingerprint["mapping"],
                       "configurations": [c.to_dict() for c in grid.configs]},
        "fingerprint": fingerprint,
        "timestamps": {"started_at": sessions[0]["started_at"], "finished_at": session["finished_at"]},
        "sessions": sessions,
        "counts": {"requests": int(len(requests)), "failed": int((~ok).sum()),
                   "retried": int(retried), "sent_this_session": session["sent"]},
        "machine": {"platform": platform.platform(), "machine": platform.machine(),
                    "processor": platform.processor(), "cpu_count": os.cpu_count(),
                    "python": sys.version.split()[0], "implementation": platform.python_implementation()},
    }


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()
