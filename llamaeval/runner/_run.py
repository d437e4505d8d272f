"""BenchmarkRun: the tidy output of a benchmark, with save/load, TREC export and analysis hooks."""

from __future__ import annotations

import json
import os
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
            retrieval config, server and client versions, parameters, timestamps, machine).
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

        First checks that the run's ids line up with the judgements
        (:func:`llamaeval.datasets.check_alignment`): ``alignment="raise"`` (default)
        raises AlignmentError with the numbers, ``"warn"`` warns, ``"off"`` skips.
        """
        from llamaeval.metrics import evaluate

        if alignment not in ("raise", "warn", "off"):
            raise ConfigurationError(f"alignment must be 'raise', 'warn' or 'off', got {alignment!r}")
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
