"""Dense search: exact below ``ann_threshold``, an HNSW graph (usearch) from it on.

Real MiniLM vectors of adi's chunks and queries; a few thousand "real-ish" vectors are normalised
mixtures of two real chunk vectors plus noise (the recipe of benchmarks/dense_ann.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from llamaeval.engine import Index, IndexEntry, RetrievalConfig, SearchRequest, build_index, parse_filters
from llamaeval.engine import _dense
from llamaeval.engine._dense import Allowed, DenseConfig, DenseSearch, exact_top

N_MIXED = 3000


@pytest.fixture(scope="module")
def mixed(adi):
    """N_MIXED entries and vectors: adi's real chunks first, then variations of them (text of one
    chunk, vector = normalise(v_a + w v_b + noise)); metadata ``part`` a (95%) / b (5%), ``half``."""
    rng = np.random.default_rng(7)
    real, base = adi["embeddings"], adi["entries"]
    n_real = len(base)
    a = np.concatenate([np.arange(n_real), rng.integers(0, n_real, N_MIXED - n_real)])
    b = rng.integers(0, n_real, N_MIXED)
    w = np.where(np.arange(N_MIXED) < n_real, 0.0, rng.uniform(0.0, 0.5, N_MIXED))[:, None]
    noise = np.where(np.arange(N_MIXED) < n_real, 0.0, 0.35 / np.sqrt(real.shape[1]))[:, None]
    emb = real[a] + w * real[b] + noise * rng.standard_normal((N_MIXED, real.shape[1]))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    entries = [IndexEntry(chunk_id=f"c{i}", file_id=f"f{i // 3}", file_name=f"{i // 3}.txt", chunk_index=i % 3,
                          start_char=0, end_char=len(base[j].text), text=base[j].text,
                          metadata={"part": "b" if i % 20 == 0 else "a", "half": "x" if i % 2 else "y"})
               for i, j in enumerate(a.tolist())]
    return entries, emb


@pytest.fixture(scope="module")
def query_vectors(adi, embedder):
    return np.stack([embedder.embed_query(q) for q in list(adi["queries"].values())[:25]])


def test_hnsw_recall_at_100_is_at_least_098_against_exact(mixed, query_vectors):
    _, emb = mixed
    search = DenseSearch(emb, DenseConfig(threshold=1, build_threads=1))
    assert search.approximate
    recalls = []
    for qv in query_vectors:
        truth, truth_scores = exact_top(emb, qv, 100)
        got, scores = search.search(qv, 100)
        assert got.size == 100 and np.all(np.diff(scores) <= 0)  # best first
        np.testing.assert_allclose(scores, emb[got] @ qv, rtol=1e-6)  # exact cosines, not graph distances
        recalls.append(np.intersect1d(truth, got).size / 100)
    assert np.mean(recalls) >= 0.98
    assert search.graph().size == N_MIXED


def test_the_threshold_decides_and_small_indexes_keep_exact_search(adi, tmp_path):
    cfg = RetrievalConfig()
    assert cfg.dense_config() == DenseConfig() and cfg.ann_threshold == DenseConfig.threshold
    assert not DenseSearch(adi["embeddings"], cfg.dense_config()).approximate
    build_index(adi["entries"], adi["embeddings"], cfg, tmp_path / "small")
    assert not (tmp_path / "small" / _dense.GRAPH_FILE).exists()
    for bad in ({"ann_threshold": 0}, {"ann_expansion": 4}, {"ann_threshold": 1.5}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            RetrievalConfig.from_dict(bad)
    with pytest.raises(ValueError, match="quantization"):
        DenseConfig(quantization="f8")


@pytest.mark.parametrize("fusion", ["convex", "rrf"])
def test_candidate_set_search_gives_identical_results_to_full_arrays(adi, embedder, fusion):
    """Past the threshold the pools come from candidate sets (postings, graph candidates rescored
    exactly); where the graph returns every chunk (adi is small) that must be the exact ranking."""
    cfg = RetrievalConfig(fusion=fusion)
    exact = Index(adi["entries"], adi["embeddings"], cfg, embedder)
    approx = exact.with_config(replace(cfg, ann_threshold=1))
    assert approx._dense.approximate and not exact._dense.approximate
    cutoff = {"dense_cutoff": 0.3}
    part = {"filters": parse_filters({"filters": [{"key": "doc_id", "value": ["1", "2", "3", "5", "8", "13", "21",
                                                                               "34", "55"], "operator": "in"}]})}
    for q in list(adi["queries"].values())[:6]:
        for mode in ("fast", "accurate", "advanced") if fusion == "convex" else ("fast",):
            for extra in ({}, cutoff, part):
                req = SearchRequest.preset(mode, q, 10, cfg, **extra)
                a, b = exact.search(req).hits, approx.search(req).hits
                assert [h.entry.chunk_id for h in a] == [h.entry.chunk_id for h in b], (q, mode, extra)
                assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-6)


def test_filters_under_ann_return_only_allowed_chunks_like_exact_search(mixed, query_vectors, embedder):
    entries, emb = mixed
    cfg = RetrievalConfig()
    exact = Index(entries, emb, cfg, embedder)
    approx = exact.with_config(replace(cfg, ann_threshold=1000))
    assert approx._dense.approximate
    rare = parse_filters({"filters": [{"key": "part", "value": "b", "operator": "=="}]})  # 5%: exact over them
    half = parse_filters({"filters": [{"key": "half", "value": "x", "operator": "=="}]})  # 50%: graph, oversampled
    for q in ["computer information retrieval systems", "indexing of documents by computers"]:
        for extra, ok in (({"filters": rare}, lambda e: e.metadata["part"] == "b"),
                          ({"filters": half}, lambda e: e.metadata["half"] == "x"),
                          ({"filters": half, "dense_cutoff": 0.35}, lambda e: e.metadata["half"] == "x")):
            req = SearchRequest.preset("fast", q, 20, cfg, **extra)
            a, b = exact.search(req).hits, approx.search(req).hits
            assert b and all(ok(h.entry) for h in b)
            if "dense_cutoff" in extra:
                assert all(h.stage_scores["dense"] >= 0.35 - 1e-6 for h in b)
            assert len(b) == len(a)
            overlap = len({h.entry.chunk_id for h in a} & {h.entry.chunk_id for h in b}) / len(a)
            assert overlap >= 0.9, (q, extra, overlap)
    # a filter the graph's neighbourhood misses entirely: proposals grow, then exact over the allowed chunks
    search = approx._dense
    qv = query_vectors[0]
    far = np.zeros(len(entries), dtype=bool)
    far[np.argsort(emb @ qv)[: len(entries) // 10]] = True  # the 10% least similar chunks
    allowed = Allowed(emb, far)
    got, scores = search.search(qv, 10, allowed)
    want, want_scores = exact_top(emb, qv, 10, np.flatnonzero(far))
    assert got.tolist() == want.tolist()
    # a cutoff on the query's own cosine: nothing below it, and nothing above it missed
    allowed = Allowed(emb, None, 0.4, qv)
    got, scores = search.search(qv, 100, allowed)
    above = np.flatnonzero(emb @ qv >= np.float32(0.4))
    assert np.all(scores >= np.float32(0.4)) and got.size == min(100, above.size)


def test_graph_saved_by_build_index_is_loaded_not_rebuilt(mixed, embedder, tmp_path, monkeypatch):
    entries, emb = mixed[0][:1200], mixed[1][:1200]
    cfg = RetrievalConfig(ann_threshold=1000)
    build_index(entries, emb, cfg, tmp_path / "big")
    assert (tmp_path / "big" / _dense.GRAPH_FILE).is_file() and (tmp_path / "big" / _dense.META_FILE).is_file()
    memory = Index(entries, emb, cfg, embedder)
    built = []
    real_build = _dense._Graph.build
    monkeypatch.setattr(_dense._Graph, "build", classmethod(lambda cls, e, c: built.append(1) or real_build(e, c)))
    loaded = Index.load(tmp_path / "big", embedder)
    assert not built and loaded._dense.approximate and loaded._dense._graph is not None
    for q in ["information retrieval", "automatic abstracting of scientific papers"]:
        # two graphs (built apart) may propose other near-equal candidates: the same hits, near-equal scores
        a = [h.entry.chunk_id for h in memory.search(q, "fast", 10).hits]
        b = [h.entry.chunk_id for h in loaded.search(q, "fast", 10).hits]
        assert len(set(a) & set(b)) >= 9
    # a graph of other vectors or other graph parameters is not used: rebuilt instead
    other = DenseSearch(emb[::-1].copy(), cfg.dense_config())
    assert not other.load(tmp_path / "big")
    other = DenseSearch(emb, replace(cfg.dense_config(), connectivity=8))
    assert not other.load(tmp_path / "big")
    # a rebuild below the threshold removes the stale graph
    build_index(entries, emb, RetrievalConfig(), tmp_path / "big")
    assert not (tmp_path / "big" / _dense.GRAPH_FILE).exists()


def test_a_damaged_graph_file_is_rebuilt_not_fatal(mixed, tmp_path):
    emb = mixed[1][:1200]
    config = DenseConfig(threshold=1000, build_threads=1)
    assert DenseSearch(emb, config).save(tmp_path)
    (tmp_path / _dense.GRAPH_FILE).write_bytes(b"not a graph")
    search = DenseSearch(emb, config)
    assert not search.load(tmp_path)
    qv = emb[5]
    assert search.search(qv, 1)[0].tolist() == [5]  # built anew on first use


def test_an_updated_graph_drops_removed_chunks_adds_new_ones_and_maps_keys_to_positions(mixed, query_vectors,
                                                                                      tmp_path):
    _, emb = mixed
    # one build thread: the same graph on every run (with several, insertion order varies and so
    # does recall, by about +-0.01 here)
    config = DenseConfig(threshold=1, build_threads=1)
    previous = DenseSearch(emb[:2000], config)
    previous.graph()
    # the next version: chunks 100-199 removed, the rest shifted down, 150 new chunks appended
    old_of_new = np.concatenate([np.arange(100), np.arange(200, 2000), np.full(150, -1)])
    new_emb = np.concatenate([emb[:100], emb[200:2000], emb[2000:2150]])
    current = DenseSearch(new_emb, config)
    assert current.update(previous, old_of_new)
    graph = current.graph()
    assert graph.size == new_emb.shape[0] and graph.removed == 100 and graph.next_key == 2150
    assert previous.graph().size == 2000  # the previous version still serves, unchanged
    recalls = []
    for qv in query_vectors:
        truth, _ = exact_top(new_emb, qv, 50)
        got, scores = current.search(qv, 50)
        assert got.max() < new_emb.shape[0] and np.allclose(scores, new_emb[got] @ qv, atol=1e-6)
        recalls.append(np.intersect1d(truth, got).size / 50)
    assert np.mean(recalls) >= 0.98
    # every chunk finds itself first: its key leads back to its own position
    for pos in (0, 99, 100, 1899, 1900, 2049):
        assert current.search(new_emb[pos], 1)[0][0] == pos
    # saved with its keys and read back as it was
    assert current.save(tmp_path)
    again = DenseSearch(new_emb, config)
    assert again.load(tmp_path) and again.graph().keys.tolist() == graph.keys.tolist()
    assert again.graph().removed == 100
    # removing more than max_removed_share of the live entries: no update (the caller rebuilds)
    big_loss = DenseSearch(emb[1000:2000], config)
    assert not big_loss.update(previous, np.arange(1000, 2000))
    assert not DenseSearch(new_emb, config).update(previous, old_of_new[:-1])  # a mapping of the wrong length
