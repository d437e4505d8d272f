"""Index format 2 (segments): BM25 equal to bm25s, incremental merges equal to a build from
scratch, a version that reuses a previous one's segments, and format 1 indexes still loaded."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from llamaeval.engine import MODES, Index, IndexWriter, RetrievalConfig, build_index
from llamaeval.engine._analyze import Analyzer
from llamaeval.engine._index import _build_bm25, _file_runs, read_index_data
from llamaeval.engine._segments import SegmentSet, make_segment, read_segment

QUERIES = ("1", "9", "17")


def write_format1(directory: Path, entries, vectors, config: RetrievalConfig) -> None:
    """An index as format 1 wrote it (bm25s, entries.jsonl, embeddings.npy): what older servers left on disk."""
    directory.mkdir(parents=True)
    terms = Analyzer(config.stemmer, config.stopwords).analyze_many([e.text for e in entries])
    _build_bm25(terms, config).save(str(directory / "bm25"), show_progress=False)
    np.save(directory / "embeddings.npy", np.asarray(vectors, dtype=np.float32))
    (directory / "entries.jsonl").write_text("".join(json.dumps(asdict(e)) + "\n" for e in entries))
    (directory / "config.json").write_text(json.dumps(config.to_dict()))
    (directory / "manifest.json").write_text(json.dumps({
        "format_version": 1, "num_chunks": len(entries), "dimensions": int(vectors.shape[1]),
        "embedding_model": "all-MiniLM-L6-v2-onnx-int8"}))


def hits(index: Index, adi, mode: str, query: str) -> list[tuple[str, float]]:
    return [(h.entry.chunk_id, h.score) for h in index.search(adi["queries"][query], mode, 20).hits]


def segments_of(adi, config: RetrievalConfig, analyzer: Analyzer) -> list:
    entries, emb = adi["entries"], adi["embeddings"]
    return [make_segment(entries[lo].file_id, entries[lo:hi], emb[lo:hi], analyzer) for lo, hi in _file_runs(entries)]


@pytest.mark.parametrize("method", ["lucene", "robertson", "atire"])
def test_bm25_from_segments_equals_bm25s(adi, embedder, method):
    config = RetrievalConfig(bm25_method=method)
    entries, emb = adi["entries"], adi["embeddings"]
    terms = Analyzer().analyze_many([e.text for e in entries])
    reference = Index(entries, emb, config, embedder, bm25=_build_bm25(terms, config))
    ours = Index(entries, emb, config, embedder)  # in memory: one segment
    assert ours._segset is not None and reference._segset is None
    queries = list(adi["queries"].values()) + ["computer retrieval retrieval", "zzzunknown"]
    for q in queries:
        w = reference._query_weights(q)
        np.testing.assert_allclose(ours._bm25_scores(w), reference._bm25_scores(w), rtol=1e-6, atol=0)
    assert dict(ours._vocab.items()).keys() - {""} == set(reference._vocab) - {""}
    assert all(ours._terms_of(i) == reference._terms_of(i) for i in range(0, len(entries), 7))


def test_incremental_postings_equal_a_build_from_scratch(adi):
    config = RetrievalConfig()
    segs = segments_of(adi, config, Analyzer())
    base = SegmentSet.of(segs, 1.2, 0.75, "lucene")
    rng = np.random.default_rng(3)
    current = base
    for step in range(4):  # remove some, change some (a new segment in place), add some
        keep = [s for s in current.segments if rng.random() > 0.15]
        changed = {int(i) for i in rng.choice(len(keep), 3, replace=False)}
        fresh = [make_segment(f"{s.id}+{step}", s.entries[::-1], s.vectors[::-1], Analyzer()) if i in changed else s
                 for i, s in enumerate(keep)]
        fresh += [make_segment(f"extra{step}", segs[step].entries, segs[step].vectors, Analyzer())]
        merged = SegmentSet.of(fresh, 1.2, 0.75, "lucene", previous=current)
        scratch = SegmentSet.of(fresh, 1.2, 0.75, "lucene")
        for a, b in ((merged, scratch),):
            pa, pb = a.postings, b.postings
            live = {t: i for t, i in pa.vocab.items() if pa.indptr[i + 1] > pa.indptr[i]}
            assert live.keys() == {t for t, i in pb.vocab.items() if pb.indptr[i + 1] > pb.indptr[i]}
            for t, i in live.items():
                j = pb.vocab[t]
                sa = dict(zip(pa.docs[pa.indptr[i]:pa.indptr[i + 1]].tolist(),
                              a.data[pa.indptr[i]:pa.indptr[i + 1]].tolist()))
                sb = dict(zip(pb.docs[pb.indptr[j]:pb.indptr[j + 1]].tolist(),
                              b.data[pb.indptr[j]:pb.indptr[j + 1]].tolist()))
                assert sa == sb, t
        current = merged


def test_a_version_loaded_from_the_previous_one_ranks_as_a_fresh_build(adi, embedder, tmp_path):
    entries, emb = adi["entries"], adi["embeddings"]
    config = RetrievalConfig()
    runs = _file_runs(entries)
    build_index(entries, emb, config, tmp_path / "v1")
    first = Index.load(tmp_path / "v1", embedder)
    # the next version: the 3rd file removed, the 5th changed (its chunks reversed), one file added at the end
    lo3, hi3 = runs[3]
    lo5, hi5 = runs[5]
    changed = [e.__class__(**{**asdict(e), "text": e.text.upper() + " added words"}) for e in entries[lo5:hi5]]
    new_entries = entries[:lo3] + entries[hi3:lo5] + changed + entries[hi5:]
    new_emb = np.concatenate([emb[:lo3], emb[hi3:lo5], emb[lo5:hi5][::-1], emb[hi5:]])
    writer = IndexWriter(tmp_path / "v2", config, reuse=(tmp_path / "v1",))
    manifest = json.loads((tmp_path / "v1" / "manifest.json").read_text())
    old_ids = [row[0] for row in manifest["segments"]]
    for k, (lo, hi) in enumerate(_file_runs(new_entries)):
        sid = old_ids[k + 1 if k >= 3 else k]
        if k == 4:
            writer.add("changed-5", new_entries[lo:hi], new_emb[lo:hi])
        else:
            assert writer.link(sid)
    writer.finish()
    assert (writer.written, writer.linked) == (1, len(runs) - 2)
    seg_dir = tmp_path / "v2" / "segments"
    linked = [p for p in seg_dir.iterdir() if p.name != "changed-5.seg"]
    assert all(os.path.samefile(p, tmp_path / "v1" / "segments" / p.name) for p in linked)  # links, not copies
    incremental = Index.load(tmp_path / "v2", embedder, previous=first)
    cold = Index.load(tmp_path / "v2", embedder)
    build_index(new_entries, new_emb, config, tmp_path / "fresh")
    fresh = Index.load(tmp_path / "fresh", embedder)
    shared = {s.id for s in first._segset.segments}
    assert all(s is first._segset.by_id()[s.id] for s in incremental._segset.segments if s.id in shared)
    assert [e.chunk_id for e in incremental.entries] == [e.chunk_id for e in new_entries]
    # terms only the removed and the changed file held are gone, as from a fresh build
    assert set(incremental._vocab) == set(fresh._vocab) != set(first._vocab)
    assert len(set(first._vocab) - set(fresh._vocab)) > 0 and len(incremental._segset.postings.terms) > len(fresh._vocab)
    for mode in MODES:
        for q in QUERIES:
            a, b, c = hits(incremental, adi, mode, q), hits(cold, adi, mode, q), hits(fresh, adi, mode, q)
            assert a == b
            assert [x for x, _ in a] == [x for x, _ in c]
            np.testing.assert_allclose([s for _, s in a], [s for _, s in c], rtol=1e-6, atol=1e-9)


def test_format1_indexes_still_load_and_rank_as_format2(adi, embedder, tmp_path):
    config = RetrievalConfig()
    write_format1(tmp_path / "old", adi["entries"], adi["embeddings"], config)
    build_index(adi["entries"], adi["embeddings"], config, tmp_path / "new")
    old, new = Index.load(tmp_path / "old", embedder), Index.load(tmp_path / "new", embedder)
    assert old._segset is None and new._segset is not None
    for mode in MODES:
        for q in QUERIES:
            a, b = hits(old, adi, mode, q), hits(new, adi, mode, q)
            assert [x for x, _ in a] == [x for x, _ in b]
            np.testing.assert_allclose([s for _, s in a], [s for _, s in b], rtol=1e-6, atol=1e-9)
    for directory in ("old", "new"):
        entries, vectors = read_index_data(tmp_path / directory)
        assert [e.chunk_id for e in entries] == [e.chunk_id for e in adi["entries"]]
        np.testing.assert_array_equal(vectors, adi["embeddings"])


def test_a_segment_round_trips_and_a_damaged_one_is_refused(adi, tmp_path):
    build_index(adi["entries"], adi["embeddings"], RetrievalConfig(), tmp_path / "idx")
    first = sorted((tmp_path / "idx" / "segments").iterdir())[0]
    seg = read_segment(first)
    again = make_segment(seg.id, seg.entries, seg.vectors, Analyzer())
    assert seg.terms == again.terms and seg.entries == again.entries
    for name in ("vectors", "tokens", "tok_ptr", "post_ptr", "post_doc", "post_tf", "doc_len"):
        np.testing.assert_array_equal(getattr(seg, name), getattr(again, name))
    first.write_bytes(b"garbage" * 10)
    with pytest.raises(ValueError, match="not an index segment"):
        Index.load(tmp_path / "idx", None)
    with pytest.raises(ValueError, match="no entries"):
        IndexWriter(tmp_path / "empty", RetrievalConfig()).finish()
