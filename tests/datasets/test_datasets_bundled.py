"""Every bundled collection loads with the counts of ../shared/datasets/README.md, and ships in the wheel."""

from __future__ import annotations

import tomllib
import warnings
from fnmatch import fnmatch
from pathlib import Path

import pytest

from llamaeval import QuerySetError, load_queryset
from llamaeval.datasets import BUNDLED, QuerySetWarning, bundled_path, load_beir

ROOT = Path(__file__).resolve().parents[2]

# name: (docs, queries, judged queries, qrel rows) — the table in shared/datasets/README.md
EXPECTED = {
    "adi": (82, 35, 35, 170),
    "med": (1033, 30, 30, 696),
    "cranfield": (1400, 225, 225, 1612),
    "cisi": (1460, 112, 76, 3114),
    "scifact": (5183, 1109, 300, 339),
}


def _load(name: str, split: str = "test"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QuerySetWarning)
        return load_queryset(name, split=split)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bundled_counts(name):
    qs = _load(name)
    docs, queries, judged, rows = EXPECTED[name]
    summary = qs.summary()
    assert (summary["n_docs"], summary["n_queries"], summary["n_judged_queries"], summary["n_qrels"]) == (
        docs, queries, judged, rows)
    assert len(qs.judged_queries()) == judged == len(qs.judged_query_ids)
    assert summary["n_unjudged_queries"] == queries - judged
    assert sum(summary["grades"].values()) == rows
    assert set(BUNDLED) == set(EXPECTED)


def test_scifact_train_split():
    qs = _load("scifact", split="train")
    assert (qs.summary()["n_judged_queries"], len(qs.qrels)) == (809, 919)
    test = _load("scifact")
    assert set(qs.judged_query_ids).isdisjoint(test.judged_query_ids)
    with pytest.raises(QuerySetError, match=r"available splits: \['test', 'train'\]"):
        load_queryset("scifact", split="dev")


def test_cranfield_grades_and_empty_documents():
    with pytest.warns(QuerySetWarning, match=r"2 document\(s\) with empty title and text.*'471', '995'"):
        qs = load_queryset("cranfield")
    assert qs.summary()["grades"] == {1: 363, 2: 734, 3: 387, 4: 128}
    assert qs.qrels["relevance"].dtype == "int64"
    assert (qs.queries["query_id"] == [str(i) for i in range(1, 226)]).all()


def test_med_titles_empty_and_ids_are_strings():
    qs = _load("med")
    assert (qs.corpus["title"] == "").all()
    for frame, column in ((qs.queries, "query_id"), (qs.qrels, "doc_id"), (qs.corpus, "doc_id")):
        assert all(isinstance(v, str) for v in frame[column])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bundled_equals_shared_source(name, shared_datasets):
    """The compressed copies hold exactly the shared collections (same content hash)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QuerySetWarning)
        assert load_beir(shared_datasets / name).content_hash() == _load(name).content_hash()


def test_cranfield_id_map_is_bundled():
    lines = (bundled_path("cranfield") / "query_id_map.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["seq_query_id", "original_I_number"]
    assert len(lines) == 226


def test_bundled_files_are_package_data():
    """Every bundled file sits inside the package and matches pyproject's package-data globs (so wheels ship it)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["*"]
    package_dir = ROOT / "llamaeval"
    files = [p for p in (package_dir / "datasets" / "_bundled").rglob("*") if p.is_file()]
    assert len(files) >= 5 * 3
    unshipped = [str(p) for p in files if not any(fnmatch(p.name, pat) for pat in patterns)]
    assert unshipped == []
    assert bundled_path("adi").resolve().is_relative_to(package_dir.resolve())


def test_top_level_datasets_folder_points_at_the_bundle():
    assert (ROOT / "datasets" / "README.md").read_text() == (bundled_path("adi").parent / "README.md").read_text()
    for name in BUNDLED:
        link = ROOT / "datasets" / name
        assert link.resolve() == bundled_path(name).resolve()
    assert _load(str(ROOT / "datasets" / "adi")).content_hash() == _load("adi").content_hash()


def test_unknown_name_lists_the_bundled_ones():
    with pytest.raises(QuerySetError, match="bundled: adi, med, cranfield, cisi, scifact"):
        load_queryset("trec-covid")


def test_queryset_passes_through_and_subsets_stay_consistent():
    adi = _load("adi")
    assert load_queryset(adi) is adi
    small = adi.subset(doc_ids=adi.corpus["doc_id"].head(10))
    assert len(small.corpus) == 10
    assert set(small.qrels["doc_id"]) <= set(small.corpus["doc_id"])
    assert len(small.queries) == 35 and len(small.judged_query_ids) < 35
