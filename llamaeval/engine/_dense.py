"""Dense (cosine) search over an index's unit vectors: exact below ``DenseConfig.threshold`` chunks,
an approximate HNSW graph (usearch) from it on.

Whatever proposes the candidates, their scores are exact: the graph proposes ``oversample`` x k
chunks, their cosine is recomputed from the float32 vectors, and the k best by that cosine are
returned (ties by chunk order). ``benchmarks/dense_ann.py`` measures the recall@100 of this
search against exact search (>= 0.98 with the defaults; ``benchmarks/results/dense_ann.md``).

Filters: a search may be restricted to ``Allowed`` chunks (a metadata-filter mask and/or a
minimum cosine to the original query). A filter leaving at most ``exact_share`` of the index is
searched exactly over the chunks it allows; otherwise the graph proposes
``oversample`` x k / (allowed share) candidates, four times more until k of them pass, and the
exact search over the allowed chunks is the last resort — so a filtered search never returns
fewer hits than exact search would, only (rarely) other near-equal ones.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DenseConfig", "Allowed", "DenseSearch", "build_dense", "exact_top"]

GRAPH_FILE = "dense.usearch"
KEYS_FILE = "dense.keys.npy"  # graph key of each chunk (absent: key = chunk index)
META_FILE = "dense.json"
_QUANTIZATIONS = ("f32", "f16", "i8")
_MAX_PROPOSALS = 16_384  # beyond this many graph candidates, the exact search is cheaper


@dataclass(frozen=True)
class DenseConfig:
    """How dense search runs; every default lives here.

    ``threshold``: number of chunks from which an index searches an HNSW graph instead of all
    vectors (smaller indexes keep exact search). ``connectivity`` (HNSW M) and ``expansion_add``
    (ef_construction) shape the graph; ``expansion_search`` (ef) and ``oversample`` (graph
    candidates per wanted hit, rescored exactly) trade speed for recall; ``quantization``: how the
    graph stores vectors (``i8``: 1 byte per dimension; scores are always recomputed in float32);
    ``exact_share``: a filter allowing at most this share of the chunks is searched exactly;
    ``build_threads``: threads building the graph (0 = every core); ``max_removed_share``: a sync
    that removes or changes files updates the previous graph in place of a rebuild until the
    entries removed since its build exceed this share of its live ones (removed entries stay in
    an HNSW graph as tombstones that searches step over).
    """

    threshold: int = 100_000
    connectivity: int = 32
    expansion_add: int = 128
    expansion_search: int = 128
    oversample: int = 4
    quantization: str = "i8"
    exact_share: float = 0.05
    build_threads: int = 0
    max_removed_share: float = 0.25

    def __post_init__(self) -> None:
        for name, lo, hi in (("threshold", 1, 2**40), ("connectivity", 4, 128), ("expansion_add", 8, 4096),
                             ("expansion_search", 8, 4096), ("oversample", 1, 64), ("build_threads", 0, 1024)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"dense {name} must be an integer in {lo}..{hi}, got {v!r}")
        if self.quantization not in _QUANTIZATIONS:
            raise ValueError(f"dense quantization must be one of {', '.join(_QUANTIZATIONS)}, got {self.quantization!r}")
        for name in ("exact_share", "max_removed_share"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ValueError(f"dense {name} must be a number in [0, 1], got {v!r}")

    def approximate(self, num_chunks: int) -> bool:
        """Whether an index of ``num_chunks`` chunks searches the graph."""
        return num_chunks >= self.threshold

    def graph_params(self) -> dict[str, Any]:
        """What shapes a saved graph (a saved graph with other values is rebuilt)."""
        return {"connectivity": self.connectivity, "expansion_add": self.expansion_add,
                "quantization": self.quantization}


def exact_top(emb: np.ndarray, qv: np.ndarray, k: int, ids: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` chunks (among ``ids``, sorted, when given) of highest cosine to ``qv``, best first,
    ties by chunk order: (chunk indices, float32 cosines)."""
    qv = np.asarray(qv, dtype=np.float32)
    if ids is None:
        ids = np.arange(emb.shape[0], dtype=np.int64)
        scores = emb @ qv
    else:
        scores = emb[ids] @ qv
    return _best(ids, scores, k)


def _best(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of ``ids`` by ``scores``, best first, ties by chunk index."""
    if ids.size > k:
        part = np.argpartition(-scores, k - 1)[:k]
        keep = scores >= scores[part].min()
        ids, scores = ids[keep], scores[keep]
    order = np.lexsort((ids, -scores))[:k]
    return ids[order].astype(np.int64), scores[order]


@dataclass
class Allowed:
    """Which chunks a dense search may return: ``mask`` (boolean per chunk, from metadata filters;
    None = all) and, when ``cutoff`` is set, only chunks whose cosine to ``cutoff_vector`` (the
    original query's vector) is at least ``cutoff``."""

    emb: np.ndarray
    mask: np.ndarray | None = None
    cutoff: float | None = None
    cutoff_vector: np.ndarray | None = None
    _count: int | None = None

    def keep(self, ids: np.ndarray) -> np.ndarray:
        """Boolean per chunk index of ``ids``: whether it is allowed."""
        ok = np.ones(ids.size, dtype=bool) if self.mask is None else self.mask[ids]
        if self.cutoff is not None:
            ok &= (self.emb[ids] @ self.cutoff_vector) >= np.float32(self.cutoff)
        return ok

    def mask_count(self) -> int:
        """Chunks the mask allows (all when there is no mask)."""
        if self._count is None:
            self._count = int(self.emb.shape[0] if self.mask is None else np.count_nonzero(self.mask))
        return self._count

    def ids(self) -> np.ndarray:
        """Every allowed chunk index, sorted (a full pass: the exact fallback)."""
        ids = np.arange(self.emb.shape[0], dtype=np.int64) if self.mask is None else np.flatnonzero(self.mask)
        return ids[self.keep(ids)] if self.cutoff is not None else ids


class _Graph:
    """A usearch HNSW graph over the chunk vectors. ``keys[i]`` is the graph key of chunk ``i``:
    ``i`` itself in a graph built at once; after updates (files removed or changed) the surviving
    chunks keep the keys they were added under and new chunks get fresh ones (``next_key`` on),
    so an update never renumbers the graph. ``removed``: entries removed since the graph was built
    (usearch keeps them as tombstones until a rebuild)."""

    def __init__(self, graph: Any, keys: np.ndarray | None = None, next_key: int | None = None,
                 removed: int = 0) -> None:
        self._graph = graph
        self._lock = threading.Lock()  # one search context per graph: searches take turns (~1 ms each)
        self.keys = np.arange(int(graph.size), dtype=np.int64) if keys is None else np.asarray(keys, np.int64)
        self.next_key = int(self.keys.max(initial=-1)) + 1 if next_key is None else int(next_key)
        self.removed = int(removed)
        self._position = np.full(self.next_key, -1, dtype=np.int64)  # graph key -> chunk index
        self._position[self.keys] = np.arange(self.keys.size, dtype=np.int64)

    @classmethod
    def build(cls, emb: np.ndarray, config: DenseConfig) -> "_Graph":
        graph = _usearch_index()(ndim=emb.shape[1], metric="ip", dtype=config.quantization,
                             connectivity=config.connectivity, expansion_add=config.expansion_add,
                             expansion_search=config.expansion_search)
        graph.add(np.arange(emb.shape[0], dtype=np.uint64), emb, threads=config.build_threads)
        return cls(graph)

    @classmethod
    def restore(cls, path: Path, config: DenseConfig, keys: np.ndarray | None = None, next_key: int | None = None,
                removed: int = 0) -> "_Graph":
        graph = _usearch_index().restore(str(path))
        if graph is None:
            raise ValueError(f"unreadable dense graph: {path}")
        graph.expansion_search = config.expansion_search
        return cls(graph, keys, next_key, removed)

    def save(self, path: Path) -> dict[str, Any]:
        """Write the graph to ``path`` and its keys beside it (``dense.keys.npy``); what the
        metadata file records of them."""
        self._graph.save(str(path))
        np.save(path.parent / KEYS_FILE, self.keys)
        return {"next_key": self.next_key, "removed": self.removed}

    def updated(self, emb: np.ndarray, old_of_new: np.ndarray, config: DenseConfig) -> "_Graph":
        """A copy of this graph for the chunk vectors ``emb`` of a later version: chunk ``i`` of it
        is this graph's chunk ``old_of_new[i]`` (-1: a new chunk, added under a fresh key); this
        graph's chunks that no new chunk maps to are removed. This graph, which may still serve
        searches, is unchanged."""
        kept = old_of_new >= 0
        gone = np.ones(self.keys.size, dtype=bool)
        gone[old_of_new[kept]] = False
        with self._lock:
            graph = self._graph.copy()
        graph.expansion_search = config.expansion_search
        if gone.any():
            graph.remove(self.keys[gone].astype(np.uint64))
        keys = np.empty(old_of_new.size, dtype=np.int64)
        keys[kept] = self.keys[old_of_new[kept]]
        fresh = np.flatnonzero(~kept)
        keys[fresh] = np.arange(self.next_key, self.next_key + fresh.size, dtype=np.int64)
        if fresh.size:
            graph.add(keys[fresh].astype(np.uint64), emb[fresh], threads=config.build_threads)
        return _Graph(graph, keys, self.next_key + fresh.size, self.removed + int(gone.sum()))

    @property
    def size(self) -> int:
        return int(self._graph.size)

    def memory_bytes(self) -> int:
        """Bytes usearch holds for the graph and its vectors, and the key table."""
        return int(self._graph.memory_usage) + self.keys.nbytes + self._position.nbytes

    def propose(self, qv: np.ndarray, m: int, expansion: int) -> np.ndarray:
        """Up to ``m`` approximate nearest chunk indices (search breadth ``max(expansion, m)``)."""
        with self._lock:
            self._graph.expansion_search = max(expansion, m)
            found = self._graph.search(qv, m, threads=1)
        return self._position[np.asarray(found.keys[: len(found)], dtype=np.int64)]


def _usearch_index() -> Any:
    """usearch's Index class; ConfigurationError naming the package when it is not installed."""
    try:
        from usearch.index import Index as UsearchIndex
    except ImportError:
        from llamaeval._errors import ConfigurationError

        raise ConfigurationError("an index of at least ann_threshold chunks searches an HNSW graph, which needs "
                                 "the 'usearch' package: pip install 'llamaeval[server]' (or raise "
                                 "retrieval_config.ann_threshold to keep exact search)") from None
    return UsearchIndex


def _fingerprint(emb: np.ndarray) -> str:
    """Cheap identity of a vector matrix: its shape and a strided sample of its rows."""
    step = max(1, emb.shape[0] // 997)
    h = hashlib.sha256(f"{emb.shape}".encode())
    h.update(np.ascontiguousarray(emb[::step]).tobytes())
    return h.hexdigest()


class DenseSearch:
    """Dense search over ``emb`` (float32, L2-normalised rows): exact, or through an HNSW graph
    when the index has at least ``config.threshold`` chunks. Thread-safe.

    The graph is read from an index directory by ``load`` (written there by ``build_dense``), or
    built on the first search that needs it (minutes at a million chunks: ``build_dense`` at
    index-build time avoids that)."""

    def __init__(self, emb: np.ndarray, config: DenseConfig | None = None) -> None:
        self.emb = emb
        self.config = config or DenseConfig()
        self.approximate = self.config.approximate(emb.shape[0])
        self._graph: _Graph | None = None
        self._build_lock = threading.Lock()

    def scores(self, qv: np.ndarray) -> np.ndarray:
        """Cosine of every chunk (float32): the exact full pass."""
        return self.emb @ np.asarray(qv, dtype=np.float32)

    def load(self, directory: Path) -> bool:
        """Attach the graph saved in ``directory`` when this search is approximate and the saved
        graph was built over these vectors with this config's graph parameters; whether it did."""
        if not self.approximate:
            return False
        graph = _load_graph(Path(directory), self.emb, self.config)
        if graph is not None:
            self._graph = graph
        return graph is not None

    def save(self, directory: Path) -> bool:
        """Write the graph (built now if needed) into ``directory`` (``dense.usearch`` + ``dense.json``)
        when this search is approximate; remove a stale one otherwise. Whether a graph was written."""
        directory = Path(directory)
        if not self.approximate:
            for name in (GRAPH_FILE, KEYS_FILE, META_FILE):
                (directory / name).unlink(missing_ok=True)
            return False
        keys = self.graph().save(directory / GRAPH_FILE)
        meta = {"library": "usearch", "kind": "hnsw", "metric": "ip", "num_vectors": int(self.emb.shape[0]),
                "dimensions": int(self.emb.shape[1]), "params": self.config.graph_params(),
                "fingerprint": _fingerprint(self.emb), "config": asdict(self.config), "keys": keys}
        (directory / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        return True

    def graph(self) -> _Graph:
        """The graph (built now when neither loaded nor built yet)."""
        if self._graph is None:
            with self._build_lock:
                if self._graph is None:
                    self._graph = _Graph.build(self.emb, self.config)
        return self._graph

    def update(self, previous: "DenseSearch", old_of_new: np.ndarray) -> bool:
        """Take ``previous``'s graph with the chunks it lost removed and the new ones added, instead
        of building a graph of every chunk: this search's chunk ``i`` is ``previous``'s chunk
        ``old_of_new[i]`` (-1: new; the caller knows which chunks a sync kept). Only when both are
        approximate, ``previous`` has its graph, the graph parameters agree and the removed entries
        stay within ``max_removed_share`` of the live ones; whether it did."""
        old = previous._graph
        if (not self.approximate or not previous.approximate or old is None
                or previous.config.graph_params() != self.config.graph_params()
                or old_of_new.shape != (self.emb.shape[0],) or old.keys.size != previous.emb.shape[0]):
            return False
        removed = old.removed + (old.keys.size - int(np.count_nonzero(old_of_new >= 0)))
        if removed > self.config.max_removed_share * self.emb.shape[0]:
            return False
        self._graph = old.updated(self.emb, old_of_new, self.config)
        return True

    def search(self, qv: np.ndarray, k: int, allowed: Allowed | None = None,
               expansion: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` allowed chunks of highest cosine to ``qv`` (exactly, or approximately through the
        graph): (chunk indices, exact float32 cosines), best first, ties by chunk order."""
        qv = np.asarray(qv, dtype=np.float32)
        n = self.emb.shape[0]
        if not self.approximate:
            return exact_top(self.emb, qv, k, None if allowed is None else allowed.ids())
        share = 1.0 if allowed is None else allowed.mask_count() / n
        if share <= self.config.exact_share:
            return exact_top(self.emb, qv, k, allowed.ids())
        ef = self.config.expansion_search if expansion is None else expansion
        graph = self.graph()
        m = min(n, math.ceil(self.config.oversample * k / max(share, 1e-9)))
        while True:
            ids = np.sort(graph.propose(qv, m, ef))
            scores = self.emb[ids] @ qv
            worst = float(scores.min()) if scores.size else -math.inf
            if allowed is not None:
                ok = allowed.keep(ids)
                ids, scores = ids[ok], scores[ok]
            if ids.size >= k or m >= n:
                return _best(ids, scores, k)
            if (allowed.cutoff is not None and worst < allowed.cutoff
                    and np.array_equal(allowed.cutoff_vector, qv)):
                # the graph ranks by the cutoff's own vector: past its worst proposal nothing more passes
                return _best(ids, scores, k)
            if m >= _MAX_PROPOSALS:
                return exact_top(self.emb, qv, k, allowed.ids())
            m = min(n, m * 4)


def _load_graph(directory: Path, emb: np.ndarray, config: DenseConfig) -> _Graph | None:
    meta_path = directory / META_FILE
    if not meta_path.is_file() or not (directory / GRAPH_FILE).is_file():
        return None
    try:  # an unreadable or foreign graph is not used: the caller builds one (nothing is overwritten)
        meta = json.loads(meta_path.read_text("utf-8"))
        if meta.get("fingerprint") != _fingerprint(emb) or meta.get("params") != config.graph_params():
            return None
        keys_meta = meta.get("keys") or {}
        keys = np.load(directory / KEYS_FILE) if (directory / KEYS_FILE).is_file() else None  # else key = index
        graph = _Graph.restore(directory / GRAPH_FILE, config, keys, keys_meta.get("next_key"),
                               int(keys_meta.get("removed", 0)))
    except (OSError, ValueError, RuntimeError, AttributeError, IndexError, TypeError):
        return None
    return graph if graph.size == emb.shape[0] == graph.keys.size else None


def build_dense(emb: np.ndarray, directory: Path, config: DenseConfig) -> bool:
    """Write the HNSW graph of ``emb`` into ``directory`` when an index of this size searches
    approximately; remove a stale one otherwise. Whether a graph was written."""
    return DenseSearch(emb, config).save(directory)
