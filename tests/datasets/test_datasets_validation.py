"""Each validation problem fires on a crafted bad file, with a message naming it; warn mode only warns."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest

from llamaeval import QuerySet, QuerySetError, load_queryset
from llamaeval.datasets import QuerySetWarning, load_beir, load_csv, load_trec

GOOD_QUERIES = '{"_id": "1", "text": "first"}\n{"_id": "2", "text": "second"}\n'
GOOD_CORPUS = '{"_id": "a", "title": "A", "text": "alpha"}\n{"_id": "b", "title": "", "text": "beta"}\n'
GOOD_QRELS = "query-id\tcorpus-id\tscore\n1\ta\t1\n2\tb\t2\n"


def beir(tmp_path: Path, queries: str = GOOD_QUERIES, corpus: str = GOOD_CORPUS, qrels: str = GOOD_QRELS) -> Path:
    folder = tmp_path / "set"
    (folder / "qrels").mkdir(parents=True)
    (folder / "queries.jsonl").write_text(queries)
    (folder / "corpus.jsonl").write_text(corpus)
    (folder / "qrels" / "test.tsv").write_text(qrels)
    return folder


def test_clean_file_loads_without_warnings(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        qs = load_beir(beir(tmp_path))
    assert qs.summary()["grades"] == {1: 1, 2: 1}


BAD_CASES = {
    "duplicate query id": (dict(queries=GOOD_QUERIES + '{"_id": "2", "text": "again"}\n'),
                           r"1 duplicate query_id\(s\), e.g. '2'"),
    "duplicate doc id": (dict(corpus=GOOD_CORPUS + '{"_id": "a", "title": "", "text": "dup"}\n'),
                         r"corpus: 1 duplicate doc_id\(s\), e.g. 'a'"),
    "duplicate judgement": (dict(qrels=GOOD_QRELS + "1\ta\t0\n"),
                            r"1 duplicate \(query_id, doc_id\) judgement\(s\), e.g. '1/a'"),
    "unknown query": (dict(qrels=GOOD_QRELS + "99\ta\t1\n"),
                      r"judgements for 1 unknown query id\(s\), e.g. '99'"),
    "unknown document": (dict(qrels=GOOD_QRELS + "1\tzz\t1\n"),
                         r"judgements for 1 document id\(s\) not in the corpus, e.g. 'zz'"),
    "empty query text": (dict(queries=GOOD_QUERIES + '{"_id": "3", "text": "  "}\n'),
                         r"1 query\(ies\) with empty text, e.g. '3'"),
    "non-numeric grade": (dict(qrels=GOOD_QRELS.replace("\t2\n", "\thigh\n")),
                          r"1 relevance grade\(s\) that are not whole numbers, e.g. 'high'"),
    "fractional grade": (dict(qrels=GOOD_QRELS.replace("\t2\n", "\t1.5\n")),
                         r"not whole numbers, e.g. '1.5'"),
    "empty id": (dict(qrels=GOOD_QRELS + "\ta\t1\n"), r"qrels: 1 row\(s\) with an empty query_id"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_each_problem_raises(tmp_path, case):
    files, message = BAD_CASES[case]
    folder = beir(tmp_path, **files)
    with pytest.raises(QuerySetError, match=message):
        load_beir(folder)


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_each_problem_only_warns_on_request(tmp_path, case):
    files, message = BAD_CASES[case]
    with pytest.warns(QuerySetWarning, match=message):
        qs = load_beir(beir(tmp_path, **files), on_error="warn")
    assert isinstance(qs, QuerySet)


def test_all_problems_are_reported_at_once(tmp_path):
    folder = beir(tmp_path, queries=GOOD_QUERIES + '{"_id": "1", "text": ""}\n', qrels=GOOD_QRELS + "7\tq\tx\n")
    with pytest.raises(QuerySetError) as err:
        load_beir(folder)
    text = str(err.value)
    for part in ("duplicate query_id", "empty text", "not whole numbers", "unknown query", "not in the corpus"):
        assert part in text


def test_empty_document_warns_but_loads(tmp_path):
    folder = beir(tmp_path, corpus=GOOD_CORPUS + '{"_id": "c", "title": "", "text": ""}\n')
    with pytest.warns(QuerySetWarning, match=r"1 document\(s\) with empty title and text, e.g. 'c'"):
        qs = load_beir(folder)
    assert len(qs.corpus) == 3


def test_warning_points_at_the_callers_line(tmp_path):
    folder = beir(tmp_path, corpus=GOOD_CORPUS + '{"_id": "c", "title": "", "text": ""}\n')
    with pytest.warns(QuerySetWarning) as record:
        load_queryset(folder)
    assert record[0].filename == __file__


def test_bad_csv_grade(tmp_path):
    (tmp_path / "queries.csv").write_text("query_id,text\n1,q\n")
    (tmp_path / "qrels.csv").write_text("query_id,doc_id,relevance\n1,d,relevant\n")
    with pytest.raises(QuerySetError, match="'relevant'"):
        load_csv(tmp_path / "queries.csv", tmp_path / "qrels.csv")


def test_missing_columns_are_named(tmp_path):
    with pytest.raises(QuerySetError, match=r"qrels is missing column\(s\) \['relevance'\]"):
        QuerySet("x", pd.DataFrame({"query_id": ["1"], "text": ["q"]}),
                 pd.DataFrame({"query_id": ["1"], "doc_id": ["d"]}))


def test_malformed_trec_qrels_line(tmp_path):
    (tmp_path / "topics.txt").write_text("1\tquery\n")
    (tmp_path / "qrels.txt").write_text("1 0 d1 1\n1 d2 1\n")
    with pytest.raises(QuerySetError, match="line 2 has 3 fields, expected 4"):
        load_trec(tmp_path / "topics.txt", tmp_path / "qrels.txt")


def test_malformed_jsonl_line(tmp_path):
    folder = beir(tmp_path, queries=GOOD_QUERIES + "{not json\n")
    with pytest.raises(QuerySetError, match="line 3 is not valid JSON"):
        load_beir(folder)


def test_not_a_queryset_folder(tmp_path):
    with pytest.raises(QuerySetError, match="not a query set folder"):
        load_queryset(tmp_path)
