"""Which configuration to ship: the cheapest one whose quality is within reach of the best,
with the evidence (confidence intervals, latency saved, paired tests after correction) and
what to expect from it on new queries (the honest estimate, :mod:`._selection`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from llamaeval._display import (
    STYLE, config_label, esc, frame_html, ms, pipeline_label, plural,
)
from llamaeval._errors import EvaluationError
from llamaeval.metrics._frames import config_columns, sort_configs
from llamaeval.metrics._latency import latency_stats
from llamaeval.metrics._relevance import bootstrap_mean_ci, per_query_matrix
from llamaeval.metrics._selection import HonestEstimate, choose, honest_estimate, resolve_validation
from llamaeval.metrics._significance import adjust_pvalues, permutation_test

__all__ = ["Recommendation", "recommend"]

_LATENCY_STATS = ("p50", "p90", "p95", "p99", "mean")


@dataclass
class Recommendation:
    """The answer of :func:`recommend`: ``choice`` (a configuration selector), ``sentence``
    (the answer in one sentence) and ``evidence`` (one row per configuration: the metric
    with its CI, latency in ms, ``eligible``, ``diff`` to the choice, ``p_adj`` of the paired
    permutation test against the choice, Holm-corrected, ``mark``: ▲ significantly better,
    ▼ significantly worse than the choice).
    ``honest`` (:class:`~llamaeval.metrics._selection.HonestEstimate`, None when not computed:
    ``honest_note`` says why) holds the in-sample score of the choice next to the score the
    choice gets on queries that did not take part in choosing it, with its interval and how
    often the choice stays the winner when the queries are resampled.
    ``str(rec)`` is the sentence (then the honest estimate's); in a notebook it renders as a
    box with both and the evidence table."""

    choice: dict[str, Any]
    best: dict[str, Any]
    metric: str
    latency: str
    within: float
    confidence: float
    alpha: float
    value: float
    low: float
    high: float
    latency_s: float
    best_value: float
    best_latency_s: float
    p_vs_best: float
    n_queries: int
    shared_from: int | None
    sentence: str
    evidence: pd.DataFrame = field(repr=False)
    names: dict[str, str] = field(default_factory=dict, repr=False)
    honest: HonestEstimate | None = None
    honest_note: str = ""
    #: what the run sent for ``choice`` (set by ``BenchmarkRun.recommend``; ``apply`` ships it)
    benchmarked_request: Any = field(default=None, repr=False)

    def __str__(self) -> str:
        return self.sentence + (" " + self.honest.sentence if self.honest is not None else "")

    def apply(self, client: Any, pipeline_id: str, *, dry_run: bool = True) -> Any:
        """Write the chosen configuration's retrieve parameters into the pipeline's
        ``preset_retrieval_parameters`` (``dry_run=True``: only show the difference); see
        :func:`llamaeval.metrics._apply.apply_recommendation`."""
        from llamaeval.metrics._apply import apply_recommendation

        return apply_recommendation(self, client, pipeline_id, dry_run=dry_run)

    def box_html(self) -> str:
        """The answer box: the sentence, then the honest estimate side by side (HTML, no stylesheet)."""
        honest = (self.honest.html() if self.honest is not None
                  else f"<p class='le-muted'>honest estimate: {esc(self.honest_note)}</p>" if self.honest_note else "")
        return (f"<div class='le-rec' data-le='recommendation'>{_bold_choice(esc(self.sentence), self)}"
                f"{honest}</div>")

    def _repr_html_(self) -> str:
        return STYLE + "<div class='le-card'>" + self.html(max_rows=20) + "</div>"

    def html(self, *, max_rows: int = 12) -> str:
        """The recommendation box and its evidence table (HTML, no stylesheet)."""
        shown = self.display_table()
        if len(shown) > max_rows > 0:  # keep the chosen row whatever is cut
            chosen = self.evidence["chosen"].to_numpy()
            keep = shown.index[:max_rows - 1].union(shown.index[chosen])
            shown = pd.concat([shown.loc[keep], shown.iloc[:0]])  # same columns
            cut = len(self.evidence) - len(shown)
        else:
            cut = 0
        note = (f"<p class='le-muted'>{esc(self.metric)} is the mean over {plural(self.n_queries, 'judged query', 'judged queries')} "
                f"with its {self.confidence:.0%} bootstrap interval; latency is the client's {esc(self.latency)} "
                f"in ms; p: paired permutation test against the recommendation, Holm-corrected over "
                f"{plural(len(self.evidence) - 1, 'comparison')}; ▲/▼ significantly better/worse at {self.alpha:g}"
                + ("; † latency measured by the larger top_k request (share_k)" if "†" in shown.to_string() else "")
                + ".</p>")
        more = f"<p class='le-muted'>{plural(cut, 'more configuration')} in <code>.evidence</code></p>" if cut else ""
        return self.box_html() + frame_html(shown, max_rows=len(shown), digits=3) + more + note

    def display_table(self) -> pd.DataFrame:
        """The evidence for people: configuration, metric [CI], latency ms, diff, p, mark."""
        ev = self.evidence
        m = self.metric
        out = pd.DataFrame({"configuration": ev["configuration"]})
        out[m] = ev[m].to_numpy()
        out[f"{self.confidence:.0%} CI"] = [f"{lo:.3f}–{hi:.3f}" if np.isfinite(lo) else ""
                                            for lo, hi in zip(ev[f"{m}_low"], ev[f"{m}_high"])]
        lat = f"{self.latency} ms"
        out[lat] = [f"{v * 1000:.1f}{'†' if s else ''}" if np.isfinite(v) else ""
                    for v, s in zip(ev[f"{self.latency}_s"], ev["latency_shared"])]
        out["Δ vs choice"] = ev["diff"].to_numpy()
        out["p (adj)"] = ev["p_adj"].to_numpy()
        out[""] = ev["mark"].to_numpy()
        return out


def _bold_choice(sentence_html: str, rec: Recommendation) -> str:
    label = esc(rec.evidence.loc[rec.evidence["chosen"], "configuration"].iloc[0])
    return sentence_html.replace(label, f"<b>{label}</b>", 1)


def recommend(results: pd.DataFrame, qrels: pd.DataFrame, requests: pd.DataFrame, metric: str = "ndcg@10",
              within: float = 0.01, latency: str = "p50", *, confidence: float = 0.95, alpha: float = 0.05,
              n_boot: int = 1000, n_permutations: int = 10_000, seed: int = 0,
              names: Mapping[str, str] | None = None, validation: str | None = "auto", folds: int = 5,
              split: float = 0.5, repeats: int = 10) -> Recommendation:
    """The configuration to ship: the cheapest (by client ``latency``: ``"p50"``, ``"p95"``,
    ``"mean"``, ...) whose mean ``metric`` is within ``within`` (absolute, e.g. 0.01 = one
    nDCG point) of the best configuration's; ties go to higher quality, then smaller top_k.

    The evidence compares every configuration with the choice, paired over the judged
    queries (permutation test, Holm-corrected), and gives each mean a bootstrap CI.
    ``names`` maps pipeline ids to human names (see ``BenchmarkRun.recommend``).

    The honest estimate (``rec.honest``): ``validation="kfold"`` re-runs this rule on
    ``folds``-1 folds of the queries and scores its choice on the held-out fold, over ``repeats``
    seeded shuffles (seeded with ``seed``); ``"split"`` chooses on a ``split`` share of the
    queries and scores on the rest; None skips it. The default ``"auto"`` is k-fold when there
    are at least 10 judged queries and 2 configurations, else none (``rec.honest_note`` says
    why). See :mod:`llamaeval.metrics._selection`.
    """
    if latency not in _LATENCY_STATS:
        raise EvaluationError(f"latency must be one of {_LATENCY_STATS}, got {latency!r}")
    if not np.isfinite(within) or within < 0:
        raise EvaluationError(f"within must be >= 0, got {within}")
    names = dict(names or {})
    configs, judged, _pairs, matrices = per_query_matrix(results, qrels, [metric])
    scores = matrices[metric]
    cols = config_columns(configs)
    table = configs[cols].reset_index(drop=True).copy()
    table[metric] = scores.mean(axis=1)
    table[f"{metric}_low"], table[f"{metric}_high"] = bootstrap_mean_ci(scores, confidence, n_boot, seed)
    lat_col = f"{latency}_s"
    lat = latency_stats(requests, n_boot=1, seed=seed)
    keep = [c for c in cols if c in lat.columns]
    lat = lat[[*keep, lat_col, "n", "n_shared", "n_failed"]]
    if keep:
        for c in keep:  # join on text: pipeline ids/names may come back typed differently
            lat[c] = lat[c].astype(str) if c != "top_k" else lat[c].astype("int64")
        joined = table.assign(**{c: table[c].astype(str) if c != "top_k" else table[c].astype("int64")
                                 for c in keep})
        table = joined.merge(lat, on=keep, how="left")
    else:
        table = table.assign(**lat.iloc[0].to_dict())
    table["latency_shared"] = (table["n_shared"].fillna(0) >= table["n"].fillna(0)) & (table["n"].fillna(0) > 0)
    multi = "pipeline_id" in table.columns and table["pipeline_id"].nunique() > 1
    table["configuration"] = [
        config_label(r.get("mode"), r.get("top_k"), pipeline_label(r["pipeline_id"], names) if multi else None)
        for r in table.to_dict("records")]

    usable = table[table[lat_col].notna()]
    if usable.empty:
        raise EvaluationError("no configuration has a measured latency (every request failed?)")
    best_i = usable.sort_values([metric, lat_col], ascending=[False, True], kind="stable").index[0]
    floor = table.loc[best_i, metric] - within - 1e-12
    table["eligible"] = table[metric].ge(floor) & table[lat_col].notna()
    latency_s = table[lat_col].to_numpy(np.float64)
    top_k = table["top_k"].to_numpy(np.float64) if "top_k" in table else None
    choice_i = choose(scores.mean(axis=1), latency_s, top_k, within)
    table["chosen"] = table.index == choice_i

    base = scores[choice_i]
    raw = [np.nan if i == choice_i else permutation_test(scores[i], base, n_permutations, seed)
           for i in range(len(table))]
    table["diff"] = table[metric] - table.loc[choice_i, metric]
    table["p_adj"] = adjust_pvalues(raw, "holm")
    sig = np.nan_to_num(table["p_adj"].to_numpy(), nan=1.0) < alpha
    table["mark"] = np.where(table["chosen"], "choice",
                             np.where(sig & (table["diff"] > 0), "▲", np.where(sig & (table["diff"] < 0), "▼", "")))

    def selector(i: int) -> dict[str, Any]:
        return {c: (int(table.loc[i, c]) if c == "top_k" else table.loc[i, c]) for c in cols}

    method, honest_note = resolve_validation(validation, len(judged), len(table))
    honest = None
    if method is not None:
        if validation == "auto" and isinstance(folds, int):  # never refuse what was not asked for
            folds = max(2, min(folds, len(judged) // 2))
        honest = honest_estimate(scores, latency_s, top_k, list(table["configuration"]), within, method=method,
                                 metric=metric, folds=folds, repeats=repeats, split=split, seed=seed,
                                 confidence=confidence, n_boot=n_boot)
        honest.in_sample_low = float(table.loc[choice_i, f"{metric}_low"])
        honest.in_sample_high = float(table.loc[choice_i, f"{metric}_high"])

    chosen = table.loc[choice_i]
    shared_from = _shared_source(requests, selector(choice_i)) if bool(chosen["latency_shared"]) else None
    evidence = sort_configs(table)
    rec = Recommendation(
        choice=selector(choice_i), best=selector(best_i), metric=metric, latency=latency, within=within,
        confidence=confidence, alpha=alpha, value=float(chosen[metric]), low=float(chosen[f"{metric}_low"]),
        high=float(chosen[f"{metric}_high"]), latency_s=float(chosen[lat_col]),
        best_value=float(table.loc[best_i, metric]), best_latency_s=float(table.loc[best_i, lat_col]),
        p_vs_best=float(table.loc[best_i, "p_adj"]) if best_i != choice_i else float("nan"),
        n_queries=len(judged), shared_from=shared_from, sentence="", evidence=evidence, names=names,
        honest=honest, honest_note=honest_note)
    rec.sentence = _sentence(rec, table, choice_i, best_i)
    return rec


def _shared_source(requests: pd.DataFrame, choice: dict[str, Any]) -> int | None:
    """The top_k of the request whose latency a shared configuration carries (the largest sent)."""
    if "top_k" not in requests.columns or "shared" not in requests.columns:
        return None
    mask = ~requests["shared"].fillna(False).astype(bool)
    for c, v in choice.items():
        if c != "top_k" and c in requests.columns:
            mask &= requests[c].astype(str) == str(v)
    ks = requests.loc[mask, "top_k"]
    return int(ks.max()) if len(ks) else None


def _sentence(rec: Recommendation, table: pd.DataFrame, choice_i: int, best_i: int) -> str:
    m, lat = rec.metric, rec.latency
    label = table.loc[choice_i, "configuration"]
    ci = f"{rec.confidence:.0%} CI {rec.low:.3f}–{rec.high:.3f}"
    shared = (f" (measured at top_k={rec.shared_from}: smaller top_k were cut from that request)"
              if rec.shared_from is not None else "")
    worse = int((table["mark"] == "▼").sum())
    better = int((table["mark"] == "▲").sum())
    others = len(table) - 1
    n_q = plural(rec.n_queries, "query", "queries")
    if choice_i == best_i:
        text = f"Ship {label}: the best {m} ({rec.value:.3f}, {ci}), at {ms(rec.latency_s)} {lat}{shared}."
        cheaper = table[table[f"{lat}_s"] < rec.latency_s]
        if len(cheaper):
            c = cheaper.sort_values([f"{lat}_s", m], ascending=[True, False]).iloc[0]
            verdict = "significantly lower" if c["mark"] == "▼" else "not significantly lower"
            text += (f" The cheapest, {c['configuration']} ({ms(c[f'{lat}_s'])}), scores {c[m]:.3f}: "
                     f"{verdict} (p = {c['p_adj']:.3g} after Holm, {n_q}).")
        if others and worse:
            text += (f" {worse} of the {plural(others, 'other configuration')} "
                     f"{'is' if worse == 1 else 'are'} significantly worse.")
        elif others:
            text += f" None of the {plural(others, 'other configuration')} is significantly worse."
        return text
    best = table.loc[best_i]
    speed = rec.best_latency_s / rec.latency_s if rec.latency_s > 0 else float("inf")
    p = rec.p_vs_best
    verdict = ("not significantly different" if best["mark"] != "▲" else "significantly better")
    tail = f"; {better} configuration{'s are' if better != 1 else ' is'} significantly better" if better else ""
    return (f"Ship {label}: {m} {rec.value:.3f} ({ci}), within {rec.within:g} of the best "
            f"({best['configuration']}: {rec.best_value:.3f}), at {ms(rec.latency_s)} {lat}{shared} — "
            f"{speed:.1f}× faster than the best ({ms(rec.best_latency_s)}); the best is {verdict} "
            f"(p = {p:.3g} after Holm, {n_q}){tail}.")
