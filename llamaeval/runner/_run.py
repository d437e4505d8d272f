"""BenchmarkRun: the tidy output of a benchmark, with save/load, TREC export and analysis hooks."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from llamaeval._errors import ConfigurationError
from llamaeval._keys import CONFIG_KEY
from llamaeval.runner._records import records_to_tables, tables_to_records

MANIFEST_NAME = "manifest.json"
_FRAMES = ("results", "requests", "qrels", "queries")


class BenchmarkRun:
    """Everything a later analysis needs from one benchmark.

    ``mode`` in every frame is the configuration's name: the mode (``"fast"``), the
    parameter set's name (``"alpha=0.5"``) or both (``"fast alpha=0.5"``).

    Attributes:
        results: one row per (pipeline_id, mode, top_k, query_id, rank) after the
            chunk->document collapse; a request that failed or returned nothing has
            one row with ``rank``/``doc_id`` NA. Columns: pipeline_id, mode, top_k,
            query_id, rank, doc_id, chunk_id, file_id, score, latency_s, status, error, shared,
            then one column per retrieve parameter of the configurations (NA where unset).
        requests: one row per (pipeline_id, mode, top_k, query_id) request: client wall
            time ``latency_s`` (seconds, monotonic clock), ``server_total_s`` and
            ``server_<stage>_s`` from Server-Timing (seconds), ``status`` (HTTP status,
            0 = no response), ``error``, ``n_results`` (chunks), ``shared``,
            ``started_at`` (UTC), ``order`` (send order), then the parameter columns.
        configurations: one row per (pipeline_id, mode, top_k) (see the property).
        qrels, queries: the judgements and queries of the benchmarked queries.
        manifest: JSON-safe provenance (query set + hash, pipelines and their
            retrieval config and presets, server and client versions, parameters, timestamps,
            machine, and ``identity``: what was measured, by content hash; see :attr:`identity`).
    """

    def __init__(self, results: pd.DataFrame, requests: pd.DataFrame, qrels: pd.DataFrame,
                 queries: pd.DataFrame, manifest: dict[str, Any],
                 records: list[dict[str, Any]] | None = None) -> None:
        self.results = results
        self.requests = requests
        self.qrels = qrels
        self.queries = queries
        self.manifest = manifest
        self._records = list(records or [])

    # --- analysis (delegated; imported lazily so the runner stays light) -------------------

    def evaluate(self, metrics: Sequence[str] | None = None, *, alignment: str = "raise",
                 **kwargs: Any) -> pd.DataFrame:
        """Relevance metrics per configuration via :func:`llamaeval.metrics.evaluate`.

        First accounts for failed requests (:meth:`check_failures`: every request failed
        raises EvaluationError with the server's message and the likely cause, some failed
        warns), then checks that the run's ids line up with the judgements
        (:func:`llamaeval.datasets.check_alignment`): ``alignment="raise"`` (default)
        raises AlignmentError with the numbers, ``"warn"`` warns, ``"off"`` skips.
        """
        from llamaeval.metrics import evaluate

        if alignment not in ("raise", "warn", "off"):
            raise ConfigurationError(f"alignment must be 'raise', 'warn' or 'off', got {alignment!r}")
        self.check_failures()
        if alignment != "off":
            self.check_alignment(on_mismatch=alignment)
        if metrics is None:
            return evaluate(self.results, self.qrels, **kwargs)
        return evaluate(self.results, self.qrels, metrics, **kwargs)

    def check_alignment(self, **kwargs: Any) -> Any:
        """The run's query and document ids against its judgements
        (:func:`llamaeval.datasets.check_alignment`); returns the AlignmentReport."""
        from llamaeval.datasets import QuerySet, check_alignment

        info = self.manifest.get("queryset") or {}
        judged = QuerySet(info.get("name") or "run", self.queries, self.qrels,
                          split=info.get("split") or "test", on_error="warn")
        return check_alignment(self.results["query_id"], self.results["doc_id"], judged, **kwargs)

    def check_failures(self, *, warn: bool = True) -> str | None:
        """Say first when requests failed: how many, the server's message, the likely cause.

        Returns the message (None when every request succeeded). When every request
        failed, raises EvaluationError with it, since no score would mean anything;
        otherwise warns (``warn=True``) and returns it.
        """
        message = failure_summary(self.requests)
        if message is None:
            return None
        sent = _sent(self.requests)
        if len(sent) and not sent["status"].between(200, 299).any():
            from llamaeval._errors import EvaluationError

            raise EvaluationError(message)
        if warn:
            warnings.warn(message, FailedRequestsWarning, stacklevel=3)
        return message

    def recommend(self, metric: str = "ndcg@10", within: float = 0.01, latency: str = "p50", *,
                  validation: str | None = "auto", folds: int = 5, split: float = 0.5, seed: int = 0,
                  **kwargs: Any) -> Any:
        """Which configuration to ship: the cheapest (client ``latency``: "p50", "p95", "mean")
        whose ``metric`` is within ``within`` of the best, with the evidence
        (:func:`llamaeval.metrics._recommend.recommend`). ``str()`` of the answer is one
        sentence; in a notebook it shows the evidence table too.

        ``validation`` ("auto", "kfold", "split", None) adds the honest estimate
        (``rec.honest``): the choice re-made on part of the queries and scored on the rest
        (``folds`` folds, or a ``split`` share to choose on; seeded with ``seed``), next to its
        in-sample score. "auto" = k-fold with >= 10 judged queries and >= 2 configurations."""
        from llamaeval._display import pipeline_names
        from llamaeval.metrics._recommend import recommend

        self.check_failures()
        rec = recommend(self.results, self.qrels, self.requests, metric, within, latency,
                        names=pipeline_names(self.manifest), validation=validation, folds=folds,
                        split=split, seed=seed, **kwargs)
        rec.benchmarked_request = self.benchmarked_request(rec.choice)  # what rec.apply() ships
        return rec

    def benchmarked_request(self, selector: dict[str, Any]) -> Any:
        """The retrieve request this run sent for one configuration (``{"mode": ..., "top_k": ...}``,
        plus ``pipeline_id`` when there are several): mode, top_k, parameters, the top_k actually
        sent, the pipeline's presets then (:class:`llamaeval.runner._chosen.BenchmarkedRequest`)."""
        from llamaeval.runner._chosen import benchmarked_request

        return benchmarked_request(self, selector)

    def ship(self, client: Any, pipeline_id: str, metric: str = "ndcg@10", within: float = 0.01,
             latency: str = "p50", *, dry_run: bool = True, **kwargs: Any) -> Any:
        """Recommend a configuration (:meth:`recommend`, same arguments) and write it as
        ``pipeline_id``'s ``preset_retrieval_parameters`` (real API; ``dry_run=True``, the default,
        only shows the change): ``self.recommend(...).apply(client, pipeline_id, dry_run=...)``.
        Returns the ShipPlan (:func:`llamaeval.metrics._apply.apply_recommendation`)."""
        from llamaeval.metrics._apply import apply_recommendation

        return apply_recommendation(self.recommend(metric, within, latency, **kwargs), client, pipeline_id,
                                    dry_run=dry_run)

    def summary(self, metrics: Sequence[str] | None = None, *, primary: str | None = None) -> pd.DataFrame:
        """The table to read, one row per configuration in natural order: the pipeline by name
        (when there are several), mode, top_k, the metrics (the first, or ``primary``, with its
        95% CI), ``recall@top_k``, queries, latency in milliseconds (``†``: measured by the
        larger top_k request under share_k), failed requests. For computing, use
        :meth:`evaluate` and :meth:`latency` (seconds)."""
        import warnings as _warnings

        from llamaeval._keys import DEFAULT_METRICS
        from llamaeval.report._summary import summary_table
        from llamaeval.report._write import display_table

        self.check_failures()
        metrics = list(metrics) if metrics is not None else list(DEFAULT_METRICS)
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore", FailedRequestsWarning)  # said once, above
            table = summary_table(self, metrics)
        out = display_table(table, metrics, primary=primary)
        for m in [*metrics, "recall@top_k"]:
            if m in out.columns and out[m].dtype.kind == "f":
                out[m] = out[m].round(4)
        return out

    @property
    def identity(self) -> dict[str, Any]:
        """What the run measured, by content (:func:`llamaeval.runner._identity.run_identity`):
        SHA-256 of its queries and judgements, each configuration's retrieve request, each
        pipeline's configuration hash, llamaeval and server versions. Computed from the frames,
        so runs saved by earlier versions have one too; ``llamaeval gate`` compares these."""
        from llamaeval.runner._identity import run_identity

        return run_identity(self.manifest or {}, self.queries, self.qrels, self.configurations)

    @property
    def pipeline_names(self) -> dict[str, str]:
        """``{pipeline_id: name}`` of the run's pipelines (names made unique; short id if unnamed)."""
        from llamaeval._display import pipeline_names

        return pipeline_names(self.manifest)

    def latency(self, **kwargs: Any) -> pd.DataFrame:
        """Latency statistics per configuration via :func:`llamaeval.metrics.latency_stats`."""
        from llamaeval.metrics import latency_stats

        return latency_stats(self.requests, **kwargs)

    def report(self, path: str | os.PathLike[str], **kwargs: Any) -> Any:
        """Write a self-contained report via :func:`llamaeval.report.write_report`."""
        from llamaeval.report import write_report

        return write_report(self, path, **kwargs)

    # --- summaries -------------------------------------------------------------------------

    @property
    def failures(self) -> pd.DataFrame:
        """The requests that did not succeed (status outside 2xx)."""
        ok = self.requests["status"].between(200, 299)
        return self.requests[~ok].reset_index(drop=True)

    @property
    def configurations(self) -> pd.DataFrame:
        """The configurations of the run, one row per (pipeline_id, mode, top_k) in grid order.

        Columns: pipeline_id, mode (the configuration's name), top_k, ``retrieve_mode`` (the
        ``mode`` sent to retrieve; NA when the configuration is parameters alone), ``params``
        (its retrieve parameters as JSON text), then one column per parameter (NA where unset),
        so ``run.evaluate().merge(run.configurations, on=["pipeline_id", "mode", "top_k"])``
        puts the parameters beside the metrics.
        """
        defined = (self.manifest.get("parameters") or {}).get("configurations")
        keys = list(dict.fromkeys(k for c in (defined or []) for k in c.get("params", {})))
        frame = self.requests[[*CONFIG_KEY, *[k for k in keys if k in self.requests.columns]]]
        frame = frame.drop_duplicates(list(CONFIG_KEY)).reset_index(drop=True)
        if defined is None:  # a run of an earlier version: modes only
            defined = [{"name": m, "mode": m, "params": {}} for m in dict.fromkeys(frame["mode"])]
        by_name = {c["name"]: c for c in defined}
        info = [by_name.get(name, {"mode": name, "params": {}}) for name in frame["mode"]]
        frame.insert(3, "retrieve_mode", pd.array([c["mode"] for c in info], dtype="string"))
        frame.insert(4, "params", pd.array([json.dumps(c["params"], sort_keys=True) for c in info],
                                           dtype="string"))
        return frame

    def __repr__(self) -> str:
        qs = self.manifest.get("queryset", {})
        return (f"BenchmarkRun(queryset={qs.get('name')!r}, split={qs.get('split')!r}, "
                f"configurations={len(self.configurations)}, requests={len(self.requests)}, "
                f"failed={len(self.failures)})")

    def _repr_html_(self) -> str:
        """A card: query set, pipelines by name, configurations in their natural order, top_k,
        requests sent and failed (the server's message first), time taken, what to call next."""
        from llamaeval._display import card, duration, esc, id_html, plural, when
        from llamaeval._keys import MODES, natural_order

        m = self.manifest or {}
        qs = m.get("queryset") or {}
        params = m.get("parameters") or {}
        names = natural_order(self.requests["mode"]) if len(self.requests) else []
        noun = ("mode", "modes") if names and all(n in MODES for n in names) else ("configuration", "configurations")
        shown = ", ".join(esc(n) for n in names[:8]) + (f", … {len(names) - 8} more" if len(names) > 8 else "")
        ks = sorted({int(k) for k in self.requests["top_k"]}) if len(self.requests) else []
        share = (f" <span class='le-muted'>(share_k: one request per query at top_k={ks[-1]}, smaller top_k "
                 f"cut from it)</span>" if params.get("share_k") and len(ks) > 1 else "")
        pipes = self.pipeline_names
        pipe_html = ", ".join(f"<b>{esc(pipes.get(str(p), ''))}</b> {id_html(p)}"
                              for p in dict.fromkeys(self.requests["pipeline_id"]))
        sent = _sent(self.requests)
        failed = int((~sent["status"].between(200, 299)).sum()) if len(sent) else 0
        req = f"{plural(len(sent), 'request')} sent"
        if failed:
            req += f", <span class='le-err'><b>{failed:,} failed</b></span>"
        else:
            req += ", none failed"
        message = failure_summary(self.requests)
        n_q = int(qs.get("n_queries") or self.queries["query_id"].nunique())
        rows = [("queries", f"{plural(n_q, 'judged query', 'judged queries')}"
                            + (f" · {plural(int(qs['n_qrels']), 'judgement')}" if qs.get("n_qrels") else "")),
                (plural(len(pipes) or 1, "pipeline").split(" ", 1)[1], pipe_html),
                (noun[1], f"{len(names)}: {shown}"),
                ("top_k", ", ".join(map(str, ks)) + share),
                ("requests", req)]
        took = _session_seconds(m)
        stamps = m.get("timestamps") or {}
        if took is not None:
            rows.append(("time", f"{duration(took)} <span class='le-muted'>(finished "
                                 f"{esc(when(stamps.get('finished_at')))})</span>"))
        dialect = (m.get("client") or {}).get("dialect")
        if dialect:
            rows.append(("API", f"{esc(dialect)} · {esc((m.get('server') or {}).get('base_url') or '')}"))
        warn = f"<div class='le-warn'>{esc(message)}</div>" if message else ""
        foot = (warn + "<div class='le-muted'>next: <code>run.evaluate()</code> · <code>run.recommend()</code> · "
                "<code>le.widgets.dashboard(run)</code> · <code>run.report(\"report.html\")</code></div>")
        title = f"BenchmarkRun <b>{esc(qs.get('name') or '')}</b>"
        return card(title, rows, subtitle=esc(f"{qs.get('split')} split") if qs.get("split") else "", foot=foot)

    # --- persistence -----------------------------------------------------------------------

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write the run to ``folder`` (Parquet frames + ``manifest.json``); files are
        replaced atomically. Returns the folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        records, chunks = records_to_tables(self._records)
        for name, frame in [*((n, getattr(self, n)) for n in _FRAMES),
                            ("records", records), ("chunks", chunks)]:
            _atomic_parquet(frame, folder / f"{name}.parquet")
        tmp = folder / (MANIFEST_NAME + ".tmp")
        tmp.write_text(json.dumps(self.manifest, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, folder / MANIFEST_NAME)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> "BenchmarkRun":
        """Read a run written by :meth:`save` (or by ``benchmark(..., out=folder)``)."""
        folder = Path(folder)
        path = folder / MANIFEST_NAME
        if not path.exists():
            hint = (" - it holds an unfinished run: call benchmark(..., out=folder) again to resume it"
                    if (folder / "journal.jsonl").exists() else "")
            raise ConfigurationError(f"no saved benchmark run in {folder} ({MANIFEST_NAME} missing){hint}")
        manifest = json.loads(path.read_text(encoding="utf-8"))
        frames = {n: pd.read_parquet(folder / f"{n}.parquet") for n in _FRAMES}
        records = load_records(folder)
        return cls(frames["results"], frames["requests"], frames["qrels"], frames["queries"],
                   manifest, records)

    # --- export ----------------------------------------------------------------------------

    def to_trec(self, path: str | os.PathLike[str], *, run_name: str = "llamaeval",
                score: str = "rank") -> list[Path]:
        """Write TREC run files (``qid Q0 docid rank score tag``).

        One configuration: ``path`` is the file. Several (or ``path`` an existing folder):
        ``path`` is a folder and each configuration goes to ``<pipeline>_<mode>_k<top_k>.trec``
        (``mode`` the configuration's name, characters other than letters, digits, ``-`` and
        ``.`` replaced by ``_``; so is the run tag). ``score="rank"``
        writes ``top_k - rank + 1`` so tools that re-sort by score (trec_eval) keep the
        server's order; ``score="server"`` writes the server's score. Failed/empty
        requests, and chunks without a document id, write no line. Returns the files written.
        """
        if score not in ("rank", "server"):
            raise ConfigurationError(f"score must be 'rank' or 'server', got {score!r}")
        rows = self.results.dropna(subset=["rank", "doc_id"])
        configs = self.configurations
        path = Path(path)
        written = []
        multi = len(configs) > 1 or path.is_dir()
        if multi:
            path.mkdir(parents=True, exist_ok=True)
        for cfg in configs.itertuples(index=False):
            sel = rows[(rows.pipeline_id == cfg.pipeline_id) & (rows["mode"] == cfg.mode)
                       & (rows.top_k == cfg.top_k)]
            tag = f"{_safe(run_name)}.{_safe(cfg.mode)}.k{cfg.top_k}"
            target = path / f"{_safe(cfg.pipeline_id)}_{_safe(cfg.mode)}_k{cfg.top_k}.trec" if multi else path
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("w", encoding="utf-8") as fh:
                for r in sel.itertuples(index=False):
                    value = (int(r.top_k) - int(r.rank) + 1) if score == "rank" else float(r.score)
                    fh.write(f"{r.query_id} Q0 {r.doc_id} {int(r.rank)} {value} {tag}\n")
            written.append(target)
        return written


class FailedRequestsWarning(UserWarning):
    """Some requests of a benchmark run failed: its scores count those queries as misses."""


def _sent(requests: pd.DataFrame) -> pd.DataFrame:
    """The requests actually sent (share_k copies of a larger-k request counted once)."""
    if "shared" in requests.columns and len(requests):
        return requests[~requests["shared"].fillna(False).astype(bool)]
    return requests


def _likely_cause(status: int, error: str) -> str:
    text = error.lower()
    if status in (400, 422):
        if "top_k" in text or "top-k" in text:
            return "a top_k above what the server accepts (its message names the limit): request fewer results"
        return "the server refused the request's parameters: check the modes, top_k and params of the grid"
    if status in (401, 403):
        return "the API key is not accepted: check LLAMA_CLOUD_API_KEY / api_key"
    if status == 404:
        return "the pipeline does not exist for this key: check the pipeline id and the account"
    if status == 429:
        return "the server rate-limited the run: lower concurrency or set BenchmarkConfig(rate_limit=...)"
    if status >= 500:
        return "the server failed while answering: see its log"
    if status == 0:
        return "no answer: the server is unreachable, or requests timed out"
    return "see the requests' status and error columns"


def failure_summary(requests: pd.DataFrame) -> str | None:
    """One paragraph on the failed requests of a run (None when none failed): how many of the
    requests sent, in which configurations, the server's most common message, the likely cause."""
    sent = _sent(requests)
    if not len(sent) or "status" not in sent.columns:
        return None
    bad = sent[~sent["status"].between(200, 299)]
    if bad.empty:
        return None
    from llamaeval._display import plural

    errors = bad["error"].astype("string").fillna("") if "error" in bad.columns else pd.Series("", index=bad.index)
    counts = pd.DataFrame({"status": bad["status"].astype(int), "error": errors}).value_counts(sort=True)
    (status, error), n_top = counts.index[0], int(counts.iloc[0])
    per_config = bad.groupby(["mode", "top_k"], sort=False).size()
    total = sent.groupby(["mode", "top_k"], sort=False).size()
    whole = [f"{m} top_k={k}" for (m, k), n in per_config.items() if n == total.get((m, k), -1)]
    where = ""
    if whole and len(whole) < len(total):
        where = f"; every request of {', '.join(whole[:6])}{' …' if len(whole) > 6 else ''} failed"
    all_failed = len(bad) == len(sent)
    head = (f"All {plural(len(sent), 'request')} failed" if all_failed
            else f"{len(bad):,} of {plural(len(sent), 'request')} failed")
    said = (f"answered HTTP {status}" if status else "gave no answer") + (
        f": \"{error.strip()[:300]}\"" if error.strip() else "")
    times = f" ({n_top:,} times)" if n_top > 1 else ""
    more = f"; {plural(len(counts) - 1, 'other error')}" if len(counts) > 1 else ""
    return (f"{head}{where}. The server {said}{times}{more}. "
            f"Likely cause: {_likely_cause(int(status), error)}."
            + ("" if all_failed else " Failed requests count as misses in every score."))


def _session_seconds(manifest: dict[str, Any]) -> float | None:
    """Seconds spent sending, summed over the run's sessions (resumed runs have several)."""
    from datetime import datetime

    total, seen = 0.0, False
    for s in manifest.get("sessions") or []:
        try:
            total += (datetime.fromisoformat(s["finished_at"]) - datetime.fromisoformat(s["started_at"])).total_seconds()
            seen = True
        except (KeyError, TypeError, ValueError):
            continue
    return total if seen else None


def load_records(folder: Path) -> list[dict[str, Any]]:
    """Finished-request records stored in a saved run folder ([] if none)."""
    rec_path, chunk_path = folder / "records.parquet", folder / "chunks.parquet"
    if not rec_path.exists() or not chunk_path.exists():
        return []
    return tables_to_records(pd.read_parquet(rec_path), pd.read_parquet(chunk_path))


def _atomic_parquet(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(".parquet.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "_" for c in str(text))
