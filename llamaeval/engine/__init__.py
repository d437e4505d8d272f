"""llamaeval.engine — parse, chunk, embed, index and search, offline (the local server's engine).

Knows nothing of HTTP. Needs the ``server`` extra (onnxruntime, tokenizers, bm25s,
PyStemmer, pypdf, threadpoolctl, the MiniLM int8 model package). Importing it does
no work: the model loads on the first embedding, indexes load on ``Index.load``.

Ingestion
---------
``parse_document(data, file_name) -> ParsedDocument`` reads ``SUPPORTED_EXTENSIONS``:
.txt/.text (UTF-8, UTF-16 with BOM), .md/.markdown (title = first heading),
.html/.htm (scripts/styles dropped, title = <title> or first <h1>), .pdf (text layer
via pypdf; title from metadata), .json (every string value, short ones as
"key: value"; title from a top-level "title"/"name"/"headline"/"subject"),
.jsonl (one record per line), .csv/.tsv (one "column: value; ..." line per row),
.xml (all text; entity declarations refused). Anything else, undecodable bytes,
binary content, a PDF without text layer or an empty result raises ``ParseError``
whose message is the human reason.

``chunk_document(doc, ChunkingConfig(chunk_size=256, chunk_overlap=32), embedder)``
cuts the text into windows of ``chunk_size`` MiniLM word pieces overlapping by
``chunk_overlap`` (0..chunk_size/2), snapped to word starts; each ``Chunk`` carries
``start_char``/``end_char`` with ``doc.text[start_char:end_char] == chunk.text``.

``Embedder`` — all-MiniLM-L6-v2 int8 ONNX, 384 dimensions, mean pooling + L2 norm,
passages truncated at 256 word pieces (queries 128), loaded lazily, thread-safe. Passages
are sorted by token length over each call and cut into ONNX calls of at most ``batch_tokens``
(1,024) padded tokens (``iter_passage_batches`` yields call by call); onnxruntime runs without
spinning threads and releases its memory arena after every passage call (``spinning``,
``arena``: measured in ``benchmarks/results/performance.md``).

``StaticEmbedder`` — the optional fast model (``wordllama-l2-supercat-256``: WordLlama's static
token vectors, 256 dimensions, mean pooling + L2 norm; the ``fast-embed`` extra): the same
interface, ~100x MiniLM's passages/s on one core, lower relevance (``benchmarks/results/
embedders.md``). ``EMBEDDING_MODELS`` names the models, ``embedder_for(name)`` makes one,
``embedding_model_name(alias)`` gives the canonical name (ConfigurationError naming the allowed
ones), ``Embedders`` holds a server's (one per model, on first use).

``build_index(entries, embeddings, config, directory)`` writes a self-contained
directory (format 2): ``segments/<id>.seg`` — one per file: its entries, float32 vectors and
analysed terms (term sequences, BM25 term frequencies and lengths) —, ``config.json`` (the
RetrievalConfig) and ``manifest.json`` (the segments in chunk order). ``IndexWriter`` writes one
segment by segment and hard-links the unchanged segments of a previous version, so a sync of
k files writes k segments (``_segments``). ``Index.load(directory, embedder, reranker=None,
previous=None)`` reads it back — reusing ``previous``'s segments in memory and merging its BM25
postings, the scores bm25s would give (exact for lucene/robertson/atire) — and still reads
format 1 (``bm25/``, ``entries.jsonl``, ``embeddings.npy``).

Search requests and modes
-------------------------
``Index.search(SearchRequest(query, top_k, sparse_top_k, dense_top_k, alpha, dense_cutoff,
rerank, rerank_depth, expand, aggregate, documents_first, filters))`` runs one composition
of stages (see ``llamaeval.engine._search``); ``filters`` come from
``parse_filters({"filters": [{"key", "value", "operator"}], "condition": "and"})`` over the
file's custom metadata, ``file_name`` and ``file_id`` (``IndexEntry.filter_fields``). ``Index.search(query, mode, top_k)`` runs a mode: a row of
``PRESETS`` (fast: no second stage; accurate: rerank + documents_first; advanced: + expand
and aggregate) with pools and ``alpha`` = ``dense_weight`` from the pipeline config.

Modes (``Index.search(query, mode, top_k)``, ``top_k`` in 1..MAX_TOP_K=200)
-------------------------------------------------------------------------------
Every mode first embeds the query (stage ``embed``), scores every chunk with BM25
(``bm25``) and with exact cosine similarity (``dense``; past ``ann_threshold`` chunks only the
HNSW graph's candidates, rescored exactly), then fuses (``fuse``).
Candidate pools and the rerank depth are raised to ``top_k`` when it is larger, so
a search returns ``min(top_k, number of chunks)`` hits.

``fast``      hybrid: union of each retriever's ``fast_candidates`` best chunks,
              fused by ``fusion`` ("convex" (default): (1-dense_weight)*minmax(bm25) +
              dense_weight*minmax(cosine), min-max over each retriever's pool, dense_weight 0.6; or
              "rrf": 2*((1-dense_weight)/(rrf_k+rank_bm25) + dense_weight/(rrf_k+rank_dense))).
              Hit ``stage_scores``: bm25 (raw BM25), dense (cosine), fused.
``accurate``  the same fusion over ``accurate_candidates`` per retriever (100, as fast); the
              ``rerank_depth`` best fused chunks are rescored by the second stage
              (``second_stage="ltr"``): the model named by ``ltr_model`` over features of each
              candidate computed per query (``_rerank.ACCURATE_FEATURES``: scores, z-scores and ranks
              of BM25, cosine and the fusion; BM25 recomputed with other length normalisations;
              document-level chunk maxima; idf coverage, proximity, phrase, title and verbatim-number
              matches; length relative to the pool; agreement-weighted scores; similarity to the mean
              vector of the three best fused candidates). The shipped version 2 is linear (ListNet,
              strong L2) over 7 of them — fused z-score, top similarity (also where the fused ranking is
              sure of its top), proximity, phrase, title, numbers — chosen by leave-one-collection-out
              (``benchmarks/train_ltr.py``); version 1 (linear + boosted trees over 26 features) stays
              available by reference. Stage scores add ``ltr``; a plug-in ``Reranker`` adds ``rerank``.
``advanced``  accurate plus query expansion (stage ``feedback``): the pool is first ranked as
              ``accurate`` ranks it; if that ranking is confident — (best - mean) / std of its
              scores at least the model's ``stages.feedback_gate`` (4.5 for version 2; version 1
              always expands) — RM3-style expansion of the BM25 query (``prf_terms`` idf-weighted
              terms of the ``prf_docs`` best chunks, weight ``prf_weight``) and Rocchio on the query
              vector (q + ``rocchio_beta`` * centroid) retrieve again (stage ``expand``) and the union
              of both candidate sets is reranked by the advanced model (the accurate features + the
              expanded retrieval's scores); otherwise the expanded retrieval is the original one.
              Then document-aware aggregation: ``doc_aggregation="max"`` (default: a document
              counts by its best chunk, whatever its length) or ``"max+sum"`` (each chunk gains
              ``doc_sum_weight`` x the scores of the other chunks of its file in the reranked set).
              Stage scores add bm25_prf, dense_prf, fused_prf, ltr, doc_aggregate.
Documents first (accurate and advanced, ``documents_first=True``): the final score of a
              document's best chunk is the min-max of its second-stage score (0..1); its
              other chunks score 2 less, so they follow every document's best chunk. The
              second stage scores a document's chunks alike (it sees document-level
              features), and without this ``top_k`` chunks would hold fewer than ``top_k``
              documents. ``fast`` ranks chunks independently already.

A user cross-encoder plugs in as ``Index.load(dir, embedder, reranker=obj)`` where
``obj.score(query, passages) -> np.ndarray`` (the ``Reranker`` protocol); in
accurate/advanced its scores are blended into the second stage:
``(1-reranker_weight)*minmax(second stage) + reranker_weight*minmax(reranker)``
(default 1.0: the reranker's order).

RetrievalConfig parameters (all in ``to_dict()``; ``from_dict`` rejects unknown keys)
-----------------------------------------------------------------------------------
bm25_k1 (1.2), bm25_b (0.75), bm25_method ("lucene"|"robertson"|"atire"),
stemmer ("english", any PyStemmer algorithm, or "none"), stopwords ("english"|"none")
  — these shape the BM25 index (changing them needs a rebuild);
fusion ("convex"|"rrf", default convex), dense_weight (0..1, 0.6), rrf_k (60),
fast_candidates (100), accurate_candidates (100), rerank_depth (100),
second_stage ("ltr"|"none"), reranker_weight (0..1, 1.0), prf_docs (5), prf_terms (20),
prf_weight (0..1, 0.5), rocchio_beta (0.5), doc_aggregation ("max"|"max+sum", max),
doc_sum_weight (0.0), documents_first (true), ann_threshold (100000: chunks from which dense search
uses an HNSW graph), ann_expansion (128: the graph's search breadth, HNSW ef), ltr_model (the learned second stage *by reference*:
``{"name": "llamaeval-ltr", "version": 2, "sha256": ...}``; or inline weights ``{"models": {"accurate":
..., "advanced": ...}, "stages": {...}}``, each model {"features", "weights", "mean", "std", "bias"} and
optionally trees or an MLP layer — see ``LearnedRanker``). Defaults after the BM25 block were chosen
by benchmarks/train_ltr.py by leave-one-collection-out (never on SciFact test).

Second-stage models (``llamaeval.engine._models``)
--------------------------------------------------
A model document (``{"name", "version", "description", "models", "stages", "tuning"}``) ships per
version in ``llamaeval/engine/data/ltr-v<version>.json`` — the default and every older version,
so a config naming an older one keeps ranking with it — or lives in a ``ModelStore`` (a directory
of ``<sha256>.json``, canonical JSON). ``RetrievalConfig.model_document(stores)`` resolves a
reference (the package first, then the stores; the SHA-256 must match the file's bytes);
``build_index(..., model_store=)`` keeps a non-shipped model inside the index (``models/``), so
``Index.load`` needs no store. ``summary()`` and ``to_dict()`` carry the reference, never weights.

Determinism: rankings never depend on hash order — ties break by chunk order,
BM25 query terms are summed in sorted order. Numpy BLAS runs single-threaded
during a search (threadpoolctl, per Index), so it does not fight onnxruntime for the
cores; a server with concurrent searches should also call
``threadpoolctl.threadpool_limits(1, "blas")`` once at start-up (limits are process-wide).
Dense search is exact (one matrix-vector product) below ``ann_threshold`` chunks (100,000; the
bundled collections are far below it). From it on (``llamaeval.engine._dense``), ``build_index`` also
writes an HNSW graph (usearch, ``dense.usearch`` + ``dense.json``; ``Index.load`` reads it, or builds it
when missing; an in-memory ``Index`` builds it on first search): the graph proposes 4x the dense pool,
whose cosine is recomputed exactly; BM25 candidates come from the postings and the union is fused as
below the threshold, without any pass over every chunk's scores. Filters: a filter allowing <= 5% of
the chunks is searched exactly over them; a wider one oversamples the graph (x4 more until the pool
fills, exact search over the allowed chunks as the last resort). Recall@100 vs exact, latency,
build time and memory per chunk: benchmarks/results/dense_ann.md.
"""

from __future__ import annotations

from llamaeval.engine._chunk import Chunk, ChunkingConfig, chunk_document
from llamaeval.engine._config import MAX_TOP_K, MODES, RetrievalConfig
from llamaeval.engine._embed import Embedder
from llamaeval.engine._embedders import EMBEDDING_MODELS, Embedders, embedder_for, embedding_model_name
from llamaeval.engine._static_embed import StaticEmbedder
from llamaeval.engine._index import Index, IndexEntry, IndexWriter, SearchHit, SearchResponse, build_index
from llamaeval.engine._models import ModelStore, default_model_reference
from llamaeval.engine._parse import SUPPORTED_EXTENSIONS, ParsedDocument, ParseError, parse_document
from llamaeval.engine._rerank import LearnedRanker, Reranker
from llamaeval.engine._search import MAX_CANDIDATES, PRESETS, SearchRequest
from llamaeval.engine._filters import FilterGroup, MetadataFilter, parse_filters

__all__ = [
    "MODES",
    "PRESETS",
    "MAX_CANDIDATES",
    "SearchRequest",
    "FilterGroup",
    "MetadataFilter",
    "parse_filters",
    "MAX_TOP_K",
    "SUPPORTED_EXTENSIONS",
    "ParseError",
    "ParsedDocument",
    "parse_document",
    "ChunkingConfig",
    "Chunk",
    "chunk_document",
    "Embedder",
    "StaticEmbedder",
    "Embedders",
    "EMBEDDING_MODELS",
    "embedder_for",
    "embedding_model_name",
    "RetrievalConfig",
    "ModelStore",
    "default_model_reference",
    "IndexEntry",
    "build_index",
    "IndexWriter",
    "Index",
    "SearchHit",
    "SearchResponse",
    "Reranker",
    "LearnedRanker",
]
