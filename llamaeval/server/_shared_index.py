"""Index versions shared through PostgreSQL: built on one host, searched on any.

- :class:`IndexPublisher` runs inside the swap transaction (``PostgresStorage.update_job_and_pipeline``
  with a new ``index_version``): the version's chunks and vectors go to the ``chunks`` table and its
  small files (config, manifest, inputs fingerprint, kept second-stage model) to ``index_versions``,
  in the same transaction that makes it the pipeline's current version — so a version any process
  can see always has its chunks in the database, and a failed publication leaves the previous
  version current. Versions other than the new and the previous one are removed.
- :class:`SharedIndexCache` is the API process's ``IndexCache``: a version it does not have on its
  own disk is rebuilt from the database (``engine.build_index`` over the same entries, vectors and
  config: the same index, the same rankings) before it loads.

With SQLite nothing changes: :func:`index_cache_for` returns the plain ``IndexCache``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Any

from llamaeval.server._config import DataLayout
from llamaeval.server._storage import Storage
from llamaeval.server._sync import IndexCache

__all__ = ["IndexPublisher", "SharedIndexCache", "index_cache_for"]

log = logging.getLogger("llamaeval.server")

#: files of an index directory stored beside its chunks (the rest is rebuilt from the chunks)
_SMALL_FILES = ("config.json", "manifest.json", "inputs.sha256")
_MODELS = "models"


def _index_files(directory: Path) -> dict[str, str]:
    files = {name: (directory / name).read_text("utf-8") for name in _SMALL_FILES if (directory / name).is_file()}
    models = directory / _MODELS
    if models.is_dir():
        for path in sorted(models.rglob("*")):
            if path.is_file():
                files[path.relative_to(directory).as_posix()] = path.read_text("utf-8")
    return files


class IndexPublisher:
    """Called as ``publisher(conn, pipeline_id, version)`` inside the swap transaction."""

    def __init__(self, layout: DataLayout) -> None:
        self.layout = layout

    def __call__(self, conn: Any, pipeline_id: str, version: str | None) -> None:
        from llamaeval.engine._index import read_index_data
        from llamaeval.server._vectors import ChunkVectors

        row = conn.execute("SELECT index_version FROM pipelines WHERE id = %s FOR UPDATE", (pipeline_id,)).fetchone()
        if row is None:
            return  # the pipeline was deleted: nothing to publish
        previous = row["index_version"] if isinstance(row, dict) else row[0]
        keep = [v for v in (version, previous) if v]
        conn.execute("DELETE FROM chunks WHERE pipeline_id = %s AND NOT (index_version = ANY(%s))",
                     (pipeline_id, keep))
        conn.execute("DELETE FROM index_versions WHERE pipeline_id = %s AND NOT (index_version = ANY(%s))",
                     (pipeline_id, keep))
        if version is None:
            return
        directory = self.layout.index_dir(pipeline_id, version)
        entries, vectors = read_index_data(directory)  # either index format
        ChunkVectors.write(conn, pipeline_id, version, entries, vectors)
        conn.execute("INSERT INTO index_versions (pipeline_id, index_version, files) VALUES (%s, %s, %s) "
                     "ON CONFLICT (pipeline_id, index_version) DO UPDATE SET files = excluded.files",
                     (pipeline_id, version, json.dumps(_index_files(directory))))


class SharedIndexCache(IndexCache):
    """An ``IndexCache`` that rebuilds, from PostgreSQL, a version missing from this host's disk."""

    def __init__(self, layout: DataLayout, embedder: Any, reranker: Any = None,
                 budget_bytes: int = 1024 * 1024 * 1024, *, url: str) -> None:
        super().__init__(layout, embedder, reranker, budget_bytes=budget_bytes)
        self._url = url
        self._building: dict[tuple[str, str], threading.Lock] = {}
        self._building_lock = threading.Lock()
        self.rebuilt = 0  # versions this process rebuilt from the database

    def get(self, pipeline_id: str, version: str) -> Any:
        if not self._layout.index_dir(pipeline_id, version).is_dir():
            with self._building_lock:
                lock = self._building.setdefault((pipeline_id, version), threading.Lock())
            with lock:
                if not self._layout.index_dir(pipeline_id, version).is_dir():
                    self.materialise(pipeline_id, version)
        return super().get(pipeline_id, version)

    def materialise(self, pipeline_id: str, version: str) -> Path:
        """Write the index directory of ``version`` from the database (FileNotFoundError when the
        database has no such version: it was replaced meanwhile)."""
        from llamaeval import engine
        from llamaeval.server._postgres import _connect
        from llamaeval.server._vectors import ChunkVectors

        with _connect(self._url) as conn:
            row = conn.execute("SELECT files FROM index_versions WHERE pipeline_id = %s AND index_version = %s",
                               (pipeline_id, version)).fetchone()
        if row is None:
            raise FileNotFoundError(f"index version {version} of pipeline {pipeline_id} is not in the database")
        files: dict[str, str] = json.loads(row[0])
        dimensions = json.loads(files.get("manifest.json", "{}")).get("dimensions")  # a narrower model: unpadded
        entries, vectors = ChunkVectors(self._url).load(pipeline_id, version, dimensions)
        build = self._layout.new_build_dir(pipeline_id)
        try:
            for name, text in files.items():  # the kept model first: build_index looks it up there
                if name.startswith(_MODELS + "/"):
                    (build / name).parent.mkdir(parents=True, exist_ok=True)
                    (build / name).write_text(text, encoding="utf-8")
            config = engine.RetrievalConfig.from_dict(json.loads(files["config.json"]))
            published = json.loads(files.get("manifest.json", "{}"))
            engine.build_index(entries, vectors, config, build, embedding_model=published.get("embedding_model"))
            for name, text in files.items():
                if name != "manifest.json":  # build_index's names the segments it wrote
                    (build / name).write_text(text, encoding="utf-8")
            final = self._layout.index_dir(pipeline_id, version)
            os.replace(build, final)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
        self.rebuilt += 1
        log.info("index %s of pipeline %s rebuilt from the database (%d chunks)", version, pipeline_id,
                 len(entries))
        return final


def index_cache_for(storage: Storage, layout: DataLayout, embedder: Any, reranker: Any,
                    budget_bytes: int) -> IndexCache:
    """The index cache of a server on ``storage``: shared through the database when it is
    PostgreSQL (and the storage then publishes each new version at its swap), else local."""
    from llamaeval.server._postgres import PostgresStorage

    if not isinstance(storage, PostgresStorage):
        return IndexCache(layout, embedder, reranker, budget_bytes=budget_bytes)
    storage.on_index_swap = IndexPublisher(layout)
    return SharedIndexCache(layout, embedder, reranker, budget_bytes, url=storage.url)
