"""The second-stage plug-in interface and the shipped learned scorer (linear ListNet, optionally boosted trees)."""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Reranker", "LearnedRanker", "FEATURES", "ACCURATE_FEATURES", "STAGE_DEFAULTS", "check_stages",
           "stage_parameters"]

#: Features the engine computes for the second stage of ``accurate``.
ACCURATE_FEATURES: tuple[str, ...] = (
    "bm25", "dense", "dense_mm", "fused", "fused_rrf", "bm25_rank", "dense_rank", "doc_bm25_max",
    "doc_dense_max", "doc_bm25_sum", "doc_dense_mean", "title", "coverage", "missing_idf", "proximity",
    "phrase", "length", "q_terms", "q_bm25_top", "q_dense_top",
    "bm25_z", "dense_z", "bm25_k09b04", "bm25_flat", "match_frac", "number_match",
    "fused_z", "length_z", "agree_bm25_z", "agree_dense_z", "top_sim_z",
    "top_sim_sure",
)
#: ``advanced`` adds the scores of the expanded query.
FEATURES: tuple[str, ...] = ACCURATE_FEATURES + ("bm25_prf", "dense_prf", "fused_prf", "fused_both", "fused_prf_z")


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

    ``model`` is one entry of a model document's ``"models"`` (see ``llamaeval.engine._models``) with keys
    ``features``, ``mean``, ``std``, ``weights`` (linear part) and optionally an MLP part
    ``hidden_weights`` (h x f), ``hidden_bias`` (h), ``output_weights`` (h):
    ``score = z @ weights + output_weights @ tanh(hidden_weights @ z + hidden_bias)``.

    Optionally ``trees``: boosted regression trees added to that score (gradient boosting
    started from the linear model, on LambdaRank's nDCG@10 pairs or the ListNet loss;
    the training objective does not change how they are applied), as complete binary trees of one
    depth d: ``feature`` (t x 2^d-1 feature indices), ``threshold`` (t x 2^d-1, on the raw,
    unstandardised features; a row goes right when ``x >= threshold``), ``value``
    (t x 2^d leaf values). Internal nodes are in breadth-first order (children of node
    k are 2k+1, 2k+2).
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
        self.tree_feature = self.tree_threshold = self.tree_value = None
        trees = model.get("trees")
        if trees:
            try:
                feat = np.asarray(trees["feature"], dtype=np.int64)
                thr = np.asarray(trees["threshold"], dtype=np.float64)
                val = np.asarray(trees["value"], dtype=np.float64)
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"malformed ltr model trees: {exc}") from None
            t = feat.shape[0] if feat.ndim == 2 else -1
            nodes = feat.shape[1] if feat.ndim == 2 else -1
            if (t < 1 or nodes < 1 or (nodes + 1) & nodes or thr.shape != feat.shape
                    or val.shape != (t, nodes + 1) or feat.min() < 0 or feat.max() >= n):
                raise ValueError("malformed ltr model trees: shapes or feature indices do not match")
            if not (np.isfinite(thr).all() and np.isfinite(val).all()):
                raise ValueError("malformed ltr model trees: thresholds and values must be finite (JSON-safe)")
            self.tree_feature, self.tree_threshold, self.tree_value = feat, thr, val

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
        if self.tree_feature is not None:
            out = out + _tree_scores(self.tree_feature, self.tree_threshold, self.tree_value, x)
        return out


def _tree_scores(feature: np.ndarray, threshold: np.ndarray, value: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Sum over the trees of each row's leaf value (all trees walked at once, level by level)."""
    t, nodes = feature.shape
    node = np.zeros((x.shape[0], t), dtype=np.int64)
    trees = np.arange(t)
    rows = np.arange(x.shape[0])[:, None]
    for _ in range(int(nodes + 1).bit_length() - 1):
        go_right = x[rows, feature[trees, node]] >= threshold[trees, node]
        node = 2 * node + 1 + go_right
    return value[trees, node - nodes].sum(axis=1)


#: Stage parameters a model document may set (``"stages"``), with the value that applies when it
#: does not: the behaviour of model version 1, so older documents keep ranking as they did.
STAGE_DEFAULTS: dict[str, Any] = {
    # advanced expands the query only when the accurate ranking of the first-stage pool is at least
    # this confident ((best score - mean) / std over the pool); below it, the "expanded" retrieval is
    # the original one (its scores stand in for the expansion's). None: always expand (version 1)
    "feedback_gate": None,
}


def check_stages(stages: Any) -> None:
    """ValueError naming the problem unless ``stages`` is None or a valid ``"stages"`` mapping."""
    if stages is None:
        return
    if not isinstance(stages, dict):
        raise ValueError(f"must be an object, got {type(stages).__name__}")
    unknown = sorted(set(stages) - set(STAGE_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(STAGE_DEFAULTS))}")
    gate = stages.get("feedback_gate")
    if gate is not None and (isinstance(gate, bool) or not isinstance(gate, (int, float)) or not math.isfinite(gate)):
        raise ValueError(f"feedback_gate must be a finite number or null, got {gate!r}")


def stage_parameters(stages: dict[str, Any] | None) -> dict[str, Any]:
    """``STAGE_DEFAULTS`` overridden by a model document's ``stages``."""
    check_stages(stages)
    return {**STAGE_DEFAULTS, **(stages or {})}
