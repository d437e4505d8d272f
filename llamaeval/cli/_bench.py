"""``llamaeval ingest | bench | report | demo``: the benchmarking jobs from the shell.

Exit codes: 0 ok, 1 a llamaeval error (message on stderr, via the dispatcher),
2 bad usage (argparse), 3 the quality gate (``--fail-under``) failed.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import shutil
import sys
import time
import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from llamaeval._errors import ConfigurationError
from llamaeval._keys import CONFIG_KEY, MODES
from llamaeval._keys import DEFAULT_METRICS as _DEFAULT_METRICS

DEFAULT_METRICS = ",".join(_DEFAULT_METRICS)
DEMO_TOP_K = "1,3,5,10,20,50"
EXIT_GATE_FAILED = 3
DEMO_KEY_FILE = "demo-api-key"  # in a persistent --data-dir: the embedded server's key, reused


# --- argument types (errors here exit 2 with argparse's usage message) ----------------------

def _modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if not modes or bad:
        raise argparse.ArgumentTypeError(f"modes must be a comma list of {', '.join(MODES)}; got {text!r}")
    return list(dict.fromkeys(modes))


def _top_k(text: str) -> list[int]:
    try:
        ks = [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"top_k must be a comma list of integers, got {text!r}") from None
    if not ks or any(k < 1 for k in ks):
        raise argparse.ArgumentTypeError(f"top_k values must be integers >= 1, got {text!r}")
    return sorted(set(ks))


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _metrics(text: str) -> list[str]:
    from llamaeval.metrics import parse_measure

    names = [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give at least one metric, e.g. ndcg@10")
    for name in names:
        try:
            parse_measure(name)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return names


def _gate(text: str) -> dict[str, float]:
    from llamaeval.report import parse_thresholds

    try:
        gate = parse_thresholds([text])
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    _metrics(",".join(gate))
    return gate


def _baseline(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # split only before a key: a configuration's name may hold commas ("alpha=0, enable_reranking=False")
    keys = "|".join(CONFIG_KEY)
    for part in re.split(rf",\s*(?=(?:{keys})=)", text):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in CONFIG_KEY:
            raise argparse.ArgumentTypeError(
                f"baseline must look like mode=fast,top_k=10 (keys {', '.join(CONFIG_KEY)}); got {text!r}")
        out[key] = int(value) if key == "top_k" and value.strip().isdigit() else value.strip()
    return out


def _param_value(text: str) -> Any:
    """A JSON scalar where the text is one (``0.5``, ``false``, ``null``, ``"x"``), else the text;
    ``True``/``False``/``None`` are read as Python spells them."""
    text = text.strip()
    python = {"True": True, "False": False, "None": None}
    if text in python:
        return python[text]
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if value is None or isinstance(value, (bool, int, float, str)) else text


def _param(text: str) -> tuple[str, list[Any]]:
    """``KEY=V1,V2,...`` -> ``(KEY, [values])``: one axis of the parameter grid."""
    key, sep, values = text.partition("=")
    key = key.strip()
    items = [v for v in values.split(",") if v.strip()]
    if not sep or not key or not items:
        raise argparse.ArgumentTypeError(f"--param must look like alpha=0,0.5,1; got {text!r}")
    return key, [_param_value(v) for v in items]


def _param_grid(args: argparse.Namespace) -> dict[str, list[Any]] | None:
    """The ``--param`` options as a ``benchmark(params=...)`` grid (None without any)."""
    grid: dict[str, list[Any]] = {}
    for key, values in getattr(args, "param", None) or []:
        if key in grid:
            raise ConfigurationError(f"--param {key} is given twice: list all its values in one --param")
        grid[key] = values
    return grid or None


# --- shared options ---------------------------------------------------------------------------

def _add_service(p: argparse.ArgumentParser, *, embedded: bool = False) -> None:
    g = p.add_argument_group("service")
    g.add_argument("--base-url", help="API base URL (default: $LLAMA_CLOUD_BASE_URL, else the LlamaCloud URL)"
                   + ("; without it the demo starts an embedded local server" if embedded else ""))
    g.add_argument("--api-key", help="API key (default: $LLAMA_CLOUD_API_KEY)")


def _add_grid(p: argparse.ArgumentParser, *, top_k_default: str, concurrency: int = 4,
              params: bool = False) -> None:
    g = p.add_argument_group("benchmark grid")
    if params:
        g.add_argument("--modes", type=_modes, default=None, metavar="M1,M2",
                       help=f"retrieval modes (default: {','.join(MODES)}; with --param: none, each "
                            "configuration is its parameters alone; with both: every mode x parameter set)")
        g.add_argument("--param", type=_param, action="append", default=[], metavar="KEY=V1,V2",
                       help="a retrieve parameter and its values (repeatable); the configurations are the "
                            "grid of all --param values, e.g. --param alpha=0,0.5,1 --param "
                            "enable_reranking=false,true (6 configurations, named like "
                            "'alpha=0, enable_reranking=False'). Values are read as JSON scalars where "
                            "possible (0.5, true, null), else as text")
    else:
        g.add_argument("--modes", type=_modes, default=list(MODES), metavar="M1,M2",
                       help=f"retrieval modes (default: {','.join(MODES)})")
    g.add_argument("--top-k", type=_top_k, default=_top_k(top_k_default), metavar="K1,K2",
                   help=f"result counts to request (default: {top_k_default})")
    g.add_argument("--concurrency", type=_positive_int, default=concurrency,
                   help=f"requests in flight (default: {concurrency}; more raises throughput but adds "
                        "queueing to each request's latency on a small local server)")
    g.add_argument("--split", default="test", help="judgement split of the query set (default: test)")
    g.add_argument("--warmup", type=int, default=2,
                   help="warm-up requests per (pipeline, configuration), not measured")
    g.add_argument("--no-share-k", dest="share_k", action="store_false",
                   help="send one request per top_k instead of cutting smaller k from the largest")


def _add_analysis(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("analysis")
    g.add_argument("--metrics", type=_metrics, default=DEFAULT_METRICS.split(","), metavar="M1,M2",
                   help=f"relevance metrics (default: {DEFAULT_METRICS}); the first drives figures and tests")
    g.add_argument("--baseline", type=_baseline, default=None, metavar="mode=fast,top_k=10",
                   help="configuration the significance tests compare against; mode= takes a configuration "
                        "name, e.g. 'mode=alpha=0, enable_reranking=False' (default: the first mode or "
                        "configuration at the cutoff)")
    g.add_argument("--fail-under", type=_gate, action="append", default=[], metavar="METRIC=VALUE",
                   help="quality gate: exit 3 unless the best configuration reaches VALUE (repeatable)")


def _progress(args: argparse.Namespace) -> bool:
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def _say(args: argparse.Namespace, message: str) -> None:
    if not getattr(args, "quiet", False):
        print(message, file=sys.stderr, flush=True)


def _client(args: argparse.Namespace, base_url: str | None = None, api_key: str | None = None) -> Any:
    from llamaeval.client import LlamaCloud

    return LlamaCloud(api_key=api_key or args.api_key, base_url=base_url or args.base_url)


def _gate_dict(args: argparse.Namespace) -> dict[str, float]:
    gate: dict[str, float] = {}
    for part in args.fail_under:
        gate.update(part)
    return gate


def _metric_list(args: argparse.Namespace) -> list[str]:
    return list(dict.fromkeys([*args.metrics, *_gate_dict(args)]))


def _finish(args: argparse.Namespace, run: Any, report_path: Path | None) -> int:
    """Write the report (unless disabled), print the summary, apply the gate."""
    from llamaeval.report import check_thresholds, markdown_summary, summary_table, write_report

    metrics, gate = _metric_list(args), _gate_dict(args)
    message = run.check_failures(warn=False)  # every request failed: EvaluationError, exit 1
    if message:
        print(f"llamaeval {args.command}: warning: {message}", file=sys.stderr, flush=True)
    _check_baseline(args.baseline, run)
    if report_path is not None:
        write_report(run, report_path, metrics=metrics, baseline=args.baseline, gate=gate or None)
        summary = report_path.with_suffix(".md").read_text(encoding="utf-8")
    else:
        summary = markdown_summary(run, metrics=metrics, baseline=args.baseline, gate=gate or None)
    print(summary.rstrip())
    if report_path is not None:
        print(f"\nreport: {report_path}")
    failures = check_thresholds(summary_table(run, list(gate)), gate) if gate else []
    if failures:
        for line in failures:
            print(f"quality gate failed: {line}", file=sys.stderr)
        return EXIT_GATE_FAILED
    return 0


def _check_baseline(baseline: dict[str, Any] | None, run: Any) -> None:
    """A --baseline must name a configuration of the run (before any score is computed)."""
    if not baseline:
        return
    configs = run.requests[list(CONFIG_KEY)].drop_duplicates()
    mask = None
    for key, value in baseline.items():
        match = configs[key].astype(str) == str(value)
        mask = match if mask is None else mask & match
    if mask is None or not mask.any():
        from llamaeval._keys import natural_order

        names = natural_order(configs["mode"])
        ks = sorted({int(k) for k in configs["top_k"]})
        raise ConfigurationError(
            f"--baseline {','.join(f'{k}={v}' for k, v in baseline.items())} names no configuration of this run; "
            f"mode is one of {', '.join(names)} and top_k one of {', '.join(map(str, ks))}")


def _plan_configs(args: argparse.Namespace) -> Any:
    """The asked grid's configurations (as the runner builds them)."""
    from llamaeval.runner._configs import build_configurations

    modes = args.modes if args.modes is not None or not _param_grid(args) else None
    if modes is None and not _param_grid(args):
        modes = list(MODES)
    return build_configurations(modes, _param_grid(args))


def _plan_grid(args: argparse.Namespace, pipelines: list[str]) -> Any:
    """The asked grid's configuration names (as the runner names them)."""
    return [c.name for c in _plan_configs(args)]


def _on_existing(args: argparse.Namespace) -> str:
    return "replace" if getattr(args, "replace", False) else "extend" if getattr(args, "extend", False) else "resume"


def _resolve_resume(args: argparse.Namespace, out: Path, pipelines: list[str]) -> None:
    """--resume into a folder whose saved grid differs from the one asked: refuse unless
    --extend (benchmark the union) or --replace (discard the saved run) — the runner's rule
    (``benchmark(on_existing=...)``, :mod:`llamaeval.runner._resume`), checked before anything
    is ingested or sent; the grid it decides sizes the heartbeat."""
    from llamaeval.runner._resume import CLI, resolve_existing

    if not args.resume:
        return
    decision = resolve_existing(out, _plan_configs(args), args.top_k, pipelines or None, _on_existing(args),
                                spelling=CLI)
    args.resume_decision = decision
    if decision.message:
        _say(args, decision.message)


def _check_out(out: Path, resume: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigurationError(f"--out {out} exists and is not a folder")
    if not resume and out.is_dir() and any((out / name).exists() for name in ("journal.jsonl", "manifest.json")):
        raise ConfigurationError(f"{out} already holds a benchmark run: pass --resume to continue it, "
                                 f"--replace to discard it, or choose another --out")


def _config(args: argparse.Namespace) -> Any:
    from llamaeval.runner import BenchmarkConfig

    return BenchmarkConfig(warmup=args.warmup, share_k=args.share_k, progress=_progress(args))


# --- commands ---------------------------------------------------------------------------------

def _cmd_ingest(args: argparse.Namespace) -> int:
    from llamaeval.datasets import ingest, load_queryset

    qs = load_queryset(args.queryset, split=args.split)
    with _client(args) as lc:
        started = time.monotonic()
        with _heartbeat(args, f"ingesting {qs.name}") as beat:
            pid = ingest(lc, qs, project=args.project, pipeline=args.pipeline, progress=_progress(args),
                         on_sync_progress=beat.observe)
    _say(args, f"ingested {qs.name} into pipeline {pid} in {time.monotonic() - started:.1f} s")
    print(pid)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from llamaeval.datasets import ingest, load_queryset
    from llamaeval.runner import benchmark

    out = Path(args.out)
    args.resume = args.resume or args.extend or args.replace
    _check_out(out, args.resume)
    pipelines = list(args.pipeline)
    _resolve_resume(args, out, pipelines)
    qs = load_queryset(args.queryset, split=args.split)
    with _client(args) as lc:
        if not pipelines:
            _say(args, f"no --pipeline: ingesting {qs.name} into project {args.project!r} (idempotent)")
            with _heartbeat(args, f"ingesting {qs.name}") as beat:
                pipelines = [ingest(lc, qs, project=args.project, progress=_progress(args),
                                    on_sync_progress=beat.observe)]
        started = time.monotonic()
        total = _plan_size(args, pipelines, qs)
        with _heartbeat(args, "benchmark", journal=out / "journal.jsonl", total=total):
            run = benchmark(lc, pipelines if len(pipelines) > 1 else pipelines[0], qs, modes=args.modes,
                            top_k=args.top_k, params=_param_grid(args), concurrency=args.concurrency, out=out,
                            config=_config(args), on_existing=_on_existing(args))
    _say(args, f"{_sent_text(run)} in {time.monotonic() - started:.1f} s; run saved in {out}")
    return _finish(args, run, None if args.no_report else out / "report.html")


def _cmd_report(args: argparse.Namespace) -> int:
    from llamaeval.runner import BenchmarkRun

    run = BenchmarkRun.load(args.run)
    path = Path(args.out) if args.out else Path(args.run) / "report.html"
    return _finish(args, run, path)


def _clear_demo_run(folder: Path) -> None:
    """Remove a previous demo run folder, only if it holds nothing but run files."""
    from llamaeval.runner._resume import RUN_FILES  # the files of a run folder: demo may clear only these

    if not folder.exists():
        return
    names = {p.name for p in folder.iterdir()}
    if not names <= RUN_FILES | {n + ".tmp" for n in RUN_FILES}:
        raise ConfigurationError(f"{folder} holds files that are not a benchmark run ({sorted(names - RUN_FILES)}); "
                                 "choose another --out")
    shutil.rmtree(folder)


def _check_demo_resume(args: argparse.Namespace, run_dir: Path) -> None:
    """``demo --resume`` continues OUT/run only on the same grid (the runner's rule), said before
    the server starts."""
    from llamaeval.runner._resume import Spelling, resolve_existing

    demo = Spelling("`llamaeval bench ... --extend`", "the demo without --resume (it starts afresh)", "another --out")
    resolve_existing(run_dir, _plan_configs(args), args.top_k, None, "resume", spelling=demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from llamaeval.datasets import ingest, load_queryset
    from llamaeval.runner import benchmark

    t0 = time.monotonic()
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigurationError(f"--out {out} exists and is not a folder")
    run_dir = out / "run"
    if args.resume:
        _check_demo_resume(args, run_dir)
    qs = load_queryset(args.queryset, split=args.split)
    with ExitStack() as stack:
        if args.base_url:
            base_url, api_key = args.base_url, args.api_key
            _say(args, f"using the service at {base_url}")
        else:
            try:
                from llamaeval.server import EmbeddedServer
            except ModuleNotFoundError as exc:
                raise ConfigurationError(f"the embedded server needs the 'server' extra ({exc.name} is missing): "
                                         "pip install 'llamaeval[server]', or pass --base-url") from exc

            _say(args, "starting the embedded server ...")
            data_dir = Path(args.data_dir) if args.data_dir else None
            key_file = data_dir / DEMO_KEY_FILE if data_dir is not None else None
            saved_key = key_file.read_text(encoding="utf-8").strip() if key_file and key_file.is_file() else None
            server = stack.enter_context(EmbeddedServer(data_dir=data_dir, api_key=saved_key or None))
            if key_file is not None and not saved_key:
                # keep the key beside the data so a later demo on this --data-dir finds its pipeline
                # (and skips ingest); readable by the owner only
                key_file.touch(mode=0o600)
                key_file.write_text(server.api_key, encoding="utf-8")
            base_url, api_key = server.base_url, server.api_key
            _say(args, f"server at {base_url} (data in {server.data_dir}) [{time.monotonic() - t0:.1f} s]")
        lc = stack.enter_context(_client(args, base_url=base_url, api_key=api_key))
        info = qs.summary()
        _say(args, f"ingesting {qs.name}: {info.get('n_docs')} documents, {info.get('n_judged_queries')} "
                   f"judged queries ...")
        t1 = time.monotonic()
        with _heartbeat(args, f"ingesting {qs.name}") as beat:
            pid = ingest(lc, qs, project="llamaeval-demo", progress=_progress(args), on_sync_progress=beat.observe)
        _say(args, f"pipeline {pid} synced in {time.monotonic() - t1:.1f} s")
        if not args.resume:
            _clear_demo_run(run_dir)
        n_conf = len(args.modes) * len(args.top_k)
        _say(args, f"benchmarking {n_conf} configuration{'s' if n_conf != 1 else ''} ({','.join(args.modes)} x "
                   f"top_k {','.join(map(str, args.top_k))}) ...")
        t1 = time.monotonic()
        with _heartbeat(args, "benchmark", journal=run_dir / "journal.jsonl",
                        total=_plan_size(args, [pid], qs)):
            run = benchmark(lc, pid, qs, modes=args.modes, top_k=args.top_k, concurrency=args.concurrency,
                            out=run_dir, config=_config(args))
        _say(args, f"{_sent_text(run)} in {time.monotonic() - t1:.1f} s")
    code = _finish(args, run, out / "report.html")
    _say(args, f"demo finished in {time.monotonic() - t0:.1f} s")
    return code


def _sent_text(run: Any) -> str:
    """``"675 requests sent (4,050 configuration x query rows)"``: requests, not derived rows."""
    from llamaeval.runner._run import _sent

    sent, rows = len(_sent(run.requests)), len(run.requests)
    text = f"{sent:,} request{'s' if sent != 1 else ''} sent"
    return text + (f" ({rows:,} configuration x query rows, smaller top_k cut from larger requests)"
                   if rows != sent else "")


def _plan_size(args: argparse.Namespace, pipelines: list[str], qs: Any) -> int | None:
    """How many requests the benchmark sends in all (for the heartbeat's done/total)."""
    decision = getattr(args, "resume_decision", None)  # an extended run sends the union
    try:
        n_q = len(qs.judged_queries())
        n_conf = len(decision.configurations) if decision is not None else len(_plan_grid(args, pipelines))
    except Exception:  # noqa: BLE001 - only a progress estimate
        return None
    per = 1 if args.share_k else len(decision.top_k if decision is not None else args.top_k)
    return len(pipelines) * n_conf * per * n_q


HEARTBEAT_S = 10.0


class _heartbeat:  # noqa: N801 - used as a context manager, like a function
    """Outside a terminal (CI logs, pipes, ``!llamaeval`` in a notebook) print one line every
    ``HEARTBEAT_S`` seconds while a long step runs: elapsed time, and with a journal the requests
    done/total, the rate and an ETA; while a sync job reported through :meth:`observe` runs, its
    chunks embedded/total (files too), the rate and an ETA. In a terminal the progress bars do
    this; ``-q`` silences it."""

    def __init__(self, args: argparse.Namespace, what: str, *, journal: Path | None = None,
                 total: int | None = None, every: float | None = None) -> None:
        import threading

        self.active = not getattr(args, "quiet", False) and not sys.stderr.isatty()
        self.what, self.journal, self.total = what, journal, total
        self.every = HEARTBEAT_S if every is None else every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="llamaeval-heartbeat", daemon=True)
        self._sync: dict[str, int] | None = None  # the last counters of the observed sync job
        self._sync_start: tuple[float, int] | None = None  # (time, chunks done) when chunks were first known

    def __enter__(self) -> "_heartbeat":
        self.t0 = time.monotonic()
        self.base = self._done()
        if self.active:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def _done(self) -> int:
        if self.journal is None or not self.journal.is_file():
            return 0
        with self.journal.open("rb") as fh:
            return max(0, sum(1 for line in fh if line.strip()) - 1)  # minus the header

    def observe(self, job: Any) -> None:
        """Record a polled sync job's counters (``PipelineJob.progress``) for the next line."""
        counters = getattr(job, "progress", None)
        if counters:
            self._sync = counters
            if self._sync_start is None and counters.get("chunks"):
                self._sync_start = (time.monotonic(), counters.get("chunks_done", 0))

    def _sync_line(self, elapsed: float) -> str:
        c = self._sync or {}
        files = f"files {c['files_done']:,}/{c['files']:,}" + (f" ({c['files_failed']:,} failed)"
                                                              if c.get("files_failed") else "")
        if not c.get("chunks"):
            return f"{self.what}: syncing, {files}, {elapsed:.0f} s elapsed"
        done, total = c.get("chunks_done", 0), c["chunks"]
        text = f"{self.what}: {done:,}/{total:,} chunks embedded ({100 * done / total:.0f}%)"
        since, base = self._sync_start or (self.t0, 0)
        rate = (done - base) / (time.monotonic() - since) if time.monotonic() > since else 0.0
        text += f", {rate:.1f} chunks/s"
        if rate > 0:
            text += f", ETA {max(0.0, (total - done) / rate):.0f} s"
        if c.get("chunks_cached"):
            text += f", {c['chunks_cached']:,} from the embedding cache"
        return text + f", {files}, {elapsed:.0f} s elapsed"

    def line(self) -> str:
        elapsed = time.monotonic() - self.t0
        text = f"{self.what}: {elapsed:.0f} s elapsed"
        if self._sync is not None and self.journal is None:
            return self._sync_line(elapsed)
        if self.journal is not None:
            done = self._done()
            rate = (done - self.base) / elapsed if elapsed > 0 else 0.0
            text = f"{self.what}: {done:,}" + (f"/{self.total:,}" if self.total else "") + " requests"
            if self.total:
                text += f" ({100 * done / self.total:.0f}%)"
            text += f", {rate:.1f} req/s"
            if self.total and rate > 0:
                text += f", ETA {max(0.0, (self.total - done) / rate):.0f} s"
            text += f", {elapsed:.0f} s elapsed"
        return text

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            print(self.line(), file=sys.stderr, flush=True)


def _plain_warnings(func: Any) -> Any:
    """Show warnings raised while a command runs as one ``llamaeval CMD: warning: ...`` line."""

    @functools.wraps(func)
    def wrapper(args: argparse.Namespace) -> int:
        def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
                 line: str | None = None) -> None:
            print(f"llamaeval {args.command}: warning: {message}", file=sys.stderr, flush=True)

        with warnings.catch_warnings():
            warnings.showwarning = show
            try:
                return func(args)
            except KeyboardInterrupt:
                out = getattr(args, "out", None)
                if args.command in ("bench", "demo") and out:
                    folder = Path(out) / ("run" if args.command == "demo" else "")
                    print(f"llamaeval {args.command}: interrupted; the finished requests are saved in {folder}: "
                          f"rerun the same command with --resume to continue", file=sys.stderr, flush=True)
                else:
                    print(f"llamaeval {args.command}: interrupted", file=sys.stderr, flush=True)
                return 130

    return wrapper


# --- registration -----------------------------------------------------------------------------

def register(subparsers: Any) -> None:
    """Add ``ingest``, ``bench``, ``report`` and ``demo`` to the ``llamaeval`` parser."""
    p = subparsers.add_parser("ingest", help="upload a query set's corpus into a pipeline and sync it",
                              description="Upload a query set's corpus (one file per document, doc_id "
                                          "metadata) into a pipeline, sync, wait; prints the pipeline id.")
    p.add_argument("queryset", help="bundled name (adi, med, cranfield, cisi, scifact) or a folder")
    p.add_argument("--project", default="llamaeval", help="project name (created if missing)")
    p.add_argument("--pipeline", default=None, help="pipeline name (default: the query set's name)")
    p.add_argument("--split", default="test", help="judgement split (default: test)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    _add_service(p)
    p.set_defaults(func=_plain_warnings(_cmd_ingest))

    p = subparsers.add_parser("bench", help="run a (mode | parameter grid) x top_k benchmark and write the report",
                              description="Benchmark retrieval of a pipeline over a query set, for every "
                                          "configuration (mode, --param grid cell, or both) x top_k; saves the "
                                          "run (resumable) and report.html/report.md in --out, prints the summary.")
    p.add_argument("queryset", help="bundled name (adi, med, cranfield, cisi, scifact) or a folder")
    p.add_argument("--pipeline", action="append", default=[], metavar="ID",
                   help="pipeline id (repeatable); without it the query set is ingested first")
    p.add_argument("--project", default="llamaeval", help="project used when ingesting (default: llamaeval)")
    p.add_argument("--out", required=True, help="folder for the run, report.html and report.md")
    p.add_argument("--resume", action="store_true", help="continue the run already in --out (sends only missing requests)")
    whole = p.add_mutually_exclusive_group()
    whole.add_argument("--extend", action="store_true",
                       help="with --resume, when --out holds a run of other modes/top_k: benchmark the union "
                            "(the saved configurations plus the new ones)")
    whole.add_argument("--replace", action="store_true",
                       help="with --resume, when --out holds a run of another grid: discard it and start afresh")
    p.add_argument("--no-report", action="store_true", help="save the run and print the summary, no HTML")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    _add_grid(p, top_k_default="10", params=True)
    _add_analysis(p)
    _add_service(p)
    p.set_defaults(func=_plain_warnings(_cmd_bench))

    p = subparsers.add_parser("report", help="write the HTML report of a saved run",
                              description="Write report.html (self-contained) and report.md for a run saved "
                                          "by `llamaeval bench` or BenchmarkRun.save; prints the summary.")
    p.add_argument("run", help="folder of a saved benchmark run")
    p.add_argument("--out", default=None, help="HTML path (default: RUN/report.html)")
    _add_analysis(p)
    p.set_defaults(func=_plain_warnings(_cmd_report))

    p = subparsers.add_parser("demo", help="embedded server + bundled Cranfield + full grid + report",
                              description="Start an embedded local server, ingest a bundled query set "
                                          "(Cranfield), benchmark every mode x top_k, write the report and "
                                          "print the summary table.")
    p.add_argument("--queryset", default="cranfield", help="bundled name or folder (default: cranfield)")
    p.add_argument("--out", default="reports/demo", help="output folder (default: reports/demo)")
    p.add_argument("--data-dir", default=None,
                   help="keep the embedded server's data (and its key) here; a later demo on the same folder "
                        "reuses the ingested pipeline (default: a temp dir)")
    p.add_argument("--resume", action="store_true", help="continue the run in OUT/run (needs a persistent --data-dir)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    _add_grid(p, top_k_default=DEMO_TOP_K, concurrency=2)
    _add_analysis(p)
    _add_service(p, embedded=True)
    p.set_defaults(func=_plain_warnings(_cmd_demo))
