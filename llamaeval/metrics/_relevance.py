"""Relevance metrics over a runner results frame, computed by ranx."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from llamaeval._errors import EvaluationError
from llamaeval._keys import DEFAULT_METRICS
from llamaeval.metrics._frames import config_columns, normalise_qrels, require_frame, sort_configs
from llamaeval.metrics._measures import Measure, parse_measure

__all__ = ["DEFAULT_METRICS", "evaluate", "recall_at_top_k", "bootstrap_mean_ci"]


def _labelled(metrics: str | Measure | Iterable[str | Measure]) -> list[tuple[str, Measure]]:
    """(column label, Measure) pairs; a string keeps its own text as label, a Measure its spec."""
    if isinstance(metrics, (str, Measure)):
        metrics = [metrics]
    pairs: list[tuple[str, Measure]] = []
    seen: set[str] = set()
    for item in metrics:
        measure = parse_measure(item)
        label = item.strip() if isinstance(item, str) else measure.spec
        if label not in seen:
            seen.add(label)
            pairs.append((label, measure))
    if not pairs:
        raise EvaluationError("no metrics requested")
    return pairs


def _prepare_run(results: Any) -> pd.DataFrame:
    """Results as strings, with a usable ``rank``; rows with rank/doc NA are dropped (their queries still count)."""
    require_frame(results, "results", ("query_id", "doc_id"))
    if "rank" not in results.columns and "score" not in results.columns:
        raise EvaluationError("results need a 'rank' (1 = best) or a 'score' column to order documents")
    run = results.copy()
    run["query_id"] = run["query_id"].astype(str)
    if "rank" not in run.columns:
        # No ranks: order by score, best first (ties by doc_id, as a stable rule).
        run = run.sort_values(["query_id", "score", "doc_id"], ascending=[True, False, True])
        run["rank"] = run.groupby(config_columns(run) + ["query_id"], sort=False).cumcount() + 1
        run.loc[run["doc_id"].isna(), "rank"] = np.nan
    run["rank"] = pd.to_numeric(run["rank"], errors="coerce")
    if (run["rank"] < 1).any():
        raise EvaluationError(f"ranks start at 1 (best); got {run['rank'].min()}")
    return run


def per_query_matrix(results: Any, qrels: Any, metrics: Sequence[str | Measure] | str | Measure,
                     ) -> tuple[pd.DataFrame, list[str], list[tuple[str, Measure]], dict[str, np.ndarray]]:
    """Per-query scores for every configuration and measure.

    Returns (configurations frame, judged query ids, (label, measure) pairs,
    {label: array of shape (n_configurations, n_queries)}).
    """
    pairs = _labelled(metrics)
    run = _prepare_run(results)
    judgements = normalise_qrels(qrels)
    cols = config_columns(run)

    if not (judgements["relevance"] >= 1).any():
        raise EvaluationError("the qrels hold no relevant judgement (grade >= 1): every score would be 0")
    judged = sorted(judgements["query_id"].unique())
    run_queries = set(run["query_id"].unique())
    if not run_queries & set(judged):
        raise EvaluationError(
            f"no overlap between the run's {len(run_queries)} query ids and the {len(judged)} judged query ids "
            f"(e.g. run {sorted(run_queries)[:3]} vs qrels {judged[:3]}): are the ids aligned?")

    docs = run[run["rank"].notna() & run["doc_id"].notna()].copy()
    docs["doc_id"] = docs["doc_id"].astype(str)
    if docs.empty:
        raise EvaluationError(
            f"the run retrieved no document at all ({run['query_id'].nunique()} queries, every request "
            "failed or returned nothing): see the requests' status and error columns")
    if not set(docs["doc_id"].unique()) & set(judgements["doc_id"].unique()):
        raise EvaluationError(
            f"none of the {docs['doc_id'].nunique()} retrieved document ids appears in the judgements "
            f"(e.g. run {sorted(docs['doc_id'].unique())[:3]} vs qrels "
            f"{sorted(judgements['doc_id'].unique())[:3]}): are the document ids aligned?")

    # One integer code per document id, exact (ranx would otherwise hash strings).
    codes, _ = pd.factorize(pd.concat([judgements["doc_id"], docs["doc_id"]], ignore_index=True))
    judgements["code"] = codes[: len(judgements)].astype(np.float64)
    docs["code"] = codes[len(judgements):].astype(np.float64)

    # ranx wants each query's judgements by grade, best first (for the ideal DCG).
    judgements = judgements.sort_values(["query_id", "relevance"], ascending=[True, False], kind="stable")
    qrels_arrays = dict(_split_groups(judgements, ["query_id"], judgements[["code", "relevance"]].to_numpy(np.float64)))

    if cols:
        configs = sort_configs(run[cols].drop_duplicates())
        config_keys = [tuple(row) for row in configs.itertuples(index=False)]
    else:
        configs = pd.DataFrame(index=[0])
        config_keys = [()]
    # A document listed twice for one query keeps its best rank.
    docs = docs.sort_values([*cols, "query_id", "rank"], kind="stable")
    docs = docs.drop_duplicates([*cols, "query_id", "doc_id"], keep="first")
    # score = 1/rank keeps the runner's order exactly, whatever the raw scores (ties included).
    pairs_array = np.column_stack([docs["code"].to_numpy(np.float64), 1.0 / docs["rank"].to_numpy(np.float64)])
    run_arrays = {tuple(k): v for k, v in _split_groups(docs, [*cols, "query_id"], pairs_array)}

    empty = np.empty((0, 2), dtype=np.float64)
    qrels_list, run_list = [], []
    for ckey in config_keys:
        for qid in judged:
            qrels_list.append(qrels_arrays[qid])
            run_list.append(run_arrays.get((*ckey, qid), empty))
    scores = _ranx_scores(qrels_list, run_list, [m.ranx_key for _, m in pairs])
    shape = (len(config_keys), len(judged))
    matrices = {label: scores[m.ranx_key].reshape(shape) for label, m in pairs}
    return configs, judged, pairs, matrices


def _split_groups(frame: pd.DataFrame, keys: list[str], data: np.ndarray) -> list[tuple[Any, np.ndarray]]:
    """(key, rows of ``data``) per run of equal ``keys`` in ``frame`` (already sorted by ``keys``)."""
    if frame.empty:
        return []
    gid = frame.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()
    starts = np.flatnonzero(np.r_[True, gid[1:] != gid[:-1]])
    firsts = frame[keys].iloc[starts]
    labels = [row[0] if len(keys) == 1 else row for row in firsts.itertuples(index=False, name=None)]
    return [(label, np.ascontiguousarray(part)) for label, part in zip(labels, np.split(data, starts[1:]))]


def _ranx_scores(qrels_list: list[np.ndarray], run_list: list[np.ndarray], keys: list[str]) -> dict[str, np.ndarray]:
    """One ranx call for every (configuration, query) pair; ranx is imported here, not at import time."""
    import ranx
    from numba.typed import List as TypedList

    keys = list(dict.fromkeys(keys))
    # ranx returns a bare array (and mis-keys it) for a single metric: always ask for >= 2.
    asked = keys if len(keys) > 1 else keys * 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba type-safety chatter from inside ranx
        out = ranx.evaluate(TypedList(qrels_list), TypedList(run_list), asked,
                            return_mean=False, threads=1, save_results_in_run=False)
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def bootstrap_mean_ci(scores: np.ndarray, confidence: float = 0.95, n_boot: int = 1000,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap CI of the mean over queries, per row of ``scores``
    (configurations x queries); the same resampled query sets for every row (paired), seeded."""
    if not 0 < confidence < 1:
        raise EvaluationError(f"confidence must be in (0, 1), got {confidence}")
    if n_boot < 1:
        raise EvaluationError(f"n_boot must be >= 1, got {n_boot}")
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    n_rows, n_q = scores.shape
    if n_q == 0:
        nan = np.full(n_rows, np.nan)
        return nan, nan.copy()
    idx = np.random.default_rng(seed).integers(0, n_q, size=(n_boot, n_q))
    lo_q, hi_q = 100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2
    low, high = np.empty(n_rows), np.empty(n_rows)
    for i, row in enumerate(scores):
        means = row[idx].mean(axis=1)
        low[i], high[i] = np.percentile(means, [lo_q, hi_q])
    return low, high


def recall_at_top_k(results: pd.DataFrame, qrels: pd.DataFrame) -> pd.DataFrame:
    """``recall@k`` at k = each configuration's own ``top_k`` (the share of each judged query's
    relevant documents a top_k request can return at all), one row per configuration
    in display order, column ``recall@top_k``."""
    require_frame(results, "results", ("top_k", "query_id", "doc_id"))
    parts = []
    for k in sorted({int(k) for k in results["top_k"].dropna()}):
        table = evaluate(results[results["top_k"] == k], qrels, [f"recall@{k}"])
        parts.append(table.rename(columns={f"recall@{k}": "recall@top_k"}).drop(columns="n_queries"))
    return sort_configs(pd.concat(parts, ignore_index=True))


def evaluate(results: pd.DataFrame, qrels: pd.DataFrame,
             metrics: Sequence[str | Measure] | str | Measure = DEFAULT_METRICS,
             per_query: bool = False, *, ci: float | None = None, n_boot: int = 1000,
             seed: int = 0) -> pd.DataFrame:
    """Relevance of each configuration of a run, computed with ranx.

    ``results`` is a runner results frame (``pipeline_id, mode, top_k, query_id, rank,
    doc_id, ...``; missing configuration columns mean one configuration). ``qrels`` has
    ``query_id, doc_id, relevance``. ``metrics`` are measure names like ``"ndcg@10"``
    (see :mod:`llamaeval.metrics._measures` for the variants; nDCG uses linear gain).

    Queries scored: every query of ``qrels`` (the judged queries), for every configuration.
    A judged query the configuration did not answer (absent, failed request, no results:
    rows with ``rank`` NA) scores 0; queries of the run without judgements are ignored.
    A judged query with only non-relevant grades scores 0, as in trec_eval. Documents are
    taken in ``rank`` order (1 = best), a repeated document at its best rank.

    Returns one row per configuration with one column per metric (named as given) and
    ``n_queries``, configurations in display order (pipeline; modes fast, accurate, advanced,
    then other configurations as first seen in ``results``; top_k); with ``per_query=True`` a long frame
    ``pipeline_id, mode, top_k, query_id, metric, value``. ``ci=0.95`` adds ``<metric>_low`` and
    ``<metric>_high``: a percentile-bootstrap interval of each mean over the judged queries
    (``n_boot`` resamples of the queries, seeded with ``seed``).
    Raises EvaluationError for an empty run, unknown metrics or ids that do not overlap.
    """
    configs, judged, pairs, matrices = per_query_matrix(results, qrels, metrics)
    cols = config_columns(configs)
    if per_query:
        n_conf, n_q = len(configs), len(judged)
        parts = []
        for label, _ in pairs:
            part = configs.loc[np.repeat(np.arange(n_conf), n_q), cols].reset_index(drop=True)
            part["query_id"] = np.tile(np.asarray(judged, dtype=object), n_conf)
            part["metric"] = label
            part["value"] = matrices[label].ravel()
            parts.append(part)
        return pd.concat(parts, ignore_index=True)
    table = configs[cols].reset_index(drop=True).copy()
    for label, _ in pairs:
        table[label] = matrices[label].mean(axis=1)
    table["n_queries"] = len(judged)
    if ci is not None:
        for label, _ in pairs:
            table[f"{label}_low"], table[f"{label}_high"] = bootstrap_mean_ci(matrices[label], ci, n_boot, seed)
    return table
