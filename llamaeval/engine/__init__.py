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
passages truncated at 256 word pieces (queries 128), loaded lazily, thread-safe.

``build_index(entries, embeddings, config, directory)`` writes a self-contained
directory: ``bm25/`` (bm25s), ``embeddings.npy`` (float32, exact search),
``entries.jsonl``, ``config.json`` (the RetrievalConfig), ``manifest.json``.
``Index.load(directory, embedder, reranker=None)`` reads it back.

Search requests and modes
-------------------------
``Index.search(SearchRequest(query, top_k, sparse_top_k, dense_top_k, alpha, dense_cutoff,
rerank, rerank_depth, expand, aggregate, documents_first, filters))`` runs one composition
of stages (see ``llamaeval.engine._search``); ``filters`` come from
``parse_filters({"filters": [{"key", "value", "operator"}], "condition": "and"})`` over the
file's custom metadata. ``Index.search(query, mode, top_k)`` runs a mode: a row of
``PRESETS`` (fast: no second stage; accurate: rerank + documents_first; advanced: + expand
and aggregate) with pools and ``alpha`` = ``dense_weight`` from the pipeline config.

Modes (``Index.search(query, mode, top_k)``, ``top_k`` in 1..MAX_TOP_K=200)
-------------------------------------------------------------------------------
Every mode first embeds the query (stage ``embed``), scores every chunk with BM25
(``bm25``) and with exact cosine similarity (``dense``), then fuses (``fuse``).
Candidate pools and the rerank depth are raised to ``top_k`` when it is larger, so
a search returns ``min(top_k, number of chunks)`` hits.

``fast``      hybrid: union of each retriever's ``fast_candidates`` best chunks,
              fused by ``fusion`` ("convex" (default): (1-dense_weight)*minmax(bm25) +
              dense_weight*minmax(cosine), min-max over each retriever's pool; or
              "rrf": 2*((1-dense_weight)/(rrf_k+rank_bm25) + dense_weight/(rrf_k+rank_dense))).
              Hit ``stage_scores``: bm25 (raw BM25), dense (cosine), fused.
``accurate``  the same fusion over a larger pool (``accurate_candidates`` per
              retriever); the ``rerank_depth`` best fused chunks are rescored by the
              second stage (``second_stage="ltr"``): a learning-to-rank model over 26
              features of each candidate — BM25 and cosine (raw, min-max, z-score, rank),
              fused score and rank, BM25 recomputed with k1=0.9/b=0.4 and without length
              normalisation, document-level chunk-max and sum/mean of BM25 and cosine (over
              the chunks of the same file in the set), idf-weighted and plain query-term
              coverage, idf of the rarest missing term, title match, proximity (matched
              terms / smallest window holding them), query-bigram phrase matches, the
              share of the query's numbers and codes ('2009', 'p53') found verbatim in the
              chunk, chunk length, and query-level context. The model is linear (ListNet) plus, when
              training chose them, gradient-boosted depth-3 regression trees started from
              the linear score, fitted on LambdaRank's nDCG@10 pairs (LambdaMART) or the
              ListNet loss (see ``LearnedRanker``). Weights ship in ``ltr_model`` and
              were trained by ``benchmarks/train_ltr.py`` on SciFact train, cranfield, cisi and
              med only. Stage scores add ``ltr``; a plug-in ``Reranker`` adds ``rerank``.
``advanced``  accurate plus query expansion (stages ``feedback``, ``expand``): the
              pool is first ranked as ``accurate`` ranks it (its learned model; the fused
              order when no accurate model is configured), and from its ``prf_docs`` best
              chunks comes RM3-style expansion of the BM25 query (``prf_terms``
              idf-weighted feedback terms mixed in with weight ``prf_weight``) and Rocchio
              on the query vector (q + ``rocchio_beta`` * centroid, renormalised); the
              expanded retrieval is fused again; of the union of both candidate sets, the
              ``rerank_depth`` best by the mean of both fused scores are rescored by the
              advanced learned model (the accurate features + 4 expansion scores); then document-aware aggregation: ``doc_aggregation="max"`` (the
              trained default: a document counts by its best chunk, the model already sees
              chunk-max features) or ``"max+sum"`` (each chunk gains ``doc_sum_weight`` x the
              scores of the other chunks of its file in the reranked set — for collections
              of long, many-chunk documents). Stage scores add bm25_prf, dense_prf,
              fused_prf, ltr, doc_aggregate.
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
fusion ("convex"|"rrf", default convex), dense_weight (0..1, 0.5), rrf_k (60),
fast_candidates (100), accurate_candidates (300), rerank_depth (100),
second_stage ("ltr"|"none"), reranker_weight (0..1, 1.0), prf_docs (3), prf_terms (10),
prf_weight (0..1, 0.3), rocchio_beta (0.3), doc_aggregation ("max"|"max+sum", max),
doc_sum_weight (0.1), documents_first (true), ltr_model (the learned weights: {"models": {"accurate": ...,
"advanced": ...}}, each {"features", "weights", "mean", "std", "bias"} and optionally an
MLP layer — see ``LearnedRanker``). Defaults after the BM25 block were tuned by
benchmarks/train_ltr.py (never on SciFact test).

Determinism: rankings never depend on hash order — ties break by chunk order,
BM25 query terms are summed in sorted order. Numpy BLAS runs single-threaded
during a search (threadpoolctl, per Index), so it does not fight onnxruntime for the
cores; a server with concurrent searches should also call
``threadpoolctl.threadpool_limits(1, "blas")`` once at start-up (limits are process-wide).
Dense search is exact (one matrix-vector product); see benchmarks/results/scale.md.
"""

from __future__ import annotations

from llamaeval.engine._chunk import Chunk, ChunkingConfig, chunk_document
from llamaeval.engine._config import MAX_TOP_K, MODES, RetrievalConfig
from llamaeval.engine._embed import Embedder
from llamaeval.engine._index import Index, IndexEntry, SearchHit, SearchResponse, build_index
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
    "RetrievalConfig",
    "IndexEntry",
    "build_index",
    "Index",
    "SearchHit",
    "SearchResponse",
    "Reranker",
    "LearnedRanker",
]
