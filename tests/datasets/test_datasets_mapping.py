"""Chunk -> document mapping: metadata key, file-name fallback, collapse to best rank, chunk level."""

from __future__ import annotations

import pandas as pd
import pytest

from llamaeval import ConfigurationError, DocumentMapping
from llamaeval.datasets import chunk_qrels


def test_doc_id_from_metadata_then_file_stem():
    m = DocumentMapping()
    assert m.doc_id({"doc_id": 12, "file_name": "x.txt"}) == "12"
    assert m.doc_id({}, "471.txt") == "471"
    assert m.doc_id({"doc_id": None}, "dir/sub/a.b.pdf") == "a.b"
    assert m.doc_id({"doc_id": ""}, "README") == "README"
    assert m.doc_id({}, None) is None
    assert DocumentMapping(fallback_to_file_name=False).doc_id({}, "471.txt") is None
    assert DocumentMapping(metadata_key="source").doc_id({"source": "s1", "doc_id": "d"}, "f.txt") == "s1"
    assert m.strategy == "document:metadata:doc_id|file-stem"
    assert DocumentMapping(level="chunk").unit_id({"doc_id": "d"}, chunk_index=3) == "d#3"


def test_bad_mapping_config():
    with pytest.raises(ConfigurationError):
        DocumentMapping(metadata_key="")
    with pytest.raises(ConfigurationError):
        DocumentMapping(level="sentence")  # type: ignore[arg-type]


@pytest.fixture()
def chunks() -> pd.DataFrame:
    # two requests; q1 returns doc A twice (ranks 1 and 3), one chunk known only by file name
    return pd.DataFrame({
        "mode": ["fast"] * 6 + ["fast"],
        "query_id": ["q1"] * 5 + ["q2", "q3"],
        "rank": [1, 2, 3, 4, 5, 1, None],
        "doc_id": ["A", "B", "A", None, "C", "A", None],
        "file_name": ["A.txt", "B.txt", "A.txt", "D.txt", "C.txt", "A.txt", None],
        "chunk_index": [0, 0, 4, 1, 2, 1, None],
        "score": [0.9, 0.8, 0.7, 0.6, 0.5, 0.95, None],
    })


def test_collapse_keeps_best_rank_and_renumbers(chunks):
    out = DocumentMapping().collapse(chunks)
    q1 = out[out["query_id"] == "q1"]
    assert q1["doc_id"].tolist() == ["A", "B", "D", "C"]
    assert q1["rank"].tolist() == [1, 2, 3, 4]
    assert q1["chunk_index"].tolist() == [0, 0, 1, 2]       # columns come from the best chunk
    assert out[out["query_id"] == "q2"]["rank"].tolist() == [1]
    failed = out[out["query_id"] == "q3"]                     # a failed request keeps its one NA row
    assert len(failed) == 1 and failed["rank"].isna().all()
    assert len(chunks) == 7                                   # input untouched


def test_collapse_groups_by_request(chunks):
    both = pd.concat([chunks, chunks.assign(mode="accurate")])
    out = DocumentMapping().collapse(both)
    assert len(out[out["mode"] == "accurate"]) == len(out[out["mode"] == "fast"]) == 6


def test_chunk_level_keeps_every_chunk(chunks):
    out = DocumentMapping(level="chunk").collapse(chunks)
    q1 = out[out["query_id"] == "q1"]
    assert q1["doc_id"].tolist() == ["A#0", "B#0", "A#4", "D#1", "C#2"]
    assert q1["rank"].tolist() == [1, 2, 3, 4, 5]


def test_chunk_qrels_inherit_document_grades():
    qrels = pd.DataFrame({"query_id": ["q1", "q1"], "doc_id": ["A", "B"], "relevance": [2, 1]})
    seen = pd.DataFrame({"doc_id": ["A", "A", "B", "C"], "chunk_index": [0, 4, 0, 1]})
    out = chunk_qrels(qrels, seen)
    assert out.values.tolist() == [["q1", "A#0", 2], ["q1", "A#4", 2], ["q1", "B#0", 1]]


def test_collapse_needs_rank():
    with pytest.raises(ConfigurationError, match="rank"):
        DocumentMapping().collapse(pd.DataFrame({"doc_id": ["a"]}))
