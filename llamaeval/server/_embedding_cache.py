"""Chunk vectors by content: a chunk whose exact text an account has embedded before, with the
same model and truncation, is not embedded again (a second pipeline over the same files, a
re-sync after a config change that keeps chunks, a chunk-size sweep).

One SQLite file beside the metadata (``<data_dir>/embedding-cache.sqlite``) holds
``key -> float32 vector``; the key is the SHA-256 of (account id, model name, model version
— the hash of its weight and vocabulary files —, passage truncation, chunk text). The account
is part of every key, so an account only ever finds its own vectors: another account's
content is neither returned nor visible through timing (its lookups miss and embed, exactly as
without a cache), and keys never leave the server. The file stays within a byte budget
(``LLAMAEVAL_EMBED_CACHE_MB``, default 1024; 0 turns the cache off): beyond it the least
recently used vectors are dropped. A damaged file is replaced by an empty one (it only holds
what can be recomputed).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from llamaeval._errors import ConfigurationError

__all__ = ["EmbeddingCache", "DEFAULT_EMBED_CACHE_MB", "CACHE_FILE", "cache_budget_from_env", "model_scope"]

log = logging.getLogger("llamaeval.server")

#: Default budget of the embedding cache (about 650,000 MiniLM vectors).
DEFAULT_EMBED_CACHE_MB = 1024.0
#: The cache's file name in the data dir.
CACHE_FILE = "embedding-cache.sqlite"
#: Bytes charged per entry beyond its vector: the 32-byte key twice (row and index), the
#: recency counter and SQLite's row and page overhead (measured with 8 KB pages: 10,000 MiniLM
#: vectors take 1,697 bytes each on disk), so the budget bounds the file's size.
ENTRY_OVERHEAD = 160
_PAGE_SIZE = 8192  # 4 KB pages hold two 1.5 KB vectors and waste a quarter of each page
_WAL_PAGES = 256  # the write-ahead log is checkpointed at 2 MB and cut back to that size
_MB = 1024 * 1024
_PARAMS = 500  # keys per SQL statement (SQLite's variable limit is 999 on old builds)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (key BLOB NOT NULL, vector BLOB NOT NULL, used INTEGER NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS vectors_key ON vectors(key);
CREATE INDEX IF NOT EXISTS vectors_used ON vectors(used);
"""


def cache_budget_from_env(given_mb: float | None = None) -> int:
    """The cache budget in bytes: ``given_mb``, else ``LLAMAEVAL_EMBED_CACHE_MB``, else
    ``DEFAULT_EMBED_CACHE_MB``; 0 turns the cache off. ConfigurationError names a bad value."""
    raw: Any = given_mb
    if raw is None:
        raw = os.environ.get("LLAMAEVAL_EMBED_CACHE_MB", "").strip() or DEFAULT_EMBED_CACHE_MB
    try:
        mb = float(raw)
    except (TypeError, ValueError):
        mb = float("nan")
    if isinstance(raw, bool) or not mb >= 0 or mb == float("inf"):
        raise ConfigurationError(f"LLAMAEVAL_EMBED_CACHE_MB must be a number >= 0 (MB; 0 turns the embedding "
                                 f"cache off), got {raw!r}")
    return int(mb * _MB)


def model_scope(embedder: Any) -> str:
    """What besides the text decides a passage's vector: model name, model version (hash of its
    files, when the embedder says) and the passage truncation in tokens."""
    version = getattr(embedder, "version", None) or "-"
    return f"{embedder.model_name}@{version}/max{getattr(embedder, 'max_passage_tokens', '-')}"


class EmbeddingCache:
    """Vectors by (account, model scope, exact text) in one SQLite file, within ``budget_bytes``
    (least recently used dropped first); thread-safe. Counters since opening: ``hits``,
    ``misses``, ``evictions`` (see :meth:`stats`)."""

    def __init__(self, path: Path, budget_bytes: int, dimensions: int = 384) -> None:
        if isinstance(budget_bytes, bool) or not isinstance(budget_bytes, int) or budget_bytes < 1:
            raise ValueError(f"budget_bytes must be a positive int, got {budget_bytes!r}")
        self.path = Path(path)
        self.budget_bytes = budget_bytes
        self.dimensions = dimensions
        self.entry_bytes = dimensions * 4 + ENTRY_OVERHEAD
        self._lock = threading.Lock()
        self.hits = self.misses = self.evictions = 0
        self._db = self._open()

    @classmethod
    def in_data_dir(cls, data_dir: Path, budget_mb: float | None = None, dimensions: int = 384
                    ) -> "EmbeddingCache | None":
        """The cache of a server's data dir with the configured budget; None when turned off."""
        budget = cache_budget_from_env(budget_mb)
        return cls(Path(data_dir) / CACHE_FILE, budget, dimensions) if budget > 0 else None

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in (1, 2):
            try:
                db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
                db.execute(f"PRAGMA page_size={_PAGE_SIZE}")  # only takes effect on a new file
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(f"PRAGMA wal_autocheckpoint={_WAL_PAGES}")
                db.execute(f"PRAGMA journal_size_limit={_WAL_PAGES * _PAGE_SIZE}")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(_SCHEMA)
                self._count, self._clock = db.execute("SELECT COUNT(*), COALESCE(MAX(used), 0) FROM vectors").fetchone()
                return db
            except sqlite3.DatabaseError as exc:
                if attempt == 2:
                    raise
                log.warning("embedding cache %s is unreadable (%s): starting an empty one", self.path.name, exc)
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        raise AssertionError("unreachable")

    # -- keys ---------------------------------------------------------------------------
    @staticmethod
    def keys(account_id: str, scope: str, texts: Sequence[str]) -> list[bytes]:
        """One 32-byte key per text: SHA-256 of the account, the model scope and the text."""
        prefix = hashlib.sha256(f"{len(account_id)}:{account_id}|{len(scope)}:{scope}|".encode("utf-8"))
        out = []
        for text in texts:
            h = prefix.copy()
            h.update(text.encode("utf-8", "surrogatepass"))
            out.append(h.digest())
        return out

    # -- reading and writing ------------------------------------------------------------
    def get_many(self, keys: Sequence[bytes], dimensions: int | None = None) -> dict[int, np.ndarray]:
        """Position in ``keys`` -> its vector, for the keys the cache holds (they become the most
        recently used); only vectors of ``dimensions`` (default the cache's) count. A cache that
        cannot be read answers nothing (a warning is logged)."""
        try:
            return self._get_many(keys, dimensions or self.dimensions)
        except sqlite3.Error as exc:
            log.warning("embedding cache unreadable (%s): embedding every chunk", exc)
            return {}

    def _get_many(self, keys: Sequence[bytes], dimensions: int) -> dict[int, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for start in range(0, len(unique), _PARAMS):
                part = unique[start:start + _PARAMS]
                marks = ",".join("?" * len(part))
                for key, blob in self._db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({marks})", part):
                    vector = np.frombuffer(blob, dtype=np.float32)
                    if vector.shape == (dimensions,):
                        found[bytes(key)] = vector
            if found:
                self._clock += 1
                hit = list(found)
                with self._transaction():
                    for start in range(0, len(hit), _PARAMS):
                        part = hit[start:start + _PARAMS]
                        self._db.execute(f"UPDATE vectors SET used = ? WHERE key IN ({','.join('?' * len(part))})",
                                         [self._clock, *part])
            out = {i: found[k] for i, k in enumerate(keys) if k in found}
            self.hits += len(out)
            self.misses += len(keys) - len(out)
        return out

    def put_many(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Store ``vectors`` (one row per key, float32, at most the cache's ``dimensions`` wide: a
        model with fewer, e.g. the static model's 256, is charged as many entries and so stays
        within the budget) as the most recently used; then drop the least recently used entries
        while the cache is over its budget. A cache that cannot be written keeps what it had (a
        warning is logged)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(keys) or not 1 <= vectors.shape[1] <= self.dimensions:
            raise ValueError(f"expected {len(keys)} vectors of at most {self.dimensions} dimensions, "
                             f"got {vectors.shape}")
        if not keys:
            return
        with self._lock:
            self._clock += 1
            try:
                with self._transaction():
                    before = self._db.total_changes
                    self._db.executemany("INSERT OR IGNORE INTO vectors (key, vector, used) VALUES (?, ?, ?)",
                                         ((k, v.tobytes(), self._clock) for k, v in zip(keys, vectors)))
                    added = self._db.total_changes - before
                    over = self._count + added - self.budget_bytes // self.entry_bytes
                    if over > 0:
                        self._db.execute("DELETE FROM vectors WHERE rowid IN "
                                         "(SELECT rowid FROM vectors ORDER BY used LIMIT ?)", (over,))
                self._count += added - max(over, 0)
                self.evictions += max(over, 0)
            except sqlite3.Error as exc:
                log.warning("embedding cache not written (%s)", exc)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def stats(self) -> dict[str, int]:
        """Entries, the bytes they are charged, the budget, and hits / misses / evictions since
        the cache was opened."""
        with self._lock:
            return {"entries": self._count, "bytes": self._count * self.entry_bytes,
                    "budget_bytes": self.budget_bytes, "hits": self.hits, "misses": self.misses,
                    "evictions": self.evictions}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        s = self.stats()
        return (f"EmbeddingCache({s['entries']} vectors, {s['bytes'] / _MB:.1f} of {self.budget_bytes / _MB:.0f} MB, "
                f"{s['hits']} hits, {s['misses']} misses)")
