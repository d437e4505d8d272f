"""Passage batching: one length sort over everything given, ONNX calls cut by a token budget
(padding measured with the tokenizer, so exactly), and the onnxruntime settings."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

import llamaeval
from llamaeval.engine import ChunkingConfig, Embedder, chunk_document, parse_document
from llamaeval.engine._embed import plan_batches


def test_plan_batches_sorts_longest_first_and_keeps_each_call_within_the_budget():
    plan = plan_batches([3, 10, 7, 7, 2, 30], batch_tokens=20)
    assert [b.tolist() for b in plan.batches] == [[5], [1, 2], [3, 0], [4]]
    # the 30-token passage goes alone (over budget); then 2 rows of width 10, 2 of 7, 1 of 2
    assert plan.real_tokens == 59 and plan.fed_tokens == 30 + 20 + 14 + 2
    assert plan.padding == pytest.approx(1 - 59 / 66)
    assert [len(b) for b in plan_batches([5] * 10, batch_tokens=100, max_rows=4).batches] == [4, 4, 2]
    assert plan_batches([], 10).batches == () and plan_batches([], 10).padding == 0.0
    with pytest.raises(ValueError, match="batch_tokens"):
        plan_batches([1], 0)


def _cranfield_chunks(embedder: Embedder, n_docs: int) -> tuple[list[str], list[int]]:
    """The first ``n_docs`` bundled Cranfield documents cut as the server does by default: chunk
    texts and the number of chunks per document (read straight from the bundled file)."""
    from llamaeval.datasets._ingest import document_content

    path = Path(llamaeval.__file__).parent / "datasets" / "_bundled" / "cranfield" / "corpus.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        docs = [json.loads(line) for _, line in zip(range(n_docs), fh)]
    texts, per_doc = [], []
    for i, doc in enumerate(docs):
        content = document_content(doc["title"], doc["text"])
        if not content:
            continue
        chunks = chunk_document(parse_document(content.encode(), f"{i}.txt"), ChunkingConfig(), embedder)
        texts += [c.text for c in chunks]
        per_doc.append(len(chunks))
    return texts, per_doc


def test_padding_over_a_real_corpus_is_under_5_percent_of_the_tokens_fed(embedder):
    texts, per_doc = _cranfield_chunks(embedder, 700)  # half the corpus: ~900 chunks, as in one small sync
    assert len(texts) > 850
    plan = embedder.plan_passages(texts)
    assert plan.padding <= 0.05, plan.padding
    assert sorted(np.concatenate(plan.batches).tolist()) == list(range(len(texts)))
    lengths = [min(len(e.ids), embedder.max_passage_tokens)
               for e in embedder.tokenizer.encode_batch(texts, add_special_tokens=True)]
    assert plan.real_tokens == sum(lengths)
    widths = [max(lengths[i] for i in b) for b in plan.batches]
    assert widths == sorted(widths, reverse=True)
    assert all(len(b) * w <= embedder.batch_tokens for b, w in zip(plan.batches, widths))
    # the former plan: pools of 32 files or 128 chunks, each sorted, cut every 32 passages
    real = fed = 0
    pool: list[int] = []
    files = start = 0
    for n in per_doc + [0]:
        if n:
            pool += lengths[start:start + n]
            start += n
            files += 1
        if files >= 32 or len(pool) >= 128 or (not n and pool):
            old = plan_batches(pool, batch_tokens=10 ** 9, max_rows=32)
            real, fed = real + old.real_tokens, fed + old.fed_tokens
            pool, files = [], 0
    assert real == plan.real_tokens and 1 - real / fed > 0.2  # what the issue measured: ~23% of tokens fed


def test_batches_cover_every_passage_once_and_give_the_vectors_of_one_call(embedder):
    texts = [f"passage {i} about wings " * (1 + i % 9) for i in range(18)]
    small = Embedder(batch_tokens=64)
    before = small.stats()
    seen = []
    for idx, vectors in small.iter_passage_batches(texts):
        assert vectors.shape == (len(idx), small.dimensions)
        seen += idx.tolist()
    assert sorted(seen) == list(range(len(texts)))
    after = small.stats()
    plan = small.plan_passages(texts)
    assert after["calls"] - before["calls"] == len(plan.batches) > 3
    assert after["fed_tokens"] - before["fed_tokens"] == plan.fed_tokens
    assert np.allclose(small.embed_passages(texts), embedder.embed_passages(texts), atol=1e-4)


def test_onnxruntime_settings_are_validated_and_each_mode_embeds_alike(embedder):
    for bad in ({"arena": "sometimes"}, {"spinning": "yes"}, {"batch_tokens": 0}, {"num_threads": 0}):
        with pytest.raises(ValueError):
            Embedder(**bad)
    texts = ["Laminar boundary layers on swept wings.", "Heat transfer at hypersonic speed."]
    reference = embedder.embed_passages(texts)
    for settings in ({"arena": "keep", "spinning": True}, {"arena": "off"}):
        assert np.allclose(Embedder(**settings).embed_passages(texts), reference, atol=1e-5)
    assert len(embedder.version) == 16 and embedder.version == Embedder().version
