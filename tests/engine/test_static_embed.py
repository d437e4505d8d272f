"""The static (WordLlama) embedder and the model registry: real vectors from the shipped weights,
one model name per index, clear errors for an unknown model or a missing extra."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from llamaeval._errors import ConfigurationError
from llamaeval.engine import (
    EMBEDDING_MODELS, Embedder, Embedders, Index, IndexEntry, RetrievalConfig, StaticEmbedder, build_index,
    embedder_for, embedding_model_name,
)
from llamaeval.engine._embed import DEFAULT_MODEL_NAME
from llamaeval.engine._embedders import embedder_of
from llamaeval.engine._static_embed import WORDLLAMA_MODEL_NAME

needs_wordllama = pytest.mark.skipif(importlib.util.find_spec("wordllama") is None,
                                     reason="the fast-embed extra (wordllama) is not installed")

TEXTS = {
    "wing": "Transonic flow over a swept wing: shock waves and boundary layer separation near the wing tip.",
    "airfoil": "Pressure distribution on an airfoil at high subsonic speed, with shock induced separation.",
    "heart": "Cardiac arrhythmia in elderly patients treated with beta blockers after a heart attack.",
    "library": "Cataloguing rules for library collections and the indexing of periodicals by subject.",
}


@pytest.fixture(scope="module")
def static() -> StaticEmbedder:
    if importlib.util.find_spec("wordllama") is None:
        pytest.skip("the fast-embed extra (wordllama) is not installed")
    return StaticEmbedder().load()


@needs_wordllama
def test_vectors_are_real_normalised_and_put_similar_texts_closer(static):
    v = static.embed_passages(list(TEXTS.values()))
    assert v.shape == (4, 256) and v.dtype == np.float32 and static.dimensions == 256
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    sim = v @ v.T
    wing, airfoil, heart, library = range(4)
    assert sim[wing, airfoil] > sim[wing, heart] + 0.1
    assert sim[wing, airfoil] > sim[wing, library] + 0.1
    q = static.embed_query("shock wave on a swept wing")
    assert q.shape == (256,) and abs(float(np.linalg.norm(q)) - 1.0) < 1e-5
    assert int(np.argmax(v @ q)) == wing
    # a query is embedded as a passage of the same text is; batches do not change a vector
    np.testing.assert_allclose(static.embed_query(TEXTS["heart"]), v[heart], atol=1e-6)
    small = StaticEmbedder(batch_texts=3)
    pieces = list(small.iter_passage_batches(list(TEXTS.values())))
    assert [len(idx) for idx, _ in pieces] == [3, 1]
    np.testing.assert_allclose(small.embed_passages(list(TEXTS.values())), v, atol=1e-6)
    stats = small.stats()
    assert stats["passages"] == 8 and stats["fed_tokens"] == stats["real_tokens"] > 0
    # an empty text has no token: the zero vector, never NaN
    assert not np.any(static.embed_passages([""])) and not np.isnan(static.embed_query("")).any()
    assert len(static.version) == 16 and static.version == StaticEmbedder().version


@needs_wordllama
def test_an_index_records_its_model_and_refuses_another_embedder(static, tmp_path):
    entries = [IndexEntry(chunk_id=f"{k}#0", file_id=k, file_name=f"{k}.txt", chunk_index=0, start_char=0,
                          end_char=len(t), text=t, title=None, metadata={"doc_id": k}) for k, t in TEXTS.items()]
    build_index(entries, static.embed_passages([e.text for e in entries]), RetrievalConfig(), tmp_path / "idx",
                embedding_model=static.model_name)
    index = Index.load(tmp_path / "idx", static)
    assert index.search("beta blockers for the heart", "fast", 1).hits[0].entry.file_id == "heart"
    with pytest.raises(ValueError, match="wordllama-l2-supercat-256.*all-MiniLM"):
        Index.load(tmp_path / "idx", Embedder())  # query vectors of another model would be meaningless
    with pytest.raises(ValueError, match="dimensions"):
        Index(entries, np.zeros((4, 384), np.float32), RetrievalConfig(), static)


def test_model_names_aliases_and_unknown_names():
    assert list(EMBEDDING_MODELS) == [DEFAULT_MODEL_NAME, WORDLLAMA_MODEL_NAME]
    assert embedding_model_name("WordLlama") == WORDLLAMA_MODEL_NAME
    assert embedding_model_name("sentence-transformers/all-MiniLM-L6-v2") == DEFAULT_MODEL_NAME
    assert embedding_model_name(" wordllama-l2-supercat-256 ") == WORDLLAMA_MODEL_NAME
    for bad in ("text-embedding-3-small", "", None, 3):
        with pytest.raises(ConfigurationError, match="unknown embedding model.*all-MiniLM-L6-v2-onnx-int8.*wordllama"):
            embedding_model_name(bad)
    assert isinstance(embedder_for("minilm"), Embedder)
    assert isinstance(embedder_for("wordllama"), StaticEmbedder)


def test_embedders_make_each_model_once_and_stand_in_for_the_default():
    made: list[str] = []

    class Fake:
        def __init__(self, name: str, dimensions: int) -> None:
            self.model_name, self.dimensions = name, dimensions

    def make(name: str, num_threads=None):
        made.append(name)
        return Fake(name, 384 if name == DEFAULT_MODEL_NAME else 256)

    embedders = Embedders(make=make)
    assert embedders.model_name == DEFAULT_MODEL_NAME and embedders.dimensions == 384  # the default's
    a, b = embedders.get("wordllama"), embedders.get(WORDLLAMA_MODEL_NAME)
    assert a is b and a.dimensions == 256 and made == [DEFAULT_MODEL_NAME, WORDLLAMA_MODEL_NAME]
    assert embedder_of(embedders, None) is embedders.default
    with pytest.raises(ConfigurationError, match="unknown embedding model 'bge-small'"):
        embedders.get("bge-small")
    single = Fake(DEFAULT_MODEL_NAME, 384)
    assert embedder_of(single, "minilm") is single
    with pytest.raises(ConfigurationError, match="embeds only with"):
        embedder_of(single, WORDLLAMA_MODEL_NAME)


def test_without_the_package_the_error_names_the_extra(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wordllama" else real(name, *a))
    with pytest.raises(ConfigurationError, match=r"pip install 'llamaeval\[fast-embed\]'"):
        StaticEmbedder().embed_query("x")
    with pytest.raises(ConfigurationError, match=r"llamaeval\[fast-embed\]"):
        Embedders(default=object.__new__(Embedder)).get("wordllama")  # checked when the model is chosen
    with pytest.raises(ConfigurationError, match="has no weights/l2_supercat_256.safetensors"):
        StaticEmbedder(package_dir=tmp_path).load()
