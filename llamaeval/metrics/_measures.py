"""Relevance measures as small objects with a readable string form.

A measure is parsed from text such as ``"ndcg@10"``, ``"recall@20"``, ``"mrr"``,
``"map@100"``, ``"hit_rate@5"``, ``"r-precision"`` or, with a relevance threshold,
``"precision(rel=2)@10"``. ``str(measure)`` gives the readable name (``nDCG@10``),
``measure.spec`` the canonical text that parses back to the same measure.

Variants are named explicitly:

========================  =====================================================
``ndcg@k``                nDCG, trec_eval convention: LINEAR gain (gain = grade),
                          log2(rank + 1) discount, ideal ranking from the qrels
``ndcg_burges@k``         nDCG with EXPONENTIAL gain 2**grade - 1 (Burges et al.)
``map@k`` / ``map``       mean average precision; divides by ALL relevant documents
                          of the query (trec_eval ``map_cut``), not by those in the top k
``mrr@k`` / ``mrr``       reciprocal rank of the first relevant document (0 if none)
``recall@k``              relevant retrieved in the top k / all relevant
``precision@k``           relevant retrieved in the top k / k (trec_eval ``P_k``:
                          divides by k even when fewer than k were retrieved)
``hit_rate@k``            1 if any relevant document is in the top k, else 0
``r-precision``           precision at R, R = number of relevant documents
``f1@k``, ``hits@k``      harmonic mean of P@k and R@k; count of relevant in the top k
========================  =====================================================

A document is relevant when its grade is >= ``rel`` (default 1); grades below
(0, negative) count as non-relevant. Without ``@k`` the whole retrieved list counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from llamaeval._errors import EvaluationError

__all__ = ["Measure", "MEASURES", "parse_measure"]

# canonical name -> (readable name, accepts a cutoff)
MEASURES: dict[str, tuple[str, bool]] = {
    "ndcg": ("nDCG", True),
    "ndcg_burges": ("nDCG_burges", True),
    "map": ("MAP", True),
    "mrr": ("MRR", True),
    "recall": ("Recall", True),
    "precision": ("P", True),
    "hit_rate": ("HitRate", True),
    "r-precision": ("Rprec", False),
    "f1": ("F1", True),
    "hits": ("Hits", True),
}

_ALIASES: dict[str, str] = {
    "ndcg_cut": "ndcg", "ndcg_exp": "ndcg_burges",
    "ap": "map", "map_cut": "map",
    "rr": "mrr", "recip_rank": "mrr",
    "r": "recall", "p": "precision",
    "success": "hit_rate", "hit": "hit_rate", "hitrate": "hit_rate",
    "rprec": "r-precision", "r_precision": "r-precision",
}

_PATTERN = re.compile(
    r"^\s*(?P<name>[a-z_\-]+?)\s*(?:\(\s*rel\s*=\s*(?P<rel>-?\d+)\s*\))?\s*(?:@\s*(?P<k>-?\d+))?\s*$"
)


@dataclass(frozen=True)
class Measure:
    """One relevance measure: canonical ``name``, optional ``cutoff`` (k) and relevance threshold ``rel``."""

    name: str
    cutoff: int | None = None
    rel: int = 1

    def __post_init__(self) -> None:
        if self.name not in MEASURES:
            raise EvaluationError(_unknown(self.name))
        if self.cutoff is not None:
            if not MEASURES[self.name][1]:
                raise EvaluationError(f"{MEASURES[self.name][0]} takes no cutoff (got @{self.cutoff})")
            if self.cutoff < 1:
                raise EvaluationError(f"cutoff must be a positive integer, got @{self.cutoff}")
        if self.rel < 1:
            raise EvaluationError(f"relevance threshold must be >= 1, got rel={self.rel}")

    def __str__(self) -> str:
        text = MEASURES[self.name][0]
        if self.rel != 1:
            text += f"(rel={self.rel})"
        if self.cutoff is not None:
            text += f"@{self.cutoff}"
        return text

    def __repr__(self) -> str:
        return str(self)

    def __matmul__(self, cutoff: int) -> Measure:
        """``Measure("ndcg") @ 10`` is nDCG@10, as in ir_measures."""
        return Measure(self.name, int(cutoff), self.rel)

    @property
    def spec(self) -> str:
        """Canonical lower-case text that :func:`parse_measure` maps back to this measure."""
        text = self.name
        if self.rel != 1:
            text += f"(rel={self.rel})"
        if self.cutoff is not None:
            text += f"@{self.cutoff}"
        return text

    @property
    def ranx_key(self) -> str:
        """The metric string ranx understands (cutoff first, then ``-l<rel>``)."""
        text = self.name
        if self.cutoff is not None:
            text += f"@{self.cutoff}"
        if self.rel != 1:
            text += f"-l{self.rel}"
        return text


def _unknown(name: str) -> str:
    known = ", ".join(MEASURES)
    return (f"unknown metric {name!r}; known metrics: {known} "
            "(write a cutoff as '@k', e.g. 'ndcg@10', and a relevance threshold as '(rel=2)')")


def parse_measure(text: str | Measure) -> Measure:
    """Parse ``"ndcg@10"``-style text (case-insensitive, aliases like ``"P@5"``, ``"AP"``, ``"RR"``)."""
    if isinstance(text, Measure):
        return text
    if not isinstance(text, str):
        raise EvaluationError(f"a metric must be a string like 'ndcg@10' or a Measure, got {type(text).__name__}")
    match = _PATTERN.match(text.lower())
    if match is None:
        raise EvaluationError(_unknown(text))
    name = match["name"]
    name = _ALIASES.get(name, name)
    if name not in MEASURES:
        raise EvaluationError(_unknown(text))
    cutoff = int(match["k"]) if match["k"] is not None else None
    rel = int(match["rel"]) if match["rel"] is not None else 1
    return Measure(name, cutoff, rel)
