"""Measure names parse to objects with a readable form; bad names fail with the list of known ones."""

import pytest

from llamaeval import EvaluationError
from llamaeval.metrics import MEASURES, Measure, parse_measure


@pytest.mark.parametrize(("text", "name", "cutoff", "rel", "shown"), [
    ("ndcg@10", "ndcg", 10, 1, "nDCG@10"),
    ("nDCG@10", "ndcg", 10, 1, "nDCG@10"),
    ("ndcg_burges@5", "ndcg_burges", 5, 1, "nDCG_burges@5"),
    ("recall@20", "recall", 20, 1, "Recall@20"),
    ("mrr", "mrr", None, 1, "MRR"),
    ("RR@10", "mrr", 10, 1, "MRR@10"),
    ("map@100", "map", 100, 1, "MAP@100"),
    ("AP", "map", None, 1, "MAP"),
    ("hit_rate@5", "hit_rate", 5, 1, "HitRate@5"),
    ("Success@5", "hit_rate", 5, 1, "HitRate@5"),
    ("r-precision", "r-precision", None, 1, "Rprec"),
    ("Rprec", "r-precision", None, 1, "Rprec"),
    ("P@5", "precision", 5, 1, "P@5"),
    ("precision(rel=2)@10", "precision", 10, 2, "P(rel=2)@10"),
])
def test_parse_and_show(text, name, cutoff, rel, shown):
    m = parse_measure(text)
    assert (m.name, m.cutoff, m.rel) == (name, cutoff, rel)
    assert str(m) == shown
    assert parse_measure(m.spec) == m  # the canonical text round-trips


def test_ranx_key_puts_cutoff_before_relevance_level():
    assert parse_measure("ndcg_burges(rel=2)@10").ranx_key == "ndcg_burges@10-l2"
    assert parse_measure("r-precision").ranx_key == "r-precision"


def test_matmul_builds_a_cutoff_like_ir_measures():
    assert Measure("ndcg") @ 10 == parse_measure("ndcg@10")


@pytest.mark.parametrize("bad", ["ndgc@10", "bleu", "ndcg@0", "ndcg@-3", "r-precision@10", "ndcg@ten", "map(rel=0)"])
def test_bad_names_raise(bad):
    with pytest.raises(EvaluationError):
        parse_measure(bad)


def test_unknown_name_lists_known_ones():
    with pytest.raises(EvaluationError) as err:
        parse_measure("ndgc@10")
    for name in MEASURES:
        assert name in str(err.value)
