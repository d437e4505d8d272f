"""Each loader format round-trips: write to tmp, load back, equal (content hash and frames)."""

from __future__ import annotations

import gzip

import pandas as pd
import pandas.testing as pdt
import pytest

from llamaeval import QuerySet, load_queryset
from llamaeval.datasets import (
    detect_format,
    from_frames,
    load_beir,
    load_csv,
    load_jsonl,
    load_trec,
    read_trec_topics,
    write_beir,
    write_csv,
    write_jsonl,
    write_trec,
)


@pytest.fixture(scope="module")
def tricky() -> QuerySet:
    """Hand-made set with the usual breakers: leading-zero ids, quotes, commas, tabs, markup, unicode."""
    queries = pd.DataFrame({"query_id": ["007", "10", "2"],
                            "text": ['what is "lift", really?', "Über <b>drag</b> & co", "a\tb, c"]})
    qrels = pd.DataFrame({"query_id": ["007", "007", "10", "2"], "doc_id": ["d01", "d2", "d2", "x-3"],
                          "relevance": [2, 0, 1, 3]})
    corpus = pd.DataFrame({"doc_id": ["d01", "d2", "x-3"], "title": ["Wing, tips", "", "日本語"],
                           "text": ['He said "no".\nSecond line', "only text", "<p>a &amp; b</p>"]})
    return QuerySet("tricky", queries, qrels, corpus)


def _same(a: QuerySet, b: QuerySet) -> None:
    assert a.content_hash() == b.content_hash()
    for name in ("queries", "qrels", "corpus"):
        left, right = getattr(a, name), getattr(b, name)
        key = [c for c in ("query_id", "doc_id") if c in left.columns]
        pdt.assert_frame_equal(left.sort_values(key).reset_index(drop=True),
                               right.sort_values(key).reset_index(drop=True), check_dtype=False)
    assert a == b


@pytest.mark.parametrize("compress", [False, True])
def test_beir_round_trip(tricky, tmp_path, compress):
    folder = write_beir(tricky, tmp_path / "beir", compress=compress)
    assert (folder / ("corpus.jsonl.gz" if compress else "corpus.jsonl")).is_file()
    assert detect_format(folder) == "beir"
    _same(tricky, load_beir(folder))
    _same(tricky, load_queryset(folder))


def test_csv_round_trip(tricky, tmp_path):
    folder = write_csv(tricky, tmp_path / "csv")
    assert detect_format(folder) == "csv"
    _same(tricky, load_csv(folder / "queries.csv", folder / "qrels.csv", folder / "corpus.csv"))
    _same(tricky, load_queryset(folder))


def test_jsonl_round_trip(tricky, tmp_path):
    folder = write_jsonl(tricky, tmp_path / "jsonl")
    assert detect_format(folder) == "jsonl"
    _same(tricky, load_jsonl(folder / "queries.jsonl", folder / "qrels.jsonl", folder / "corpus.jsonl"))
    _same(tricky, load_queryset(folder))


def test_trec_round_trip(tricky, tmp_path):
    # TREC topics are one line of text; whitespace inside a query collapses to single spaces.
    queries = tricky.queries.assign(text=tricky.queries["text"].str.split().str.join(" "))
    flat = QuerySet("tricky", queries, tricky.qrels, tricky.corpus)
    folder = write_trec(flat, tmp_path / "trec")
    assert detect_format(folder) == "trec"
    _same(flat, load_trec(folder / "topics.txt", folder / "qrels.txt", folder / "docs.trec"))
    _same(flat, load_queryset(folder))


def test_frames_round_trip_with_named_columns(tricky):
    mapping = {"queries": {"qid": "query_id", "question": "text"},
               "qrels": {"qid": "query_id", "docno": "doc_id", "grade": "relevance"},
               "corpus": {"docno": "doc_id", "heading": "title", "body": "text"}}
    q = tricky.queries.rename(columns={"query_id": "qid", "text": "question"})
    r = tricky.qrels.rename(columns={"query_id": "qid", "doc_id": "docno", "relevance": "grade"}).astype(str)
    c = tricky.corpus.rename(columns={"doc_id": "docno", "title": "heading", "text": "body"})
    _same(tricky, from_frames(q, r, c, name="tricky", columns=mapping))
    # a flat mapping applies to every frame
    flat = {"qid": "query_id", "question": "text", "docno": "doc_id", "grade": "relevance",
            "heading": "title", "body": "text"}
    _same(tricky, from_frames(q, r, c, name="tricky", columns=flat))


def test_numeric_ids_become_strings_and_keep_leading_zeros(tmp_path):
    (tmp_path / "queries.csv").write_text("qid,query\n007,first\n8,second\n")
    (tmp_path / "qrels.csv").write_text("qid,docno,rel\n007,0100,1\n8,0100,2\n")
    qs = load_csv(tmp_path / "queries.csv", tmp_path / "qrels.csv")
    assert qs.queries["query_id"].tolist() == ["007", "8"]
    assert qs.qrels["doc_id"].tolist() == ["0100", "0100"]
    assert qs.qrels["relevance"].tolist() == [1, 2]
    assert qs.corpus is None and qs.summary()["n_docs"] is None


def test_qrels_split_column_selects_the_split(tmp_path):
    queries = pd.DataFrame({"query_id": ["1", "2"], "text": ["a", "b"]})
    qrels = pd.DataFrame({"query_id": ["1", "2"], "doc_id": ["x", "y"], "relevance": [1, 1],
                          "split": ["train", "test"]})
    assert from_frames(queries, qrels, split="test").judged_query_ids == ["2"]
    assert from_frames(queries, qrels, split="train").judged_query_ids == ["1"]


def test_trec_topic_formats(tmp_path):
    sgml = tmp_path / "topics.301"
    sgml.write_text("<top>\n<num> Number: 301\n<title> International Organized Crime\n\n"
                    "<desc> Description:\nIdentify organizations that participate.\n\n"
                    "<narr> Narrative:\nA relevant document must name one.\n</top>\n")
    assert read_trec_topics(sgml).values.tolist() == [["301", "International Organized Crime"]]
    both = read_trec_topics(sgml, "title+desc")
    assert both["text"][0] == "International Organized Crime Identify organizations that participate."
    xml = tmp_path / "topics.xml"
    xml.write_text('<topics><topic number="1" type="faceted"><query>obama family tree</query>'
                   "<description>Find information on President Obama's family.</description></topic></topics>")
    assert read_trec_topics(xml, "desc").values.tolist() == [["1", "Find information on President Obama's family."]]
    tsv = tmp_path / "topics.tsv"
    tsv.write_text("1\tfirst query\n2\tsecond query\n")
    assert read_trec_topics(tsv)["query_id"].tolist() == ["1", "2"]


def test_gzip_inputs_are_read_transparently(tmp_path):
    with gzip.open(tmp_path / "queries.jsonl.gz", "wt") as fh:
        fh.write('{"_id": "1", "text": "q"}\n')
    with gzip.open(tmp_path / "qrels.jsonl.gz", "wt") as fh:
        fh.write('{"query-id": "1", "corpus-id": "d", "score": 1}\n')
    qs = load_jsonl(tmp_path / "queries.jsonl.gz", tmp_path / "qrels.jsonl.gz")
    assert qs.qrels.values.tolist() == [["1", "d", 1]]


def test_adi_round_trips_through_every_writer(tmp_path):
    adi = load_queryset("adi")
    for writer in (write_beir, write_csv, write_jsonl, write_trec):
        folder = writer(adi, tmp_path / writer.__name__)
        assert load_queryset(folder).content_hash() == adi.content_hash(), writer.__name__


def test_content_hash_ignores_order_and_name_but_not_content(tricky):
    shuffled = QuerySet("other-name", tricky.queries.iloc[::-1], tricky.qrels.iloc[::-1], tricky.corpus.iloc[::-1])
    assert shuffled.content_hash() == tricky.content_hash()
    changed = tricky.qrels.copy()
    changed.loc[0, "relevance"] = 1
    assert QuerySet("tricky", tricky.queries, changed, tricky.corpus).content_hash() != tricky.content_hash()
    assert len(tricky.content_hash()) == 64
