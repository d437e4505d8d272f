"""Incremental index versions through the sync (in process, SQLite): a sync of one changed file
writes one segment and hard-links the rest, removals and changes leave exactly the right
segments, the result ranks as a full build of the same documents, a format 1 index left by an
older server is still served (and replaced at the next sync), and a build that dies halfway
leaves the served version whole."""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from llamaeval.engine import MODES, Embedder, IndexWriter, RetrievalConfig
from llamaeval.engine._index import read_index_data
from llamaeval.server import ServerConfig, SQLiteStorage
from llamaeval.server._config import DataLayout
from llamaeval.server._embedding_cache import EmbeddingCache
from llamaeval.server._services import Services
from llamaeval.server._sync import IndexCache, SyncService

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))
from test_segments import write_format1  # noqa: E402

QUERIES = ("what is information retrieval", "indexing of documents", "computer systems")


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder().load()


@pytest.fixture(scope="module")
def docs() -> list[tuple[str, str]]:
    """(document id, text) of 16 bundled adi documents."""
    from llamaeval import load_queryset
    from llamaeval.datasets._ingest import document_content

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        corpus = load_queryset("adi").corpus.head(16)
    return [(str(d), document_content(t, x)) for d, t, x in zip(corpus["doc_id"], corpus["title"], corpus["text"])]


class Harness:
    """Services and a sync service over SQLite in ``tmp``; jobs run in the test's thread."""

    def __init__(self, tmp: Path, embedder: Embedder) -> None:
        self.config = ServerConfig(data_dir=tmp)
        self.layout = DataLayout(self.config.data_dir)
        self.layout.create()
        self.storage = SQLiteStorage(self.layout.db_path)
        self.indexes = IndexCache(self.layout, embedder)
        self.cache = EmbeddingCache.in_data_dir(tmp, 16)  # a second pipeline gets the very same vectors
        self.sync = SyncService(self.storage, self.layout, self.config, embedder, self.indexes, embed_cache=self.cache)
        self.services = Services(config=self.config, storage=self.storage, layout=self.layout, embedder=embedder,
                                 indexes=self.indexes, sync=self.sync)
        self.acct = self.storage.create_account("a").id
        self.project = self.services.create_project(self.acct, "p").id

    def pipeline(self, docs: list[tuple[str, str]]) -> str:
        pid = self.services.create_pipeline(self.acct, self.project, "p",
                                            chunking_config={"chunk_size": 64, "chunk_overlap": 8}).id
        self.upsert(pid, docs)
        return pid

    def upsert(self, pid: str, docs: list[tuple[str, str]]) -> None:
        self.services.upsert_documents(self.acct, pid, [(d, text, {"doc": d}) for d, text in docs])

    def sync_now(self, pid: str) -> Any:
        job = self.services.request_sync(self.acct, pid)
        self.sync._run(self.storage.get_job(job.id))
        job = self.storage.get_job(job.id)
        assert job.status == "completed", job.error
        return job

    def version_dir(self, pid: str) -> Path:
        return self.layout.index_dir(pid, self.storage.get_pipeline_any(pid).index_version)

    def segments(self, pid: str) -> dict[str, Path]:
        return {p.stem: p for p in (self.version_dir(pid) / "segments").iterdir()}

    def index(self, pid: str) -> Any:
        return self.indexes.get(pid, self.storage.get_pipeline_any(pid).index_version)

    def close(self) -> None:
        self.cache.close()
        self.storage.close()


@pytest.fixture()
def harness(tmp_path: Path, embedder: Embedder) -> Iterator[Harness]:
    h = Harness(tmp_path, embedder)
    yield h
    h.close()


def ranking(index: Any, mode: str, query: str) -> list[tuple[str, int, float]]:
    return [(h.entry.metadata["doc"], h.entry.chunk_index, round(h.score, 9))
            for h in index.search(query, mode, 15).hits]


def test_one_file_syncs_write_one_segment_and_rank_as_a_full_build(harness, docs):
    pid = harness.pipeline(docs[:12])
    harness.sync_now(pid)
    before = harness.segments(pid)
    first = harness.index(pid)
    assert len(before) == 12 and first._segset is not None
    # add one document: one segment written, the 12 others hard links to the previous version's
    harness.upsert(pid, [docs[12]])
    harness.sync_now(pid)
    after = harness.segments(pid)
    new = set(after) - set(before)
    assert len(new) == 1 and set(before) <= set(after)
    assert all(os.path.samefile(after[s], before[s]) for s in before)
    index = harness.index(pid)
    reused = first._segset.by_id()
    assert sum(s is reused.get(s.id) for s in index._segset.segments) == 12  # in memory too: not read again
    # change one document's text: its old segment leaves the version, one new one comes in
    harness.upsert(pid, [(docs[3][0], docs[13][1] + "\n\nRevised.")])
    harness.sync_now(pid)
    changed = harness.segments(pid)
    assert len(set(changed) - set(after)) == 1 and len(set(after) - set(changed)) == 1 and len(changed) == 13
    # remove one: nothing written, one segment fewer
    harness.services.delete_document(harness.acct, pid, docs[7][0])
    harness.sync_now(pid)
    removed = harness.segments(pid)
    assert set(removed) < set(changed) and len(removed) == 12
    entries, _ = read_index_data(harness.version_dir(pid))
    assert docs[7][0] not in {e.metadata["doc"] for e in entries}
    assert harness.storage.get_pipeline_any(pid).num_chunks == len(entries)
    incremental = harness.index(pid)
    # the same documents in the same order, synced once into a new pipeline: the same rankings
    final = [(d, docs[13][1] + "\n\nRevised." if d == docs[3][0] else t) for d, t in docs[:13] if d != docs[7][0]]
    fresh_pid = harness.pipeline(final)
    harness.sync_now(fresh_pid)
    fresh = harness.index(fresh_pid)
    assert fresh._segset.segments[0] is not incremental._segset.segments[0]
    for mode in MODES:
        for q in QUERIES:
            assert ranking(incremental, mode, q) == ranking(fresh, mode, q)


def _ann_pipeline(harness: Harness, monkeypatch: Any, name: str) -> tuple[str, list[int]]:
    """A pipeline past its ``ann_threshold`` (1 chunk) and the list that grows by one per HNSW
    graph built from scratch."""
    from llamaeval.engine import _dense

    builds: list[int] = []
    build = _dense._Graph.build.__func__
    monkeypatch.setattr(_dense._Graph, "build", classmethod(lambda cls, *a: builds.append(1) or build(cls, *a)))
    pid = harness.services.create_pipeline(harness.acct, harness.project, name,
                                           chunking_config={"chunk_size": 64, "chunk_overlap": 8},
                                           retrieval_config={"ann_threshold": 1}).id
    return pid, builds


def _ranks_as_exact(ann: Any, exact: Any) -> None:
    """The graph finds every chunk an exact scan finds (a small collection); cosines are
    recomputed per pool, hence float rounding."""
    for q in QUERIES:
        got, want = ranking(ann, "fast", q), ranking(exact, "fast", q)
        assert [g[:2] for g in got] == [w[:2] for w in want]
        assert np.allclose([g[2] for g in got], [w[2] for w in want], atol=1e-6)


def test_a_version_past_the_ann_threshold_keeps_its_graph_and_ranks_as_exact(harness, docs, monkeypatch):
    pid, builds = _ann_pipeline(harness, monkeypatch, "ann")
    harness.upsert(pid, docs[:9])
    harness.sync_now(pid)
    assert len(builds) == 1 and (harness.version_dir(pid) / "dense.usearch").is_file()
    harness.upsert(pid, [docs[9]])  # a file appended: the previous graph plus its chunks, no new build
    harness.sync_now(pid)
    assert len(builds) == 1 and (harness.version_dir(pid) / "dense.usearch").is_file()
    assert harness.index(pid)._dense.graph().size == harness.storage.get_pipeline_any(pid).num_chunks
    exact_pid = harness.pipeline(docs[:10])
    harness.sync_now(exact_pid)
    assert not (harness.version_dir(exact_pid) / "dense.usearch").exists()  # below the threshold: none
    ann, exact = harness.index(pid), harness.index(exact_pid)
    assert ann._dense.approximate and not exact._dense.approximate
    _ranks_as_exact(ann, exact)


def test_a_change_or_removal_past_the_ann_threshold_updates_the_graph_instead_of_rebuilding(
        harness, docs, embedder, monkeypatch):
    pid, builds = _ann_pipeline(harness, monkeypatch, "ann-churn")
    harness.upsert(pid, docs[:12])
    harness.sync_now(pid)
    first = harness.index(pid)._dense.graph()
    assert len(builds) == 1 and first.removed == 0
    changed = (docs[3][0], docs[13][1] + "\n\nRevised.")
    harness.upsert(pid, [changed])  # a file changed: its old chunks out, its new ones in
    harness.sync_now(pid)
    harness.services.delete_document(harness.acct, pid, docs[7][0])  # a file removed
    harness.sync_now(pid)
    assert len(builds) == 1  # both syncs updated the previous graph
    index = harness.index(pid)
    graph = index._dense.graph()
    n = harness.storage.get_pipeline_any(pid).num_chunks
    assert graph.size == n == graph.keys.size == index.num_chunks
    assert graph.removed > 0 and graph.keys.max() >= n  # surviving chunks kept their keys, new ones fresh
    assert (harness.version_dir(pid) / "dense.keys.npy").is_file()
    final = [changed if d == docs[3][0] else (d, t) for d, t in docs[:12] if d != docs[7][0]]
    exact_pid = harness.pipeline(final)
    harness.sync_now(exact_pid)
    _ranks_as_exact(index, harness.index(exact_pid))  # every key leads back to its own chunk
    # a restarted server reads the updated graph and its keys instead of building one
    from llamaeval.engine import Index

    reloaded = Index.load(harness.version_dir(pid), embedder)
    assert reloaded._dense.graph().keys.tolist() == graph.keys.tolist() and len(builds) == 1
    assert ranking(reloaded, "fast", QUERIES[0]) == ranking(index, "fast", QUERIES[0])


def test_a_format1_index_is_served_then_replaced_by_segments(harness, docs):
    pid = harness.pipeline(docs[:6])
    harness.sync_now(pid)
    expected = {m: ranking(harness.index(pid), m, QUERIES[0]) for m in MODES}
    # what an older server left: the same chunks in format 1, as the pipeline's current version
    entries, vectors = read_index_data(harness.version_dir(pid))
    old = harness.layout.index_dir(pid, "v-old")
    write_format1(old, entries, vectors, RetrievalConfig.from_dict(
        harness.storage.get_pipeline_any(pid).retrieval_config))
    (old / "inputs.sha256").write_text((harness.version_dir(pid) / "inputs.sha256").read_text())
    harness.storage.update_pipeline(pid, index_version="v-old")
    harness.indexes.drop(pid)
    served = harness.index(pid)
    assert served._segset is None  # read as format 1
    assert {m: ranking(served, m, QUERIES[0]) for m in MODES} == expected
    # the next sync (one file more) writes every segment anew: nothing of the old index is lost
    harness.upsert(pid, [docs[6]])
    harness.sync_now(pid)
    assert json.loads((harness.version_dir(pid) / "manifest.json").read_text())["format_version"] == 2
    assert len(harness.segments(pid)) == 7
    assert harness.storage.get_pipeline_any(pid).num_chunks == len(read_index_data(harness.version_dir(pid))[0])


def test_a_build_that_dies_halfway_leaves_the_served_version_whole(harness, docs, monkeypatch):
    pid = harness.pipeline(docs[:6])
    harness.sync_now(pid)
    version = harness.storage.get_pipeline_any(pid).index_version
    expected = ranking(harness.index(pid), "fast", QUERIES[1])
    seen: list[Any] = []
    real_add = IndexWriter.add

    def add_then_die(self: IndexWriter, *a: Any, **k: Any) -> Any:
        real_add(self, *a, **k)  # the new segment is written ...
        # mid-build: the served version is the previous one, complete, and searchable as before
        current = harness.storage.get_pipeline_any(pid).index_version
        manifest = json.loads((harness.layout.index_dir(pid, current) / "manifest.json").read_text())
        seen.append((current, all((harness.layout.index_dir(pid, current) / "segments" / f"{r[0]}.seg").is_file()
                                  for r in manifest["segments"]), ranking(harness.index(pid), "fast", QUERIES[1])))
        raise RuntimeError("killed mid-build")

    monkeypatch.setattr(IndexWriter, "add", add_then_die)
    harness.upsert(pid, [docs[6]])
    job = harness.services.request_sync(harness.acct, pid)
    harness.sync._run(harness.storage.get_job(job.id))
    assert harness.storage.get_job(job.id).status == "failed"
    assert seen == [(version, True, expected)]
    assert harness.storage.get_pipeline_any(pid).index_version == version
    assert ranking(harness.index(pid), "fast", QUERIES[1]) == expected
    monkeypatch.setattr(IndexWriter, "add", real_add)
    harness.sync_now(pid)  # the next sync completes and the dead build is gone
    assert harness.storage.get_pipeline_any(pid).index_version != version
    assert not [d for d in harness.layout.indexes_dir(pid).iterdir() if d.name.startswith(".build")]
    assert len(harness.segments(pid)) == 7


def test_the_segment_of_a_file_depends_on_what_its_entries_are_made_of():
    from llamaeval.server._storage import PipelineFile

    def sid(config: RetrievalConfig = RetrievalConfig(), **changes: Any) -> str:
        fields = {"pipeline_id": "p", "file_id": "f", "name": "a.txt", "status": "completed", "metadata": {"k": 1},
                  "processed_key": "abc-123"}
        return SyncService._segment_id(PipelineFile(**{**fields, **changes}), config)

    base = sid()
    assert sid(status="completed", num_chunks=3) == base  # bookkeeping does not matter
    for other in (sid(processed_key="abd-123"), sid(name="b.txt"), sid(metadata={"k": 2}), sid(file_id="g")):
        assert other != base
    assert np.unique([base, sid(RetrievalConfig(stemmer="none")), sid(RetrievalConfig(stopwords="none"))]).size == 3
    assert sid(RetrievalConfig(bm25_k1=2.0, dense_weight=0.9)) == base  # scoring parameters are not in it
