"""Index build/load and the three modes on adi: stages, determinism, config effects, reranker plug-in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from llamaeval.engine import (
    MAX_TOP_K, MODES, Index, IndexEntry, Reranker, RetrievalConfig, SearchRequest, build_index,
)
from llamaeval.engine._models import default_model_reference

FAST_STAGES = {"bm25", "dense", "fused"}
ACCURATE_STAGES = FAST_STAGES | {"ltr"}
ADVANCED_STAGES = ACCURATE_STAGES | {"bm25_prf", "dense_prf", "fused_prf", "doc_aggregate"}


@pytest.fixture(scope="module")
def index(adi_index_dir, embedder) -> Index:
    return Index.load(adi_index_dir, embedder)


def always_expanding(index: Index) -> Index:
    """``index`` with the shipped model but no confidence gate: advanced expands every query."""
    doc = index.config.model_document()
    return index.with_config(replace(index.config, ltr_model={**doc, "stages": {"feedback_gate": None}}))


def doc_ids(response) -> list[str]:
    out: list[str] = []
    for h in response.hits:
        if h.entry.metadata["doc_id"] not in out:
            out.append(h.entry.metadata["doc_id"])
    return out


def mean_recall_at_10(index: Index, adi, mode: str) -> float:
    vals = []
    for q, rel in adi["qrels"].items():
        got = doc_ids(index.search(adi["queries"][q], mode, 30))[:10]
        vals.append(len(rel & set(got)) / len(rel))
    return float(np.mean(vals))


def test_directory_is_self_contained(adi_index_dir, adi):
    names = {p.name for p in adi_index_dir.iterdir()}
    assert {"segments", "config.json", "manifest.json"} <= names
    manifest = json.loads((adi_index_dir / "manifest.json").read_text())
    segments = {p.name for p in (adi_index_dir / "segments").iterdir()}
    assert segments == {f"{row[0]}.seg" for row in manifest["segments"]}  # one per file, nothing else
    assert len(segments) == len({e.file_id for e in adi["entries"]})
    assert manifest["embedding_model"] == "all-MiniLM-L6-v2-onnx-int8" and manifest["dimensions"] == 384


@pytest.mark.parametrize(("mode", "stages", "timed"), [
    ("fast", FAST_STAGES, {"embed", "bm25", "dense", "fuse"}),
    ("accurate", ACCURATE_STAGES, {"embed", "bm25", "dense", "fuse", "features", "ltr"}),
    ("advanced", ADVANCED_STAGES, {"embed", "bm25", "dense", "fuse", "feedback", "expand", "features", "ltr",
                                    "aggregate"}),
])
def test_each_mode_reports_its_stages(index, adi, mode, stages, timed):
    idx = always_expanding(index) if mode == "advanced" else index  # gated queries: tests/engine/test_models.py
    res = idx.search(adi["queries"]["1"], mode, 10)
    assert len(res.hits) == 10
    assert set(res.timings) == timed and all(v >= 0 for v in res.timings.values())
    for h in res.hits:
        assert set(h.stage_scores) == stages
        assert isinstance(h.entry, IndexEntry) and h.entry.metadata["doc_id"]
    scores = [h.score for h in res.hits]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("mode", MODES)
def test_modes_find_relevant_documents(index, adi, mode):
    # adi: BM25 alone gets recall@10 around 0.4; an engine returning noise gets ~0.1
    assert mean_recall_at_10(index, adi, mode) > 0.35


def test_fast_is_a_real_fusion_of_bm25_and_dense(index, adi):
    q = adi["queries"]["5"]
    fused = index.search(q, "fast", 20)
    only_bm25 = index.with_config(replace(index.config, dense_weight=0.0)).search(q, "fast", 20)
    only_dense = index.with_config(replace(index.config, dense_weight=1.0)).search(q, "fast", 20)
    bm25_order = [h.stage_scores["bm25"] for h in only_bm25.hits]
    assert bm25_order == sorted(bm25_order, reverse=True)
    dense_order = [h.stage_scores["dense"] for h in only_dense.hits]
    assert dense_order == sorted(dense_order, reverse=True)
    ids = lambda r: [h.entry.chunk_id for h in r.hits]  # noqa: E731
    assert ids(fused) != ids(only_bm25) and ids(fused) != ids(only_dense)


def test_rrf_fusion_matches_formula(index, adi):
    cfg = replace(index.config, fusion="rrf", rrf_k=60.0, dense_weight=0.5, fast_candidates=50)
    res = index.with_config(cfg).search(adi["queries"]["3"], "fast", 5)
    top = res.hits[0]
    # recompute ranks from the stage scores of all chunks
    sparse = index._bm25_scores(index._query_weights(adi["queries"]["3"]))
    dense = index._dense_scores(index.embedder.embed_query(adi["queries"]["3"]))
    i = next(k for k, e in enumerate(index.entries) if e.chunk_id == top.entry.chunk_id)
    r_s = int((sparse > sparse[i]).sum()) + 1
    r_d = int((dense > dense[i]).sum()) + 1
    expected = (1 / (60 + r_s) if r_s <= 50 else 0) + (1 / (60 + r_d) if r_d <= 50 else 0)
    assert top.score == pytest.approx(expected, rel=1e-9)


def test_config_changes_change_rankings_as_documented(index, adi):
    q = adi["queries"]["7"]
    index = always_expanding(index)
    base = [h.entry.chunk_id for h in index.search(q, "advanced", 20).hits]
    no_expansion = replace(index.config, prf_weight=0.0, rocchio_beta=0.0)
    r = index.with_config(no_expansion).search(q, "advanced", 20)
    # without expansion, the expanded scores equal the plain ones
    for h in r.hits:
        n_terms = sum(index._query_weights(q).values())  # expanded weights are normalised
        assert h.stage_scores["bm25_prf"] == pytest.approx(h.stage_scores["bm25"] / n_terms, rel=1e-5, abs=1e-6)
        assert h.stage_scores["dense_prf"] == pytest.approx(h.stage_scores["dense"], abs=1e-5)
    assert [h.entry.chunk_id for h in r.hits] != base
    # second_stage="none": accurate returns the fused order of its larger pool
    plain = index.with_config(replace(index.config, second_stage="none")).search(q, "accurate", 10)
    fused = [h.stage_scores["fused"] for h in plain.hits]
    assert fused == sorted(fused, reverse=True) and "ltr" not in plain.hits[0].stage_scores
    # rerank_depth bounds what the second stage rescores, but never below top_k
    rr = KeywordReranker()
    shallow = index.with_config(replace(index.config, rerank_depth=3))
    shallow.reranker = rr
    assert len(shallow.search(q, "accurate", 10).hits) == 10 and rr.calls[-1][1] == 10
    assert len(shallow.search(q, "accurate", 2).hits) == 2 and rr.calls[-1][1] == 3
    # fast pools grow with top_k too
    small = index.with_config(replace(index.config, fast_candidates=5))
    assert len(small.search(q, "fast", 40).hits) == 40


def test_doc_aggregation_rewards_documents_with_several_matching_chunks(index, adi):
    q = adi["queries"]["10"]
    cfg = replace(index.config, documents_first=False)
    flat = index.with_config(replace(cfg, doc_aggregation="max")).search(q, "advanced", 30)
    agg = index.with_config(replace(cfg, doc_aggregation="max+sum", doc_sum_weight=1.0)).search(q, "advanced", 30)
    assert [h.entry.chunk_id for h in flat.hits] != [h.entry.chunk_id for h in agg.hits]
    by_file: dict[str, int] = {}
    for h in agg.hits:
        by_file[h.entry.file_id] = by_file.get(h.entry.file_id, 0) + 1
    assert max(by_file.values()) >= 2  # adi at 64 tokens: some files have several chunks in the set


def test_advanced_takes_its_feedback_from_the_accurate_ranking(index, adi):
    idx = always_expanding(index)
    idx = idx.with_config(replace(idx.config, documents_first=False))
    seen: list[list[str]] = []
    expand = idx._expand

    def spy(q_weights, qv, cand, scores):
        top = cand[np.lexsort((cand, -scores))[: idx.config.prf_docs]]
        seen.append([idx.entries[int(i)].chunk_id for i in top])
        return expand(q_weights, qv, cand, scores)

    idx._expand = spy
    differs = 0
    for qid in ("2", "10", "17", "25"):
        q = adi["queries"][qid]
        idx.search(q, "advanced", 10)
        accurate_top = [h.entry.chunk_id for h in idx.search(q, "accurate", idx.config.prf_docs).hits]
        assert seen[-1] == accurate_top
        fast_top = [h.entry.chunk_id for h in idx.search(q, "fast", idx.config.prf_docs).hits]
        differs += fast_top != accurate_top
    assert differs  # the learned ranking, not fusion alone, picks the feedback


@pytest.mark.parametrize("mode", ["accurate", "advanced"])
def test_documents_first_puts_each_documents_best_chunk_ahead_of_second_chunks(index, adi, mode):
    q = adi["queries"]["10"]
    mixed = index.with_config(replace(index.config, documents_first=False)).search(q, mode, 150).hits
    files = [h.entry.file_id for h in mixed]
    assert len(set(files[:30])) < 30  # adi at 64 tokens: siblings share the top 30 without it
    hits = index.search(q, mode, 150).hits
    n_docs = len({h.entry.file_id for h in hits})
    assert n_docs < len(hits)  # the pool holds second chunks too
    head = [h.entry.file_id for h in hits[:n_docs]]
    assert len(set(head)) == n_docs  # the first n_docs hits are n_docs different documents
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores[:n_docs]) and all(s < 0 for s in scores[n_docs:])
    # documents keep the order of their best chunk
    best: dict[str, int] = {}
    for rank, f in enumerate(files):
        best.setdefault(f, rank)
    assert head == sorted(head, key=best.__getitem__)


def test_load_round_trip_gives_identical_results(index, adi, adi_index_dir, embedder):
    again = Index.load(adi_index_dir, embedder)
    mem = Index(adi["entries"], adi["embeddings"], RetrievalConfig(), embedder)
    for mode in MODES:
        a = index.search(adi["queries"]["2"], mode, 15)
        b = again.search(adi["queries"]["2"], mode, 15)
        c = mem.search(adi["queries"]["2"], mode, 15)
        assert [(h.entry.chunk_id, h.score) for h in a.hits] == [(h.entry.chunk_id, h.score) for h in b.hits]
        assert [h.entry.chunk_id for h in a.hits] == [h.entry.chunk_id for h in c.hits]


_SEED_SCRIPT = """
import json, sys
from pathlib import Path
from llamaeval.engine import Embedder, Index, IndexEntry, RetrievalConfig, build_index
from llamaeval.engine._index import read_index_data
src, out = Path(sys.argv[1]), Path(sys.argv[2])
entries, vectors = read_index_data(src)
build_index(entries, vectors, RetrievalConfig(), out)
idx = Index.load(out, Embedder())
queries = json.loads(sys.argv[3])
print(json.dumps({m: [[(h.entry.chunk_id, round(h.score, 9)) for h in idx.search(q, m, 20).hits] for q in queries]
                  for m in ("fast", "accurate", "advanced")}))
"""


def test_rankings_do_not_depend_on_the_hash_seed(adi_index_dir, adi, tmp_path):
    # queries with ties in BM25 (one rare term) and ordinary ones
    queries = [adi["queries"][q] for q in ("1", "4", "9", "17")] + ["retrieval", "the computer"]
    vocab = {}
    outs = []
    for seed in ("1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out_dir = tmp_path / f"idx{seed}"
        proc = subprocess.run([sys.executable, "-c", _SEED_SCRIPT, str(adi_index_dir), str(out_dir), json.dumps(queries)],
                              env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        outs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        vocab[seed] = {p.name: p.read_bytes() for p in (out_dir / "segments").iterdir()}
    assert vocab["1"] == vocab["12345"]  # segments (term ids included) do not depend on the seed
    assert outs[0] == outs[1]


class KeywordReranker:
    """A tiny cross-encoder stand-in: counts the query's words in each passage."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def score(self, query: str, passages: list[str]) -> np.ndarray:
        self.calls.append((query, len(passages)))
        words = set(query.lower().split())
        return np.array([sum(w in words for w in p.lower().split()) + len(p) * 1e-6 for p in passages])


def test_reranker_plug_in(adi_index_dir, embedder, adi):
    rr = KeywordReranker()
    assert isinstance(rr, Reranker)
    idx = Index.load(adi_index_dir, embedder, reranker=rr)
    q = adi["queries"]["6"]
    res = idx.search(q, "accurate", 10)
    assert rr.calls == [(q, idx.config.rerank_depth)]
    ce = [h.stage_scores["rerank"] for h in res.hits]
    assert ce == sorted(ce, reverse=True)  # reranker_weight=1.0: the reranker's order
    assert "rerank" in res.timings
    # fast never calls the second stage
    idx.search(q, "fast", 10)
    assert len(rr.calls) == 1
    # blending: weight 0 ignores the reranker's order
    blended = idx.with_config(replace(idx.config, reranker_weight=0.0)).search(q, "accurate", 10)
    plain = Index.load(adi_index_dir, embedder).search(q, "accurate", 10)
    assert [h.entry.chunk_id for h in blended.hits] == [h.entry.chunk_id for h in plain.hits]
    with pytest.raises(TypeError):
        Index.load(adi_index_dir, embedder, reranker=object())


def test_bad_arguments(index):
    with pytest.raises(ValueError, match="mode"):
        index.search("x", "fastest", 10)
    for bad in (0, MAX_TOP_K + 1, 1.5, True):
        with pytest.raises(ValueError, match="top_k"):
            index.search("x", "fast", bad)
    with pytest.raises(ValueError, match="query"):
        index.search("   ", "fast", 10)
    assert MAX_TOP_K >= 100
    assert len(index.search("zzzqqq unknownword", "fast", 5).hits) == 5  # dense still answers


def test_retrieval_config_round_trip_and_validation(index):
    cfg = RetrievalConfig.from_dict({"bm25_k1": 0.9, "fusion": "rrf"})
    assert RetrievalConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    # the config names the shipped model; its document holds the weights
    assert cfg.to_dict()["ltr_model"] == default_model_reference()
    assert cfg.model_document()["models"]["accurate"]["weights"]
    for bad, word in [({"bm25_k": 1}, "bm25_k"), ({"fusion": "sum"}, "fusion"), ({"dense_weight": 2}, "dense_weight"),
                      ({"stemmer": "klingon"}, "stemmer"), ({"fast_candidates": 0}, "fast_candidates"),
                      ({"prf_terms": "ten"}, "prf_terms"),
                      ({"ltr_model": {"models": {"accurate": {"features": ["nope"], "weights": [1.0]}}}}, "nope"),
                      ({"ltr_model": {"models": {"accurate": {"features": ["bm25"], "weights": [1, 2]}}}}, "same length"),
                      ({"ltr_model": {"models": {"fast": {"features": [], "weights": []}}}}, "unknown mode"),
                      ({"ltr_model": {"name": "llamaeval-ltr", "version": 1}}, "model reference"),
                      ({"ltr_model": {"name": "llamaeval-ltr", "version": 1, "sha256": "ab"}}, "64 lowercase hex"),
                      ({"ltr_model": {"name": "llamaeval-ltr", "version": 1, "sha256": "0" * 64}}, "SHA-256"),
                      ({"ltr_model": {"models": {}, "stages": {"feedback_gate": "high"}}}, "feedback_gate")]:
        with pytest.raises(ValueError, match=word):
            RetrievalConfig.from_dict(bad)
    with pytest.raises(ValueError, match="bm25_k1"):
        index.with_config(replace(index.config, bm25_k1=2.0))


def test_build_index_validates(tmp_path, adi):
    with pytest.raises(ValueError, match="no entries"):
        build_index([], np.zeros((0, 384)), RetrievalConfig(), tmp_path / "a")
    with pytest.raises(ValueError, match="shape"):
        build_index(adi["entries"][:3], adi["embeddings"][:2], RetrievalConfig(), tmp_path / "b")
    with pytest.raises(FileNotFoundError, match="not an index"):
        Index.load(tmp_path, None)


def test_features_match_the_declared_list_and_the_shipped_models(index, adi):
    from llamaeval.engine._rerank import FEATURES

    timings: dict = {}
    request = SearchRequest.preset("advanced", adi["queries"]["2"], 10, index.config)
    cand, _, stage, ctx = index._candidates(request, timings)
    feats = index._stage_features(cand, stage, ctx, expanded=True)
    assert tuple(sorted(feats)) == tuple(sorted(FEATURES))
    assert all(v.shape == cand.shape and np.isfinite(v).all() for v in feats.values())
    shipped = RetrievalConfig().model_document()
    assert "scifact/test" not in shipped["tuning"]["trained_on"]
    assert set(shipped["models"]) == {"accurate", "advanced"}
    json.dumps(shipped, allow_nan=False)  # the config travels in API responses: strict JSON only
    assert "placeholder" not in shipped


def test_learned_ranker_trees_add_leaf_values():
    from llamaeval.engine import LearnedRanker

    base = {"features": ["a", "b"], "weights": [1.0, 0.0], "mean": [0.0, 0.0], "std": [1.0, 1.0]}
    # depth 1: tree 0 splits on b >= 0.5 (leaves -1 / +2), tree 1 on a >= 10 (0 / 5)
    trees = {"feature": [[1], [0]], "threshold": [[0.5], [10.0]], "value": [[-1.0, 2.0], [0.0, 5.0]]}
    x = {"a": np.array([0.0, 1.0, 12.0]), "b": np.array([0.0, 0.5, 1.0])}
    plain = LearnedRanker(base).score(x)
    boosted = LearnedRanker({**base, "trees": trees}).score(x)
    assert np.allclose(plain, [0.0, 1.0, 12.0])
    assert np.allclose(boosted - plain, [-1.0, 2.0, 7.0])
    # depth 2 walks breadth-first: node 0 -> children 1 (left), 2 (right)
    deep = {"feature": [[0, 1, 1]], "threshold": [[5.0, 0.5, 0.5]], "value": [[1.0, 2.0, 3.0, 4.0]]}
    assert np.allclose(LearnedRanker({**base, "weights": [0.0, 0.0], "trees": deep}).score(x), [1.0, 2.0, 4.0])
    for bad in ({**trees, "value": [[1.0], [2.0]]}, {**trees, "feature": [[2], [0]]},
                {"feature": [[0, 1]], "threshold": [[0.0, 0.0]], "value": [[0.0, 0.0, 0.0]]},
                {**trees, "threshold": [[float("inf")], [10.0]]}):
        with pytest.raises(ValueError, match="trees"):
            LearnedRanker({**base, "trees": bad})


def test_number_match_is_the_share_of_the_querys_numbers_found_verbatim(tmp_path, embedder):
    from llamaeval.engine._analyze import Analyzer

    # single digits are not tokens (2+ word characters); codes with digits are
    assert Analyzer.numbers("1 in 5 million: p53 and H1N1 rose 95% in 2009.") == {"p53", "h1n1", "95", "2009"}
    texts = {"a": "In 2009 p53 was mutated in 95 of the tumours.", "b": "Tumours of 2009 lacked the mutation.",
             "c": "No mutation was found in these tumours."}
    entries = [IndexEntry(chunk_id=f"{k}#0", file_id=k, file_name=f"{k}.txt", chunk_index=0, start_char=0,
                          end_char=len(t), text=t, metadata={"doc_id": k}) for k, t in texts.items()]
    build_index(entries, embedder.embed_passages(list(texts.values())), RetrievalConfig(), tmp_path / "idx")
    index = Index.load(tmp_path / "idx", embedder)

    def number_match(query: str) -> dict[str, float]:
        cand, _, stage, ctx = index._candidates(SearchRequest.preset("accurate", query, 10, index.config), {})
        feats = index._stage_features(cand, stage, ctx, expanded=False)
        return {index.entries[i].metadata["doc_id"]: float(v) for i, v in zip(cand, feats["number_match"])}

    assert number_match("p53 mutations in 95 tumours in 2009") == pytest.approx({"a": 1.0, "b": 1 / 3, "c": 0.0})
    assert number_match("tumour mutations") == {"a": 0.0, "b": 0.0, "c": 0.0}
