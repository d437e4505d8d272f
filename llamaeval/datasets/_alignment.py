"""Alignment guard: refuse to score a run whose ids do not line up with the judgements.

The classic trap is Cranfield: its judgement file numbers queries 1..225 in file
order, the query file by ``.I`` numbers. Load them against each other and query ids
still overlap (both contain 1, 2, ...), document ids all exist, yet MAP drops to
about 0.01 because every query is judged against another query's documents.
So the guard checks three things and reports every number:

1. **query overlap** — share of the run's distinct query ids that are judged in the split;
2. **document overlap** — share of the run's distinct document ids that exist in the
   corpus (or, without a corpus, in any judgement; reported only, since a run may
   legitimately retrieve many unjudged documents);
3. **judged hits** — over the judged queries of the run, the share whose results contain
   at least one document judged *for that query* (``hit_rate``), against a baseline: the
   same share with each query's results checked against the *other* queries' judgements
   (``shuffled_hit_rate``; what a misaligned run looks like, topical overlap included;
   random retrieval, ``chance_hit_rate``, when the run has a single judged query).
   ``skill = (hit_rate - baseline) / (1 - baseline)``: misaligned ids give skill ≈ 0
   (Cranfield with ``.I`` query ids, BM25: 0.01-0.03 at k = 1, 10, 100), a real retriever
   far more (plain BM25, k = 1..100 on the bundled sets: 0.23-0.91). Default floor 0.1.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from llamaeval._errors import AlignmentError, ConfigurationError
from llamaeval.datasets._queryset import QuerySet, warn


#: Above this baseline hit rate the hit check cannot tell aligned from misaligned runs.
_MAX_BASELINE = 0.9


class AlignmentWarning(UserWarning):
    """A run barely overlaps the judgements (raised as AlignmentError unless on_mismatch="warn")."""


@dataclass(frozen=True)
class AlignmentReport:
    """The numbers behind :func:`check_alignment` (shares are in [0, 1])."""

    n_run_queries: int
    n_judged_queries: int
    n_overlap_queries: int
    query_overlap: float
    n_run_docs: int
    n_known_docs: int
    doc_overlap: float
    doc_reference: str            # "corpus" or "qrels"
    hit_rate: float               # judged queries of the run with >= 1 document judged for them
    chance_hit_rate: float        # the same, expected for random retrieval
    shuffled_hit_rate: float | None  # the same, each query checked against the other queries' judgements
    hit_lift: float | None        # hit_rate / baseline (baseline = shuffled, else chance)
    hit_skill: float              # (hit_rate - baseline) / (1 - baseline)
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of every number (for run manifests)."""
        out = asdict(self)
        out["problems"] = list(self.problems)
        return out

    def __str__(self) -> str:
        return (f"{self.n_overlap_queries}/{self.n_run_queries} run queries are judged "
                f"(query overlap {self.query_overlap:.2f}; {self.n_judged_queries} judged in the split); "
                f"{self.doc_overlap:.2f} of {self.n_run_docs} retrieved documents are in the {self.doc_reference}; "
                f"{self.hit_rate:.3f} of judged queries retrieved a document judged for them "
                f"(ids shuffled: {_fmt(self.shuffled_hit_rate)}, random: {self.chance_hit_rate:.3f}; "
                f"lift {'n/a' if self.hit_lift is None else f'{self.hit_lift:.1f}'}, skill {self.hit_skill:.2f})")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _judged_hits(hits: pd.DataFrame, qrels: pd.DataFrame, queries: list[str],
                 n_docs: int) -> tuple[float, float, float | None]:
    """(hit rate, hit rate of random retrieval, hit rate with query ids shuffled) over ``queries``.

    The shuffled rate checks each query's results against every *other* query's judgements:
    exactly what a misaligned run looks like, including topical overlap between queries.
    """
    if not queries:
        return 0.0, 0.0, None
    from scipy import sparse  # only needed here; keeps `import llamaeval.datasets` light

    row = {q: i for i, q in enumerate(queries)}
    run = hits[hits["query_id"].isin(row)].drop_duplicates(["query_id", "doc_id"])
    judged = qrels[qrels["query_id"].isin(row)].drop_duplicates(["query_id", "doc_id"])
    docs = {d: j for j, d in enumerate(pd.unique(pd.concat([run["doc_id"], judged["doc_id"]])))}
    shape = (len(queries), max(len(docs), 1))

    def matrix(frame: pd.DataFrame) -> Any:
        return sparse.csr_matrix((np.ones(len(frame)), (frame["query_id"].map(row).to_numpy(),
                                                         frame["doc_id"].map(docs).to_numpy())), shape=shape)

    retrieved, wanted = matrix(run), matrix(judged)
    overlap = (retrieved @ wanted.T).tocsr()                # [q, q'] > 0: q's results hit q''s judgements
    overlap.eliminate_zeros()
    own = overlap.diagonal() > 0
    hit_rate = float(own.mean())
    k = np.asarray(retrieved.sum(axis=1)).ravel()
    p = np.minimum(np.asarray(wanted.sum(axis=1)).ravel() / max(n_docs, 1), 1.0)
    chance = float(np.mean(1.0 - (1.0 - p) ** k))
    n = len(queries)
    shuffled = float((overlap.nnz - own.sum()) / (n * (n - 1))) if n > 1 else None
    return hit_rate, chance, shuffled


def _strings(values: Iterable[Any]) -> list[str | None]:
    out: list[str | None] = []
    for v in values:
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            out.append(None)
        else:
            out.append(str(v))
    return out


def check_alignment(query_ids: Iterable[Any], doc_ids: Iterable[Any], queryset: QuerySet,
                    min_overlap: float = 0.5, on_mismatch: Literal["raise", "warn"] = "raise", *,
                    min_hit_skill: float = 0.1) -> AlignmentReport:
    """Check that a run's ids line up with ``queryset``'s judgements; raise AlignmentError if not.

    ``query_ids`` and ``doc_ids`` are the run's columns, row by row (one entry per
    retrieved result; a missing doc id marks a request that returned nothing).
    Fails when the query overlap or (with a corpus) the document overlap is below
    ``min_overlap``, or when the judged-hit skill ``(hit_rate - baseline) / (1 - baseline)``
    is below ``min_hit_skill`` (the hit check is skipped as inconclusive when the baseline
    is 0.9 or more: results cover nearly every judged document anyway). With
    ``on_mismatch="warn"`` it warns (AlignmentWarning) instead. Returns the report;
    the raised error carries it as ``.report``.
    """
    if on_mismatch not in ("raise", "warn"):
        raise ConfigurationError(f"on_mismatch must be 'raise' or 'warn', got {on_mismatch!r}")
    if not 0.0 <= min_overlap <= 1.0 or not 0.0 <= min_hit_skill <= 1.0:
        raise ConfigurationError("min_overlap and min_hit_skill are shares in [0, 1]")
    qids = _strings(query_ids)
    dids = _strings(doc_ids)
    if len(qids) != len(dids):
        raise ConfigurationError(f"query_ids ({len(qids)}) and doc_ids ({len(dids)}) must be the run's "
                                 "columns row by row, of equal length")
    run = pd.DataFrame({"query_id": qids, "doc_id": dids}).dropna(subset=["query_id"])
    qrels = queryset.qrels
    judged = set(qrels["query_id"])
    run_queries = set(run["query_id"])
    overlap_q = run_queries & judged
    query_overlap = len(overlap_q) / len(run_queries) if run_queries else 0.0

    hits = run.dropna(subset=["doc_id"])
    run_docs = set(hits["doc_id"])
    if queryset.corpus is not None:
        known_docs, reference = set(queryset.corpus["doc_id"]), "corpus"
    else:
        known_docs, reference = set(qrels["doc_id"]), "qrels"
    doc_overlap = len(run_docs & known_docs) / len(run_docs) if run_docs else 0.0

    n_docs = len(known_docs | run_docs) if reference == "qrels" else len(known_docs)
    hit_rate, chance, shuffled = _judged_hits(hits, qrels, sorted(overlap_q), n_docs)
    baseline = shuffled if shuffled is not None else chance
    skill = (hit_rate - baseline) / (1.0 - baseline) if baseline < 1.0 else 0.0
    lift = hit_rate / baseline if baseline > 0 else None
    conclusive = baseline < _MAX_BASELINE

    problems = []
    if query_overlap < min_overlap:
        problems.append(f"only {len(overlap_q)} of {len(run_queries)} run query ids are judged "
                        f"(overlap {query_overlap:.2f} < {min_overlap})")
    if reference == "corpus" and run_docs and doc_overlap < min_overlap:
        problems.append(f"only {len(run_docs & known_docs)} of {len(run_docs)} retrieved document ids are in "
                        f"the corpus (overlap {doc_overlap:.2f} < {min_overlap}); check DocumentMapping")
    if overlap_q and conclusive and skill < min_hit_skill:
        against = "with query ids shuffled" if shuffled is not None else "for random retrieval"
        problems.append(f"judged queries find their own judged documents hardly more often than chance "
                        f"(hit rate {hit_rate:.3f} vs {baseline:.3f} {against}: skill {skill:.2f} < "
                        f"{min_hit_skill}); query ids probably point at other queries' judgements")
    report = AlignmentReport(
        n_run_queries=len(run_queries), n_judged_queries=len(judged), n_overlap_queries=len(overlap_q),
        query_overlap=query_overlap, n_run_docs=len(run_docs), n_known_docs=len(known_docs),
        doc_overlap=doc_overlap, doc_reference=reference, hit_rate=hit_rate, chance_hit_rate=chance,
        shuffled_hit_rate=shuffled, hit_lift=lift, hit_skill=skill, problems=tuple(problems))
    if problems:
        message = (f"run and judgements of {queryset.name!r} ({queryset.split}) are misaligned: "
                   + "; ".join(problems) + f". [{report}]")
        if on_mismatch == "raise":
            error = AlignmentError(message)
            error.report = report  # type: ignore[attr-defined]  # the numbers, for callers
            raise error
        warn(message, AlignmentWarning)
    return report
