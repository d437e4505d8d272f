"""One typed search request carrying every per-query knob, and the modes as named presets of it.

The engine runs one composition of stages for every request (``Index.search``):

1. candidates: the ``sparse_top_k`` best BM25 chunks and the ``dense_top_k`` best cosine
   chunks (each raised to ``top_k``), restricted to chunks that pass ``filters`` and
   ``dense_cutoff``; a retriever whose weight ``alpha`` gives it nothing (``alpha=0``: dense,
   ``alpha=1``: sparse) contributes no candidates, so ``alpha=0`` *is* the sparse ranking;
2. fusion with weight ``alpha`` on the dense side (the pipeline's ``fusion``: convex or RRF);
3. ``expand``: pseudo-relevance feedback (RM3 on BM25, Rocchio on the query vector), fused again;
4. ``rerank``: the ``rerank_depth`` best candidates rescored by the second stage (the learned
   ranker — the expansion-aware model when ``expand`` — and a plug-in cross-encoder if loaded);
5. ``aggregate``: document-aware aggregation; ``documents_first``: each document's best chunk
   ahead of any second chunk; then the ``top_k`` best.

``fast`` / ``accurate`` / ``advanced`` are rows of :data:`PRESETS`; their pool sizes and
fusion weight come from the pipeline's ``RetrievalConfig``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from llamaeval.engine._config import MAX_TOP_K, MODES, RetrievalConfig
from llamaeval.engine._filters import FilterGroup

__all__ = ["SearchRequest", "PRESETS", "MAX_CANDIDATES"]

#: Largest candidate pool per retriever a request may ask for.
MAX_CANDIDATES: int = 10_000

#: The modes as presets: which stages run, and which ``RetrievalConfig`` field sizes the
#: candidate pools. ``documents_first`` None = the pipeline config's ``documents_first``.
PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"pool": "fast_candidates", "expand": False, "rerank": False, "aggregate": False,
             "documents_first": False},
    "accurate": {"pool": "accurate_candidates", "expand": False, "rerank": True, "aggregate": False,
                 "documents_first": None},
    "advanced": {"pool": "accurate_candidates", "expand": True, "rerank": True, "aggregate": True,
                 "documents_first": None},
}
if tuple(PRESETS) != MODES:  # pragma: no cover - one definition of the mode names
    raise RuntimeError("PRESETS must define exactly the MODES")


@dataclass(frozen=True)
class SearchRequest:
    """Every per-query knob of one search (the pipeline's ``RetrievalConfig`` holds the rest:
    BM25 parameters, fusion kind, expansion sizes, learned weights).

    ``sparse_top_k`` / ``dense_top_k``: candidates per retriever; ``alpha``: dense weight of the
    fusion (0 = sparse only, 1 = dense only); ``dense_cutoff``: minimum cosine similarity of
    any returned chunk; ``rerank`` / ``rerank_depth``: second stage on, and how many fused
    candidates it rescores; ``expand``: pseudo-relevance feedback; ``aggregate``: document-aware
    aggregation; ``documents_first``: one chunk per document before any second chunk;
    ``filters``: metadata filters on the file's custom metadata; ``top_k``: hits returned.
    """

    query: str
    top_k: int = 10
    sparse_top_k: int = 100
    dense_top_k: int = 100
    alpha: float = 0.5
    dense_cutoff: float | None = None
    rerank: bool = False
    rerank_depth: int = 100
    expand: bool = False
    aggregate: bool = False
    documents_first: bool = False
    filters: FilterGroup | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.query, str) or not self.query.strip():
            raise ValueError("query must be a non-empty string")
        _int("top_k", self.top_k, 1, MAX_TOP_K)
        _int("sparse_top_k", self.sparse_top_k, 1, MAX_CANDIDATES)
        _int("dense_top_k", self.dense_top_k, 1, MAX_CANDIDATES)
        _int("rerank_depth", self.rerank_depth, 1, MAX_CANDIDATES)
        _number("alpha", self.alpha, 0.0, 1.0)
        if self.dense_cutoff is not None:
            _number("dense_cutoff", self.dense_cutoff, -1.0, 1.0)
        for name in ("rerank", "expand", "aggregate", "documents_first"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.filters is not None and not isinstance(self.filters, FilterGroup):
            raise ValueError("filters must be a FilterGroup (see llamaeval.engine.parse_filters)")

    @classmethod
    def preset(cls, mode: str, query: str, top_k: int, config: RetrievalConfig, **overrides: Any) -> "SearchRequest":
        """The request of ``mode`` (a row of ``PRESETS``) under the pipeline's ``config``;
        ``overrides`` replace single knobs (e.g. ``filters``)."""
        if mode not in PRESETS:
            raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
        row = PRESETS[mode]
        pool = getattr(config, row["pool"])
        documents_first = config.documents_first if row["documents_first"] is None else row["documents_first"]
        request = cls(query=query, top_k=top_k, sparse_top_k=pool, dense_top_k=pool, alpha=config.dense_weight,
                      rerank=row["rerank"], rerank_depth=config.rerank_depth, expand=row["expand"],
                      aggregate=row["aggregate"], documents_first=documents_first)
        return replace(request, **overrides) if overrides else request

    @property
    def uses_sparse(self) -> bool:
        """Whether BM25 contributes candidates (alpha < 1)."""
        return self.alpha < 1.0

    @property
    def uses_dense(self) -> bool:
        """Whether the dense retriever contributes candidates (alpha > 0)."""
        return self.alpha > 0.0

    def summary(self) -> dict[str, Any]:
        """The knobs as a JSON-safe dict (query left out), for responses and manifests."""
        return {"top_k": self.top_k, "sparse_top_k": self.sparse_top_k, "dense_top_k": self.dense_top_k,
                "alpha": self.alpha, "dense_cutoff": self.dense_cutoff, "rerank": self.rerank,
                "rerank_depth": self.rerank_depth, "expand": self.expand, "aggregate": self.aggregate,
                "documents_first": self.documents_first,
                "filters": self.filters.to_dict() if self.filters is not None else None}


def _int(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")


def _number(name: str, value: Any, lo: float, hi: float) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not lo <= value <= hi:
        raise ValueError(f"{name} must be a number in [{lo}, {hi}], got {value!r}")
