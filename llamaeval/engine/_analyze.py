"""The BM25 analyzer: lower-case, word tokens, English stop words, Snowball stemming.

Deterministic: it depends on no hash order, so an index and a query analysed in
two processes with different PYTHONHASHSEED give the same terms.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

__all__ = ["Analyzer"]

_TOKEN = re.compile(r"(?u)\b\w\w+\b")


@lru_cache(maxsize=8)
def _stopword_set(name: str) -> frozenset[str]:
    if name == "none":
        return frozenset()
    if name == "english":
        from bm25s.stopwords import STOPWORDS_EN

        return frozenset(STOPWORDS_EN)
    raise ValueError(f"unknown stopwords list {name!r}; use 'english' or 'none'")


class Analyzer:
    """Text -> list of index terms, per ``stemmer`` (a PyStemmer algorithm or 'none') and ``stopwords``."""

    def __init__(self, stemmer: str = "english", stopwords: str = "english") -> None:
        self.stemmer_name = stemmer
        self.stopwords_name = stopwords
        self._stop = _stopword_set(stopwords)
        self._stemmer: Any = None
        if stemmer != "none":
            import Stemmer

            if stemmer not in Stemmer.algorithms():
                raise ValueError(f"unknown stemmer {stemmer!r}; use 'none' or one of {Stemmer.algorithms()}")
            self._stemmer = Stemmer.Stemmer(stemmer)

    def words(self, text: str) -> list[str]:
        """Lower-cased word tokens (2+ word characters), stop words removed, not stemmed."""
        return [w for w in _TOKEN.findall(text.lower()) if w not in self._stop]

    def __call__(self, text: str) -> list[str]:
        """Index terms of ``text`` in order (positions matter for proximity)."""
        words = self.words(text)
        if self._stemmer is None or not words:
            return words
        return self._stemmer.stemWords(words)

    @staticmethod
    def numbers(text: str) -> frozenset[str]:
        """Lower-cased word tokens (2+ word characters) that contain a digit: numbers and
        codes such as '1000', '95', 'p53' or 'h1n1', unstemmed, stop words or not."""
        return frozenset(w for w in _TOKEN.findall(text.lower()) if any(c.isdigit() for c in w))

    def analyze_many(self, texts: list[str]) -> list[list[str]]:
        """Index terms of many texts."""
        return [self(t) for t in texts]
