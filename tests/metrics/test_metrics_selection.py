"""The honest estimate of a recommended configuration, on constructed runs of known quality.

Where every configuration has the same expected nDCG@10 (``true_mean()``), picking the best
inflates the winner's in-sample score; the honest estimate (choose on k-1 folds, score on
the held-out one) must not be inflated, and its 95% interval must cover the true mean at about
95% (measured over 1,000 seeds at 20 configurations x 40 queries: 94.0%; see
benchmarks/results/selection_bias.md). Where one configuration is clearly better, the rule picks
it in every fold.
"""

from __future__ import annotations

import numpy as np
import pytest
from _constructed_runs import draw_ranks, gain, make_run, true_mean

from llamaeval._errors import EvaluationError
from llamaeval.metrics._selection import choose, honest_estimate

LABELS = [f"c{i}" for i in range(20)]


def test_choose_is_the_recommendation_rule():
    means = np.array([0.50, 0.495, 0.40, 0.499, 0.60])
    latency = np.array([0.010, 0.005, 0.001, 0.005, np.nan])  # the best mean has no latency: not usable
    # within 0.01 of the best usable (0.50): c0, c1, c3; cheapest 0.005 twice -> the higher mean (c3)
    assert choose(means, latency, None, 0.01) == 3
    # equal latency and equal mean: the smaller top_k, then the first
    assert choose(np.array([0.5, 0.5, 0.5]), np.array([0.01, 0.01, 0.01]), np.array([20, 10, 10]), 0.0) == 1
    assert choose(means, latency, None, 0.0) == 0  # nothing else within reach
    with pytest.raises(EvaluationError, match="measured latency"):
        choose(means, np.full(5, np.nan), None, 0.01)


def test_equal_configurations_the_winner_is_optimistic_and_the_interval_covers_the_truth():
    mu = true_mean()
    covered, optimism, estimates = [], [], []
    for seed in range(150):
        rng = np.random.default_rng([seed, 99])  # data drawn apart from the estimate's own seed
        scores = gain(draw_ranks(rng, 20, 40))
        latency = rng.uniform(0.005, 0.05, size=20)
        h = honest_estimate(scores, latency, None, LABELS, 0.01, method="kfold", seed=seed, n_boot=50)
        covered.append(h.low <= mu <= h.high)
        optimism.append(h.in_sample - h.estimate)
        estimates.append(h.estimate)
    optimism = np.array(optimism)
    assert (optimism > 0).mean() >= 0.9  # the in-sample winner scores above its honest estimate
    assert optimism.mean() > 0.02  # by about 0.04 nDCG here
    assert abs(np.mean(estimates) - mu) < 0.01  # the honest estimate is not inflated
    assert 0.88 <= np.mean(covered) <= 0.99  # nominal 95%


def test_a_fixed_split_is_honest_too():
    mu = true_mean()
    covered, optimism = [], []
    for seed in range(100):
        rng = np.random.default_rng([seed, 99])
        scores = gain(draw_ranks(rng, 20, 40))
        h = honest_estimate(scores, rng.uniform(0.005, 0.05, size=20), None, LABELS, 0.01, method="split",
                            split=0.5, seed=seed, n_boot=50)
        assert h.n_held_out == 20 and len(h.fold_choices) == 1
        covered.append(h.low <= mu <= h.high)
        optimism.append(h.in_sample - h.estimate)
    assert np.mean(optimism) > 0.02
    assert 0.85 <= np.mean(covered) <= 1.0


def test_a_clearly_better_configuration_is_chosen_in_every_fold():
    rng = np.random.default_rng(5)
    ranks = draw_ranks(rng, 8, 40, boost={3: 4})  # configuration 3 ranks the relevant document 4 places higher
    run = make_run(ranks, latency_s=[0.01 * (c + 1) for c in range(8)])
    rec = run.recommend("ndcg@10", validation="kfold", folds=5, n_permutations=500)
    assert rec.choice["mode"] == "cfg03"
    h = rec.honest
    assert h.method == "kfold" and len(h.fold_choices) == 5 * 10
    assert set(h.fold_choices) == {"cfg03 · top_k=10"}
    assert h.stability > 0.95
    assert h.in_sample == pytest.approx(rec.value)
    assert h.low <= true_mean(boost=4) <= h.high
    split = run.recommend("ndcg@10", validation="split", split=0.5, n_permutations=500)
    assert split.honest.fold_choices == ["cfg03 · top_k=10"] and split.honest.n_held_out == 20


def test_recommend_says_what_to_expect_and_renders_it():
    from llamaeval.report import markdown_summary

    rng = np.random.default_rng(11)
    run = make_run(draw_ranks(rng, 12, 40), latency_s=[0.01] * 12)
    rec = run.recommend("ndcg@10", n_permutations=500)  # 40 judged queries: "auto" is 5-fold
    h = rec.honest
    assert h is not None and h.method == "kfold" and h.folds == 5
    assert h.in_sample > h.estimate
    assert f"Expect about {h.estimate:.3f} ndcg@10" in str(rec) and f"not the {h.in_sample:.3f}" in str(rec)
    assert str(rec).startswith(rec.sentence)
    html = rec._repr_html_()
    assert "data-le='honest-estimate'" in html and "stays the winner" in html
    assert f"{h.in_sample_low:.3f}–{h.in_sample_high:.3f}" in html  # the in-sample CI beside the honest one
    again = run.recommend("ndcg@10", n_permutations=500)
    assert (again.honest.estimate, again.honest.low, again.honest.fold_choices) == (h.estimate, h.low, h.fold_choices)
    other = run.recommend("ndcg@10", seed=1, n_permutations=500)
    assert other.honest.fold_choices != h.fold_choices  # the seed drives the folds
    assert f"Expect about {h.estimate:.3f}" in markdown_summary(run, metrics=["ndcg@10"])  # the report says it too


def test_validation_defaults_and_refusals():
    rng = np.random.default_rng(3)
    small = make_run(draw_ranks(rng, 3, 8), latency_s=[0.01, 0.02, 0.03])
    rec = small.recommend("ndcg@10")
    assert rec.honest is None and "too few to hold any out" in rec.honest_note
    assert "honest estimate:" in rec._repr_html_() and "Expect" not in str(rec)
    with pytest.raises(EvaluationError, match="needs at least 10 judged queries"):
        small.recommend("ndcg@10", validation="kfold")
    with pytest.raises(EvaluationError, match="validation must be"):
        small.recommend("ndcg@10", validation="loo")
    assert small.recommend("ndcg@10", validation="kfold", folds=2).honest.folds == 2
    twelve = make_run(draw_ranks(rng, 3, 12), latency_s=[0.01, 0.02, 0.03])
    assert twelve.recommend("ndcg@10", folds=8).honest.folds == 6  # "auto" fits the folds to the queries
    one = make_run(draw_ranks(rng, 1, 20), latency_s=[0.01])
    assert "nothing was chosen" in one.recommend("ndcg@10").honest_note
    assert one.recommend("ndcg@10", validation=None).honest_note.startswith("not asked")
