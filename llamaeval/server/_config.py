"""Server settings (arguments, then environment, then defaults) and the data-dir layout."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llamaeval._errors import ConfigurationError

__all__ = ["ServerConfig", "DataLayout", "write_atomic", "setting_number", "DEFAULT_MAX_UPLOAD_MB",
           "DEFAULT_MAX_JSON_MB", "DEFAULT_MAX_QUERY_CHARS", "DEFAULT_INDEX_CACHE_MB"]

DEFAULT_MAX_UPLOAD_MB = 50.0
#: Largest JSON request body (documents sent inline by LlamaCloudIndex.from_documents included).
DEFAULT_MAX_JSON_MB = 10.0
#: Longest retrieve query; the longest query of the shipped collections (cisi) has 2,083.
DEFAULT_MAX_QUERY_CHARS = 4096
#: Memory budget of the loaded-index cache (estimated from the index files).
DEFAULT_INDEX_CACHE_MB = 1024.0
DEFAULT_DATA_DIR = ".llamaeval"
_MB = 1024 * 1024


@dataclass(frozen=True)
class ServerConfig:
    """What an operator configures.

    data_dir: where the SQLite metadata, uploaded files, processed chunks and indexes live.
    sources_root: the folder under which ``directory`` data sources may point (None: refused).
    max_upload_bytes: the largest accepted upload (bigger ones get 413).
    scheduler_tick_s: how often (seconds) scheduled syncs (``sync_interval``) are checked.
    reranker: optional ``"package.module:factory"``; ``factory()`` returns an
        ``llamaeval.engine.Reranker`` (e.g. a local cross-encoder) used by every index.
    onnx_threads: onnxruntime intra-op threads of the embedder (None: onnxruntime's default).
    max_json_bytes: the largest JSON request body (bigger ones get 413; separate from uploads).
    max_query_chars: the longest retrieve query in characters (longer ones get 413).
    index_cache_bytes: memory budget of loaded indexes; the least recently used are unloaded
        beyond it (the index being used always stays).
    shared_sources_root: False (default): each account's ``directory`` data sources resolve
        under ``<sources_root>/<account_id>/``; True: every account shares ``sources_root``
        (single-tenant servers only: any account can then read any folder under it).
    heavy_query_chars: queries at least this long run one at a time (their own lane), so a
        client sending maximal queries cannot take every core from the others.
    search_slots: searches running at once (None: the number of cores); one fewer while a
        sync job runs, so ingestion keeps a core under query load.
    database: where the metadata lives: None (default) is SQLite in ``<data_dir>/llamaeval.db``;
        ``sqlite:///PATH`` or ``postgresql://USER:PASSWORD@HOST:PORT/DBNAME`` (see ``_database``).
    ingest: whether this process runs sync jobs (on PostgreSQL, False leaves them to ``llamaeval
        worker`` processes and other servers; SQLite servers always ingest).
    """

    data_dir: Path
    sources_root: Path | None = None
    max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 1024 * 1024)
    scheduler_tick_s: float = 1.0
    reranker: str | None = None
    onnx_threads: int | None = None
    max_json_bytes: int = int(DEFAULT_MAX_JSON_MB * _MB)
    max_query_chars: int = DEFAULT_MAX_QUERY_CHARS
    index_cache_bytes: int = int(DEFAULT_INDEX_CACHE_MB * _MB)
    shared_sources_root: bool = False
    heavy_query_chars: int = 512
    search_slots: int | None = None
    database: str | None = None
    ingest: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser().resolve())
        from llamaeval.server._database import parse_database

        parse_database(self.database, self.data_dir)  # a bad URL is named now, not at the first request
        if self.sources_root is not None:
            root = Path(self.sources_root).expanduser().resolve()
            if not root.is_dir():
                raise ConfigurationError(f"sources root {root} is not a directory")
            object.__setattr__(self, "sources_root", root)
        if not isinstance(self.max_upload_bytes, int) or self.max_upload_bytes < 1:
            raise ConfigurationError(f"max_upload_bytes must be a positive int, got {self.max_upload_bytes!r}")
        if self.reranker is not None and (not isinstance(self.reranker, str) or ":" not in self.reranker):
            raise ConfigurationError(f"reranker must look like 'package.module:factory', got {self.reranker!r}")
        if self.onnx_threads is not None and (not isinstance(self.onnx_threads, int) or self.onnx_threads < 1):
            raise ConfigurationError(f"onnx_threads must be a positive int, got {self.onnx_threads!r}")
        for name in ("max_json_bytes", "max_query_chars", "index_cache_bytes", "heavy_query_chars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{name} must be a positive int, got {value!r}")
        if self.search_slots is not None and (isinstance(self.search_slots, bool)
                                              or not isinstance(self.search_slots, int) or self.search_slots < 1):
            raise ConfigurationError(f"search_slots must be a positive int, got {self.search_slots!r}")
        if not isinstance(self.shared_sources_root, bool):
            raise ConfigurationError(f"shared_sources_root must be true or false, got {self.shared_sources_root!r}")
        if not self.scheduler_tick_s > 0:
            raise ConfigurationError(f"scheduler_tick_s must be > 0, got {self.scheduler_tick_s!r}")

    @classmethod
    def from_env(cls, data_dir: Path | str | None = None, sources_root: Path | str | None = None,
                 max_upload_mb: float | None = None, reranker: str | None = None,
                 onnx_threads: int | None = None, *, max_json_mb: float | None = None,
                 max_query_chars: int | None = None, index_cache_mb: float | None = None,
                 shared_sources_root: bool | None = None, database: str | None = None) -> "ServerConfig":
        """Arguments first, then ``LLAMAEVAL_DATA_DIR`` / ``LLAMAEVAL_SOURCES_ROOT`` /
        ``LLAMAEVAL_MAX_UPLOAD_MB`` / ``LLAMAEVAL_RERANKER`` / ``LLAMAEVAL_ONNX_THREADS`` /
        ``LLAMAEVAL_MAX_JSON_MB`` / ``LLAMAEVAL_MAX_QUERY_CHARS`` / ``LLAMAEVAL_INDEX_CACHE_MB`` /
        ``LLAMAEVAL_SHARED_SOURCES_ROOT`` (1/true) / ``LLAMAEVAL_DATABASE`` (a URL), then defaults
        (``./.llamaeval``, none, 50 MB, none, onnxruntime's default, 10 MB, 4096, 1024 MB,
        per-account folders, SQLite in the data dir)."""
        threads = _env_number("LLAMAEVAL_ONNX_THREADS", onnx_threads, None, whole=True, unit="threads")
        onnx_threads = None if threads is None else int(threads)
        reranker = reranker or os.environ.get("LLAMAEVAL_RERANKER") or None
        data_dir = data_dir or os.environ.get("LLAMAEVAL_DATA_DIR") or DEFAULT_DATA_DIR
        sources_root = sources_root or os.environ.get("LLAMAEVAL_SOURCES_ROOT") or None
        max_upload_mb = _env_number("LLAMAEVAL_MAX_UPLOAD_MB", max_upload_mb, DEFAULT_MAX_UPLOAD_MB, unit="MB")
        max_json_mb = _env_number("LLAMAEVAL_MAX_JSON_MB", max_json_mb, DEFAULT_MAX_JSON_MB, unit="MB")
        index_cache_mb = _env_number("LLAMAEVAL_INDEX_CACHE_MB", index_cache_mb, DEFAULT_INDEX_CACHE_MB, unit="MB")
        max_query = _env_number("LLAMAEVAL_MAX_QUERY_CHARS", max_query_chars, DEFAULT_MAX_QUERY_CHARS, whole=True,
                                unit="characters")
        if shared_sources_root is None:
            raw = os.environ.get("LLAMAEVAL_SHARED_SOURCES_ROOT", "").strip().lower()
            if raw not in ("", "0", "1", "true", "false", "yes", "no"):
                raise ConfigurationError(f"LLAMAEVAL_SHARED_SOURCES_ROOT must be 1/true or 0/false, got {raw!r}")
            shared_sources_root = raw in ("1", "true", "yes")
        return cls(data_dir=Path(data_dir), sources_root=Path(sources_root) if sources_root else None,
                   max_upload_bytes=max(1, int(max_upload_mb * _MB)), reranker=reranker,
                   onnx_threads=onnx_threads, max_json_bytes=max(1, int(max_json_mb * _MB)),
                   max_query_chars=int(max_query), index_cache_bytes=max(1, int(index_cache_mb * _MB)),
                   shared_sources_root=shared_sources_root,
                   database=database or os.environ.get("LLAMAEVAL_DATABASE") or None,
                   ingest=os.environ.get("LLAMAEVAL_INGEST", "1").strip().lower() not in ("0", "false", "no"))

    def sources_root_of(self, account_id: str) -> Path | None:
        """The folder ``account_id``'s ``directory`` data sources resolve under (None: disabled)."""
        if self.sources_root is None or self.shared_sources_root:
            return self.sources_root
        return self.sources_root / account_id

    def load_reranker(self) -> Any:
        """The configured reranker instance (None when not configured)."""
        if self.reranker is None:
            return None
        import importlib

        module_name, _, attr = self.reranker.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigurationError(f"cannot load reranker {self.reranker!r}: {exc}") from None
        reranker = factory()
        if not callable(getattr(reranker, "score", None)):
            raise ConfigurationError(f"reranker {self.reranker!r} has no score(query, passages) method")
        return reranker


def setting_number(raw: Any, name: str, *, whole: bool = False, unit: str = "") -> float:
    """``raw`` (a flag's or an environment variable's text, or a number) as a finite number > 0,
    a whole one when ``whole``; otherwise a one-line ConfigurationError naming the setting
    ``name`` (e.g. ``--max-query-chars`` or ``LLAMAEVAL_MAX_QUERY_CHARS``) and its ``unit``."""
    try:
        value = float(raw.strip()) if isinstance(raw, str) else float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(raw, bool) or not math.isfinite(value) or value <= 0 or (whole and value != int(value)):
        kind = "a whole number >= 1" if whole else "a number > 0"
        raise ConfigurationError(f"{name} must be {kind}{f' ({unit})' if unit else ''}, got {raw!r}")
    return value


def _env_number(var: str, given: Any, default: float | None, *, whole: bool = False, unit: str = "") -> float | None:
    """``given`` (an argument, named by its keyword in errors), else the environment variable
    ``var``, else ``default``; a given value must be a number > 0 (see ``setting_number``)."""
    if given is not None:
        return setting_number(given, var.removeprefix("LLAMAEVAL_").lower(), whole=whole, unit=unit)
    raw = os.environ.get(var, "").strip()
    return setting_number(raw, var, whole=whole, unit=unit) if raw else default


def write_atomic(path: Path, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new content, never a part.

    ``durable``: fsync before the rename (uploads); derived data that can be recomputed skips it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class DataLayout:
    """Where things live under the data dir::

        llamaeval.db                      metadata (SQLite)
        files/<file_id>                   uploaded bytes
        pipelines/<id>/chunks/<file_id>.json|.npy   processed chunks + embeddings per file
        pipelines/<id>/indexes/<version>/ complete indexes; the DB names the current one
        pipelines/<id>/indexes/.build-*   an index being built (removed if a sync dies)
        .tmp-* / .upload-*                a write in progress (removed at the next start if it was cut short)
        models/<sha256>.json              second-stage models a pipeline names that the package does not
                                          ship (user-supplied weights), by SHA-256; a build starts with
                                          a copy, and the index keeps the one it ranks with
    """

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir)
        self.db_path = self.root / "llamaeval.db"
        self.files_dir = self.root / "files"
        self.pipelines_dir = self.root / "pipelines"
        self.models_dir = self.root / "models"

    def create(self) -> None:
        for d in (self.root, self.files_dir, self.pipelines_dir):
            d.mkdir(parents=True, exist_ok=True)

    #: names of files being written (``write_atomic``, an upload being stored): complete only once renamed
    PARTIAL_PREFIXES = (".tmp-", ".upload-")

    def remove_partial_writes(self) -> int:
        """Remove what writes cut short by a crash left (``.tmp-*``, ``.upload-*`` in ``files/``,
        ``models/`` and each pipeline's ``chunks/``); call it at start, before anything writes.
        Returns how many were removed."""
        folders = [self.files_dir, self.models_dir]
        if self.pipelines_dir.is_dir():
            folders += [p / "chunks" for p in self.pipelines_dir.iterdir()]
        removed = 0
        for folder in folders:
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                if path.name.startswith(self.PARTIAL_PREFIXES) and path.is_file():
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed

    def file_path(self, file_id: str) -> Path:
        return self.files_dir / file_id

    def pipeline_dir(self, pipeline_id: str) -> Path:
        return self.pipelines_dir / pipeline_id

    def chunks_paths(self, pipeline_id: str, file_id: str) -> tuple[Path, Path]:
        base = self.pipeline_dir(pipeline_id) / "chunks"
        return base / f"{file_id}.json", base / f"{file_id}.npy"

    def indexes_dir(self, pipeline_id: str) -> Path:
        return self.pipeline_dir(pipeline_id) / "indexes"

    def index_dir(self, pipeline_id: str, version: str) -> Path:
        return self.indexes_dir(pipeline_id) / version

    def new_build_dir(self, pipeline_id: str) -> Path:
        """A fresh build directory, seeded with the model store (``models/``): ``build_index`` keeps
        the model the pipeline names there, or none when it names a shipped model."""
        d = self.indexes_dir(pipeline_id) / f".build-{uuid.uuid4().hex}"
        d.mkdir(parents=True)
        if self.models_dir.is_dir():
            for model in self.models_dir.glob("*.json"):
                if len(model.stem) != 64:  # a store write in progress (.tmp-*)
                    continue
                (d / "models").mkdir(exist_ok=True)
                shutil.copyfile(model, d / "models" / model.name)
        return d

    def prune_indexes(self, pipeline_id: str, keep: set[str]) -> None:
        """Remove index directories (and dead builds) not in ``keep``."""
        d = self.indexes_dir(pipeline_id)
        if not d.is_dir():
            return
        for child in d.iterdir():
            if child.name not in keep:
                shutil.rmtree(child, ignore_errors=True)

    def remove_pipeline(self, pipeline_id: str) -> None:
        shutil.rmtree(self.pipeline_dir(pipeline_id), ignore_errors=True)
