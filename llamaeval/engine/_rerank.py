"""The second-stage plug-in interface and the shipped learned (linear learning-to-rank) scorer."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Reranker", "LinearRanker"]


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


class LinearRanker:
    """A linear model over standardised features: ``sum(w * (x - mean) / std) + bias``.

    ``model`` is one entry of ``RetrievalConfig.ltr_model["models"]``:
    ``{"features": [...], "weights": [...], "mean": [...], "std": [...], "bias": float}``.
    """

    def __init__(self, model: dict[str, Any]) -> None:
        try:
            self.features: list[str] = list(model["features"])
            self.weights = np.asarray(model["weights"], dtype=np.float64)
            self.mean = np.asarray(model.get("mean", [0.0] * len(self.features)), dtype=np.float64)
            self.std = np.asarray(model.get("std", [1.0] * len(self.features)), dtype=np.float64)
            self.bias = float(model.get("bias", 0.0))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed ltr model: {exc}") from None
        n = len(self.features)
        if not (self.weights.shape == self.mean.shape == self.std.shape == (n,)):
            raise ValueError("malformed ltr model: features, weights, mean and std must have the same length")
        self.std = np.where(self.std > 0, self.std, 1.0)

    def score(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """Scores for the rows of ``features`` (name -> (n,) array)."""
        missing = [f for f in self.features if f not in features]
        if missing:
            raise ValueError(f"ltr model needs features not computed: {', '.join(missing)}")
        x = np.stack([np.asarray(features[f], dtype=np.float64) for f in self.features], axis=1)
        return ((x - self.mean) / self.std) @ self.weights + self.bias
