"""Chunking offsets and overlap; embedder sanity."""

from __future__ import annotations

import numpy as np
import pytest

from llamaeval.engine import ChunkingConfig, ParsedDocument, chunk_document

TEXT = " ".join(f"token{i} and some filler words." for i in range(120))


def test_chunks_cover_text_with_exact_offsets(embedder):
    doc = ParsedDocument(text=TEXT)
    chunks = chunk_document(doc, ChunkingConfig(chunk_size=50, chunk_overlap=10), embedder)
    assert len(chunks) > 5
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert doc.text[c.start_char:c.end_char] == c.text
        assert embedder.count_tokens(c.text) <= 50
        # windows snap to word starts: a chunk never starts inside a word
        assert c.start_char == 0 or doc.text[c.start_char - 1] == " "
    assert chunks[0].start_char == 0 and chunks[-1].end_char == len(doc.text)


def test_neighbours_overlap_by_about_chunk_overlap(embedder):
    doc = ParsedDocument(text=TEXT)
    chunks = chunk_document(doc, ChunkingConfig(chunk_size=50, chunk_overlap=10), embedder)
    for a, b in zip(chunks, chunks[1:]):
        assert b.start_char < a.end_char  # they overlap
        shared = doc.text[b.start_char:a.end_char]
        assert 5 <= embedder.count_tokens(shared) <= 12
    no_overlap = chunk_document(doc, ChunkingConfig(chunk_size=50, chunk_overlap=0), embedder)
    for a, b in zip(no_overlap, no_overlap[1:]):
        assert b.start_char >= a.end_char
    assert len(no_overlap) < len(chunks)


def test_short_document_is_one_chunk(embedder):
    chunks = chunk_document(ParsedDocument(text="just a few words"), ChunkingConfig(), embedder)
    assert [(c.text, c.start_char, c.end_char) for c in chunks] == [("just a few words", 0, 16)]


def test_chunking_config_validation_and_round_trip():
    cfg = ChunkingConfig.from_dict({"chunk_size": 128})
    assert cfg.to_dict() == {"chunk_size": 128, "chunk_overlap": 32}
    with pytest.raises(ValueError, match="chunk_sise"):
        ChunkingConfig.from_dict({"chunk_sise": 10})
    with pytest.raises(ValueError, match="chunk_overlap"):
        ChunkingConfig(chunk_size=64, chunk_overlap=40)
    with pytest.raises(ValueError, match="chunk_size"):
        ChunkingConfig(chunk_size=4096)
    with pytest.raises(ValueError, match="integer"):
        ChunkingConfig(chunk_size="256")


def test_embeddings_are_normalised_and_meaningful(embedder):
    v = embedder.embed_passages([
        "The cat sat on the mat.",
        "A kitten was sitting on the rug.",
        "Quarterly revenue grew by ten percent.",
    ])
    assert v.shape == (3, embedder.dimensions) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    sims = v @ v.T
    assert sims[0, 1] > 0.5 > sims[0, 2] + 0.3
    q = embedder.embed_query("where is the cat sitting")
    assert q.shape == (embedder.dimensions,)
    assert q @ v[0] > q @ v[2]


def test_passage_truncation_is_256_not_128(embedder):
    # the tokenizer file truncates at 128; passages must see up to 256 word pieces
    head = " ".join(["aircraft wing"] * 70)          # ~140 word pieces
    tail = " ".join(["chocolate cake recipe"] * 30)  # changes the embedding only if read
    a, b = embedder.embed_passages([head, head + " " + tail])
    assert embedder.count_tokens(head) > 128
    assert float(a @ b) < 0.99
    long_head = " ".join(["aircraft wing"] * 150)  # ~300 word pieces
    same = embedder.embed_passages([long_head + " x y z", long_head + " chocolate cake"])
    assert np.allclose(same[0], same[1], atol=1e-6)  # beyond 256 pieces nothing more is read


def test_batching_does_not_change_vectors(embedder):
    texts = [f"sentence number {i} " * (i % 7 + 1) for i in range(40)]
    full = embedder.embed_passages(texts)
    one = np.stack([embedder.embed_passages([t])[0] for t in texts[:5]])
    assert np.allclose(full[:5], one, atol=1e-4)
    assert embedder.embed_passages([]).shape == (0, embedder.dimensions)
