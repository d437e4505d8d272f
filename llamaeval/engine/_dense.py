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
    ``build_threads``: threads building the graph (0 = every core).
    """

    threshold: int = 100_000
    connectivity: int = 32
    expansion_add: int = 128
    expansion_search: int = 128
    oversample: int = 4
    quantization: str = "i8"
    exact_share: float = 0.05
    build_threads: int = 0

    def __post_init__(self) -> None:
        for name, lo, hi in (("threshold", 1, 2**40), ("connectivity", 4, 128), ("expansion_add", 8, 4096),
                             ("expansion_search", 8, 4096), ("oversample", 1, 64), ("build_threads", 0, 1024)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"dense {name} must be an integer in {lo}..{hi}, got {v!r}")
        if self.quantization not in _QUANTIZATIONS:
            raise ValueError(f"dense quantization must be one of {', '.join(_QUANTIZATIONS)}, got {self.quantization!r}")
        v = self.exact_share
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
            raise ValueError(f"dense exact_share must be a number in [0, 1], got {v!r}")

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
    """A usearch HNSW graph over the chunk vectors (key = chunk index)."""

    def __init__(self, graph: Any) -> None:
        self._graph = graph
        self._lock = threading.Lock()  # one search context per graph: searches take turns (~1 ms each)

    @classmethod
    def build(cls, emb: np.ndarray, config: DenseConfig) -> "_Graph":
        graph = _usearch_index()(ndim=emb.shape[1], metric="ip", dtype=config.quantization,
                             connectivity=config.connectivity, expansion_add=config.expansion_add,
                             expansion_search=config.expansion_search)
        graph.add(np.arange(emb.shape[0], dtype=np.uint64), emb, threads=config.build_threads)
        return cls(graph)

    @classmethod
    def restore(cls, path: Path, config: DenseConfig) -> "_Graph":
        graph = _usearch_index().restore(str(path))
        if graph is None:
            raise ValueError(f"unreadable dense graph: {path}")
        graph.expansion_search = config.expansion_search
        return cls(graph)

    def save(self, path: Path) -> None:
        self._graph.save(str(path))

    def extended(self, emb: np.ndarray, start: int, config: DenseConfig) -> "_Graph":
        """A copy of this graph with the rows of ``emb`` added under keys ``start``, ``start + 1``, ...
        (this graph, which may still serve searches, is unchanged)."""
        with self._lock:
            graph = self._graph.copy()
        graph.expansion_search = config.expansion_search
        graph.add(np.arange(start, start + emb.shape[0], dtype=np.uint64), emb, threads=config.build_threads)
        return _Graph(graph)

    @property
    def size(self) -> int:
        return int(self._graph.size)

    def memory_bytes(self) -> int:
        """Bytes usearch holds for the graph and its vectors."""
        return int(self._graph.memory_usage)

    def propose(self, qv: np.ndarray, m: int, expansion: int) -> np.ndarray:
        """Up to ``m`` approximate nearest chunk indices (search breadth ``max(expansion, m)``)."""
        with self._lock:
            self._graph.expansion_search = max(expansion, m)
            found = self._graph.search(qv, m, threads=1)
        return np.asarray(found.keys[: len(found)], dtype=np.int64)


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
            for name in (GRAPH_FILE, META_FILE):
                (directory / name).unlink(missing_ok=True)
            return False
        self.graph().save(directory / GRAPH_FILE)
        meta = {"library": "usearch", "kind": "hnsw", "metric": "ip", "num_vectors": int(self.emb.shape[0]),
                "dimensions": int(self.emb.shape[1]), "params": self.config.graph_params(),
                "fingerprint": _fingerprint(self.emb), "config": asdict(self.config)}
        (directory / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        return True

    def graph(self) -> _Graph:
        """The graph (built now when neither loaded nor built yet)."""
        if self._graph is None:
            with self._build_lock:
                if self._graph is None:
                    self._graph = _Graph.build(self.emb, self.config)
        return self._graph

    def extend(self, previous: "DenseSearch") -> bool:
        """Take ``previous``'s graph and add this search's chunks past its end, instead of building
        a graph of every chunk: for an index whose vectors begin with exactly ``previous``'s (one that
        grew by appended files; the caller knows). Only when both are approximate, ``previous`` has
        its graph and the graph parameters agree; whether it did."""
        start = previous.emb.shape[0]
        if (not self.approximate or not previous.approximate or previous._graph is None
                or previous.config.graph_params() != self.config.graph_params() or start > self.emb.shape[0]):
            return False
        self._graph = previous._graph.extended(self.emb[start:], start, self.config)
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
        graph = _Graph.restore(directory / GRAPH_FILE, config)
    except (OSError, ValueError, RuntimeError, AttributeError):
        return None
    return graph if graph.size == emb.shape[0] else None


def build_dense(emb: np.ndarray, directory: Path, config: DenseConfig) -> bool:
    """Write the HNSW graph of ``emb`` into ``directory`` when an index of this size searches
    approximately; remove a stale one otherwise. Whether a graph was written."""
    return DenseSearch(emb, config).save(directory)
