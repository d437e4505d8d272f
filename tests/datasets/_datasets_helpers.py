"""Helpers for the datasets tests: a tiny, exact BM25 to produce real runs without a server, and MAP."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from scipy import sparse

from llamaeval import QuerySet

_TOKEN = re.compile(r"[a-z0-9]+")


def bm25_run(queryset: QuerySet, k: int = 10, k1: float = 0.9, b: float = 0.4) -> pd.DataFrame:
    """Top-k BM25 (title + text, no stemming) for every query: columns query_id, doc_id, rank."""
    corpus = queryset.corpus
    vocab: dict[str, int] = {}
    rows, cols, vals = [], [], []
    for i, (title, text) in enumerate(zip(corpus["title"], corpus["text"])):
        counts: dict[int, int] = {}
        for token in _TOKEN.findall(f"{title} {text}".lower()):
            j = vocab.setdefault(token, len(vocab))
            counts[j] = counts.get(j, 0) + 1
        rows += [i] * len(counts)
        cols += list(counts)
        vals += list(counts.values())
    tf = sparse.csr_matrix((np.array(vals, float), (rows, cols)), shape=(len(corpus), len(vocab)))
    n_docs = tf.shape[0]
    df = np.asarray((tf > 0).sum(axis=0)).ravel()
    idf = np.log(1 + (n_docs - df + 0.5) / (df + 0.5))
    lengths = np.asarray(tf.sum(axis=1)).ravel()
    norm = k1 * (1 - b + b * lengths / max(lengths.mean(), 1e-9))
    weights = tf.tocoo()
    data = idf[weights.col] * weights.data * (k1 + 1) / (weights.data + norm[weights.row])
    matrix = sparse.csr_matrix((data, (weights.row, weights.col)), shape=tf.shape)
    doc_ids = corpus["doc_id"].to_numpy()
    out = []
    for qid, text in zip(queryset.queries["query_id"], queryset.queries["text"]):
        terms = sorted({vocab[t] for t in _TOKEN.findall(text.lower()) if t in vocab})
        if not terms:
            continue
        scores = np.asarray(matrix[:, terms].sum(axis=1)).ravel()
        top = np.argsort(-scores, kind="stable")[:k]
        out += [(qid, doc_ids[i], rank) for rank, i in enumerate(top, 1)]
    return pd.DataFrame(out, columns=["query_id", "doc_id", "rank"])


def mean_average_precision(run: pd.DataFrame, qrels: pd.DataFrame) -> float:
    """MAP over the judged queries (relevance > 0), truncated at the run's depth."""
    relevant = qrels[qrels["relevance"] > 0].groupby("query_id")["doc_id"].agg(set).to_dict()
    ranked = run.sort_values(["query_id", "rank"]).groupby("query_id")["doc_id"].agg(list).to_dict()
    scores = []
    for qid, wanted in relevant.items():
        hits, total = 0, 0.0
        for position, doc in enumerate(ranked.get(qid, []), 1):
            if doc in wanted:
                hits += 1
                total += hits / position
        scores.append(total / len(wanted))
    return float(np.mean(scores))
