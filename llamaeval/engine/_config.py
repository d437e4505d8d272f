"""RetrievalConfig: every parameter of every retrieval mode, validated, JSON round-trippable."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from llamaeval.engine._dense import DenseConfig
from llamaeval.engine._models import (
    MODEL_NAME, ModelStore, check_reference, default_model_reference, is_reference, packaged_versions,
    read_packaged, reference_of, resolve_model,
)

__all__ = ["MODES", "MAX_TOP_K", "RetrievalConfig", "default_model_reference"]

from llamaeval._keys import MODES  # noqa: E402 - the one definition of the mode names
#: Largest ``top_k`` a search accepts.
MAX_TOP_K: int = 200

_BM25_METHODS = ("lucene", "robertson", "atire")
_FUSIONS = ("rrf", "convex")
_SECOND_STAGES = ("ltr", "none")
_AGGREGATIONS = ("max", "max+sum")


@dataclass
class RetrievalConfig:
    """Every retrieval parameter; see the ``llamaeval.engine`` docstring for what each one does."""

    # sparse candidate generation (BM25 via bm25s)
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    bm25_method: str = "lucene"
    stemmer: str = "english"
    stopwords: str = "english"
    # Defaults below the BM25 block were chosen by benchmarks/train_ltr.py by leave-one-collection-out
    # over adi, cf, cisi, cosqa, cranfield, med and SciFact train (benchmarks/results/ltr_selection.json;
    # the same record is the "tuning" of llamaeval/engine/data/ltr-v2.json).
    # fast: hybrid fusion
    fusion: str = "convex"
    dense_weight: float = 0.6
    rrf_k: float = 60.0
    fast_candidates: int = 100
    # accurate: the same pool + second stage (a pool of 300 never helped held-out collections)
    accurate_candidates: int = 100
    rerank_depth: int = 100
    second_stage: str = "ltr"
    reranker_weight: float = 1.0
    # advanced: query expansion (when the first stage is confident; see the model's "stages") +
    # document-aware aggregation
    prf_docs: int = 5
    prf_terms: int = 20
    prf_weight: float = 0.5
    rocchio_beta: float = 0.5
    doc_aggregation: str = "max"
    doc_sum_weight: float = 0.0
    # accurate/advanced: every document's best chunk ranks ahead of any document's second chunk
    documents_first: bool = True
    # dense search: exact below ann_threshold chunks, from it on an approximate HNSW graph (usearch)
    # whose candidates are rescored exactly; ann_expansion = its search breadth (HNSW ef). Defaults and
    # the graph's build parameters live in llamaeval.engine._dense.DenseConfig.
    ann_threshold: int = DenseConfig.threshold
    ann_expansion: int = DenseConfig.expansion_search
    # the learned second stage: a reference {"name", "version", "sha256"} to a model document
    # (shipped in llamaeval/engine/data/ or kept in a model store), or inline weights {"models": ...}
    ltr_model: dict[str, Any] = field(default_factory=default_model_reference)

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
        num("ann_threshold", 1, 2**40, integer=True)
        num("ann_expansion", 8, 4096, integer=True)
        self._validate_ltr_model()
        if self.stemmer != "none":
            import Stemmer

            if self.stemmer not in Stemmer.algorithms():
                raise ValueError(
                    f"retrieval_config.stemmer must be 'none' or a PyStemmer algorithm, got {self.stemmer!r}"
                )

    def _validate_ltr_model(self) -> None:
        model = self.ltr_model
        if is_reference(model):
            check_reference(model)
            if model["name"] == MODEL_NAME and isinstance(model["version"], int) \
                    and model["version"] in packaged_versions():
                sha = hashlib.sha256(read_packaged(model["version"])).hexdigest()
                if sha != model["sha256"]:
                    raise ValueError(f"retrieval_config.ltr_model: {MODEL_NAME} version {model['version']} shipped "
                                     f"with this llamaeval has SHA-256 {sha}, the config names {model['sha256']}")
            return
        if not isinstance(model, dict) or not isinstance(model.get("models"), dict):
            raise ValueError("retrieval_config.ltr_model must be a model reference {\"name\", \"version\", "
                             "\"sha256\"} or inline weights {\"models\": {\"accurate\": ..., \"advanced\": ...}}")
        check_model_document(model)

    def model_reference(self) -> dict[str, Any]:
        """The second-stage model's ``{"name", "version", "sha256"}`` (computed for inline weights)."""
        return dict(self.ltr_model) if is_reference(self.ltr_model) else reference_of(self.ltr_model)

    def model_document(self, stores: tuple[ModelStore, ...] = ()) -> dict[str, Any]:
        """The second-stage model document: the inline weights, or what the reference names
        (shipped with the package, else from the first of ``stores`` holding it; ValueError if none)."""
        if not is_reference(self.ltr_model):
            return self.ltr_model
        doc = resolve_model(self.ltr_model, stores)
        check_model_document(doc, f"model {self.ltr_model['name']} version {self.ltr_model['version']}")
        return doc

    def dense_config(self) -> DenseConfig:
        """How this config's dense search runs (exact or HNSW, see ``ann_threshold``)."""
        return DenseConfig(threshold=self.ann_threshold, expansion_search=self.ann_expansion)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of every parameter (``ltr_model`` as given: a reference, or inline weights)."""
        return json.loads(json.dumps(asdict(self)))

    def summary(self) -> dict[str, Any]:
        """Every parameter, with ``ltr_model`` always as its reference (inline weights replaced by
        their name, version and SHA-256): small enough to travel with every search response."""
        d = self.to_dict()
        d["ltr_model"] = self.model_reference()
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


def check_model_document(doc: dict[str, Any], where: str = "retrieval_config.ltr_model") -> None:
    """ValueError naming the problem unless ``doc`` holds valid ``models`` (accurate/advanced, known
    features, consistent shapes) and valid ``stages`` parameters."""
    from llamaeval.engine._rerank import ACCURATE_FEATURES, FEATURES, LearnedRanker, check_stages

    for mode, model in doc["models"].items():
        if mode not in ("accurate", "advanced"):
            raise ValueError(f"{where}.models: unknown mode {mode!r} (accurate, advanced)")
        try:
            ranker = LearnedRanker(model)
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"{where}.models.{mode}: {exc}") from None
        allowed = FEATURES if mode == "advanced" else ACCURATE_FEATURES
        unknown = [f for f in ranker.features if f not in allowed]
        if unknown:
            raise ValueError(f"{where}.models.{mode}: unknown feature(s) {', '.join(unknown)}")
    try:
        check_stages(doc.get("stages"))
    except ValueError as exc:
        raise ValueError(f"{where}.stages: {exc}") from None
