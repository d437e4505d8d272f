"""SearchRequest: the modes are presets, and each real knob changes the ranking as documented (adi)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from llamaeval.engine import MODES, PRESETS, Index, SearchRequest, parse_filters


@pytest.fixture(scope="module")
def index(adi_index_dir, embedder) -> Index:
    return Index.load(adi_index_dir, embedder)


def ids(response) -> list[str]:
    return [h.entry.chunk_id for h in response.hits]


@pytest.mark.parametrize("mode", MODES)
def test_a_mode_is_its_preset_request(index, adi, mode):
    q = adi["queries"]["7"]
    request = SearchRequest.preset(mode, q, 15, index.config)
    assert request.rerank == PRESETS[mode]["rerank"] and request.expand == PRESETS[mode]["expand"]
    assert [(h.entry.chunk_id, h.score) for h in index.search(q, mode, 15).hits] == \
        [(h.entry.chunk_id, h.score) for h in index.search(request).hits]


def test_alpha_zero_is_the_bm25_ranking_and_one_the_dense_ranking(index, adi):
    q = adi["queries"]["5"]
    sparse = index._bm25_scores(index._query_weights(q))
    dense = index._dense_scores(index.embedder.embed_query(q))
    expect_sparse = [index.entries[i].chunk_id for i in np.lexsort((np.arange(sparse.size), -sparse))[:20]
                     if sparse[i] > 0]
    expect_dense = [index.entries[i].chunk_id for i in np.lexsort((np.arange(dense.size), -dense))[:20]]
    assert ids(index.search(SearchRequest(q, top_k=20, alpha=0.0))) == expect_sparse
    assert ids(index.search(SearchRequest(q, top_k=20, alpha=1.0))) == expect_dense
    assert ids(index.search(SearchRequest(q, top_k=20, alpha=0.5))) not in (expect_sparse, expect_dense)


def test_candidate_counts_bound_what_each_retriever_contributes(index, adi):
    q = adi["queries"]["5"]
    res = index.search(SearchRequest(q, top_k=1, sparse_top_k=3, dense_top_k=2, rerank=False))
    assert len(res.hits) == 1
    wide = index.search(SearchRequest(q, top_k=200, sparse_top_k=3, dense_top_k=2))
    # top_k raises both pools: 200 asked, each retriever gives up to 200
    assert len(wide.hits) > 5


def test_filters_restrict_every_stage(index, adi):
    q = adi["queries"]["2"]
    wanted = {"1", "2", "3", "4", "5", "40", "41"}
    filters = parse_filters({"filters": [{"key": "doc_id", "value": sorted(wanted), "operator": "in"}]})
    for mode in MODES:
        request = SearchRequest.preset(mode, q, 30, index.config, filters=filters)
        hits = index.search(request).hits
        assert hits and {h.entry.metadata["doc_id"] for h in hits} <= wanted
    none = parse_filters({"filters": [{"key": "doc_id", "value": "no such", "operator": "=="}]})
    assert index.search(SearchRequest(q, filters=none, rerank=True, expand=True)).hits == []


def test_filters_see_the_file_name_and_id_as_the_nodes_show_them(index, adi):
    q = adi["queries"]["2"]
    first = index.entries[0]
    by_name = parse_filters({"filters": [{"key": "file_name", "value": first.file_name}]})
    hits = index.search(SearchRequest(q, top_k=30, filters=by_name)).hits
    assert hits and {h.entry.file_name for h in hits} == {first.file_name}
    by_id = parse_filters({"filters": [{"key": "file_id", "value": first.file_id, "operator": "!="}]})
    hits = index.search(SearchRequest(q, top_k=30, filters=by_id)).hits
    assert hits and first.file_id not in {h.entry.file_id for h in hits}


def test_custom_metadata_sets_its_own_file_name_for_filters() -> None:
    from llamaeval.engine._index import IndexEntry

    plain = IndexEntry("c0", "f0", "a.txt", 0, 0, 5, "hello", metadata={"doc_id": "7"})
    own = IndexEntry("c1", "f1", "b.txt", 0, 0, 5, "hello", metadata={"file_name": "report.pdf", "file_id": "x"})
    assert dict(plain.filter_fields()) == {"file_name": "a.txt", "doc_id": "7", "file_id": "f0"}
    assert dict(own.filter_fields()) == {"file_name": "report.pdf", "file_id": "f1"}  # file_id is always the file's
    assert plain.filter_fields().get("missing") is None


def test_dense_cutoff_drops_dissimilar_chunks(index, adi):
    q = adi["queries"]["2"]
    hits = index.search(SearchRequest(q, top_k=50, dense_cutoff=0.3)).hits
    assert hits and all(h.stage_scores["dense"] >= 0.3 for h in hits)
    assert len(hits) < len(index.search(SearchRequest(q, top_k=50)).hits)


def test_rerank_changes_the_order_and_adds_the_ltr_stage(index, adi):
    q = adi["queries"]["3"]
    plain = index.search(SearchRequest(q, top_k=10))
    reranked = index.search(SearchRequest(q, top_k=10, rerank=True))
    assert "ltr" in reranked.hits[0].stage_scores and "ltr" not in plain.hits[0].stage_scores
    assert ids(plain) != ids(reranked)


@pytest.mark.parametrize("bad, message", [
    ({"alpha": 1.5}, "alpha"), ({"top_k": 0}, "top_k"), ({"dense_top_k": True}, "dense_top_k"),
    ({"dense_cutoff": float("nan")}, "dense_cutoff"), ({"query": " "}, "query"), ({"rerank": 1}, "rerank"),
])
def test_bad_knobs_are_named(bad, message):
    with pytest.raises(ValueError, match=message):
        replace(SearchRequest("q"), **bad)


def test_unknown_mode_is_named(index):
    with pytest.raises(ValueError, match="unknown mode 'fastest'"):
        SearchRequest.preset("fastest", "q", 10, index.config)
