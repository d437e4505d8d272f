"""The second stage's term matching, computed for all candidates at once (``Index._match``,
``_min_windows``, ``_feedback_terms``): hand-checked values and a brute-force reference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from llamaeval.engine import Index, IndexEntry, RetrievalConfig
from llamaeval.engine import _index as index_module


def _index(texts: list[str]) -> Index:
    entries = [IndexEntry(chunk_id=f"c{i}", file_id=f"f{i}", file_name=f"f{i}.txt", chunk_index=0, start_char=0,
                          end_char=len(t), text=t) for i, t in enumerate(texts)]
    vectors = np.random.default_rng(0).standard_normal((len(texts), 4)).astype(np.float32)
    return Index(entries, vectors / np.linalg.norm(vectors, axis=1, keepdims=True), RetrievalConfig(), None)


def _match(index: Index, query: str) -> tuple[np.ndarray, ...]:
    cand = np.arange(index.num_chunks)
    q = index._query_match(index._query_weights(query), index._analyzer(query))
    return index._match(cand, q, frozenset())


def test_match_counts_windows_and_phrases_by_hand() -> None:
    index = _index(["wing flow drag drag lift wing", "lift drag flow wing", "wing lift", "drag flow", "wing wing"])
    nterms, tf, coverage, missing, proximity, phrase, _, _ = _match(index, "wing lift")
    assert nterms.tolist() == [6, 4, 2, 2, 2]
    assert tf.tolist() == [[1, 2], [1, 1], [1, 1], [0, 0], [0, 2]]  # columns: lift, wing (sorted)
    # smallest window holding both terms: "lift wing" (2 terms), the whole chunk (4), "wing lift" (2)
    assert proximity.tolist() == [1.0, 0.5, 1.0, 0.0, 0.0]
    assert phrase.tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]  # only chunk 2 has "wing lift" in that order
    assert coverage[:3].tolist() == [1.0, 1.0, 1.0] and coverage[3] == 0.0
    assert missing[:3].tolist() == [0.0, 0.0, 0.0] and missing[3] == 1.0
    # a repeated query term makes the bigram (wing, wing): chunk 4 holds it but only one query term
    *_, phrase, _, _ = _match(index, "wing wing lift")
    assert phrase.tolist() == [0.0, 0.0, 0.5, 0.0, 0.0]


def _reference_window(terms: list[str], present: set[str]) -> int:
    best = 0
    for lo, hi in itertools.combinations_with_replacement(range(len(terms)), 2):
        if present <= set(terms[lo:hi + 1]) and (best == 0 or hi - lo + 1 < best):
            best = hi - lo + 1
    return best


@pytest.mark.parametrize("cells", [index_module._WINDOW_CELLS, 7])  # 7: many small blocks of chunks
def test_match_equals_a_brute_force_reference(monkeypatch: pytest.MonkeyPatch, cells: int) -> None:
    monkeypatch.setattr(index_module, "_WINDOW_CELLS", cells)
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma"]
    rng = np.random.default_rng(7)
    texts = [" ".join(rng.choice(words, int(rng.integers(0, 12)))) for _ in range(60)]
    texts[0] = texts[0] or "alpha"
    index = _index(texts)
    query = "alpha gamma omega gamma"
    _, tf, _, _, proximity, phrase, _, _ = _match(index, query)
    qterms = sorted({"alpha", "gamma", "omega"})
    bigrams = [("alpha", "gamma"), ("gamma", "omega"), ("omega", "gamma")]
    for i, text in enumerate(texts):
        terms = text.split()
        assert tf[i].tolist() == [terms.count(t) for t in qterms]
        present = {t for t in qterms if t in terms}
        expected = len(present) / _reference_window(terms, present) if len(present) >= 2 else 0.0
        assert proximity[i] == expected, (text, proximity[i], expected)
        pairs = set(zip(terms, terms[1:]))
        assert phrase[i] == (sum(bg in pairs for bg in bigrams) / 3 if len(present) >= 2 else 0.0), text


def test_feedback_terms_weigh_each_chunk_by_its_length_and_idf() -> None:
    index = _index(["wing lift lift", "wing drag", "flow flow flow flow", "drag"])
    fb = np.array([0, 1])
    got = index._feedback_terms(fb, np.array([1.0, 0.0]), 10)
    idf = {t: float(index._idf[index._vocab[t]]) for t in ("wing", "lift", "drag")}
    w0, w1 = (1.0 + 1e-3) / 3, (0.0 + 1e-3) / 2
    expected = {"lift": 2 * w0 * idf["lift"], "wing": (w0 + w1) * idf["wing"], "drag": w1 * idf["drag"]}
    assert [t for t, _ in got] == sorted(expected, key=lambda t: (-expected[t], t))
    assert dict(got) == pytest.approx(expected, rel=1e-12)
    assert [t for t, _ in index._feedback_terms(fb, np.array([1.0, 0.0]), 1)] == ["lift"]
