"""A tiny plug-in reranker for the server tests: prefers passages that mention 'zeppelin'."""

from __future__ import annotations

import numpy as np


class KeywordReranker:
    def score(self, query: str, passages: list[str]) -> np.ndarray:
        return np.array([10.0 if "zeppelin" in p.lower() else 0.0 for p in passages])


def make() -> KeywordReranker:
    return KeywordReranker()
