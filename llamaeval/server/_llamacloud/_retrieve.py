"""The real retrieve parameters -> one engine ``SearchRequest``, and the ``files_via_*`` and
``auto_routed`` retrieval modes over the chunk ranking.

How the knobs map (the defaults are LlamaCloud's; a pipeline's ``preset_retrieval_parameters``
replace them, and a request's own fields replace those):

- ``sparse_similarity_top_k`` / ``dense_similarity_top_k`` (30 / 30): candidates per retriever;
- ``alpha`` (0.5): the dense weight of the fusion; 0 is the BM25 ranking, 1 the dense one;
- ``dense_similarity_cutoff``: minimum cosine similarity of every returned chunk;
- ``enable_reranking`` (true) + ``rerank_top_n`` (6): the engine's second stage (the learned
  ranker of ``accurate``, and a plug-in cross-encoder when the server has one) rescoring every
  candidate, then ``rerank_top_n`` nodes, one per document first; without reranking the node
  count is ``dense_similarity_top_k`` (``sparse_similarity_top_k`` when ``alpha`` is 0);
- ``search_filters``: metadata filters over the files' custom metadata, applied before ranking;
- ``retrieval_mode``: ``chunks``; ``files_via_content`` ranks chunks as above and returns the
  ``files_top_k`` (1) files of the best chunks, each whole file as one node;
  ``files_via_metadata`` ranks files by the share of the query's idf mass found in their
  name and custom metadata values (content ranking breaks ties); ``auto_routed`` takes
  ``files_via_metadata`` when the best file's metadata holds at least half the query's idf
  mass, else ``chunks`` — the route taken is in the response ``metadata.retrieval_mode``.
"""

from __future__ import annotations

from typing import Any

from llamaeval.engine import FilterGroup, SearchRequest, parse_filters

__all__ = ["DEFAULTS", "effective_params", "search_request", "AUTO_ROUTE_METADATA_SHARE", "FILE_POOL"]

DEFAULTS: dict[str, Any] = {"dense_similarity_top_k": 30, "sparse_similarity_top_k": 30, "alpha": 0.5,
                            "dense_similarity_cutoff": None, "enable_reranking": True, "rerank_top_n": 6,
                            "retrieval_mode": "chunks", "files_top_k": 1, "search_filters": None}
#: auto_routed: the metadata share of the best file at or above which files are routed by metadata.
AUTO_ROUTE_METADATA_SHARE = 0.5
#: Chunks ranked to pick the files of the files_via_* modes.
FILE_POOL = 200


def effective_params(request: dict[str, Any], preset: dict[str, Any] | None) -> dict[str, Any]:
    """Request fields over the pipeline's presets over ``DEFAULTS`` (a null field counts as omitted)."""
    out = dict(DEFAULTS)
    for layer in (preset or {}, request):
        out.update({k: v for k, v in layer.items() if k in DEFAULTS and v is not None})
    return out


def parsed_filters(params: dict[str, Any]) -> FilterGroup | None:
    """The search filters of ``params`` (ValueError naming the path when malformed)."""
    return parse_filters(params.get("search_filters"))


def search_request(query: str, params: dict[str, Any], config: Any, files: bool = False) -> SearchRequest:
    """The engine request of ``params`` under the pipeline's retrieval ``config``;
    ``files``: rank chunks deep enough to choose whole files from."""
    alpha = float(params["alpha"])
    rerank = bool(params["enable_reranking"])
    dense_k, sparse_k = int(params["dense_similarity_top_k"]), int(params["sparse_similarity_top_k"])
    if files:
        top_k = FILE_POOL
    elif rerank:
        top_k = int(params["rerank_top_n"])
    else:
        top_k = sparse_k if alpha == 0 else dense_k
    return SearchRequest(query=query, top_k=top_k, sparse_top_k=sparse_k, dense_top_k=dense_k, alpha=alpha,
                         dense_cutoff=params["dense_similarity_cutoff"], rerank=rerank,
                         rerank_depth=dense_k + sparse_k, documents_first=rerank and config.documents_first,
                         filters=parsed_filters(params))


def best_files(hits: list[Any], n: int) -> list[tuple[Any, float]]:
    """The ``n`` files of the best-ranked chunks: (first chunk entry, best chunk score)."""
    out: dict[str, tuple[Any, float]] = {}
    for h in hits:
        if h.entry.file_id not in out:
            out[h.entry.file_id] = (h.entry, float(h.score))
            if len(out) == n:
                break
    return list(out.values())
