"""The regression gate on constructed runs: a planted drop fails it, a rerun passes, runs on
other queries or judgements are refused; configurations pair by their retrieve request."""

from __future__ import annotations

import numpy as np
import pytest
from _constructed_runs import draw_ranks, make_run

from llamaeval import BenchmarkRun
from llamaeval._errors import IncomparableRunsError
from llamaeval.metrics import gate
from llamaeval.metrics._gate import one_sided_p

PARAMS = [{"alpha": 0.5}, {"alpha": 0}]


@pytest.fixture(scope="module")
def ranks():
    return draw_ranks(np.random.default_rng(4), 2, 40)


def baseline_run(ranks):
    return make_run(ranks, [0.01, 0.02], names=["hybrid", "sparse"], params=PARAMS)


def new_run(ranks, **kwargs):
    """The same requests under other names, on a re-ingested pipeline (another id)."""
    return make_run(ranks, [0.01, 0.02], names=["alpha=0.5", "alpha=0"], params=[{"alpha": 0.5}, {"alpha": 0.0}],
                    pipeline=("pipe-2", "adi"), **kwargs)


def test_one_sided_p():
    assert one_sided_p([-0.1] * 5, 0.0) == 0.0  # constant below the margin
    assert one_sided_p([0.0] * 5, 0.01) == 1.0  # unchanged
    d = np.array([-0.3, -0.2, -0.4, 0.1, -0.25])
    assert one_sided_p(d, 0.0) == pytest.approx(2 / 32)  # exact: sign patterns with a mean <= the observed
    assert one_sided_p(d, 0.0) < one_sided_p(d, 0.1) < one_sided_p(-d, 0.0)
    assert 0 < one_sided_p(d, 0.0, "t-test") < 0.05
    assert np.isnan(one_sided_p([], 0.0))


def test_a_planted_drop_fails_with_what_a_ci_log_needs(ranks):
    worse = ranks.copy()
    worse[0] += 4  # "hybrid" pushes every relevant document 4 places down
    result = gate(new_run(worse), baseline_run(ranks), ["ndcg@10", "mrr"], max_drop=0.01, alpha=0.05)
    assert result.exit_code == 3 and not result.passed
    failed = result.failures
    assert set(failed["metric"]) == {"ndcg@10", "mrr"}
    assert set(failed["configuration"]) == {"alpha=0.5 · top_k=10 (baseline: hybrid · top_k=10)"}
    assert (failed["p_adj"] < 0.05).all() and (-failed["diff"] > 0.01).all()
    sparse = result.table[result.table["configuration"].str.startswith("alpha=0 ")]
    assert not sparse["dropped"].any() and (sparse["diff"] == 0).all()  # paired by request, unchanged
    text = result.summary()
    assert text.startswith("llamaeval gate: FAILED — ")
    first = failed.iloc[0]
    assert f"dropped by {-first['diff']:.3f}" in text and "more than the allowed 0.01" in text
    assert "after Holm over 4 tests" in text and "queries that lost most: " in text
    worst = result.worst[(first["configuration"], first["metric"])]
    assert len(worst) == 5 and (worst["diff"] < 0).all() and worst["diff"].is_monotonic_increasing
    assert worst["query_id"].iloc[0] in text and "what about topic" in text  # the query's text, for the log
    assert "changed:  pipeline pipe-1 → pipe-2" in text
    md = result.markdown()
    assert md.startswith("### ❌ llamaeval gate failed") and "| configuration | metric |" in md and "FAIL" in md
    assert "data-le='gate'" in result._repr_html_()


def test_a_rerun_passes_and_a_small_or_unproven_drop_passes(ranks):
    same = gate(new_run(ranks), baseline_run(ranks))
    assert same.exit_code == 0 and same.passed
    assert same.summary().startswith("llamaeval gate: passed — no gated configuration lost significantly more "
                                     "than 0.01 ndcg@10")
    assert (same.table["p_adj"] == 1).all()
    assert same.markdown().startswith("### ✅ llamaeval gate passed")
    one = ranks.copy()
    one[0, int(np.argmin(ranks[0]))] = 30  # one query of 40 loses its best-ranked document: a drop above
    #                                        the margin, not significant
    unproven = gate(new_run(one), baseline_run(ranks), max_drop=0.01)
    row = unproven.table.iloc[0]
    assert -row["diff"] > 0.01 and row["p_adj"] > 0.05 and unproven.exit_code == 0
    assert "drop > margin, not significant" in unproven.summary()
    worse = ranks.copy()
    worse[0] += 4
    assert gate(new_run(worse), baseline_run(ranks), max_drop=0.5).exit_code == 0  # within a wide margin


def test_other_queries_or_judgements_are_refused(ranks):
    ids = [f"q{i}" for i in range(40)]
    fewer = new_run(ranks[:, :30], query_ids=ids[:30])
    with pytest.raises(IncomparableRunsError, match="different queries.*10 only in the baseline") as exc:
        gate(fewer, baseline_run(ranks))
    assert "benchmark the new pipeline with the baseline's query set" in str(exc.value)
    regraded = new_run(ranks)
    regraded.qrels = regraded.qrels.assign(relevance=[2] + [1] * 39)
    with pytest.raises(IncomparableRunsError, match=r"different judgements.*1 with another grade \(query q0"):
        gate(regraded, baseline_run(ranks))
    other = make_run(ranks, [0.01, 0.02], names=["dense", "x"], params=[{"alpha": 1}, {"alpha": 0.25}])
    with pytest.raises(IncomparableRunsError, match="no configuration of the new run sends the same retrieve request"):
        gate(other, baseline_run(ranks))


def test_gate_reads_saved_runs_and_their_identity(ranks, tmp_path):
    base = baseline_run(ranks)
    base.save(tmp_path / "base")
    loaded = BenchmarkRun.load(tmp_path / "base")
    ident = loaded.identity
    assert ident == base.identity
    assert ident["n_queries"] == 40 and len(ident["queries_sha256"]) == 64
    assert [c["request"] for c in ident["configurations"]] == [
        '{"mode":null,"params":{"alpha":0.5},"top_k":10}', '{"mode":null,"params":{"alpha":0},"top_k":10}']
    result = gate(tmp_path / "base", tmp_path / "base", configurations=[{"mode": "hybrid"}])
    assert result.exit_code == 0 and list(result.table["configuration"]) == ["hybrid · top_k=10"]
    assert str(tmp_path / "base") in result.summary()
