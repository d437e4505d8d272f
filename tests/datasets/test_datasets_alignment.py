"""The alignment guard: fires on Cranfield read against the original .I query numbers, not on the aligned set."""

from __future__ import annotations

import json
import warnings

import pandas as pd
import pytest
from _datasets_helpers import bm25_run, mean_average_precision

from llamaeval import AlignmentError, ConfigurationError, QuerySet, load_queryset
from llamaeval.datasets import AlignmentWarning, QuerySetWarning, bundled_path, check_alignment


@pytest.fixture(scope="module")
def cranfield() -> QuerySet:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QuerySetWarning)
        return load_queryset("cranfield")


@pytest.fixture(scope="module")
def misaligned(cranfield) -> QuerySet:
    """Cranfield as a careless loader builds it: queries keyed by their .I numbers, judgements by file order."""
    id_map = pd.read_csv(bundled_path("cranfield") / "query_id_map.tsv", sep="\t", dtype=str)
    to_original = dict(zip(id_map["seq_query_id"], id_map["original_I_number"]))
    queries = cranfield.queries.assign(query_id=cranfield.queries["query_id"].map(to_original))
    assert (queries["query_id"] != cranfield.queries["query_id"]).sum() == 223   # only 1 and 2 coincide
    with pytest.warns(QuerySetWarning) as record:
        qs = QuerySet("cranfield-dot-I", queries, cranfield.qrels, cranfield.corpus, on_error="warn")
    assert any("judgements for 73 unknown query id(s)" in str(w.message) for w in record)
    return qs


@pytest.fixture(scope="module")
def runs(cranfield, misaligned) -> dict[str, pd.DataFrame]:
    return {"aligned": bm25_run(cranfield, k=100), "misaligned": bm25_run(misaligned, k=100)}


def test_the_trap_is_real(cranfield, misaligned, runs):
    """Same retrieval, different ids: MAP collapses from ~0.25 to ~0.01 (shared README: ≈ 0.01)."""
    assert mean_average_precision(runs["aligned"], cranfield.qrels) > 0.2
    assert mean_average_precision(runs["misaligned"], misaligned.qrels) < 0.02


@pytest.mark.parametrize("k", [1, 10, 100])
def test_aligned_cranfield_passes(cranfield, runs, k):
    run = runs["aligned"][runs["aligned"]["rank"] <= k]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = check_alignment(run["query_id"], run["doc_id"], cranfield)
    assert report.ok and report.problems == ()
    assert report.query_overlap == 1.0 and report.doc_overlap == 1.0
    assert report.hit_skill > 0.2
    json.dumps(report.to_dict())   # JSON-safe for manifests


@pytest.mark.parametrize("k", [1, 10, 100])
def test_misaligned_cranfield_fires_with_the_numbers(misaligned, runs, k):
    run = runs["misaligned"][runs["misaligned"]["rank"] <= k]
    with pytest.raises(AlignmentError, match=r"hardly more often than chance \(hit rate 0\.\d+ vs 0\.\d+") as err:
        check_alignment(run["query_id"], run["doc_id"], misaligned)
    report = err.value.report
    assert report.n_overlap_queries == 152 and report.n_run_queries == 225   # ids still overlap a lot ...
    assert report.query_overlap > 0.5 and report.doc_overlap == 1.0          # ... so only the hit check sees it
    assert report.hit_skill < 0.1
    assert "152/225 run queries are judged" in str(err.value)


def test_warn_mode_returns_the_report(misaligned, runs):
    run = runs["misaligned"][runs["misaligned"]["rank"] <= 10]
    with pytest.warns(AlignmentWarning, match="misaligned"):
        report = check_alignment(run["query_id"], run["doc_id"], misaligned, on_mismatch="warn")
    assert not report.ok and len(report.problems) == 1


def test_document_ids_that_are_file_names_fire(cranfield, runs):
    run = runs["aligned"][runs["aligned"]["rank"] <= 10]
    with pytest.raises(AlignmentError, match=r"0 of 927 retrieved document ids are in the corpus"):
        check_alignment(run["query_id"], run["doc_id"] + ".txt", cranfield)


def test_unknown_query_ids_fire(cranfield, runs):
    run = runs["aligned"][runs["aligned"]["rank"] <= 10]
    with pytest.raises(AlignmentError, match=r"only 0 of 225 run query ids are judged"):
        check_alignment("q" + run["query_id"], run["doc_id"], cranfield)


def test_without_corpus_the_hit_check_still_fires(cranfield, misaligned, runs):
    with pytest.warns(QuerySetWarning, match="unknown query id"):
        no_corpus = QuerySet("no-corpus", misaligned.queries, misaligned.qrels, on_error="warn")
    run = runs["misaligned"][runs["misaligned"]["rank"] <= 10]
    with pytest.raises(AlignmentError) as err:
        check_alignment(run["query_id"], run["doc_id"], no_corpus)
    assert err.value.report.doc_reference == "qrels"


def test_saturated_run_is_inconclusive_not_an_error():
    """adi has 82 documents: at k=100 every query retrieves everything, nothing can be told apart."""
    adi = load_queryset("adi")
    run = bm25_run(adi, k=100)
    report = check_alignment(run["query_id"], run["doc_id"], adi)
    assert report.ok and report.shuffled_hit_rate == 1.0


def test_bad_arguments():
    adi = load_queryset("adi")
    with pytest.raises(ConfigurationError, match="equal length"):
        check_alignment(["1", "2"], ["a"], adi)
    with pytest.raises(ConfigurationError):
        check_alignment(["1"], ["a"], adi, on_mismatch="ignore")  # type: ignore[arg-type]
