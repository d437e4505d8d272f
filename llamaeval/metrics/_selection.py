"""Selection bias: what the configuration :func:`~llamaeval.metrics._recommend.recommend` ships
will score on queries that took no part in choosing it.

Choosing the best of many configurations on the same queries that score it inflates the
winner's score (part of its lead is the luck of those queries). The honest estimate re-runs
the choice rule on part of the queries and scores the choice on the rest:

- ``"kfold"``: the queries are shuffled (seeded) into ``folds`` folds; for each fold the rule
  chooses on the other folds and the choice is scored on the held-out fold; repeated over
  ``repeats`` shuffles. The estimate is the mean held-out score: the expected score of "run the
  rule, ship the winner", for a rule that saw (folds-1)/folds of the queries.
- ``"split"``: one seeded split, the rule chooses on a ``split`` share of the queries and the
  choice is scored on the rest.

The interval is Student's t: for k-fold over the fold means with the Nadeau-Bengio correction
(held-out scores of different folds are correlated through the choices, so an interval that
treats them as independent is too narrow: 80-87% coverage at nominal 95%, measured; corrected
93-95% at 5 folds, 87% at 10), for a split over the held-out per-query scores. Stability is
the share of bootstrap resamples of the queries on which the rule, re-run on the resample,
picks the configuration it picks on all queries. Latency comes from the whole run in every
case: it is not scored against judgements, so the choice's latency carries no selection bias
of the kind estimated here. Measurements: ``benchmarks/results/selection_bias.md``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from llamaeval._display import esc, frame_html, plural
from llamaeval._errors import EvaluationError

__all__ = ["AUTO_MIN_QUERIES", "VALIDATIONS", "HonestEstimate", "choose", "honest_estimate",
           "resolve_validation"]

#: The validation methods; ``"auto"`` (the default of ``recommend``) resolves to one or to None.
VALIDATIONS: tuple[str, ...] = ("kfold", "split")
#: ``validation="auto"`` runs k-fold from this many judged queries on (2 per fold at 5 folds);
#: below it there are too few queries to hold any out, and the estimate is skipped.
AUTO_MIN_QUERIES = 10
_TIE = 1e-12


def choose(means: Any, latency: Any, top_k: Any, within: float) -> int:
    """Index of the configuration the recommendation rule ships: among configurations with a
    measured ``latency`` (seconds), those whose mean is within ``within`` of the best mean;
    of those the cheapest, ties to the higher mean, then the smaller top_k, then the first."""
    means = np.asarray(means, dtype=np.float64)
    lat = np.asarray(latency, dtype=np.float64)
    usable = np.isfinite(lat) & np.isfinite(means)
    if not usable.any():
        raise EvaluationError("no configuration has a measured latency (every request failed?)")
    floor = means[usable].max() - within - _TIE
    idx = np.flatnonzero(usable & (means >= floor))
    ks = np.zeros(len(idx)) if top_k is None else np.asarray(top_k, dtype=np.float64)[idx]
    # means equal up to rounding (identical rankings summed in another order) tie exactly
    order = np.lexsort((idx, ks, -np.round(means[idx], 12), lat[idx]))
    return int(idx[order[0]])


def resolve_validation(validation: str | None, n_queries: int, n_configs: int) -> tuple[str | None, str]:
    """(method or None, the reason when None) for ``validation`` = ``"auto"``, ``"kfold"``,
    ``"split"`` or None. ``"auto"`` is k-fold with at least :data:`AUTO_MIN_QUERIES` judged
    queries and two configurations, else none."""
    if validation is None:
        return None, "not asked for (validation=None)"
    if validation == "auto":
        if n_configs < 2:
            return None, "one configuration: nothing was chosen, so its score carries no selection bias"
        if n_queries < AUTO_MIN_QUERIES:
            return None, (f"{plural(n_queries, 'judged query', 'judged queries')}: too few to hold any out "
                          f"(validation='auto' needs {AUTO_MIN_QUERIES})")
        return "kfold", ""
    if validation not in VALIDATIONS:
        raise EvaluationError(f"validation must be 'auto', 'kfold', 'split' or None, got {validation!r}")
    return validation, ""


@dataclass
class HonestEstimate:
    """The winner's in-sample score next to what the choice scores on held-out queries.

    ``in_sample`` (mean over all judged queries of the configuration chosen on all of them),
    ``estimate`` with its bootstrap interval ``low``–``high`` (mean of the held-out per-query
    scores ``held_out``), ``optimism`` = in_sample - estimate, ``stability`` (share of
    ``n_resamples`` query resamples on which the rule picks the same configuration),
    ``winners`` (configuration -> share of resamples it won), ``fold_choices`` (the
    configuration chosen in each fold of each repeat, or on the choosing part of a split),
    ``held_out`` (each query's held-out score, averaged over the repeats; the scored part of a split).
    """

    method: str
    metric: str
    choice: str
    in_sample: float
    estimate: float
    low: float
    high: float
    stability: float
    n_resamples: int
    n_queries: int
    n_held_out: int
    folds: int | None
    repeats: int
    split: float | None
    seed: int
    confidence: float
    fold_choices: list[str]
    winners: dict[str, float]
    held_out: np.ndarray = field(repr=False)
    in_sample_low: float = float("nan")
    in_sample_high: float = float("nan")

    @property
    def optimism(self) -> float:
        """How much the in-sample score overstates the estimate (metric units; > 0 = optimistic)."""
        return self.in_sample - self.estimate

    @property
    def method_text(self) -> str:
        """How the estimate was made, in a few words."""
        if self.method == "kfold":
            times = f", {self.repeats} shuffles" if self.repeats > 1 else ""
            return (f"{self.folds}-fold cross-validation over {plural(self.n_queries, 'query', 'queries')}{times}: "
                    f"chosen on {self.folds - 1} folds, scored on the held-out one")
        n_choose = self.n_queries - self.n_held_out
        return (f"one split: chosen on {plural(n_choose, 'query', 'queries')}, "
                f"scored on the other {self.n_held_out}")

    @property
    def interval_text(self) -> str:
        """How the interval was made, in a few words."""
        if self.method == "kfold":
            return (f"Student's t over the {len(self.fold_choices)} fold means, Nadeau-Bengio corrected for "
                    f"overlapping training sets")
        return f"Student's t over the {self.n_held_out} held-out per-query scores"

    @property
    def sentence(self) -> str:
        """What this means for the user, in one sentence."""
        ci = f"{self.confidence:.0%} CI {self.low:.3f}–{self.high:.3f}"
        if self.optimism > 0.005:
            head = (f"Expect about {self.estimate:.3f} {self.metric} ({ci}) on new queries, not the "
                    f"{self.in_sample:.3f} {self.choice} scored on the queries that chose it")
        else:
            head = (f"Expect about {self.estimate:.3f} {self.metric} ({ci}) on new queries, close to the "
                    f"{self.in_sample:.3f} {self.choice} scored on the queries that chose it")
        return (f"{head} ({self.method_text}); it stays the winner in {self.stability:.0%} of "
                f"{self.n_resamples:,} resamples of the queries.")

    def __str__(self) -> str:
        return self.sentence

    def table(self) -> Any:
        """The side-by-side numbers as a DataFrame: in-sample, honest estimate, stability."""
        import pandas as pd

        ci = f"{self.confidence:.0%} CI"
        return pd.DataFrame([
            {"": f"in-sample: {self.choice} on the {self.n_queries} queries that chose it",
             self.metric: self.in_sample, ci: self._in_sample_ci()},
            {"": f"honest estimate ({self.method})", self.metric: self.estimate,
             ci: f"{self.low:.3f}–{self.high:.3f}"},
            {"": "stays the winner when queries are resampled", self.metric: self.stability, ci: ""},
        ])

    def _in_sample_ci(self) -> str:
        if np.isfinite(self.in_sample_low) and np.isfinite(self.in_sample_high):
            return f"{self.in_sample_low:.3f}–{self.in_sample_high:.3f}"
        return ""

    def html(self) -> str:
        """The numbers side by side and the sentence (HTML, no stylesheet)."""
        shown = self.table()
        shown[self.metric] = [f"{self.in_sample:.3f}", f"{self.estimate:.3f}", f"{self.stability:.0%}"]
        chosen = Counter(self.fold_choices)
        per_fold = ", ".join(f"{esc(c)} ×{n}" if n > 1 else esc(c) for c, n in chosen.most_common())
        others = [(c, s) for c, s in self.winners.items() if c != self.choice and s >= 0.01][:3]
        runners = ("; other winners: " + ", ".join(f"{esc(c)} {s:.0%}" for c, s in others)) if others else ""
        what = (f"chosen in the {len(self.fold_choices)} folds" if self.method == "kfold"
                else "chosen on the choosing part")
        return (f"<div class='le-honest' data-le='honest-estimate'><p>{esc(self.sentence)}</p>"
                + frame_html(shown, max_rows=3)
                + f"<p class='le-muted'>{esc(self.method_text)}; {what}: {per_fold}{runners}. "
                  f"Interval: {esc(self.interval_text)}; stability: the recommendation rule re-run on "
                  f"{self.n_resamples:,} bootstrap resamples of the queries (seed {self.seed}).</p></div>")

    def markdown(self) -> str:
        """The numbers as a Markdown table, then the sentence."""
        ci = f"{self.confidence:.0%} CI"
        return "\n".join([
            f"| | {self.metric} | {ci} |", "|---|---|---|",
            f"| in-sample ({self.choice}, {self.n_queries} queries that chose it) | {self.in_sample:.3f} | "
            f"{self._in_sample_ci()} |",
            f"| honest estimate ({self.method}) | {self.estimate:.3f} | {self.low:.3f}–{self.high:.3f} |",
            f"| stays the winner (query resamples) | {self.stability:.0%} | |",
            "", self.sentence])


def honest_estimate(scores: Any, latency: Any, top_k: Any, labels: Sequence[str], within: float, *,
                    method: str, metric: str = "metric", folds: int = 5, repeats: int = 10, split: float = 0.5,
                    seed: int = 0, confidence: float = 0.95, n_boot: int = 1000) -> HonestEstimate:
    """The honest estimate of the configuration :func:`choose` picks from ``scores``
    (configurations x judged queries), with ``latency`` (seconds) and ``top_k`` per
    configuration, ``labels`` naming them; ``method`` ``"kfold"`` or ``"split"``.

    ``"kfold"``: ``repeats`` seeded shuffles of the queries into ``folds`` folds; in each fold the
    rule chooses on the others and the choice is scored on the held-out fold. The estimate is
    the mean held-out score; its interval is Student's t over the ``folds * repeats`` fold means
    with the Nadeau-Bengio correction for overlapping training sets (variance
    ``(1/(folds*repeats) + 1/(folds-1))`` x the fold means' variance): held-out scores of
    different folds are correlated through the choices, so an interval that treats them as
    independent is too narrow (measured: 80-87% coverage at nominal 95%; corrected: 93-95%,
    see ``benchmarks/results/selection_bias.md``). ``"split"``: one seeded split, chosen on a
    ``split`` share of the queries, scored on the rest; Student's t over those held-out scores.
    ``n_boot`` resamples of the queries measure the winner's stability.

    Seeded: the same arguments give the same numbers. Raises EvaluationError when there are
    too few queries for the folds or the split (each part needs at least 2 queries)."""
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    n_conf, n_q = scores.shape
    if len(labels) != n_conf:
        raise EvaluationError(f"{len(labels)} labels for {n_conf} configurations")
    if method not in VALIDATIONS:
        raise EvaluationError(f"validation must be one of {VALIDATIONS}, got {method!r}")
    if not 0 < confidence < 1:
        raise EvaluationError(f"confidence must be in (0, 1), got {confidence}")
    if not _is_int(n_boot) or n_boot < 1:
        raise EvaluationError(f"n_boot must be an int >= 1, got {n_boot!r}")
    rng = np.random.default_rng([seed, 23])
    chosen_all = choose(scores.mean(axis=1), latency, top_k, within)

    fold_choices: list[str] = []
    if method == "kfold":
        if not _is_int(folds) or folds < 2:
            raise EvaluationError(f"folds must be an int >= 2, got {folds!r}")
        if not _is_int(repeats) or repeats < 1:
            raise EvaluationError(f"repeats must be an int >= 1, got {repeats!r}")
        if n_q < 2 * folds:
            raise EvaluationError(f"{folds}-fold validation needs at least {2 * folds} judged queries "
                                  f"(2 per fold), the run has {n_q}: use fewer folds or validation=None")
        held = np.empty((repeats, n_q))
        fold_means = []
        for r in range(repeats):
            perm = rng.permutation(n_q)
            for part in np.array_split(perm, folds):
                train = np.setdiff1d(perm, part, assume_unique=True)
                c = choose(scores[:, train].mean(axis=1), latency, top_k, within)
                held[r, part] = scores[c, part]
                fold_means.append(scores[c, part].mean())
                fold_choices.append(labels[c])
        per_query = held.mean(axis=0)  # each query's held-out score, averaged over the repeats
        estimate = float(per_query.mean())
        m = len(fold_means)
        var = (1.0 / m + 1.0 / (folds - 1)) * float(np.var(fold_means, ddof=1))
        half = _t_quantile(confidence, m - 1) * np.sqrt(var)
        n_held, n_folds, split_share, n_repeats = n_q, int(folds), None, int(repeats)
    else:
        if not isinstance(split, (int, float)) or isinstance(split, bool) or not 0 < split < 1:
            raise EvaluationError(f"split must be a share of the queries in (0, 1), got {split!r}")
        n_choose = int(round(split * n_q))
        if n_choose < 2 or n_q - n_choose < 2:
            raise EvaluationError(f"split={split} of {n_q} judged queries leaves {n_choose} to choose on and "
                                  f"{n_q - n_choose} to score on; each part needs at least 2")
        perm = rng.permutation(n_q)
        train, test = perm[:n_choose], perm[n_choose:]
        c = choose(scores[:, train].mean(axis=1), latency, top_k, within)
        per_query = scores[c, test]
        fold_choices.append(labels[c])
        estimate = float(per_query.mean())
        half = _t_quantile(confidence, len(test) - 1) * float(per_query.std(ddof=1)) / np.sqrt(len(test))
        n_held, n_folds, split_share, n_repeats = len(test), None, float(split), 1

    winners = _resample_winners(scores, latency, top_k, within, n_boot, rng)
    shares = np.bincount(winners, minlength=n_conf) / len(winners)
    ranked = np.argsort(-shares, kind="stable")
    return HonestEstimate(
        method=method, metric=metric, choice=labels[chosen_all],
        in_sample=float(scores[chosen_all].mean()), estimate=estimate,
        low=float(estimate - half), high=float(estimate + half), stability=float(shares[chosen_all]),
        n_resamples=len(winners), n_queries=n_q, n_held_out=n_held, folds=n_folds, repeats=n_repeats,
        split=split_share, seed=seed, confidence=confidence, fold_choices=fold_choices,
        winners={labels[i]: float(shares[i]) for i in ranked if shares[i] > 0}, held_out=per_query)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _t_quantile(confidence: float, dof: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.5 + confidence / 2, max(1, dof)))


def _resample_winners(scores: np.ndarray, latency: Any, top_k: Any, within: float, n: int,
                      rng: np.random.Generator) -> np.ndarray:
    """The configuration the rule picks on each of ``n`` bootstrap resamples of the queries."""
    n_conf, n_q = scores.shape
    out = np.empty(n, dtype=np.int64)
    block = max(1, 2_000_000 // max(1, n_q))
    done = 0
    while done < n:
        size = min(block, n - done)
        idx = rng.integers(0, n_q, size=(size, n_q))
        counts = np.zeros((size, n_q))
        np.add.at(counts, (np.repeat(np.arange(size), n_q), idx.ravel()), 1.0)
        means = counts @ scores.T / n_q  # (size, n_conf)
        for b in range(size):
            out[done + b] = choose(means[b], latency, top_k, within)
        done += size
    return out
