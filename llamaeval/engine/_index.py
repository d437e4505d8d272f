"""The on-disk index (BM25 + dense vectors + entries) and the search stages of a ``SearchRequest``."""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llamaeval.engine._analyze import Analyzer
from llamaeval.engine._config import RetrievalConfig
from llamaeval.engine._embed import Embedder
from llamaeval.engine._models import ModelStore, is_reference, packaged_document
from llamaeval.engine._rerank import LearnedRanker, Reranker, stage_parameters
from llamaeval.engine._search import SearchRequest

__all__ = ["IndexEntry", "SearchHit", "SearchResponse", "Index", "build_index"]

FORMAT_VERSION = 1
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
                model_store: ModelStore | None = None) -> None:
    """Write a complete, self-contained index of ``entries`` into ``directory`` (created if missing).

    ``embeddings[i]`` is the L2-normalised passage vector of ``entries[i]``. The caller
    swaps the directory in atomically; nothing outside it is written. When ``config`` names a
    second-stage model that is not shipped with the package, the model is looked up in
    ``model_store`` and in ``directory/models`` (a store the caller may have seeded), and the
    index keeps exactly that model in ``directory/models`` (ValueError when it is nowhere).
    """
    emb = _check_entries(entries, embeddings)
    if not isinstance(config, RetrievalConfig):
        raise TypeError("config must be a RetrievalConfig")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _keep_model(config, directory, model_store)
    analyzer = Analyzer(config.stemmer, config.stopwords)
    bm25 = _build_bm25(analyzer.analyze_many([e.text for e in entries]), config)
    bm25.save(str(directory / _BM25_DIR), show_progress=False)
    np.save(directory / _EMBEDDINGS, emb)
    with open(directory / _ENTRIES, "w", encoding="utf-8") as fh:
        for e in entries:
            fh.write(json.dumps(asdict(e), ensure_ascii=False) + "\n")
    (directory / _CONFIG).write_text(json.dumps(config.to_dict(), indent=1), encoding="utf-8")
    manifest = {
        "format_version": FORMAT_VERSION,
        "num_chunks": len(entries),
        "dimensions": int(emb.shape[1]),
        "embedding_model": Embedder.model_name,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (directory / _MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")


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
        if bm25 is None:
            bm25 = _build_bm25(self._analyzer.analyze_many([e.text for e in entries]), config)
        self._init_bm25(bm25)
        files: dict[str, int] = {}
        self._file_of = np.array([files.setdefault(e.file_id, len(files)) for e in entries], dtype=np.int64)
        self._title_terms: dict[int, frozenset[str]] = {}
        self._blas: Any = None
        self._chunk_terms: dict[int, list[str]] = {}
        self._chunk_numbers: dict[int, frozenset[str]] = {}
        self._file_meta_terms: dict[str, tuple[int, frozenset[str]]] | None = None
        self._stores = () if model_store is None else (model_store,)
        self._set_model(config)

    def _init_bm25(self, bm25: Any) -> None:
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
    ) -> "Index":
        """Load an index written by ``build_index``.

        ``reranker``: optional plug-in second stage (see ``Reranker``). ``config``: optional
        override of the stored config; parameters that shape the BM25 index (bm25_*,
        stemmer, stopwords) must match the stored ones (ValueError otherwise). A second-stage
        model the package does not ship is read from the index's own ``models/`` store.
        """
        import bm25s

        directory = Path(directory)
        try:
            manifest = json.loads((directory / _MANIFEST).read_text("utf-8"))
            stored = RetrievalConfig.from_dict(json.loads((directory / _CONFIG).read_text("utf-8")))
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"not an index directory (missing {Path(exc.filename).name}): {directory}") from None
        if manifest.get("format_version") != FORMAT_VERSION:
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
        entries = []
        with open(directory / _ENTRIES, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    entries.append(IndexEntry(**json.loads(line)))
        emb = np.load(directory / _EMBEDDINGS, mmap_mode=None)
        bm25 = bm25s.BM25.load(str(directory / _BM25_DIR), show_progress=False)
        return cls(entries, emb, stored, embedder, bm25=bm25, reranker=reranker,
                   model_store=ModelStore(directory / _MODELS_DIR))

    def with_config(self, config: RetrievalConfig) -> "Index":
        """A view of this index searching with another config (same BM25 parameters required)."""
        for key in ("bm25_k1", "bm25_b", "bm25_method", "stemmer", "stopwords"):
            if getattr(config, key) != getattr(self.config, key):
                raise ValueError(f"{key} differs from the built index; rebuild the index to change it")
        clone = object.__new__(Index)
        clone.__dict__.update(self.__dict__)
        clone.config = config
        clone.config_summary = config.summary()
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

    def _dense_scores(self, qv: np.ndarray) -> np.ndarray:
        return self._emb @ qv.astype(np.float32)

    def _fuse(self, sparse: np.ndarray, dense: np.ndarray, req: SearchRequest, allowed: np.ndarray | None
              ) -> tuple[np.ndarray, np.ndarray]:
        """Candidates (union of each retriever's best: ``sparse_top_k`` chunks with a positive
        BM25 score, ``dense_top_k`` by cosine, both at least ``top_k``, among ``allowed``) and
        their fused scores; a retriever with fusion weight 0 contributes no candidates."""
        cfg = self.config
        empty = np.zeros(0, dtype=np.int64)
        keep_s = sparse > 0 if allowed is None else (sparse > 0) & allowed
        top_s = _top(sparse, max(req.sparse_top_k, req.top_k), keep_s) if req.uses_sparse else empty
        top_d = _top(dense, max(req.dense_top_k, req.top_k), allowed) if req.uses_dense else empty
        cand = np.union1d(top_s, top_d)
        w = req.alpha
        if cfg.fusion == "rrf":
            rank_s = np.full(self.num_chunks, np.inf)
            rank_s[top_s] = np.arange(1, top_s.size + 1)
            rank_d = np.full(self.num_chunks, np.inf)
            rank_d[top_d] = np.arange(1, top_d.size + 1)
            fused = (1 - w) / (cfg.rrf_k + rank_s[cand]) + w / (cfg.rrf_k + rank_d[cand])
            fused = fused * 2.0  # equal weights give plain RRF
        else:
            fused = (1 - w) * _pool_minmax(sparse, top_s, cand, 0.0) + w * _pool_minmax(dense, top_d, cand, 1.0)
        return cand, fused.astype(np.float64)

    # ------------------------------------------------------------------ features
    def _terms_of(self, i: int) -> list[str]:
        """Analysed terms of chunk ``i`` (cached: analysis costs ~0.2 ms per chunk)."""
        terms = self._chunk_terms.get(i)
        if terms is None:
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

        ``ctx["chunk_match"]``: per-query cache of the per-chunk term matching, which depends
        only on the query and the chunk: advanced scores overlapping candidate sets twice
        (feedback, then its own second stage) and matches each chunk once."""
        q_weights, sparse, dense = ctx["q_weights"], ctx["sparse"], ctx["dense"]
        q_order, memo, q_numbers = ctx["q_terms"], ctx["chunk_match"], ctx["q_numbers"]
        qterms = sorted(t for t in q_weights if t in self._vocab)
        idf = {t: float(self._idf[self._vocab[t]]) for t in qterms}
        idf_total = sum(idf.values()) or 1.0
        idf_max = max(idf.values()) if idf else 1.0
        bigrams = list(dict.fromkeys(zip(q_order, q_order[1:])))
        qset = set(qterms)
        rows = []
        for i in cand:
            i = int(i)
            row = memo.get(i)
            if row is None:
                row = memo[i] = self._match(i, qset, idf, idf_total, idf_max, bigrams, q_numbers)
            rows.append(row)
        n = cand.size
        nterms = np.array([r[0] for r in rows], dtype=np.float64)
        tfs: list[dict[str, int]] = [r[1] for r in rows]
        coverage, missing, proximity, phrase, title, numbers = (
            np.array([r[k] for r in rows], dtype=np.float64) for k in range(2, 8))
        length = np.array([math.log1p(r[0]) for r in rows], dtype=np.float64)
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
        bm25_v = np.zeros(n)
        bm25_flat = np.zeros(n)
        for row, tf in enumerate(tfs):
            norm = 0.6 + 0.4 * nterms[row] / max(avgdl, 1.0)
            for t in sorted(tf):
                f = tf[t]
                bm25_v[row] += idf[t] * f * 1.9 / (f + 0.9 * norm)
                bm25_flat[row] += idf[t] * f * 2.2 / (f + 1.2)
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
            "match_frac": np.array([len(tf) for tf in tfs], dtype=np.float64) / max(len(qset), 1),
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

    def _match(self, i: int, qset: set[str], idf: dict[str, float], idf_total: float, idf_max: float,
               bigrams: list[tuple[str, str]], q_numbers: frozenset[str]
               ) -> tuple[int, dict[str, int], float, float, float, float, float, float]:
        """How chunk ``i`` matches the query: (number of terms, query-term frequencies,
        idf coverage, rarest missing idf, proximity, bigram phrase share, title idf share,
        share of the query's numbers found verbatim)."""
        terms = self._terms_of(i)
        tf: dict[str, int] = {}
        for t in terms:
            if t in qset:
                tf[t] = tf.get(t, 0) + 1
        present = set(tf)
        coverage = sum(idf[t] for t in present) / idf_total
        missing = max((idf[t] for t in qset - present), default=0.0) / idf_max
        proximity = phrase = title = 0.0
        if len(present) >= 2:
            proximity = _proximity(terms, present)
            if bigrams:
                pairs = set(zip(terms, terms[1:]))
                phrase = sum(1 for bg in bigrams if bg in pairs) / len(bigrams)
        if qset:
            title = sum(idf[t] for t in qset & self._title_terms_of(i)) / idf_total
        numbers = 0.0
        if q_numbers:
            found = self._chunk_numbers.get(i)
            if found is None:
                found = self._chunk_numbers[i] = self._analyzer.numbers(self.entries[i].text)
            numbers = len(q_numbers & found) / len(q_numbers)
        return len(terms), tf, coverage, missing, proximity, phrase, title, numbers

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
        allowed = None if filters is None else filters.mask([e.metadata for e in self.entries])
        ranked = []
        for file_id, (i, terms) in self._file_meta_terms.items():
            if allowed is not None and not allowed[self._file_of == self._file_of[i]].any():
                continue
            ranked.append((file_id, sum(idf[t] for t in q_terms & terms) / total, i))
        ranked.sort(key=lambda r: (-r[1], r[2]))
        return [(file_id, score) for file_id, score, _ in ranked]

    def _allowed(self, req: SearchRequest, dense: np.ndarray) -> np.ndarray | None:
        """Chunks a request may return (filters and dense cutoff), or None for all."""
        mask = None
        if req.filters is not None:
            mask = self._filter_mask(req.filters)
        if req.dense_cutoff is not None:
            above = dense >= np.float32(req.dense_cutoff)
            mask = above if mask is None else mask & above
        return mask

    def _filter_mask(self, filters: Any) -> np.ndarray:
        return filters.mask([e.metadata for e in self.entries])

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
        term_w: dict[str, float] = {}
        for i, w in zip(fb, fb_scores + 1e-3):  # relevance model weight per feedback doc
            terms = self._terms_of(int(i))
            if not terms:
                continue
            inv = float(w) / len(terms)
            for t in terms:
                term_w[t] = term_w.get(t, 0.0) + inv
        for t in list(term_w):  # idf-weight so that common terms do not dominate
            tid = self._vocab.get(t)
            term_w[t] = term_w[t] * (float(self._idf[tid]) if tid is not None else 0.0)
        return sorted(term_w.items(), key=lambda kv: (-kv[1], kv[0]))[:n_terms]

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


def _proximity(terms: list[str], present: set[str]) -> float:
    """Distinct query terms matched / length of the smallest window holding all of them."""
    need = len(present)
    counts: dict[str, int] = {}
    have = 0
    best = math.inf
    left = 0
    for right, t in enumerate(terms):
        if t in present:
            counts[t] = counts.get(t, 0) + 1
            if counts[t] == 1:
                have += 1
        while have == need:
            best = min(best, right - left + 1)
            lt = terms[left]
            if lt in present:
                counts[lt] -= 1
                if counts[lt] == 0:
                    have -= 1
            left += 1
    return need / best if best < math.inf else 0.0
