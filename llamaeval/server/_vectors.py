"""Chunks and their vectors in PostgreSQL (pgvector), per pipeline and completed index version.

What one ingest worker built, any host can read: :meth:`ChunkVectors.store` writes an index
version's entries and vectors (``COPY``), :meth:`ChunkVectors.load` reads them back in the same
order (so an API process without the index on its disk rebuilds the very same index), and
:meth:`ChunkVectors.nearest` answers a dense query in the database — exactly (a scan) or through
a partial HNSW index of that version (:meth:`ChunkVectors.build_ann`), whose recall against exact
search is measured in ``benchmarks/results/scale_out.md``. Vectors are L2-normalised, so the
cosine distance ``<=>`` ranks as the engine's inner product does.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = ["ChunkVectors", "DIMENSIONS"]

#: MiniLM's vector size (the ``vector(384)`` column of migration 002). A model with fewer dimensions
#: (the static model's 256) is stored zero-padded to this width: padding changes neither a unit
#: vector's norm nor any inner product, so cosine ranking, exact or HNSW, is the same; ``load``
#: cuts the padding off again. A model with more dimensions cannot be stored (ValueError).
DIMENSIONS = 384


def _padded(vectors: np.ndarray) -> np.ndarray:
    """``vectors`` (n, d <= DIMENSIONS) as (n, DIMENSIONS), zero-padded on the right."""
    width = vectors.shape[1]
    if not 1 <= width <= DIMENSIONS:
        raise ValueError(f"vectors of {width} dimensions cannot be stored in PostgreSQL: the chunks table holds "
                         f"at most {DIMENSIONS} (MiniLM's) per vector")
    if width == DIMENSIONS:
        return vectors
    return np.hstack([vectors, np.zeros((vectors.shape[0], DIMENSIONS - width), dtype=vectors.dtype)])


def _vector_text(v: Sequence[float]) -> str:
    return "[" + ",".join(f"{x:.9g}" for x in v) + "]"


def _parse_vector(text: str) -> np.ndarray:
    return np.asarray(json.loads(text), dtype=np.float32)


class ChunkVectors:
    """The ``chunks`` table of a migrated llamaeval PostgreSQL database at ``url``."""

    def __init__(self, url: str) -> None:
        from llamaeval.server._postgres import migrate

        self.url = url
        migrate(url)

    def _connect(self, **kwargs: Any) -> Any:
        from llamaeval.server._postgres import _connect

        return _connect(self.url, **kwargs)

    # -- writing ------------------------------------------------------------------------
    def store(self, pipeline_id: str, version: str, entries: Sequence[Any], vectors: np.ndarray) -> int:
        """Write an index version's ``entries`` (engine ``IndexEntry``) and ``vectors`` (one row each,
        float32, at most ``DIMENSIONS`` wide: narrower ones are zero-padded) in one transaction; returns
        the rows written. Writing a version again replaces it."""
        with self._connect() as conn:
            return self.write(conn, pipeline_id, version, entries, vectors)

    @staticmethod
    def write(conn: Any, pipeline_id: str, version: str, entries: Sequence[Any], vectors: np.ndarray) -> int:
        """:meth:`store` on the open connection ``conn`` (inside the caller's transaction)."""
        from llamaeval.server._postgres import _text

        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(entries):
            raise ValueError(f"expected {len(entries)} vectors of at most {DIMENSIONS} dimensions, got {vectors.shape}")
        vectors = _padded(vectors)
        conn.execute("DELETE FROM chunks WHERE pipeline_id = %s AND index_version = %s", (pipeline_id, version))
        with conn.cursor().copy(
                "COPY chunks (pipeline_id, index_version, position, chunk_id, file_id, file_name, chunk_index, "
                "start_char, end_char, text, title, metadata, embedding) FROM STDIN") as copy:
            for i, (e, v) in enumerate(zip(entries, vectors)):
                copy.write_row((pipeline_id, version, i, e.chunk_id, e.file_id, _text(e.file_name), e.chunk_index,
                                e.start_char, e.end_char, _text(e.text), None if e.title is None else _text(e.title),
                                json.dumps(e.metadata), _vector_text(v)))
        return len(entries)

    @staticmethod
    def _ann_name(pipeline_id: str, version: str) -> str:
        return "chunks_hnsw_" + hashlib.sha256(f"{pipeline_id}\n{version}".encode()).hexdigest()[:24]

    def build_ann(self, pipeline_id: str, version: str, m: int = 16, ef_construction: int = 64) -> str:
        """Create the HNSW index of one version (partial: only its rows); returns its name."""
        from psycopg import sql

        name = self._ann_name(pipeline_id, version)
        with self._connect(autocommit=True) as conn:
            conn.execute(sql.SQL(
                "CREATE INDEX IF NOT EXISTS {} ON chunks USING hnsw (embedding vector_cosine_ops) "
                "WITH (m = {}, ef_construction = {}) WHERE pipeline_id = {} AND index_version = {}").format(
                    sql.Identifier(name), sql.Literal(int(m)), sql.Literal(int(ef_construction)),
                    sql.Literal(pipeline_id), sql.Literal(version)))
            conn.execute("ANALYZE chunks")  # without row counts the planner prefers the primary key and a sort
        return name

    def drop(self, pipeline_id: str, keep: Iterable[str] = ()) -> None:
        """Remove the pipeline's versions not in ``keep`` (rows and HNSW indexes)."""
        keep = list(keep)
        from psycopg import sql

        with self._connect(autocommit=True) as conn:
            versions = [r[0] for r in conn.execute(
                "SELECT DISTINCT index_version FROM chunks WHERE pipeline_id = %s", (pipeline_id,))]
            for version in versions:
                if version in keep:
                    continue
                conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(
                    sql.Identifier(self._ann_name(pipeline_id, version))))
                conn.execute("DELETE FROM chunks WHERE pipeline_id = %s AND index_version = %s",
                             (pipeline_id, version))
                conn.execute("DELETE FROM index_versions WHERE pipeline_id = %s AND index_version = %s",
                             (pipeline_id, version))

    # -- reading ------------------------------------------------------------------------
    def count(self, pipeline_id: str, version: str) -> int:
        with self._connect() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM chunks WHERE pipeline_id = %s AND index_version = %s",
                                    (pipeline_id, version)).fetchone()[0])

    def load(self, pipeline_id: str, version: str, dimensions: int | None = None) -> tuple[list[Any], np.ndarray]:
        """The version's entries and vectors, in the order they were stored; ``dimensions``: the
        model's width (the zero padding of a narrower model's vectors is cut off; None: ``DIMENSIONS``)."""
        from llamaeval.engine import IndexEntry

        entries, vectors = [], []
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT chunk_id, file_id, file_name, chunk_index, start_char, end_char, text, title, metadata, "
                "embedding::text FROM chunks WHERE pipeline_id = %s AND index_version = %s ORDER BY position",
                (pipeline_id, version))
            for r in rows:
                entries.append(IndexEntry(chunk_id=r[0], file_id=r[1], file_name=r[2], chunk_index=r[3],
                                          start_char=r[4], end_char=r[5], text=r[6], title=r[7],
                                          metadata=json.loads(r[8])))
                vectors.append(_parse_vector(r[9]))
        matrix = np.vstack(vectors) if vectors else np.zeros((0, DIMENSIONS), dtype=np.float32)
        return entries, np.ascontiguousarray(matrix[:, :dimensions])

    def nearest(self, pipeline_id: str, version: str, query: Sequence[float], k: int, *,
                exact: bool = False, ef_search: int | None = None) -> list[tuple[int, float]]:
        """The ``k`` chunks of the version closest to ``query``: (position, cosine similarity), best
        first. ``exact``: a full scan (no index); else the version's HNSW index when it has one,
        searched with ``ef_search`` candidates (default ``max(4k, 400)``: recall@100 0.99 at 100k
        chunks, 0.91 at 1M, ``benchmarks/results/scale_out_pgvector.md``; at most 1,000)."""
        if not 1 <= k <= 10_000:
            raise ValueError(f"k must be in 1..10000, got {k}")
        # never prepared: the exact and the approximate search have the same SQL text, and a
        # prepared plan chosen under one setting would answer the other (a reused connection)
        with self._connect(prepare_threshold=None) as conn:
            self._settings(conn, k, exact, ef_search)
            return [(int(p), float(s)) for p, s in conn.execute(self._nearest_sql(pipeline_id, version, query, k))]

    def uses_ann(self, pipeline_id: str, version: str) -> bool:
        """Whether an approximate :meth:`nearest` of this version goes through its HNSW index
        (PostgreSQL's plan names it)."""
        from psycopg import sql

        with self._connect() as conn:
            self._settings(conn, 10, False, None)
            plan = conn.execute(sql.SQL("EXPLAIN ") + self._nearest_sql(pipeline_id, version,
                                                                          np.zeros(DIMENSIONS), 10)).fetchall()
        return any(self._ann_name(pipeline_id, version) in row[0] for row in plan)

    @staticmethod
    def _settings(conn: Any, k: int, exact: bool, ef_search: int | None) -> None:
        from psycopg import sql

        if exact:  # a scan of the version's rows, never the approximate index
            conn.execute("SET LOCAL enable_indexscan = off")
        else:  # the HNSW index whenever the version has one, however small the table
            conn.execute("SET LOCAL enable_seqscan = off")
            conn.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(
                sql.Literal(int(min(1000, ef_search or max(4 * k, 400))))))

    @staticmethod
    def _nearest_sql(pipeline_id: str, version: str, query: Sequence[float], k: int) -> Any:
        from psycopg import sql

        vector = sql.Literal(_vector_text(_padded(np.asarray(query, dtype=np.float32).reshape(1, -1))[0]))
        # the partial index is used only when the planner sees the version's literal values
        return sql.SQL("SELECT position, 1 - (embedding <=> {v}::vector) AS score FROM chunks "
                       "WHERE pipeline_id = {p} AND index_version = {ver} ORDER BY embedding <=> {v}::vector "
                       "LIMIT {k}").format(v=vector, p=sql.Literal(pipeline_id), ver=sql.Literal(version),
                                           k=sql.Literal(int(k)))
