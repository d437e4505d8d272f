"""The on-disk index (BM25 + dense vectors + entries) and the search stages of a ``SearchRequest``."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llamaeval.engine._analyze import Analyzer
from llamaeval.engine._config import RetrievalConfig
from llamaeval.engine._dense import Allowed, DenseSearch, build_dense
from llamaeval.engine._embed import Embedder
from llamaeval.engine._models import ModelStore, is_reference, packaged_document
from llamaeval.engine._rerank import LearnedRanker, Reranker, stage_parameters
from llamaeval.engine._search import SearchRequest
from llamaeval.engine._segments import (
    Segment, SegmentSet, make_segment, read_segment, segment_id, write_segment,
)

__all__ = ["IndexEntry", "SearchHit", "SearchResponse", "Index", "IndexWriter", "build_index", "read_index_data"]

#: 2: segments (``segments/<id>.seg``: one file's chunks, vectors and analysed terms) named by a
#: manifest; 1 (still loaded): ``bm25/`` (bm25s), ``entries.jsonl``, ``embeddings.npy``
FORMAT_VERSION = 2
_FORMATS = (1, 2)
_SEGMENTS = "segments"
_ENTRIES = "entries.jsonl"
_EMBEDDINGS = "embeddings.npy"
_CONFIG = "config.json"
_MANIFEST = "manifest.json"
_BM25_DIR = "bm25"
_MODELS_DIR = "models"  # a model store: the second-stage model of a config naming a non-shipped one


@dataclass
class IndexEntry:
    """One searchable chunk and where it came from (``metadata`` = the file's custom metadata)."""

    chunk_id: str
    file_id: str
    file_name: str
    chunk_index: int
    start_char: int
    end_char: int
    text: str
    title: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def filter_fields(self) -> Mapping[str, Any]:
        """What a search filter sees of this chunk: its file's ``file_name``, the custom metadata
        (which may set its own ``file_name``) and ``file_id`` — the fields of the node's ``extra_info``."""
        return _FilterFields(self)


_ABSENT = object()


class _FilterFields(Mapping[str, Any]):
    """A read-only view ``{"file_name": ..., **metadata, "file_id": ...}`` of an entry (no copy)."""

    __slots__ = ("_entry",)

    def __init__(self, entry: IndexEntry) -> None:
        self._entry = entry

    def get(self, key: str, default: Any = None) -> Any:  # what filters call: no KeyError round trip
        e = self._entry
        if key == "file_id":
            return e.file_id
        value = e.metadata.get(key, _ABSENT)
        if value is not _ABSENT:
            return value
        return e.file_name if key == "file_name" else default

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, _ABSENT)
        if value is _ABSENT:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        yield "file_name"
        yield from (k for k in self._entry.metadata if k not in ("file_name", "file_id"))
        yield "file_id"

    def __len__(self) -> int:
        return sum(1 for _ in self)


@dataclass
class SearchHit:
    """A ranked chunk, its final ``score`` and the score each stage gave it."""

    entry: IndexEntry
    score: float
    stage_scores: dict[str, float]


@dataclass
class SearchResponse:
    """Hits best first, and seconds spent per stage (``embed``, ``bm25``, ``dense``, ``fuse``, ...)."""

    hits: list[SearchHit]
    timings: dict[str, float]


def _top(scores: np.ndarray, n: int, keep: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``n`` best scores (among ``keep``, a boolean mask, when given), best
    first; ties broken by index (chunk order)."""
    cand = np.arange(scores.shape[0]) if keep is None else np.flatnonzero(keep)
    if cand.size > n:
        part = np.argpartition(-scores[cand], n - 1)[:n]
        threshold = scores[cand[part]].min()
        cand = cand[scores[cand] >= threshold]
    order = np.lexsort((cand, -scores[cand]))
    return cand[order][:n]


def _minmax(x: np.ndarray) -> np.ndarray:
    if x.size == 0:
        return x.astype(np.float64)
    lo, hi = float(x.min()), float(x.max())
    if hi - lo <= 1e-12:
        return np.where(x > 0, 1.0, 0.0) if hi > 0 else np.zeros_like(x, dtype=np.float64)
    return (x.astype(np.float64) - lo) / (hi - lo)


def _pool_minmax(scores: np.ndarray, pool: np.ndarray, cand: np.ndarray, flat: float) -> np.ndarray:
    """``scores[cand]`` min-max scaled over ``pool`` (one retriever's candidates), clipped at 0;
    ``flat`` where the pool's scores are all equal (0 for a non-matching BM25 query)."""
    if pool.size == 0:
        return np.zeros(cand.size)
    lo, hi = float(scores[pool].min()), float(scores[pool].max())
    if hi > lo:
        return np.clip((scores[cand] - lo) / (hi - lo), 0, None)
    return (scores[cand] > 0) * 1.0 if flat == 0.0 else np.full(cand.size, flat)


def _check_entries(entries: list[IndexEntry], embeddings: np.ndarray) -> np.ndarray:
    if not entries:
        raise ValueError("cannot build an index with no entries")
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(entries):
        raise ValueError(f"embeddings must have shape ({len(entries)}, d), got {tuple(emb.shape)}")
    ids = [e.chunk_id for e in entries]
    if len(set(ids)) != len(ids):
        raise ValueError("chunk_id values must be unique")
    return emb


def _build_bm25(terms: list[list[str]], config: RetrievalConfig) -> Any:
    import bm25s

    model = bm25s.BM25(k1=config.bm25_k1, b=config.bm25_b, method=config.bm25_method)
    # "" keeps empty chunks valid for bm25s; it never matches a query term.
    model.index([t if t else [""] for t in terms], show_progress=False)
    return model


def build_index(entries: list[IndexEntry], embeddings: np.ndarray, config: RetrievalConfig, directory: Path,
                model_store: ModelStore | None = None, *, embedding_model: str | None = None) -> None:
    """Write a complete, self-contained index of ``entries`` into ``directory`` (created if missing).

    ``embedding_model``: the model that made ``embeddings`` (default MiniLM's name), recorded in the
    manifest: ``Index.load`` refuses an embedder of another model.

    ``embeddings[i]`` is the L2-normalised passage vector of ``entries[i]``. The caller
    swaps the directory in atomically; nothing outside it is written. When ``config`` names a
    second-stage model that is not shipped with the package, the model is looked up in
    ``model_store`` and in ``directory/models`` (a store the caller may have seeded), and the
    index keeps exactly that model in ``directory/models`` (ValueError when it is nowhere).
    """
    emb = _check_entries(entries, embeddings)
    if not isinstance(config, RetrievalConfig):
        raise TypeError("config must be a RetrievalConfig")
    writer = IndexWriter(directory, config, model_store=model_store, embedding_model=embedding_model)
    for lo, hi in _file_runs(entries):  # a segment per file (per run of one file's chunks)
        records = json.dumps([vars(e) for e in entries[lo:hi]], ensure_ascii=False, sort_keys=True)
        content = hashlib.sha256(records.encode("utf-8") + emb[lo:hi].tobytes()).hexdigest()
        writer.add(segment_id(content, config), entries[lo:hi], emb[lo:hi])
    writer.finish()
    build_dense(emb, Path(directory), config.dense_config())  # the HNSW graph, past config.ann_threshold


def _file_runs(entries: list[IndexEntry]) -> list[tuple[int, int]]:
    """(start, end) of each run of consecutive entries of one file."""
    runs: list[tuple[int, int]] = []
    lo = 0
    for i in range(1, len(entries) + 1):
        if i == len(entries) or entries[i].file_id != entries[lo].file_id:
            runs.append((lo, i))
            lo = i
    return runs


class IndexWriter:
    """Writes an index (format 2) into ``directory`` segment by segment, in chunk order:
    ``add`` a new segment, ``link`` one of the ``reuse`` index directories (a hard link, a copy
    where the filesystem has none), then ``finish`` (config and manifest). A sync of k changed
    files therefore writes k segments and links the others. Nothing outside ``directory`` is
    written; the caller swaps the directory in atomically."""

    def __init__(self, directory: Path, config: RetrievalConfig, *, reuse: tuple[Path, ...] = (),
                 model_store: ModelStore | None = None, embedding_model: str | None = None) -> None:
        if not isinstance(config, RetrievalConfig):
            raise TypeError("config must be a RetrievalConfig")
        self.directory = Path(directory)
        (self.directory / _SEGMENTS).mkdir(parents=True, exist_ok=True)
        self._folder = str(self.directory / _SEGMENTS)
        _keep_model(config, self.directory, model_store)
        self.config = config
        self.embedding_model = embedding_model or Embedder.model_name
        self._analyzer = Analyzer(config.stemmer, config.stopwords)
        self._known: dict[str, tuple[str, list[Any]]] = {}  # segment id -> (file, manifest row)
        self._dims: set[int] = set()
        for d in reuse:
            try:
                manifest = json.loads((Path(d) / _MANIFEST).read_text("utf-8"))
            except (OSError, ValueError):
                continue
            if manifest.get("format_version") != 2 or manifest.get("embedding_model") != self.embedding_model:
                continue
            folder = os.path.join(d, _SEGMENTS)
            for row in manifest.get("segments", []):
                self._known.setdefault(row[0], (os.path.join(folder, f"{row[0]}.seg"), row))
        self.rows: list[list[Any]] = []
        self.written = 0
        self.linked = 0

    def link(self, sid: str) -> bool:
        """Take segment ``sid`` from a reused index; False when none has it (``add`` it then)."""
        known = self._known.get(sid)
        if known is None:
            return False
        src, row = known
        dst = os.path.join(self._folder, f"{sid}.seg")
        try:
            os.link(src, dst)
        except FileExistsError:
            pass
        except OSError:
            try:
                shutil.copyfile(src, dst)  # a filesystem without hard links
            except OSError:
                return False  # gone meanwhile: the caller writes it anew
        self.rows.append(list(row))
        self._dims.add(int(row[3]))
        self.linked += 1
        return True

    def add(self, sid: str, entries: list[IndexEntry], vectors: np.ndarray) -> Segment:
        """Analyse and write a new segment ``sid`` of ``entries`` and their ``vectors``."""
        emb = _check_entries(entries, vectors)
        seg = make_segment(sid, entries, emb, self._analyzer)
        size = write_segment(self.directory / _SEGMENTS / f"{sid}.seg", seg)
        entry_bytes = sum(len(e.text) + 200 for e in entries)  # ~ the entries' JSON
        self.rows.append([sid, len(entries), size, int(emb.shape[1]), entry_bytes])
        self._dims.add(int(emb.shape[1]))
        self.written += 1
        return seg

    def finish(self) -> dict[str, Any]:
        """Write config and manifest (the segments in the order they were added); the manifest."""
        if not self.rows:
            raise ValueError("cannot build an index with no entries")
        if len(self._dims) != 1:
            raise ValueError(f"segments of different dimensions {sorted(self._dims)}: rebuild the index")
        (self.directory / _CONFIG).write_text(json.dumps(self.config.to_dict(), indent=1), encoding="utf-8")
        manifest = {
            "format_version": FORMAT_VERSION,
            "num_chunks": sum(int(r[1]) for r in self.rows),
            "dimensions": self._dims.pop(),
            "embedding_model": self.embedding_model,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "bytes": {"segments": sum(int(r[2]) for r in self.rows), "entries": sum(int(r[4]) for r in self.rows)},
            "segments": self.rows,  # [id, chunks, bytes, dimensions, entry bytes] in chunk order
        }
        (self.directory / _MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
        return manifest


def _keep_model(config: RetrievalConfig, directory: Path, model_store: ModelStore | None) -> None:
    """Resolve ``config``'s second-stage model (ValueError if it is nowhere); a referenced model
    not shipped with the package is kept in ``directory/models`` (and nothing else is)."""
    local = ModelStore(directory / _MODELS_DIR)
    stores = tuple(s for s in (model_store, local) if s is not None)
    doc = config.model_document(stores)
    ref = config.ltr_model
    keep = None
    if is_reference(ref) and packaged_document(ref) is None:
        keep = local.put(doc)["sha256"]
        if keep != ref["sha256"]:  # pragma: no cover - stores write canonical JSON, hashed as such
            raise ValueError(f"model {ref['name']} {ref['version']}: stored document does not hash to its SHA-256")
    if local.directory.is_dir():
        for path in local.directory.iterdir():
            if path.name != f"{keep}.json":
                path.unlink(missing_ok=True)
        if keep is None:
            local.directory.rmdir()


def _load_segments(directory: Path, manifest: dict[str, Any], config: RetrievalConfig,
                   previous: "Index | None") -> SegmentSet:
    """The segments a format 2 manifest names, those ``previous`` holds taken from it."""
    prev = getattr(previous, "_segset", None)
    known = prev.by_id() if prev is not None else {}
    segments = []
    for row in manifest["segments"]:
        seg = known.get(row[0])
        if seg is None:
            seg = read_segment(directory / _SEGMENTS / f"{row[0]}.seg")
            if len(seg) != int(row[1]):
                raise ValueError(f"segment {row[0]} holds {len(seg)} chunks, the manifest says {row[1]}")
        segments.append(seg)
    return SegmentSet.of(segments, config.bm25_k1, config.bm25_b, config.bm25_method, previous=prev)


def read_index_data(directory: Path) -> tuple[list[IndexEntry], np.ndarray]:
    """The entries and vectors of an index directory (either format), in chunk order."""
    directory = Path(directory)
    manifest = json.loads((directory / _MANIFEST).read_text("utf-8"))
    if manifest.get("format_version") == 2:
        segments = [read_segment(directory / _SEGMENTS / f"{row[0]}.seg") for row in manifest["segments"]]
        return [e for s in segments for e in s.entries], np.concatenate([s.vectors for s in segments])
    with open(directory / _ENTRIES, encoding="utf-8") as fh:
        entries = [IndexEntry(**json.loads(line)) for line in fh if line.strip()]
    return entries, np.load(directory / _EMBEDDINGS)


class Index:
    """A loaded index; ``search(SearchRequest)`` runs the stages, ``search(query, mode, top_k)`` a mode preset.

    Thread-safe for concurrent searches (read-only after load).
    """

    def __init__(
        self,
        entries: list[IndexEntry],
        embeddings: np.ndarray,
        config: RetrievalConfig,
        embedder: Embedder,
        bm25: Any = None,
        reranker: Reranker | None = None,
        model_store: ModelStore | None = None,
    ) -> None:
        """In-memory index (``build_index`` + ``Index.load`` is the on-disk route). ``model_store``:
        where the config's second-stage model is looked up when it is not shipped with the package."""
        self._emb = _check_entries(entries, embeddings)
        if embedder is not None and self._emb.shape[1] != embedder.dimensions:
            raise ValueError(f"index vectors have {self._emb.shape[1]} dimensions, embedder {embedder.dimensions}")
        if reranker is not None and not callable(getattr(reranker, "score", None)):
            raise TypeError("reranker must have a score(query, passages) -> np.ndarray method")
        self.entries = entries
        self.config = config
        self.config_summary = config.summary()  # once per index: sent with every search
        self.embedder = embedder
        self.reranker = reranker
        self.num_chunks = len(entries)
        self._analyzer = Analyzer(config.stemmer, config.stopwords)
        if bm25 is None:  # one in-memory segment: the chunks are analysed once, here
            segment = make_segment("memory", entries, self._emb, self._analyzer)
            bm25 = SegmentSet.of([segment], config.bm25_k1, config.bm25_b, config.bm25_method)
        self._init_bm25(bm25)
        self._file_of = self._file_numbers(entries)
        self._title_terms: dict[int, frozenset[str]] = {}
        self._blas: Any = None
        self._chunk_terms: dict[int, list[str]] = {}
        self._chunk_numbers: dict[int, frozenset[str]] = {}
        self._file_meta_terms: dict[str, tuple[int, frozenset[str]]] | None = None
        self._filter_fields: list[Mapping[str, Any]] | None = None  # what filters see, per chunk (lazily)
        self._stores = () if model_store is None else (model_store,)
        self._dense = DenseSearch(self._emb, config.dense_config())  # exact, or HNSW past ann_threshold
        self._set_model(config)

    def _file_numbers(self, entries: list[IndexEntry]) -> np.ndarray:
        """Each chunk's file, numbered in order of first appearance (per segment when the index
        has segments: each knows its own files, so a new version pays per segment, not per chunk)."""
        if self._segset is None:
            files: dict[str, int] = {}
            return np.array([files.setdefault(e.file_id, len(files)) for e in entries], dtype=np.int64)
        numbers: dict[str, int] = {}
        parts = []
        for seg in self._segset.segments:
            ids, codes = seg.files()
            parts.append(np.array([numbers.setdefault(f, len(numbers)) for f in ids], dtype=np.int64)[codes])
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def _init_bm25(self, bm25: Any) -> None:
        """BM25 postings from a ``SegmentSet`` (format 2, in-memory) or a bm25s model (format 1)."""
        self._segset: SegmentSet | None = None
        if isinstance(bm25, SegmentSet):
            if bm25.postings.num_docs != self.num_chunks:
                raise ValueError(f"segments hold {bm25.postings.num_docs} chunks, entries {self.num_chunks}")
            self._segset = bm25
            self._b_data = bm25.data
            self._b_indices = bm25.postings.docs
            self._b_indptr = bm25.postings.indptr
            self._vocab = bm25.live_vocab()
            self._idf = np.log(1.0 + (self.num_chunks - bm25.df + 0.5) / (bm25.df + 0.5))
            return
        s = bm25.scores
        self._b_data = np.asarray(s["data"], dtype=np.float32)
        self._b_indices = np.asarray(s["indices"], dtype=np.int64)
        self._b_indptr = np.asarray(s["indptr"], dtype=np.int64)
        self._vocab: dict[str, int] = dict(bm25.vocab_dict)
        n_docs = self.num_chunks
        df = np.diff(self._b_indptr).astype(np.float64)
        self._idf = np.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))

    @classmethod
    def load(
        cls,
        directory: Path,
        embedder: Embedder,
        reranker: Reranker | None = None,
        config: RetrievalConfig | None = None,
        previous: "Index | None" = None,
    ) -> "Index":
        """Load an index written by ``build_index`` or ``IndexWriter`` (format 2), or a format 1 one.

        ``reranker``: optional plug-in second stage (see ``Reranker``). ``config``: optional
        override of the stored config; parameters that shape the BM25 index (bm25_*,
        stemmer, stopwords) must match the stored ones (ValueError otherwise). A second-stage
        model the package does not ship is read from the index's own ``models/`` store.
        ``previous``: a loaded index (e.g. the version this one replaces) whose segments are
        reused in memory instead of read again, and whose BM25 postings are merged with the
        new segments' (linear, no re-analysis): a version that differs by k files loads in
        O(k) reads plus that merge. The result is the same as without it.
        """
        directory = Path(directory)
        try:
            manifest = json.loads((directory / _MANIFEST).read_text("utf-8"))
            stored = RetrievalConfig.from_dict(json.loads((directory / _CONFIG).read_text("utf-8")))
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"not an index directory (missing {Path(exc.filename).name}): {directory}") from None
        if manifest.get("format_version") not in _FORMATS:
            raise ValueError(f"unsupported index format {manifest.get('format_version')!r}")
        if embedder is not None and manifest.get("embedding_model") != embedder.model_name:
            raise ValueError(
                f"index was built with {manifest.get('embedding_model')!r}, embedder is {embedder.model_name!r}"
            )
        if config is not None:
            for key in ("bm25_k1", "bm25_b", "bm25_method", "stemmer", "stopwords"):
                if getattr(config, key) != getattr(stored, key):
                    raise ValueError(f"{key} differs from the built index; rebuild the index to change it")
            stored = config
        model_store = ModelStore(directory / _MODELS_DIR)
        if manifest["format_version"] == 2:
            segset = _load_segments(directory, manifest, stored, previous)
            entries = [e for seg in segset.segments for e in seg.entries]
            emb = np.concatenate([seg.vectors for seg in segset.segments])
            for seg, start in zip(segset.segments, segset.starts.tolist()):
                seg.vectors = emb[start:start + len(seg)]  # one copy of the vectors in memory, not two
            return _with_dense(cls(entries, emb, stored, embedder, bm25=segset, reranker=reranker,
                                   model_store=model_store), directory, previous)
        import bm25s

        entries = []
        with open(directory / _ENTRIES, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    entries.append(IndexEntry(**json.loads(line)))
        emb = np.load(directory / _EMBEDDINGS, mmap_mode=None)
        bm25 = bm25s.BM25.load(str(directory / _BM25_DIR), show_progress=False)
        return _with_dense(cls(entries, emb, stored, embedder, bm25=bm25, reranker=reranker, model_store=model_store),
                           directory)

    def save_graph(self, directory: Path) -> bool:
        """Write the approximate dense graph this index searches into ``directory`` (an index
        version's, before it is served), so later loads read it instead of building it; removes a
        stale one below ``ann_threshold``. Whether a graph was written."""
        return self._dense.save(Path(directory))

    def with_config(self, config: RetrievalConfig) -> "Index":
        """A view of this index searching with another config (same BM25 parameters required)."""
        for key in ("bm25_k1", "bm25_b", "bm25_method", "stemmer", "stopwords"):
            if getattr(config, key) != getattr(self.config, key):
                raise ValueError(f"{key} differs from the built index; rebuild the index to change it")
        clone = object.__new__(Index)
        clone.__dict__.update(self.__dict__)
        clone.config = config
        clone.config_summary = config.summary()
        if config.ann_threshold != self.config.ann_threshold:  # exact <-> HNSW (a graph is built on first use)
            clone._dense = DenseSearch(self._emb, config.dense_config())
        clone._set_model(config)
        return clone

    def _set_model(self, config: RetrievalConfig) -> None:
        """The learned rankers and stage parameters of ``config``'s second-stage model document."""
        doc = config.model_document(self._stores)
        models = doc["models"]
        self._rankers = {name: LearnedRanker(models[name]) for name in ("accurate", "advanced") if name in models}
        self._stage_params = stage_parameters(doc.get("stages"))

    # ------------------------------------------------------------------ scoring primitives
    def _query_weights(self, query: str) -> dict[str, float]:
        weights: dict[str, float] = {}
        for term in self._analyzer(query):
            weights[term] = weights.get(term, 0.0) + 1.0
        return weights

    def _bm25_scores(self, weights: dict[str, float]) -> np.ndarray:
        """BM25 of every chunk for a weighted bag of terms, summed in sorted term order."""
        scores = np.zeros(self.num_chunks, dtype=np.float32)
        for term in sorted(weights):
            tid = self._vocab.get(term)
            if tid is None or term == "":
                continue
            lo, hi = self._b_indptr[tid], self._b_indptr[tid + 1]
            scores[self._b_indices[lo:hi]] += np.float32(weights[term]) * self._b_data[lo:hi]
        return scores

    def _dense_scores(self, qv: np.ndarray) -> "np.ndarray | _CosineScores":
        """Cosine of every chunk (exact search), or, past ``ann_threshold``, a view computing it
        only for the chunks asked (``scores[ids]``): no pass over every chunk."""
        if self._dense.approximate:
            return _CosineScores(self._emb, qv)
        return self._emb @ qv.astype(np.float32)

    def _fuse(self, sparse: np.ndarray, dense: np.ndarray, req: SearchRequest, allowed: np.ndarray | None
              ) -> tuple[np.ndarray, np.ndarray]:
        """Candidates (union of each retriever's best: ``sparse_top_k`` chunks with a positive
        BM25 score, ``dense_top_k`` by cosine, both at least ``top_k``, among ``allowed``) and
        their fused scores; a retriever with fusion weight 0 contributes no candidates."""
        cfg = self.config
        empty = np.zeros(0, dtype=np.int64)
        if isinstance(dense, _CosineScores):  # past ann_threshold: pools from candidate sets
            top_s, top_d = self._approximate_pools(sparse, dense, req, allowed)
        else:
            keep_s = sparse > 0 if allowed is None else (sparse > 0) & allowed
            top_s = _top(sparse, max(req.sparse_top_k, req.top_k), keep_s) if req.uses_sparse else empty
            top_d = _top(dense, max(req.dense_top_k, req.top_k), allowed) if req.uses_dense else empty
        cand = np.union1d(top_s, top_d)
        w = req.alpha
        if cfg.fusion == "rrf":
            fused = (1 - w) / (cfg.rrf_k + _pool_ranks(top_s, cand)) + w / (cfg.rrf_k + _pool_ranks(top_d, cand))
            fused = fused * 2.0  # equal weights give plain RRF
        else:
            fused = (1 - w) * _pool_minmax(sparse, top_s, cand, 0.0) + w * _pool_minmax(dense, top_d, cand, 1.0)
        return cand, fused.astype(np.float64)

    # ------------------------------------------------------------------ features
    def _terms_of(self, i: int) -> list[str]:
        """Analysed terms of chunk ``i`` (cached: analysis costs ~0.2 ms per chunk)."""
        terms = self._chunk_terms.get(i)
        if terms is None:
            if self._segset is not None:  # analysed at index time
                terms = self._segset.terms_of(i)
            else:
                terms = [sys.intern(t) for t in self._analyzer(self.entries[i].text)]
            self._chunk_terms[i] = terms
        return terms

    def _title_terms_of(self, i: int) -> frozenset[str]:
        terms = self._title_terms.get(i)
        if terms is None:
            title = self.entries[i].title or ""
            terms = frozenset(self._analyzer(title))
            self._title_terms[i] = terms
        return terms

    def _features(self, cand: np.ndarray, fused: np.ndarray, ctx: dict[str, Any]) -> dict[str, np.ndarray]:
        """Second-stage features of the candidates (all computed over the candidate set),
        given their fused scores and the query context of ``_candidates``.

        ``ctx["chunk_match"]``: per-query cache of the query side of the term matching
        (``_query_match``; advanced matches twice: feedback, then its own second stage). The
        chunk side (``_match``) runs over all candidates at once on their cached term ids."""
        sparse, dense = ctx["sparse"], ctx["dense"]
        query = ctx["chunk_match"].get("query")
        if query is None:  # the query side of the matching, once per query (advanced matches twice)
            query = ctx["chunk_match"]["query"] = self._query_match(ctx["q_weights"], ctx["q_terms"])
        qterms, idf = query["terms"], query["idf"]
        n = cand.size
        nterms, tf, coverage, missing, proximity, phrase, title, numbers = self._match(cand, query, ctx["q_numbers"])
        length = np.log1p(nterms)
        bm25_raw = sparse[cand].astype(np.float64)
        bm25_mm = _minmax(bm25_raw)
        dense_raw = dense[cand].astype(np.float64)
        dense_mm = _minmax(dense_raw)
        files = self._file_of[cand]
        doc_bm25 = _group_max(files, bm25_mm)
        doc_dense = _group_max(files, dense_mm)
        # BM25 variants recomputed over the candidates (avgdl = the candidates' mean length):
        # k1=0.9/b=0.4 (the Anserini default) and b=0 (no length normalisation)
        avgdl = float(nterms.mean()) if n else 1.0
        # summed term by term in sorted term order (a missing term adds exactly 0)
        bm25_v = np.zeros(n)
        bm25_flat = np.zeros(n)
        norm = 0.6 + 0.4 * nterms / max(avgdl, 1.0)
        for col in range(len(qterms)):
            f = tf[:, col]
            bm25_v += idf[col] * f * 1.9 / (f + 0.9 * norm)
            bm25_flat += idf[col] * f * 2.2 / (f + 1.2)
        bm25_z, dense_z = _zscore(bm25_raw), _zscore(dense_raw)
        # how much the two retrievers agree on this query: shared share of their top 10 candidates
        top = min(10, n)
        agree = (np.intersect1d(np.argsort(-bm25_raw, kind="stable")[:top],
                                np.argsort(-dense_raw, kind="stable")[:top]).size / top) if top else 0.0
        # feedback that retrieves nothing new: similarity to the mean vector of the best three fused
        # candidates (the same from BM25 over their expansion terms was tried: it did not transfer)
        top3 = cand[np.lexsort((cand, -fused))[:3]]
        centroid = self._emb[top3].astype(np.float64).mean(axis=0)
        top_sim_z = _zscore(self._emb[cand].astype(np.float64) @ centroid)
        fused_z = _zscore(fused)
        # ... counted only where the fused ranking is sure of its top: max z of fused 3 -> 0, 4 -> 1
        sure = min(max(float(fused_z.max(initial=0.0)) - 3.0, 0.0), 1.0)
        return {
            "bm25_z": bm25_z,
            "dense_z": dense_z,
            "top_sim_z": top_sim_z,
            "top_sim_sure": top_sim_z * sure,
            "fused_z": fused_z,
            "length_z": _zscore(length),
            "agree_bm25_z": agree * bm25_z,
            "agree_dense_z": agree * dense_z,
            "bm25_k09b04": _minmax(bm25_v),
            "bm25_flat": _minmax(bm25_flat),
            "match_frac": (tf > 0).sum(axis=1) / max(len(qterms), 1),
            "bm25": bm25_mm,
            "dense": dense_raw,
            "dense_mm": dense_mm,
            "fused": _minmax(fused),
            "fused_rrf": 1.0 / (60.0 + _ranks(cand, fused)),
            "bm25_rank": 1.0 / (10.0 + _ranks(cand, bm25_raw)),
            "dense_rank": 1.0 / (10.0 + _ranks(cand, dense_raw)),
            "doc_bm25_max": doc_bm25,
            "doc_dense_max": doc_dense,
            "doc_bm25_sum": _group_sum(files, bm25_mm),
            "doc_dense_mean": _group_sum(files, dense_mm) / _group_sum(files, np.ones(n)),
            "title": title,
            "number_match": numbers,
            "coverage": coverage,
            "missing_idf": missing,
            "proximity": proximity,
            "phrase": phrase,
            "length": length,
            # query-level context (constant within a query): lets a non-linear model adapt
            "q_terms": np.full(n, math.log1p(len(qterms))),
            "q_bm25_top": np.full(n, float(bm25_raw.max()) if n else 0.0),
            "q_dense_top": np.full(n, float(dense_raw.max()) if n else 0.0),
        }

    def _term_ids(self, i: int) -> np.ndarray:
        """Vocabulary ids of chunk ``i``'s terms in text order (-1 for a term outside the
        vocabulary), cached per chunk on first use (int32, 4 bytes a term)."""
        cache = self.__dict__.get("_term_id_cache")
        if cache is None:
            cache = self.__dict__.setdefault("_term_id_cache", {})
        ids = cache.get(i)
        if ids is None:
            segments = getattr(self, "_segset", None)
            if segments is not None:  # stored at index time
                ids = segments.term_ids_of(i)
            else:
                vocab = self._vocab
                ids = np.fromiter((vocab.get(t, -1) for t in self._terms_of(i)), dtype=np.int32)
            cache[i] = ids
        return ids

    def _query_match(self, q_weights: dict[str, float], q_order: list[str]) -> dict[str, Any]:
        """The query side of ``_match``: its terms in the vocabulary (sorted), their ids and idf,
        and its distinct bigrams as pairs of term slots (-1: a bigram no chunk can hold)."""
        terms = sorted(t for t in q_weights if t in self._vocab)
        ids = np.array([self._vocab[t] for t in terms], dtype=np.int64)
        idf = self._idf[ids].astype(np.float64) if terms else np.zeros(0)
        slot = {t: k for k, t in enumerate(terms)}
        m = len(terms)
        bigrams = list(dict.fromkeys(zip(q_order, q_order[1:])))
        codes = [slot[a] * m + slot[b] if a in slot and b in slot else -1 for a, b in bigrams]
        return {"terms": terms, "ids": ids, "idf": idf, "set": frozenset(terms),
                "idf_total": float(sum(float(x) for x in idf)) or 1.0, "idf_max": float(idf.max()) if m else 1.0,
                "bigrams": len(bigrams), "bigram_codes": np.unique([c for c in codes if c >= 0]).astype(np.int64)}

    def _match(self, cand: np.ndarray, query: dict[str, Any], q_numbers: frozenset[str]) -> tuple[np.ndarray, ...]:
        """How each candidate matches the query (``_query_match``), all candidates at once:
        (number of terms, query-term frequencies (candidates x query terms), idf coverage, rarest
        missing idf, proximity, bigram phrase share, title idf share, share of the query's numbers
        found verbatim). Proximity: distinct query terms matched / the smallest window holding all
        of them (0 under two); phrase: share of the query's distinct bigrams found (0 under two terms)."""
        n, m = cand.size, len(query["terms"])
        seqs = [self._term_ids(int(i)) for i in cand]
        lengths = np.array([s.size for s in seqs], dtype=np.int64)
        nterms = lengths.astype(np.float64)
        flat = np.concatenate(seqs) if n else np.zeros(0, dtype=np.int32)
        starts = np.cumsum(lengths) - lengths
        # positions (in ``flat``) of query terms, their chunk (row) and query-term slot
        sorter = np.argsort(query["ids"], kind="stable")
        sorted_ids = query["ids"][sorter]
        hit = np.flatnonzero(np.isin(flat, sorted_ids)) if m else np.zeros(0, dtype=np.int64)
        slot = sorter[np.searchsorted(sorted_ids, flat[hit])] if hit.size else np.zeros(0, dtype=np.int64)
        row = np.searchsorted(starts, hit, side="right") - 1 if hit.size else np.zeros(0, dtype=np.int64)
        tf = np.bincount(row * m + slot, minlength=n * m).reshape(n, m).astype(np.float64)
        present = tf > 0
        n_present = present.sum(axis=1)
        idf = query["idf"]
        coverage = (present * idf).sum(axis=1) / query["idf_total"]
        missing = np.where(present, 0.0, idf).max(axis=1, initial=0.0) / query["idf_max"]
        best = _min_windows(hit, slot, row, starts, present, n)
        proximity = np.where((n_present >= 2) & (best > 0), n_present / np.maximum(best, 1), 0.0)
        phrase = np.zeros(n)
        codes = query["bigram_codes"]
        if codes.size and hit.size > 1:
            nxt = (hit[1:] == hit[:-1] + 1) & (row[1:] == row[:-1])  # adjacent query terms in one chunk
            pair_rows, pair_codes = row[:-1][nxt], slot[:-1][nxt] * m + slot[1:][nxt]
            keep = np.isin(pair_codes, codes)
            found = np.unique(pair_rows[keep] * (m * m) + pair_codes[keep]) // (m * m)
            phrase = np.bincount(found, minlength=n) / query["bigrams"]
            phrase[n_present < 2] = 0.0
        title = np.zeros(n)
        qset = query["set"]
        if qset:
            idf_of = dict(zip(query["terms"], idf.tolist()))
            total = query["idf_total"]
            title = np.array([sum(idf_of[t] for t in qset & self._title_terms_of(int(i))) / total for i in cand],
                             dtype=np.float64)
        numbers = np.zeros(n)
        if q_numbers:
            numbers = np.array([len(q_numbers & self._numbers_of(int(i))) / len(q_numbers) for i in cand],
                               dtype=np.float64)
        return nterms, tf, coverage, missing, proximity, phrase, title, numbers

    def _numbers_of(self, i: int) -> frozenset[str]:
        found = self._chunk_numbers.get(i)
        if found is None:
            found = self._chunk_numbers[i] = self._analyzer.numbers(self.entries[i].text)
        return found

    # ------------------------------------------------------------------ search
    def search(self, query: "str | SearchRequest", mode: str = "fast", top_k: int = 10) -> SearchResponse:
        """Rank chunks for a :class:`SearchRequest`, or for ``query`` in ``mode`` ('fast',
        'accurate', 'advanced': presets of a request under this index's config), ``top_k`` in
        1..MAX_TOP_K."""
        if isinstance(query, SearchRequest):
            request = query
        else:
            if not isinstance(query, str) or not query.strip():
                raise ValueError("query must be a non-empty string")
            request = SearchRequest.preset(mode, query, top_k, self.config)
        if self._blas is None:
            from threadpoolctl import ThreadpoolController

            self._blas = ThreadpoolController()  # scanning the loaded libraries costs ~5 ms: once
        with self._blas.limit(limits=1, user_api="blas"):
            return self._search(request)

    def _search(self, req: SearchRequest) -> SearchResponse:
        cfg = self.config
        timings: dict[str, float] = {}
        clock = time.perf_counter
        cand, final, stage, ctx = self._candidates(req, timings)
        if cand.size == 0 or not (req.rerank or req.aggregate or req.documents_first):
            return self._respond(cand, final, stage, req.top_k, timings)
        if req.rerank:
            model = "advanced" if req.expand else "accurate"
            if cfg.second_stage == "ltr" and model in self._rankers:
                t = clock()
                feats = self._stage_features(cand, stage, ctx, req.expand)
                timings["features"] = clock() - t
                t = clock()
                final = self._rankers[model].score(feats)
                stage["ltr"] = final
                timings["ltr"] = clock() - t
            if self.reranker is not None:
                t = clock()
                ce = np.asarray(self.reranker.score(req.query, [self.entries[i].text for i in cand]),
                                dtype=np.float64)
                if ce.shape != (cand.size,):
                    raise ValueError(f"reranker returned shape {ce.shape}, expected ({cand.size},)")
                stage["rerank"] = ce
                a = cfg.reranker_weight
                final = (1 - a) * _minmax(final) + a * _minmax(ce)
                timings["rerank"] = clock() - t
        if req.aggregate:
            t = clock()
            final = self._aggregate(cand, final)
            stage["doc_aggregate"] = final
            timings["aggregate"] = clock() - t
        if req.documents_first:
            final = self._documents_first(cand, final)
        return self._respond(cand, final, stage, req.top_k, timings)

    def rank_files_by_metadata(self, query: str, filters: Any = None) -> list[tuple[str, float]]:
        """Files ranked by how much of the query their name and custom metadata values hold:
        (file_id, share of the query's idf mass matched, 0..1), best first, ties by chunk order;
        only files with a chunk passing ``filters``. For ``files_via_metadata`` retrieval."""
        if not isinstance(query, str) or not query.strip():
            raise ValueError("query must be a non-empty string")
        if self._file_meta_terms is None:
            first: dict[str, tuple[int, frozenset[str]]] = {}
            for i, e in enumerate(self.entries):
                if e.file_id not in first:
                    values = [e.file_name.rsplit(".", 1)[0], *(str(v) for v in _flat_values(e.metadata))]
                    first[e.file_id] = (i, frozenset(self._analyzer(" ".join(values))))
            self._file_meta_terms = first
        q_terms = set(self._analyzer(query))
        n = self.num_chunks
        idf = {t: float(self._idf[self._vocab[t]]) if t in self._vocab else math.log(1.0 + (n + 0.5) / 0.5)
               for t in q_terms}
        total = sum(idf.values()) or 1.0
        allowed = None if filters is None else self._filter_mask(filters)
        ranked = []
        for file_id, (i, terms) in self._file_meta_terms.items():
            if allowed is not None and not allowed[self._file_of == self._file_of[i]].any():
                continue
            ranked.append((file_id, sum(idf[t] for t in q_terms & terms) / total, i))
        ranked.sort(key=lambda r: (-r[1], r[2]))
        return [(file_id, score) for file_id, score, _ in ranked]

    def _approximate_pools(self, sparse: np.ndarray, dense: "_CosineScores", req: SearchRequest,
                           allowed: Allowed | None) -> tuple[np.ndarray, np.ndarray]:
        """Each retriever's pool, best first, past ``ann_threshold``: the best allowed chunks among
        those with a positive BM25 score, and the dense search's (HNSW candidates rescored exactly;
        see ``llamaeval.engine._dense`` for filters)."""
        empty = np.zeros(0, dtype=np.int64)
        top_s = top_d = empty
        if req.uses_sparse:
            ids = np.flatnonzero(sparse > 0)
            top_s = _top_kept(ids, sparse[ids], max(req.sparse_top_k, req.top_k),
                              None if allowed is None else allowed.keep)
        if req.uses_dense:
            top_d, _ = self._dense.search(dense.qv, max(req.dense_top_k, req.top_k), allowed,
                                          expansion=self.config.ann_expansion)
        return top_s, top_d

    def _allowed(self, req: SearchRequest, dense: "np.ndarray | _CosineScores") -> "np.ndarray | Allowed | None":
        """Chunks a request may return (filters and dense cutoff), or None for all: a boolean mask,
        or past ``ann_threshold`` an ``Allowed`` (the filter mask; the cutoff checked per chunk)."""
        if isinstance(dense, _CosineScores):
            if req.filters is None and req.dense_cutoff is None:
                return None
            mask = None if req.filters is None else self._filter_mask(req.filters)
            return Allowed(self._emb, mask, req.dense_cutoff, dense.qv if req.dense_cutoff is not None else None)
        mask = None
        if req.filters is not None:
            mask = self._filter_mask(req.filters)
        if req.dense_cutoff is not None:
            above = dense >= np.float32(req.dense_cutoff)
            mask = above if mask is None else mask & above
        return mask

    def _filter_mask(self, filters: Any) -> np.ndarray:
        if self._filter_fields is None:
            self._filter_fields = [e.filter_fields() for e in self.entries]
        return filters.mask(self._filter_fields)

    def _candidates(self, req: SearchRequest, timings: dict[str, float]
                    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
        """First stage: candidates (sorted chunk indices), their pre-second-stage scores,
        per-stage scores, and what the second stage needs. Pools and the rerank depth
        never go below ``top_k``, so a search can always fill its ``top_k``."""
        clock = time.perf_counter
        t0 = clock()
        qv = self.embedder.embed_query(req.query)
        t1 = clock()
        timings["embed"] = t1 - t0
        q_terms = self._analyzer(req.query)
        q_weights = self._query_weights(req.query)
        sparse = self._bm25_scores(q_weights)
        t2 = clock()
        timings["bm25"] = t2 - t1
        dense = self._dense_scores(qv)
        allowed = self._allowed(req, dense)
        t3 = clock()
        timings["dense"] = t3 - t2
        cand, fused = self._fuse(sparse, dense, req, allowed)
        timings["fuse"] = clock() - t3
        stage: dict[str, np.ndarray] = {"bm25": sparse[cand].astype(np.float64),
                                        "dense": dense[cand].astype(np.float64), "fused": fused}
        final = fused
        ctx: dict[str, Any] = {"q_weights": q_weights, "q_terms": q_terms, "sparse": sparse, "dense": dense,
                               "q_numbers": self._analyzer.numbers(req.query), "chunk_match": {}}
        if not (req.rerank or req.expand) or cand.size == 0:
            return cand, final, stage, ctx
        if req.expand:
            t = clock()
            fb_cand, fb_scores = self._feedback_ranking(cand, fused, stage, ctx, req)
            timings["feedback"] = clock() - t
            ctx["confidence"] = confidence = _confidence(fb_scores)
            gate = self._stage_params["feedback_gate"]
            if gate is not None and confidence < gate:
                # an unsure first stage: its top chunks would expand the query towards noise, so
                # the query is not expanded (the "expanded" retrieval is the original one)
                stage = {**stage, "bm25_prf": stage["bm25"], "dense_prf": stage["dense"], "fused_prf": fused}
                return (*self._rerank_pool(cand, fused, stage, req), ctx)
            t = clock()
            exp_weights, exp_qv = self._expand(q_weights, qv, fb_cand, fb_scores)
            sparse_x = self._bm25_scores(exp_weights)
            dense_x = self._dense_scores(exp_qv)
            cand_x, fused_x = self._fuse(sparse_x, dense_x, req, allowed)
            # keep the original candidates too: expansion may only add
            base_cand, base_fused = cand, fused
            cand = np.union1d(base_cand, cand_x)
            fused_x_all = _lookup(cand_x, fused_x, cand)
            fused = _lookup(base_cand, base_fused, cand)
            final = 0.5 * fused + 0.5 * fused_x_all
            stage = {"bm25": sparse[cand].astype(np.float64), "dense": dense[cand].astype(np.float64),
                     "fused": fused, "bm25_prf": sparse_x[cand].astype(np.float64),
                     "dense_prf": dense_x[cand].astype(np.float64), "fused_prf": fused_x_all}
            timings["expand"] = clock() - t
        return (*self._rerank_pool(cand, final, stage, req), ctx)

    def _rerank_pool(self, cand: np.ndarray, final: np.ndarray, stage: dict[str, np.ndarray], req: SearchRequest
                     ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """The ``rerank_depth`` (at least ``top_k``) best candidates by ``final``, in chunk order:
        what the second stage sees."""
        keep = np.lexsort((cand, -final))[: max(req.rerank_depth, req.top_k)]
        keep = keep[np.argsort(cand[keep], kind="stable")]
        return cand[keep], final[keep], {k: v[keep] for k, v in stage.items()}

    def _feedback_ranking(self, cand: np.ndarray, fused: np.ndarray, stage: dict[str, np.ndarray],
                          ctx: dict[str, Any], req: SearchRequest) -> tuple[np.ndarray, np.ndarray]:
        """Where expansion takes its feedback chunks from: the ``accurate`` ranking of the
        first-stage pool (its learned second stage), which puts better chunks on top than
        fusion alone; the fused ranking when no accurate model is configured."""
        if self.config.second_stage != "ltr" or "accurate" not in self._rankers:
            return cand, fused
        pool, _, pool_stage = self._rerank_pool(cand, fused, stage, req)
        feats = self._features(pool, pool_stage["fused"], ctx)
        ctx["pool_features"] = (pool, feats)  # an unexpanded advanced query reranks this pool again
        return pool, self._rankers["accurate"].score(feats)

    def _stage_features(self, cand: np.ndarray, stage: dict[str, np.ndarray], ctx: dict[str, Any],
                        expanded: bool) -> dict[str, np.ndarray]:
        known = ctx.get("pool_features")
        if known is not None and np.array_equal(known[0], cand):
            feats = dict(known[1])
        else:
            feats = self._features(cand, stage["fused"], ctx)
        if expanded:
            feats["bm25_prf"] = _minmax(stage["bm25_prf"])
            feats["dense_prf"] = stage["dense_prf"]
            feats["fused_prf"] = _minmax(stage["fused_prf"])
            feats["fused_both"] = _minmax(0.5 * stage["fused"] + 0.5 * stage["fused_prf"])
            feats["fused_prf_z"] = _zscore(stage["fused_prf"])
        return feats

    def _expand(self, q_weights: dict[str, float], qv: np.ndarray, cand: np.ndarray,
                fused: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
        """RM3-style expansion of the sparse query and Rocchio of the dense one, from the
        ``prf_docs`` best of ``cand`` (sorted chunk indices) by ``fused`` (their scores)."""
        cfg = self.config
        if cfg.prf_docs == 0:
            return dict(q_weights), qv
        fb = cand[np.lexsort((cand, -fused))[: cfg.prf_docs]]
        best = self._feedback_terms(fb, _minmax(fused[np.searchsorted(cand, fb)]), cfg.prf_terms)
        total_q = sum(q_weights.values()) or 1.0
        total_x = sum(v for _, v in best) or 1.0
        lam = cfg.prf_weight
        weights = {t: (1 - lam) * w / total_q for t, w in q_weights.items()}
        for t, v in best:
            weights[t] = weights.get(t, 0.0) + lam * v / total_x
        centroid = self._emb[fb].astype(np.float64).mean(axis=0)
        v = qv.astype(np.float64) + cfg.rocchio_beta * centroid
        v /= max(np.linalg.norm(v), 1e-12)
        return weights, v.astype(np.float32)

    def _feedback_terms(self, fb: np.ndarray, fb_scores: np.ndarray, n_terms: int) -> list[tuple[str, float]]:
        """The ``n_terms`` best expansion terms of feedback chunks ``fb`` (their min-max scores
        ``fb_scores``): relevance-model weights (term share of each chunk x chunk weight), idf-weighted."""
        seqs = [self._term_ids(int(i)) for i in fb]
        lengths = np.array([ids.size for ids in seqs], dtype=np.float64)
        if n_terms <= 0 or not lengths.any():
            return []
        # relevance model weight per feedback doc, shared by its terms; summed in text order
        share = (fb_scores + 1e-3)[lengths > 0] / lengths[lengths > 0]
        seqs = [ids for ids in seqs if ids.size]
        ids = np.concatenate(seqs).astype(np.int64)
        known = ids >= 0  # a term outside the vocabulary has idf 0: it adds nothing to a query
        uniq, inv = np.unique(ids[known], return_inverse=True)
        weights = np.bincount(inv, weights=np.repeat(share, [x.size for x in seqs])[known], minlength=uniq.size)
        weights = weights * self._idf[uniq].astype(np.float64)  # idf-weighted: common terms do not dominate
        if uniq.size > n_terms:  # the n_terms best, and every term tied with the last of them
            keep = weights >= np.partition(weights, uniq.size - n_terms)[uniq.size - n_terms]
            uniq, weights = uniq[keep], weights[keep]
        names = self._vocab_names(uniq)
        return sorted(zip(names, weights.tolist()), key=lambda kv: (-kv[1], kv[0]))[:n_terms]

    def _vocab_names(self, ids: np.ndarray) -> list[str]:
        """The terms of vocabulary ids (the reverse vocabulary is built once, on first use)."""
        names = self.__dict__.get("_vocab_terms")
        if names is None:
            names = {tid: t for t, tid in self._vocab.items()}
            self.__dict__["_vocab_terms"] = names
        return [names[int(i)] for i in ids]

    def _aggregate(self, cand: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Document-aware scores: each chunk gains ``doc_sum_weight`` x its siblings' scores."""
        cfg = self.config
        s = _minmax(scores)
        if cfg.doc_aggregation == "max" or cfg.doc_sum_weight == 0:
            return s
        files = self._file_of[cand]
        uniq, inv = np.unique(files, return_inverse=True)
        sums = np.zeros(uniq.size)
        np.add.at(sums, inv, s)
        return s + cfg.doc_sum_weight * (sums[inv] - s)

    def _documents_first(self, cand: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Final scores that put every document's best chunk ahead of any document's second one:
        min-max(scores) in [0, 1] for a document's best chunk, min-max(scores) - 2 for its others.
        The second stage scores a document's chunks alike (it sees document-level features),
        so without this ``top_k`` chunks would often hold fewer than ``top_k`` documents."""
        s = _minmax(scores)
        files = self._file_of[cand]
        order = np.lexsort((cand, -s))
        first = np.zeros(cand.size, dtype=bool)
        _, first_pos = np.unique(files[order], return_index=True)
        first[order[first_pos]] = True
        return np.where(first, s, s - 2.0)

    def _respond(self, cand: np.ndarray, final: np.ndarray, stage: dict[str, np.ndarray],
                 top_k: int, timings: dict[str, float]) -> SearchResponse:
        order = np.lexsort((cand, -final))[:top_k]
        hits = [
            SearchHit(
                entry=self.entries[int(cand[j])],
                score=float(final[j]),
                stage_scores={k: float(v[j]) for k, v in stage.items()},
            )
            for j in order
        ]
        return SearchResponse(hits=hits, timings=timings)

    def __repr__(self) -> str:
        return f"Index(num_chunks={self.num_chunks}, reranker={self.reranker!r})"


def _flat_values(metadata: dict[str, Any]) -> list[Any]:
    """The scalar values of a metadata dict, list items included."""
    out: list[Any] = []
    for v in metadata.values():
        out.extend(v if isinstance(v, (list, tuple)) else [v])
    return [v for v in out if v is not None and not isinstance(v, (dict, list, tuple))]


class _CosineScores:
    """Cosine of chunks to the query vector ``qv``, computed for the chunks asked
    (``scores[ids]``, float32): what an index past ``ann_threshold`` holds instead of every
    chunk's cosine."""

    def __init__(self, emb: np.ndarray, qv: np.ndarray) -> None:
        self._emb = emb
        self.qv = np.asarray(qv, dtype=np.float32)

    def __getitem__(self, ids: np.ndarray) -> np.ndarray:
        return self._emb[ids] @ self.qv


def _with_dense(index: "Index", directory: Path, previous: "Index | None" = None) -> "Index":
    """``index`` with the HNSW graph saved in ``directory`` attached; when the index is past
    ``ann_threshold`` and the directory holds no graph of these vectors: ``previous``'s graph
    updated — the chunks of files the sync removed or changed taken out, the new ones added: O(the
    change), not O(index) — when ``index`` is a later version of it, else a graph built now from
    every chunk."""
    if index._dense.approximate and not index._dense.load(directory):
        old_of_new = _kept_chunks(previous, index)
        if old_of_new is None or not index._dense.update(previous._dense, old_of_new):
            index._dense.graph()
    return index


def _kept_chunks(previous: "Index | None", index: "Index") -> np.ndarray | None:
    """For each chunk of ``index``, its position in ``previous`` when its segment is one of
    ``previous``'s (the same loaded object: a file the sync kept), else -1; None when either
    has no segments (a format-1 index)."""
    old = getattr(previous, "_segset", None)
    new = getattr(index, "_segset", None)
    if old is None or new is None:
        return None
    old_start = {id(seg): int(start) for seg, start in zip(old.segments, old.starts)}
    out = np.full(index.num_chunks, -1, dtype=np.int64)
    for seg, start in zip(new.segments, new.starts):
        at = old_start.get(id(seg))
        if at is not None:
            out[start:start + len(seg)] = np.arange(at, at + len(seg), dtype=np.int64)
    return out


def _top_kept(ids: np.ndarray, values: np.ndarray, n: int, keep: Any = None) -> np.ndarray:
    """The ``n`` best of ``ids`` (sorted chunk indices) by ``values`` among those ``keep(ids)``
    allows (all when None), best first, ties by chunk order. Looks at 4x more each round until
    ``n`` pass, so a permissive filter checks few chunks."""
    m = n
    while True:
        pos = _top(values, m)
        if keep is None:
            return ids[pos]
        sel = pos[keep(ids[pos])]
        if sel.size >= n or pos.size == values.size:
            return ids[sel[:n]]
        m *= 4


def _pool_ranks(pool: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """1-based rank of each of ``cand`` in ``pool`` (chunk indices, best first); inf where absent."""
    if pool.size == 0:
        return np.full(cand.size, np.inf)
    order = np.argsort(pool, kind="stable")
    keys = pool[order]
    pos = np.clip(np.searchsorted(keys, cand), 0, keys.size - 1)
    return np.where(keys[pos] == cand, order[pos] + 1.0, np.inf)


def _lookup(keys: np.ndarray, values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """values[keys == w] for each w of ``wanted`` (sorted ``keys``), 0 where absent."""
    pos = np.clip(np.searchsorted(keys, wanted), 0, keys.size - 1)
    return np.where(keys[pos] == wanted, values[pos], 0.0)


def _confidence(scores: np.ndarray) -> float:
    """How clearly the best candidate stands out: (max - mean) / standard deviation of ``scores``
    (0 when they are all equal). Scale-free, so one threshold means the same on every collection."""
    if scores.size < 2:
        return 0.0
    sd = float(scores.std())
    return float((scores.max() - scores.mean()) / sd) if sd > 0 else 0.0


def _zscore(x: np.ndarray) -> np.ndarray:
    """(x - mean) / std over the candidates (0 when constant)."""
    if x.size == 0:
        return x
    sd = float(x.std())
    return (x - float(x.mean())) / sd if sd > 0 else np.zeros_like(x)


def _ranks(cand: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """1-based rank of each candidate by ``scores`` (ties by chunk order)."""
    ranks = np.empty(cand.size)
    ranks[np.lexsort((cand, -scores))] = np.arange(1, cand.size + 1)
    return ranks


def _group_sum(groups: np.ndarray, values: np.ndarray) -> np.ndarray:
    uniq, inv = np.unique(groups, return_inverse=True)
    total = np.zeros(uniq.size)
    np.add.at(total, inv, values)
    return total[inv]


def _group_max(groups: np.ndarray, values: np.ndarray) -> np.ndarray:
    uniq, inv = np.unique(groups, return_inverse=True)
    best = np.full(uniq.size, -np.inf)
    np.maximum.at(best, inv, values)
    return best[inv]


#: Cells of the (matched positions x query terms) table ``_min_windows`` works on at once.
_WINDOW_CELLS = 1 << 20


def _min_windows(hit: np.ndarray, slot: np.ndarray, row: np.ndarray, starts: np.ndarray, present: np.ndarray,
                 n: int) -> np.ndarray:
    """Per chunk (row), the length in terms of its smallest window holding every query term it
    contains (0 without any). ``hit``: positions of query terms in the chunks' concatenated terms
    (ascending), ``slot``: which query term, ``row``: which chunk, ``starts``: where each chunk
    begins, ``present``: chunk x query term. The smallest window ending at a matched position
    starts at the latest occurrence of the query term seen longest ago."""
    none = np.iinfo(np.int64).max
    best = np.full(n, none, dtype=np.int64)
    m = present.shape[1]
    block = max(1, _WINDOW_CELLS // max(m, 1))
    lo = 0
    while lo < hit.size:  # blocks of whole chunks
        hi = int(np.searchsorted(row, row[min(lo + block, hit.size) - 1], side="right"))
        h, s, r = hit[lo:hi], slot[lo:hi], row[lo:hi]
        last = np.full((h.size, m), -1, dtype=np.int64)
        last[np.arange(h.size), s] = h
        np.maximum.accumulate(last, axis=0, out=last)
        need = present[r]
        complete = ((last >= starts[r][:, None]) | ~need).all(axis=1)
        window = h - np.where(need, last, none).min(axis=1) + 1
        np.minimum.at(best, r[complete], window[complete])
        lo = hi
    best[best == none] = 0
    return best
