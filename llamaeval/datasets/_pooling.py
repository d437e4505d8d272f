"""TREC-style pooling: the documents several configurations retrieved, to be judged once each.

For every query the pool holds the union of each configuration's top ``depth``
documents (a configuration is a ``(pipeline_id, mode, top_k)`` of a benchmark run;
``mode`` is the configuration's name), each document once, in a seeded shuffled
order, so a judge cannot tell which configuration found what or at which rank.
Which configuration contributed what is kept aside in ``Pool.contributions``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from llamaeval._errors import ConfigurationError
from llamaeval.datasets._mapping import REQUEST_COLUMNS

#: Columns that identify a configuration in a run's results (``mode`` = the configuration's name):
#: a request's key without its query.
CONFIG_COLUMNS: tuple[str, ...] = tuple(c for c in REQUEST_COLUMNS if c != "query_id")
ITEM_COLUMNS: tuple[str, ...] = ("position", "query_id", "query", "doc_id")


@dataclass(frozen=True)
class Pool:
    """Documents to judge, query by query.

    - ``items``: ``position`` (0.. the judging order), ``query_id``, ``query`` (text), ``doc_id``;
      one row per (query, document), shuffled within each query.
    - ``contributions``: ``query_id``, ``doc_id``, the configuration columns and ``rank`` —
      who retrieved what (not shown to the judge).
    - ``depth``, ``seed``: how it was made.
    """

    items: pd.DataFrame
    contributions: pd.DataFrame
    depth: int
    seed: int

    def __len__(self) -> int:
        return len(self.items)

    @property
    def configurations(self) -> pd.DataFrame:
        """The pooled configurations (one row each)."""
        cols = [c for c in CONFIG_COLUMNS if c in self.contributions.columns]
        if not cols:
            return pd.DataFrame(index=[0])
        return self.contributions[cols].drop_duplicates().reset_index(drop=True)

    def sizes(self) -> pd.Series:
        """Documents to judge per query (the judging cost)."""
        return self.items.groupby("query_id", sort=False).size().rename("n_docs")

    def queries(self) -> pd.DataFrame:
        """``query_id``, ``text`` of the pooled queries, in judging order."""
        return (self.items[["query_id", "query"]].drop_duplicates("query_id")
                .rename(columns={"query": "text"}).reset_index(drop=True))

    def manifest(self) -> dict[str, Any]:
        """JSON-safe description: depth, seed, sizes, the configurations pooled."""
        return {"depth": self.depth, "seed": self.seed, "n_queries": int(self.items["query_id"].nunique()),
                "n_items": int(len(self.items)),
                "configurations": self.configurations.astype(object).to_dict(orient="records")}

    def __repr__(self) -> str:
        n_q = self.items["query_id"].nunique()
        return (f"Pool(depth={self.depth}: {len(self.items)} documents to judge over {n_q} queries, "
                f"from {len(self.configurations)} configurations)")


def _results_and_queries(run: Any, queries: Any) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    results = getattr(run, "results", run)
    if not isinstance(results, pd.DataFrame):
        raise ConfigurationError(f"pool needs a BenchmarkRun or a results DataFrame, got {type(run).__name__}")
    missing = [c for c in ("query_id", "doc_id", "rank") if c not in results.columns]
    if missing:
        raise ConfigurationError(f"results lack column(s) {missing}; they have {list(results.columns)}")
    if queries is None:
        queries = getattr(run, "queries", None)
    if queries is not None and not isinstance(queries, pd.DataFrame):
        queries = getattr(queries, "queries", None)  # a QuerySet
    if queries is not None:
        if not {"query_id", "text"} <= set(queries.columns):
            raise ConfigurationError("queries need query_id and text columns")
        queries = pd.DataFrame({"query_id": queries["query_id"].astype(str), "text": queries["text"].astype(str)})
    return results, queries


def _shuffle_key(seed: int, query_id: str) -> np.random.Generator:
    """A generator per query: the order of one query's pool does not depend on the others."""
    salt = int.from_bytes(hashlib.sha256(query_id.encode("utf-8")).digest()[:8], "big")
    return np.random.default_rng([seed, salt])


def pool(run: Any, depth: int = 10, *, queries: Any = None, seed: int = 0,
         query_ids: Iterable[str] | None = None) -> Pool:
    """Pool the top ``depth`` documents of every configuration of a run, per query.

    ``run`` is a :class:`~llamaeval.BenchmarkRun` or its ``results`` frame (document
    level: ``query_id``, ``doc_id``, ``rank`` and the configuration columns present).
    Query texts come from ``queries`` (a frame with ``query_id``/``text`` or a QuerySet),
    else from ``run.queries``. ``query_ids`` restricts the pool to those queries (in that
    order); otherwise queries follow the query frame's order. Rows without a document
    (failed requests) contribute nothing.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ConfigurationError(f"depth must be an int >= 1, got {depth!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigurationError(f"seed must be an int, got {seed!r}")
    results, query_frame = _results_and_queries(run, queries)
    cols = [c for c in CONFIG_COLUMNS if c in results.columns]
    hits = results[results["doc_id"].notna() & results["rank"].notna()]
    hits = hits[pd.to_numeric(hits["rank"]) <= depth]
    contributions = pd.DataFrame({"query_id": hits["query_id"].astype(str), "doc_id": hits["doc_id"].astype(str),
                                  **{c: hits[c].to_numpy() for c in cols},
                                  "rank": pd.to_numeric(hits["rank"]).astype(int).to_numpy()})
    contributions = contributions.sort_values(["query_id", *cols, "rank"], kind="stable").reset_index(drop=True)

    if query_ids is not None:
        order = [str(q) for q in dict.fromkeys(query_ids)]
    elif query_frame is not None:
        order = [q for q in query_frame["query_id"] if q in set(contributions["query_id"])]
    else:
        order = list(dict.fromkeys(results["query_id"].astype(str)))
    texts = dict(zip(query_frame["query_id"], query_frame["text"])) if query_frame is not None else {}
    docs_by_query = contributions.groupby("query_id", sort=False)["doc_id"].unique()
    rows = []
    for qid in order:
        docs = sorted(docs_by_query.get(qid, []))
        for j in _shuffle_key(seed, qid).permutation(len(docs)):
            rows.append((qid, texts.get(qid, ""), docs[int(j)]))
    items = pd.DataFrame(rows, columns=["query_id", "query", "doc_id"])
    items.insert(0, "position", np.arange(len(items), dtype=np.int64))
    keep = set(order)
    contributions = contributions[contributions["query_id"].isin(keep)].reset_index(drop=True)
    return Pool(items=items, contributions=contributions, depth=depth, seed=seed)
