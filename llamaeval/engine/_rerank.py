"""The second-stage plug-in interface and the shipped learned (linear learning-to-rank) scorer."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Reranker", "LearnedRanker", "FEATURES", "ACCURATE_FEATURES"]

#: Features the engine computes for the second stage of ``accurate``.
ACCURATE_FEATURES: tuple[str, ...] = (
    "bm25", "dense", "dense_mm", "fused", "fused_rrf", "bm25_rank", "dense_rank", "doc_bm25_max",
    "doc_dense_max", "doc_bm25_sum", "doc_dense_mean", "title", "coverage", "missing_idf", "proximity",
    "phrase", "length", "q_terms", "q_bm25_top", "q_dense_top",
)
#: ``advanced`` adds the scores of the expanded query.
FEATURES: tuple[str, ...] = ACCURATE_FEATURES + ("bm25_prf", "dense_prf", "fused_prf", "fused_both")


@runtime_checkable
class Reranker(Protocol):
    """A second-stage scorer a user plugs in, e.g. a local cross-encoder.

    ``score(query, passages)`` returns one float per passage, higher = more relevant,
    as an array of shape ``(len(passages),)``. It is called once per search with the
    ``rerank_depth`` best fused candidates. Example with sentence-transformers::

        class CE:
            def __init__(self, path): self.model = CrossEncoder(path)
            def score(self, query, passages):
                return np.asarray(self.model.predict([(query, p) for p in passages]))
    """

    def score(self, query: str, passages: list[str]) -> np.ndarray: ...


class LearnedRanker:
    """The shipped second stage: a small model over standardised features ``z = (x - mean) / std``.

    ``model`` is one entry of ``RetrievalConfig.ltr_model["models"]`` with keys
    ``features``, ``mean``, ``std``, ``weights`` (linear part) and optionally an MLP part
    ``hidden_weights`` (h x f), ``hidden_bias`` (h), ``output_weights`` (h):
    ``score = z @ weights + output_weights @ tanh(hidden_weights @ z + hidden_bias)``.
    """

    def __init__(self, model: dict[str, Any]) -> None:
        try:
            self.features: list[str] = list(model["features"])
            n = len(self.features)
            self.weights = np.asarray(model["weights"], dtype=np.float64)
            self.mean = np.asarray(model.get("mean", [0.0] * n), dtype=np.float64)
            self.std = np.asarray(model.get("std", [1.0] * n), dtype=np.float64)
            self.bias = float(model.get("bias", 0.0))
            hw = model.get("hidden_weights")
            self.hidden_weights = None if hw is None else np.asarray(hw, dtype=np.float64)
            self.hidden_bias = None if hw is None else np.asarray(model["hidden_bias"], dtype=np.float64)
            self.output_weights = None if hw is None else np.asarray(model["output_weights"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed ltr model: {exc}") from None
        if not (self.weights.shape == self.mean.shape == self.std.shape == (n,)):
            raise ValueError("malformed ltr model: features, weights, mean and std must have the same length")
        if self.hidden_weights is not None:
            h = self.hidden_weights.shape[0]
            if self.hidden_weights.shape != (h, n) or self.hidden_bias.shape != (h,) or self.output_weights.shape != (h,):
                raise ValueError("malformed ltr model: hidden layer shapes do not match the features")
        self.std = np.where(self.std > 0, self.std, 1.0)

    def score(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """Scores for the rows of ``features`` (name -> (n,) array)."""
        missing = [f for f in self.features if f not in features]
        if missing:
            raise ValueError(f"ltr model needs features not computed: {', '.join(missing)}")
        x = np.stack([np.asarray(features[f], dtype=np.float64) for f in self.features], axis=1)
        z = (x - self.mean) / self.std
        out = z @ self.weights + self.bias
        if self.hidden_weights is not None:
            out = out + np.tanh(z @ self.hidden_weights.T + self.hidden_bias) @ self.output_weights
        return out
