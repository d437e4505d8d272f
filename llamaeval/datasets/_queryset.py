"""The QuerySet: queries, graded judgements and (optionally) the corpus, as DataFrames."""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
import pandas as pd

from llamaeval._errors import ConfigurationError, QuerySetError

OnError = Literal["raise", "warn"]

QUERY_COLUMNS = ("query_id", "text")
QREL_COLUMNS = ("query_id", "doc_id", "relevance")
CORPUS_COLUMNS = ("doc_id", "title", "text")


class QuerySetWarning(UserWarning):
    """A query set has a problem that does not stop it being used (e.g. an empty document)."""


def warn(message: str, category: type[Warning] = QuerySetWarning) -> None:
    """warnings.warn attributed to the first caller outside llamaeval.datasets (the user's line)."""
    package_dir = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package_dir):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def _examples(values: Iterable[Any], limit: int = 5) -> str:
    items = [repr(str(v)) for v in list(values)[:limit]]
    return ", ".join(items)


def _ids(series: pd.Series) -> pd.Series:
    """Ids as plain strings, stripped; missing stays missing (checked by validation)."""
    out = series.astype(object).where(series.notna(), None)
    return pd.Series([None if v is None else str(v).strip() for v in out], index=series.index, dtype=object)


def _texts(series: pd.Series) -> pd.Series:
    out = series.astype(object).where(series.notna(), "")
    return pd.Series([str(v) for v in out], index=series.index, dtype=object)


def _require_columns(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise QuerySetError(f"{what} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise QuerySetError(
            f"{what} is missing column(s) {missing}; it has {list(frame.columns)} "
            f"(rename them, or pass a column mapping to the loader)")


def _grades(series: pd.Series) -> tuple[pd.Series, list[str]]:
    """Relevance grades as int64; returns the offending raw values as the second item."""
    raw = series.astype(object)
    numeric = pd.to_numeric(raw.map(lambda v: v.strip() if isinstance(v, str) else v),
                            errors="coerce").astype(float)
    finite = np.isfinite(numeric.to_numpy())
    whole = finite & (numeric.to_numpy() == np.round(numeric.fillna(0).to_numpy()))
    problems = [str(v) for v in raw[~whole].tolist()]
    grades = pd.Series(np.where(whole, numeric.fillna(0).to_numpy(), 0), index=series.index).astype("int64")
    return grades, problems


class QuerySet:
    """Queries, graded judgements (qrels) and an optional corpus, each a tidy DataFrame.

    - ``queries``: ``query_id`` (str), ``text`` (str) — every query, judged or not.
    - ``qrels``: ``query_id`` (str), ``doc_id`` (str), ``relevance`` (int) — the judgements
      of ``split`` only; a higher grade is more relevant, unjudged pairs count as non-relevant.
    - ``corpus``: ``doc_id`` (str), ``title`` (str), ``text`` (str), or None.

    The constructor normalises dtypes and validates (see :meth:`validate`). Problems that
    make scores wrong (duplicate ids, judgements of unknown queries or documents, empty
    query texts, non-numeric grades) raise :class:`~llamaeval.QuerySetError`, or only warn
    with ``on_error="warn"``. Empty corpus documents always just warn: real collections
    have them (Cranfield 471 and 995) and they cannot distort scores, only go unretrieved.
    """

    def __init__(self, name: str, queries: pd.DataFrame, qrels: pd.DataFrame,
                 corpus: pd.DataFrame | None = None, split: str = "test", *,
                 on_error: OnError = "raise") -> None:
        if on_error not in ("raise", "warn"):
            raise ConfigurationError(f"on_error must be 'raise' or 'warn', got {on_error!r}")
        if not isinstance(name, str) or not name:
            raise ConfigurationError("a QuerySet needs a non-empty name")
        _require_columns(queries, QUERY_COLUMNS, "queries")
        _require_columns(qrels, QREL_COLUMNS, "qrels")
        self.name = name
        self.split = split
        self.queries = pd.DataFrame({
            "query_id": _ids(queries["query_id"]),
            "text": _texts(queries["text"]),
        }).reset_index(drop=True)
        grades, bad_grades = _grades(qrels["relevance"]) if len(qrels) else (
            pd.Series([], dtype="int64"), [])
        self.qrels = pd.DataFrame({
            "query_id": _ids(qrels["query_id"]),
            "doc_id": _ids(qrels["doc_id"]),
            "relevance": grades.to_numpy(dtype="int64"),
        }).reset_index(drop=True)
        if corpus is not None:
            _require_columns(corpus, ("doc_id", "text"), "corpus")
            title = corpus["title"] if "title" in corpus.columns else pd.Series([""] * len(corpus), index=corpus.index)
            self.corpus: pd.DataFrame | None = pd.DataFrame({
                "doc_id": _ids(corpus["doc_id"]),
                "title": _texts(title),
                "text": _texts(corpus["text"]),
            }).reset_index(drop=True)
        else:
            self.corpus = None
        self.validate(on_error=on_error, _bad_grades=bad_grades)

    # ------------------------------------------------------------------ validation
    def problems(self, _bad_grades: list[str] | None = None) -> tuple[list[str], list[str]]:
        """Return ``(errors, warnings)``: human-readable findings, empty lists when clean."""
        errors: list[str] = []
        notes: list[str] = []
        q, r, c = self.queries, self.qrels, self.corpus
        for frame, col, what in ((q, "query_id", "queries"), (r, "query_id", "qrels"),
                                 (r, "doc_id", "qrels"), *(((c, "doc_id", "corpus"),) if c is not None else ())):
            blank = frame[col].isna() | (frame[col] == "")
            if blank.any():
                errors.append(f"{what}: {int(blank.sum())} row(s) with an empty {col}")
        dup_q = q["query_id"][q["query_id"].duplicated()].unique()
        if len(dup_q):
            errors.append(f"queries: {len(dup_q)} duplicate query_id(s), e.g. {_examples(dup_q)}")
        empty_q = q.loc[q["text"].str.strip() == "", "query_id"]
        if len(empty_q):
            errors.append(f"queries: {len(empty_q)} query(ies) with empty text, e.g. {_examples(empty_q)}")
        if _bad_grades:
            errors.append(f"qrels: {len(_bad_grades)} relevance grade(s) that are not whole numbers, "
                          f"e.g. {_examples(_bad_grades)}")
        dup_pairs = r[r.duplicated(["query_id", "doc_id"])]
        if len(dup_pairs):
            pairs = [f"{a}/{b}" for a, b in dup_pairs[["query_id", "doc_id"]].itertuples(index=False)]
            errors.append(f"qrels: {len(dup_pairs)} duplicate (query_id, doc_id) judgement(s), e.g. {_examples(pairs)}")
        unknown_q = sorted(set(r["query_id"].dropna()) - set(q["query_id"].dropna()))
        if unknown_q:
            errors.append(f"qrels: judgements for {len(unknown_q)} unknown query id(s), e.g. {_examples(unknown_q)}")
        if c is not None:
            dup_d = c["doc_id"][c["doc_id"].duplicated()].unique()
            if len(dup_d):
                errors.append(f"corpus: {len(dup_d)} duplicate doc_id(s), e.g. {_examples(dup_d)}")
            unknown_d = sorted(set(r["doc_id"].dropna()) - set(c["doc_id"].dropna()))
            if unknown_d:
                errors.append(f"qrels: judgements for {len(unknown_d)} document id(s) not in the corpus, "
                              f"e.g. {_examples(unknown_d)}")
            empty_d = c.loc[(c["title"].str.strip() == "") & (c["text"].str.strip() == ""), "doc_id"]
            if len(empty_d):
                notes.append(f"corpus: {len(empty_d)} document(s) with empty title and text, "
                             f"e.g. {_examples(empty_d)} (kept; ingest skips them)")
        return errors, notes

    def validate(self, on_error: OnError = "raise", *, _bad_grades: list[str] | None = None) -> None:
        """Check the query set; raise QuerySetError listing every error (or warn), warn on notes."""
        errors, notes = self.problems(_bad_grades)
        for note in notes:
            warn(f"{self.name}: {note}")
        if errors:
            message = f"query set {self.name!r} is malformed:\n- " + "\n- ".join(errors)
            if on_error == "raise":
                raise QuerySetError(message)
            warn(message)

    # ------------------------------------------------------------------ views
    @property
    def judged_query_ids(self) -> list[str]:
        """Ids of the queries with at least one judgement in this split, in query order."""
        judged = set(self.qrels["query_id"])
        return [qid for qid in self.queries["query_id"] if qid in judged]

    def judged_queries(self) -> pd.DataFrame:
        """The queries that have at least one judgement in this split (what metrics score)."""
        judged = set(self.qrels["query_id"])
        return self.queries[self.queries["query_id"].isin(judged)].reset_index(drop=True)

    def _repr_html_(self) -> str:
        """A compact card in notebooks: name, split, counts, three example queries."""
        from llamaeval._display import queryset_html

        return queryset_html(self)

    def summary(self) -> dict[str, Any]:
        """Counts as a JSON-safe dict: queries, judged queries, qrel rows, docs, grade histogram."""
        relevant = self.qrels[self.qrels["relevance"] > 0]
        per_query = self.qrels.groupby("query_id").size()
        grades = self.qrels["relevance"].value_counts().sort_index()
        n_judged = len(self.judged_query_ids)
        return {
            "name": self.name,
            "split": self.split,
            "n_queries": int(len(self.queries)),
            "n_judged_queries": int(n_judged),
            "n_unjudged_queries": int(len(self.queries) - n_judged),
            "n_queries_with_relevant": int(relevant["query_id"].nunique()),
            "n_qrels": int(len(self.qrels)),
            "n_relevant": int(len(relevant)),
            "n_docs": None if self.corpus is None else int(len(self.corpus)),
            "n_judged_docs": int(self.qrels["doc_id"].nunique()),
            "mean_judgements_per_query": float(per_query.mean()) if len(per_query) else 0.0,
            "grades": {int(g): int(n) for g, n in grades.items()},
            "content_hash": self.content_hash(),
        }

    def content_hash(self) -> str:
        """SHA-256 (hex) of the queries, judgements and corpus, order-independent.

        Two query sets with the same content hash score identically; the name is not
        part of it. Use it to tell whether a saved run was made against these judgements.
        """
        digest = hashlib.sha256()

        def feed(tag: str, frame: pd.DataFrame, columns: tuple[str, ...]) -> None:
            digest.update(f"\x00{tag}\x00".encode())
            rows = sorted("\x1f".join(str(v) for v in row) for row in frame[list(columns)].itertuples(index=False))
            for row in rows:
                digest.update(row.encode("utf-8"))
                digest.update(b"\x1e")

        feed("queries", self.queries, QUERY_COLUMNS)
        feed("qrels", self.qrels, QREL_COLUMNS)
        if self.corpus is not None:
            feed("corpus", self.corpus, CORPUS_COLUMNS)
        return digest.hexdigest()

    def subset(self, query_ids: Iterable[str] | None = None, doc_ids: Iterable[str] | None = None,
               name: str | None = None) -> QuerySet:
        """A smaller QuerySet: only these queries and/or documents, judgements filtered to match."""
        queries, qrels, corpus = self.queries, self.qrels, self.corpus
        if query_ids is not None:
            keep = {str(q) for q in query_ids}
            queries = queries[queries["query_id"].isin(keep)]
            qrels = qrels[qrels["query_id"].isin(keep)]
        if doc_ids is not None:
            keep_d = {str(d) for d in doc_ids}
            qrels = qrels[qrels["doc_id"].isin(keep_d)]
            if corpus is not None:
                corpus = corpus[corpus["doc_id"].isin(keep_d)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", QuerySetWarning)
            return QuerySet(name or f"{self.name}-subset", queries, qrels, corpus, self.split)

    # ------------------------------------------------------------------ dunder
    def __len__(self) -> int:
        return len(self.queries)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QuerySet):
            return NotImplemented
        return self.split == other.split and self.content_hash() == other.content_hash()

    __hash__ = None  # type: ignore[assignment]  # mutable frames: not hashable

    def __repr__(self) -> str:
        docs = "no corpus" if self.corpus is None else f"{len(self.corpus)} docs"
        return (f"QuerySet({self.name!r}, split={self.split!r}: {len(self.queries)} queries, "
                f"{len(self.judged_query_ids)} judged, {len(self.qrels)} judgements, {docs})")
