"""Chunks and vectors in PostgreSQL (pgvector): stored and read back exactly, searched exactly and
through a per-version HNSW index, removed with their version."""

from __future__ import annotations

import numpy as np
import pytest

from llamaeval.engine import IndexEntry
from llamaeval.server._vectors import DIMENSIONS, ChunkVectors


def _unit(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIMENSIONS)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _entries(n: int, prefix: str) -> list[IndexEntry]:
    return [IndexEntry(chunk_id=f"{prefix}{i}:0", file_id=f"{prefix}{i}", file_name=f"{prefix}{i}.txt",
                       chunk_index=0, start_char=0, end_char=5, text=f"text {i} é", title=None if i % 2 else "T",
                       metadata={"doc_id": str(i), "z": 1, "a": [1.5]}) for i in range(n)]


def test_chunks_round_trip_and_search_exact_and_approximate(new_database):
    store = ChunkVectors(new_database())
    vectors, other = _unit(400, 1), _unit(50, 2)
    assert store.store("p1", "v1", _entries(400, "d"), vectors) == 400
    store.store("p2", "v1", _entries(50, "o"), other)  # another pipeline: never in p1's answers
    entries, back = store.load("p1", "v1")
    assert entries == _entries(400, "d") and list(entries[0].metadata) == ["doc_id", "z", "a"]
    assert np.array_equal(back, vectors)  # float32 exactly
    queries = _unit(20, 3)
    hits_total = 0
    for q in queries:
        truth = np.argsort(-(vectors @ q), kind="stable")[:10]
        exact = store.nearest("p1", "v1", q, 10, exact=True)
        assert [p for p, _ in exact] == list(truth)
        assert np.allclose([s for _, s in exact], (vectors @ q)[truth], atol=1e-5)
    assert not store.uses_ann("p1", "v1")
    store.build_ann("p1", "v1")
    assert store.uses_ann("p1", "v1") and not store.uses_ann("p2", "v1")  # one partial index per version
    for q in queries:
        truth = set(np.argsort(-(vectors @ q))[:10].tolist())
        approx = store.nearest("p1", "v1", q, 10)
        assert len(approx) == 10 and all(0 <= p < 400 for p, _ in approx)
        hits_total += len(truth & {p for p, _ in approx})
    assert hits_total / (10 * len(queries)) >= 0.9  # HNSW recall@10 on 400 vectors, ef_search 100
    with pytest.raises(ValueError, match="385 dimensions cannot be stored"):
        store.store("p1", "v2", _entries(400, "d"), np.hstack([vectors, vectors[:, :1]]))
    store.store("p1", "v2", _entries(3, "n"), vectors[:3])
    store.drop("p1", keep={"v2"})
    assert store.count("p1", "v1") == 0 and store.count("p1", "v2") == 3 and store.count("p2", "v1") == 50


def test_a_narrower_model_is_stored_zero_padded_and_ranks_the_same(new_database):
    """The static model's 256-dimension vectors in the 384-wide column: read back exactly, ranked
    exactly as their inner products rank them (padding changes neither norm nor inner product)."""
    store = ChunkVectors(new_database())
    v = np.random.default_rng(4).standard_normal((60, 256)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    store.store("p", "v1", _entries(60, "s"), v)
    _, back = store.load("p", "v1", dimensions=256)
    assert back.shape == (60, 256) and np.array_equal(back, v)
    assert np.array_equal(store.load("p", "v1")[1][:, 256:], np.zeros((60, DIMENSIONS - 256), np.float32))
    q = v[7] + 0.3 * v[11]
    q /= np.linalg.norm(q)
    truth = np.argsort(-(v @ q), kind="stable")[:5]
    exact = store.nearest("p", "v1", q, 5, exact=True)
    assert [p for p, _ in exact] == list(truth) and np.allclose([s for _, s in exact], (v @ q)[truth], atol=1e-5)

