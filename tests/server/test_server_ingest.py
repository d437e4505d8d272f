"""The sync's embedding step, in process (no HTTP): chunks of a whole sync length-sorted into
token-budget batches, files completing as their last chunk is embedded, chunk progress on the
job, cancellation between batches, and the embedding cache (per account, bounded)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from llamaeval.engine import Embedder
from llamaeval.server import ServerConfig, SQLiteStorage
from llamaeval.server._config import DataLayout
from llamaeval.server._embedding_cache import ENTRY_OVERHEAD, EmbeddingCache
from llamaeval.server._services import Services
from llamaeval.server._sync import CANCELLED, IndexCache, SyncService


class CountingEmbedder:
    """The real embedder, recording every batch of passages it is asked to embed; ``on_batch``
    (if set) runs after each batch, before the sync sees it."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.batches: list[list[str]] = []
        self.on_batch: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def iter_passage_batches(self, texts: list[str]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for idx, vectors in self.inner.iter_passage_batches(texts):
            self.batches.append([texts[i] for i in idx])
            if self.on_batch is not None:
                self.on_batch(len(self.batches))
            yield idx, vectors

    @property
    def embedded(self) -> int:
        return sum(len(b) for b in self.batches)


@pytest.fixture(scope="module")
def real_embedder() -> Embedder:
    return Embedder(batch_tokens=256).load()  # a small budget: a few documents make several calls


@pytest.fixture(scope="module")
def adi_docs() -> list[tuple[str, bytes]]:
    """The first 14 bundled adi documents as (file name, content) — two of them twice over."""
    from llamaeval import load_queryset
    from llamaeval.datasets._ingest import document_content

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        corpus = load_queryset("adi").corpus.head(12)
    docs = [(f"adi-{d}.txt", document_content(t, x).encode()) for d, t, x in
            zip(corpus["doc_id"], corpus["title"], corpus["text"])]
    return docs + [("copy-a.txt", docs[0][1]), ("copy-b.txt", docs[1][1])]


class Harness:
    """Services and a sync service over SQLite in ``tmp``; jobs run in the test's thread."""

    def __init__(self, tmp: Path, embedder: CountingEmbedder, cache_mb: float = 64) -> None:
        self.config = ServerConfig(data_dir=tmp)
        self.layout = DataLayout(self.config.data_dir)
        self.layout.create()
        self.storage = SQLiteStorage(self.layout.db_path)
        self.embedder = embedder
        indexes = IndexCache(self.layout, embedder)
        self.cache = EmbeddingCache.in_data_dir(tmp, cache_mb) if cache_mb else None
        self.sync = SyncService(self.storage, self.layout, self.config, embedder, indexes, embed_cache=self.cache)
        self.services = Services(config=self.config, storage=self.storage, layout=self.layout, embedder=embedder,
                                 indexes=indexes, sync=self.sync)

    def account(self) -> str:
        return self.storage.create_account("a").id

    def pipeline(self, acct: str, docs: list[tuple[str, bytes]], chunking: dict | None = None) -> str:
        project = self.services.create_project(acct, "p").id
        files = [self.services.store_bytes(acct, project, name, data, "text/plain") for name, data in docs]
        pipeline = self.services.create_pipeline(acct, project, "p", chunking_config=chunking)
        self.services.add_files(acct, pipeline.id, [(f.id, None) for f in files])
        return pipeline.id

    def sync_now(self, acct: str, pipeline_id: str) -> Any:
        job = self.services.request_sync(acct, pipeline_id)
        self.sync._run(self.storage.get_job(job.id))
        return self.storage.get_job(job.id)

    def vectors(self, pipeline_id: str) -> dict[str, np.ndarray]:
        """File name -> its chunk vectors on disk."""
        return {pf.name: np.load(self.layout.chunks_paths(pipeline_id, pf.file_id)[1])
                for pf in self.storage.list_pipeline_files(pipeline_id) if pf.status == "completed"}

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
        self.storage.close()


@pytest.fixture()
def harness(tmp_path: Path, real_embedder: Embedder) -> Iterator[Harness]:
    h = Harness(tmp_path, CountingEmbedder(real_embedder))
    yield h
    h.close()


def test_a_sync_embeds_all_its_chunks_longest_first_in_token_budget_batches(harness, adi_docs):
    acct = harness.account()
    pid = harness.pipeline(acct, adi_docs)
    snapshots: list[tuple[int, int, int]] = []
    harness.embedder.on_batch = lambda n: snapshots.append(
        (lambda j: (j.num_chunks_total, j.num_chunks_done, j.num_processed))(harness.storage.list_jobs(pid)[-1]))
    job = harness.sync_now(acct, pid)
    assert job.status == "completed" and job.num_failed == 0, job
    files = harness.storage.list_pipeline_files(pid)
    total = sum(pf.num_chunks for pf in files)
    assert job.num_chunks == total and all(pf.status == "completed" for pf in files)
    # one sort over the whole sync: batch widths never grow, every call within the token budget
    tok = harness.embedder.inner
    widths = [max(min(len(e.ids), tok.max_passage_tokens) for e in tok.tokenizer.encode_batch(b))
              for b in harness.embedder.batches]
    assert len(widths) > 3 and widths == sorted(widths, reverse=True)
    assert all(len(b) * w <= tok.batch_tokens for b, w in zip(harness.embedder.batches, widths))
    # the two copies' chunks are embedded once
    distinct = {t for b in harness.embedder.batches for t in b}
    assert harness.embedder.embedded == len(distinct) == total - files[-1].num_chunks - files[-2].num_chunks
    # progress: the total is known before the first batch, done grows batch by batch to it
    assert snapshots[0][0] == total and [s[0] for s in snapshots] == [total] * len(snapshots)
    done = [s[1] for s in snapshots]
    assert done == sorted(done) and done[0] < total
    assert (job.num_chunks_total, job.num_chunks_done, job.num_chunks_cached) == (total, total, 0)
    # each file's vectors are those of its own chunks
    vectors = harness.vectors(pid)
    assert {name: v.shape for name, v in vectors.items()} == {pf.name: (pf.num_chunks, 384) for pf in files}
    assert np.array_equal(vectors["copy-a.txt"], vectors[adi_docs[0][0]])
    for name, content in adi_docs[:12]:  # adi documents are one chunk each, the whole text
        assert np.allclose(vectors[name][0], tok.embed_passages([content.decode().strip()])[0], atol=1e-3)


def test_files_complete_window_by_window_and_a_cancel_stops_between_batches(harness, adi_docs):
    acct = harness.account()
    pid = harness.pipeline(acct, adi_docs[:10])
    harness.sync.WINDOW_CHUNKS = 4  # several windows: files complete before the sync ends
    completed_at_cancel: list[int] = []

    def cancel_late(n: int) -> None:
        statuses = [pf.status for pf in harness.storage.list_pipeline_files(pid)]
        if statuses.count("completed") >= 3 and not completed_at_cancel:
            completed_at_cancel.append(statuses.count("completed"))
            harness.sync.cancel(harness.storage.get_pipeline_any(pid))

    harness.embedder.on_batch = cancel_late
    job = harness.sync_now(acct, pid)
    assert job.status == "failed" and job.error == CANCELLED, job
    statuses = [pf.status for pf in harness.storage.list_pipeline_files(pid)]
    assert "processing" not in statuses and "error" not in statuses
    assert 3 <= statuses.count("completed") < 10 and job.num_processed == statuses.count("completed")
    assert 0 < job.num_chunks_done < job.num_chunks_total
    # the next sync finishes only what is left, and reuses the chunks of completed files
    harness.embedder.on_batch = None
    again = harness.sync_now(acct, pid)
    assert again.status == "completed" and again.num_files == statuses.count("pending")
    assert [pf.status for pf in harness.storage.list_pipeline_files(pid)] == ["completed"] * 10


def test_cancelling_a_queued_sync_settles_the_pipeline(harness, adi_docs):
    acct = harness.account()
    pid = harness.pipeline(acct, adi_docs[:2])
    queued = harness.services.request_sync(acct, pid)  # nothing runs it: still pending when cancelled
    assert harness.storage.get_pipeline_any(pid).status == "syncing"
    assert harness.sync.cancel(harness.storage.get_pipeline_any(pid)) == 1
    assert harness.storage.get_job(queued.id).error == CANCELLED
    assert harness.storage.get_pipeline_any(pid).status == "idle"  # no index yet, nothing waiting
    assert harness.sync_now(acct, pid).status == "completed"
    harness.services.request_sync(acct, pid)
    harness.sync.cancel(harness.storage.get_pipeline_any(pid))
    assert harness.storage.get_pipeline_any(pid).status == "active"  # its index is still served


def test_a_second_pipeline_over_the_same_files_embeds_nothing_and_gets_the_same_vectors(harness, adi_docs):
    acct = harness.account()
    first = harness.pipeline(acct, adi_docs)
    assert harness.sync_now(acct, first).status == "completed"
    embedded_first = harness.embedder.embedded
    assert embedded_first > 0
    second = harness.pipeline(acct, adi_docs)
    job = harness.sync_now(acct, second)
    assert job.status == "completed" and harness.embedder.embedded == embedded_first  # 0 chunks embedded
    assert job.num_chunks_cached == job.num_chunks_total == job.num_chunks_done == job.num_chunks > 0
    a, b = harness.vectors(first), harness.vectors(second)
    assert a.keys() == b.keys() and all(np.array_equal(a[name], b[name]) for name in a)
    # a chunk-size change re-cuts the files: only chunks never seen before are embedded
    small = harness.pipeline(acct, adi_docs, chunking={"chunk_size": 48, "chunk_overlap": 8})
    before = harness.embedder.embedded
    job = harness.sync_now(acct, small)
    texts = {json_text for pf in harness.storage.list_pipeline_files(small)
             for json_text in _chunk_texts(harness, small, pf.file_id)}
    seen = {json_text for p in (first,) for pf in harness.storage.list_pipeline_files(p)
            for json_text in _chunk_texts(harness, p, pf.file_id)}
    assert harness.embedder.embedded - before == len(texts - seen) > 0
    assert job.num_chunks_cached == sum(1 for pf in harness.storage.list_pipeline_files(small)
                                        for t in _chunk_texts(harness, small, pf.file_id) if t in seen) > 0
    # another account finds nothing of the first's: it embeds every chunk itself
    other = harness.storage.create_account("b").id
    theirs = harness.pipeline(other, adi_docs[:5])
    before = harness.embedder.embedded
    job = harness.sync_now(other, theirs)
    assert job.num_chunks_cached == 0 and harness.embedder.embedded - before == job.num_chunks_total > 0
    stats = harness.cache.stats()
    assert stats["entries"] == embedded_first + len(texts - seen) + job.num_chunks_total


def _chunk_texts(harness: Harness, pipeline_id: str, file_id: str) -> list[str]:
    import json

    record = json.loads(harness.layout.chunks_paths(pipeline_id, file_id)[0].read_text("utf-8"))
    return [c["text"] for c in record["chunks"]]


def test_the_cache_stays_within_its_budget_dropping_the_least_recently_used(tmp_path):
    cache = EmbeddingCache(tmp_path / "c.sqlite", budget_bytes=3 * (384 * 4 + ENTRY_OVERHEAD), dimensions=384)
    keys = EmbeddingCache.keys("acct", "model@v/max256", [f"text {i}" for i in range(5)])
    assert len(set(keys)) == 5 and keys != EmbeddingCache.keys("other", "model@v/max256", [f"text {i}" for i in range(5)])
    vectors = np.random.default_rng(0).random((5, 384), dtype=np.float32)
    cache.put_many(keys[:3], vectors[:3])
    assert set(cache.get_many([keys[0]])) == {0}  # key 0 is now the most recently used
    cache.put_many(keys[3:5], vectors[3:5])  # two over: keys 1 and 2 go
    got = cache.get_many(keys)
    assert sorted(got) == [0, 3, 4] and np.array_equal(got[4], vectors[4])
    assert cache.stats()["entries"] == 3 and cache.stats()["evictions"] == 2
    cache.close()
    reopened = EmbeddingCache(tmp_path / "c.sqlite", budget_bytes=10 ** 6)
    assert reopened.stats()["entries"] == 3 and sorted(reopened.get_many(keys)) == [0, 3, 4]
    reopened.close()
    (tmp_path / "c.sqlite").write_bytes(b"not a database" * 100)  # damaged: replaced by an empty one
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"c.sqlite{suffix}").unlink(missing_ok=True)
    fresh = EmbeddingCache(tmp_path / "c.sqlite", budget_bytes=10 ** 6)
    assert fresh.stats()["entries"] == 0 and fresh.get_many(keys) == {}
    fresh.close()


def test_the_cache_budget_setting(monkeypatch, tmp_path):
    from llamaeval._errors import ConfigurationError
    from llamaeval.server._embedding_cache import DEFAULT_EMBED_CACHE_MB, cache_budget_from_env

    monkeypatch.delenv("LLAMAEVAL_EMBED_CACHE_MB", raising=False)
    assert cache_budget_from_env() == DEFAULT_EMBED_CACHE_MB * 1024 * 1024
    monkeypatch.setenv("LLAMAEVAL_EMBED_CACHE_MB", "0")
    assert EmbeddingCache.in_data_dir(tmp_path) is None
    monkeypatch.setenv("LLAMAEVAL_EMBED_CACHE_MB", "lots")
    with pytest.raises(ConfigurationError, match="LLAMAEVAL_EMBED_CACHE_MB"):
        cache_budget_from_env()


def test_the_client_follows_chunks_done_and_total_end_to_end(server, adi_docs):
    import argparse

    from llamaeval import LlamaCloud
    from llamaeval.cli import _bench

    with LlamaCloud(api_key=server.api_key, base_url=server.base_url) as lc:
        project = lc.projects.create("progress").id
        pipe = lc.pipelines.create("progress", project)
        files = [lc.files.upload(data.replace(b"\n", b" [progress]\n", 1), project_id=project, name=name)
                 for name, data in adi_docs[:6]]
        lc.pipelines.files.add(pipe.id, [{"file_id": str(f.id)} for f in files])
        job = lc.pipelines.sync(pipe.id)
        seen: list[Any] = []
        done = lc.pipelines.wait_for_sync(pipe.id, job_id=str(job.id), poll_interval=0.05, progress=True,
                                          on_progress=seen.append)
    final = done.progress
    assert final["files"] == final["files_done"] == 6 and final["chunks"] == final["chunks_done"] >= 6
    assert seen[-1].progress == final
    beat = _bench._heartbeat(argparse.Namespace(quiet=True), "ingesting adi")
    beat.t0 = 0.0
    beat.observe(seen[-1])
    line = beat.line()
    assert f"{final['chunks']}/{final['chunks']} chunks embedded (100%)" in line and "files 6/6" in line
