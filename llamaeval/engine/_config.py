"""RetrievalConfig: every parameter of every retrieval mode, validated, JSON round-trippable."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from typing import Any

__all__ = ["MODES", "MAX_TOP_K", "RetrievalConfig", "default_ltr_model"]

from llamaeval._keys import MODES  # noqa: E402 - the one definition of the mode names
#: Largest ``top_k`` a search accepts.
MAX_TOP_K: int = 200

_BM25_METHODS = ("lucene", "robertson", "atire")
_FUSIONS = ("rrf", "convex")
_SECOND_STAGES = ("ltr", "none")
_AGGREGATIONS = ("max", "max+sum")


def default_ltr_model() -> dict[str, Any]:
    """The shipped second-stage weights (``llamaeval/engine/data/ltr.json``), read on call."""
    text = resources.files("llamaeval.engine").joinpath("data", "ltr.json").read_text("utf-8")
    data = json.loads(text)
    # the training report ("tuning") stays in the file; the config carries the model itself
    return {"description": data.get("description", ""), "models": data["models"]}


@dataclass
class RetrievalConfig:
    """Every retrieval parameter; see the ``llamaeval.engine`` docstring for what each one does."""

    # sparse candidate generation (BM25 via bm25s)
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    bm25_method: str = "lucene"
    stemmer: str = "english"
    stopwords: str = "english"
    # Defaults below the BM25 block were chosen by benchmarks/train_ltr.py on SciFact train,
    # cranfield, cisi and med (see the "tuning" record in llamaeval/engine/data/ltr.json).
    # fast: hybrid fusion
    fusion: str = "convex"
    dense_weight: float = 0.5
    rrf_k: float = 60.0
    fast_candidates: int = 100
    # accurate: larger pool + second stage
    accurate_candidates: int = 300
    rerank_depth: int = 100
    second_stage: str = "ltr"
    reranker_weight: float = 1.0
    # advanced: query expansion + document-aware aggregation
    prf_docs: int = 3
    prf_terms: int = 10
    prf_weight: float = 0.3
    rocchio_beta: float = 0.3
    doc_aggregation: str = "max"
    doc_sum_weight: float = 0.1
    # accurate/advanced: every document's best chunk ranks ahead of any document's second chunk
    documents_first: bool = True
    # learned second-stage weights (feature -> weight, plus the models' metadata)
    ltr_model: dict[str, Any] = field(default_factory=default_ltr_model)

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        def num(name: str, lo: float, hi: float, integer: bool = False) -> None:
            v = getattr(self, name)
            ok_type = isinstance(v, int) if integer else isinstance(v, (int, float))
            if isinstance(v, bool) or not ok_type or (isinstance(v, float) and not math.isfinite(v)):
                kind = "an integer" if integer else "a number"
                raise ValueError(f"retrieval_config.{name} must be {kind}, got {v!r}")
            if not lo <= v <= hi:
                raise ValueError(f"retrieval_config.{name} must be in [{lo}, {hi}], got {v!r}")

        def choice(name: str, options: tuple[str, ...]) -> None:
            v = getattr(self, name)
            if v not in options:
                raise ValueError(f"retrieval_config.{name} must be one of {', '.join(options)}; got {v!r}")

        num("bm25_k1", 0.0, 10.0)
        num("bm25_b", 0.0, 1.0)
        choice("bm25_method", _BM25_METHODS)
        if not isinstance(self.stemmer, str) or not self.stemmer:
            raise ValueError(f"retrieval_config.stemmer must be a PyStemmer algorithm or 'none', got {self.stemmer!r}")
        choice("stopwords", ("english", "none"))
        choice("fusion", _FUSIONS)
        num("dense_weight", 0.0, 1.0)
        num("rrf_k", 0.0, 1000.0)
        num("fast_candidates", 1, 10_000, integer=True)
        num("accurate_candidates", 1, 10_000, integer=True)
        num("rerank_depth", 1, 10_000, integer=True)
        choice("second_stage", _SECOND_STAGES)
        num("reranker_weight", 0.0, 1000.0)
        num("prf_docs", 0, 100, integer=True)
        num("prf_terms", 0, 200, integer=True)
        num("prf_weight", 0.0, 1.0)
        num("rocchio_beta", 0.0, 10.0)
        choice("doc_aggregation", _AGGREGATIONS)
        num("doc_sum_weight", 0.0, 10.0)
        if not isinstance(self.documents_first, bool):
            raise ValueError(f"retrieval_config.documents_first must be true or false, got {self.documents_first!r}")
        if not isinstance(self.ltr_model, dict) or not isinstance(self.ltr_model.get("models"), dict):
            raise ValueError("retrieval_config.ltr_model must be a dict with a 'models' mapping")
        from llamaeval.engine._rerank import ACCURATE_FEATURES, FEATURES, LearnedRanker

        for mode, model in self.ltr_model["models"].items():
            if mode not in ("accurate", "advanced"):
                raise ValueError(f"retrieval_config.ltr_model.models: unknown mode {mode!r} (accurate, advanced)")
            try:
                ranker = LearnedRanker(model)
            except (ValueError, TypeError, AttributeError) as exc:
                raise ValueError(f"retrieval_config.ltr_model.models.{mode}: {exc}") from None
            allowed = FEATURES if mode == "advanced" else ACCURATE_FEATURES
            unknown = [f for f in ranker.features if f not in allowed]
            if unknown:
                raise ValueError(f"retrieval_config.ltr_model.models.{mode}: unknown feature(s) {', '.join(unknown)}")
        if self.stemmer != "none":
            import Stemmer

            if self.stemmer not in Stemmer.algorithms():
                raise ValueError(
                    f"retrieval_config.stemmer must be 'none' or a PyStemmer algorithm, got {self.stemmer!r}"
                )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of every parameter (learned weights included)."""
        return json.loads(json.dumps(asdict(self)))

    def summary(self) -> dict[str, Any]:
        """Every parameter, with the learned weights (tens of KB) replaced by their
        ``description`` and the SHA-256 of their canonical JSON: small enough to travel
        with every search response; ``to_dict()`` (the pipeline resource) has the weights."""
        d = self.to_dict()
        model = d.pop("ltr_model")
        canonical = json.dumps(model, sort_keys=True, separators=(",", ":"))
        d["ltr_model"] = {"description": model.get("description", ""),
                          "sha256": hashlib.sha256(canonical.encode("utf-8")).hexdigest()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "RetrievalConfig":
        """Build from a (partial) dict merged over the defaults; ValueError on unknown keys or bad values."""
        if d is not None and not isinstance(d, dict):
            raise ValueError(f"retrieval_config must be an object, got {type(d).__name__}")
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown retrieval_config key(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        try:
            return cls(**d)
        except TypeError as exc:  # pragma: no cover - guarded by the key check
            raise ValueError(str(exc)) from None
