"""Second-stage models by reference: the shipped files and their hashes (as benchmarks/train_ltr.py
recorded them), model stores, an older version that keeps ranking, and each mode's stages on adi."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest

from llamaeval.engine import Index, RetrievalConfig, SearchRequest, build_index
from llamaeval.engine._config import check_model_document
from llamaeval.engine._models import (
    DEFAULT_MODEL_VERSION, MODEL_NAME, ModelStore, default_model_reference, packaged_versions, read_packaged,
    reference_of,
)

ROOT = Path(__file__).resolve().parents[2]
SELECTION = ROOT / "benchmarks" / "results" / "ltr_selection.json"
QUERIES = ("1", "2", "5", "7", "10", "13", "17", "21", "25", "29", "33")


@pytest.fixture(scope="module")
def index(adi_index_dir, embedder) -> Index:
    return Index.load(adi_index_dir, embedder)


def v1_reference() -> dict:
    return {"name": MODEL_NAME, "version": 1, "sha256": hashlib.sha256(read_packaged(1)).hexdigest()}


def chunks(response) -> list[str]:
    return [h.entry.chunk_id for h in response.hits]


def test_the_shipped_model_is_the_file_the_training_script_recorded():
    record = json.loads(SELECTION.read_text("utf-8"))
    ref = default_model_reference()
    assert record["model"]["version"] == DEFAULT_MODEL_VERSION == ref["version"]
    assert record["model"]["sha256"] == ref["sha256"] == hashlib.sha256(read_packaged(ref["version"])).hexdigest()
    assert (ROOT / record["model"]["file"]).read_bytes() == read_packaged(ref["version"])
    # the engine's defaults are the ones the leave-one-collection-out selection chose
    config = RetrievalConfig()
    assert {k: getattr(config, k) for k in record["defaults"]} == record["defaults"]
    assert config.model_document()["stages"]["feedback_gate"] == record["advanced"]["gate"]


def test_every_shipped_version_is_a_valid_model_document():
    versions = packaged_versions()
    assert versions[0] == 1 and DEFAULT_MODEL_VERSION == versions[-1]
    for version in versions:
        data = read_packaged(version)
        doc = json.loads(data)
        assert (doc["name"], doc["version"]) == (MODEL_NAME, version)
        check_model_document(doc)
        json.dumps(doc, allow_nan=False)  # strict JSON: it may travel over the API as inline weights
        assert "scifact/test" not in doc["tuning"]["trained_on"]


def test_a_config_names_its_model_and_stays_small():
    config = RetrievalConfig()
    assert config.to_dict()["ltr_model"] == config.summary()["ltr_model"] == default_model_reference()
    assert len(json.dumps(config.to_dict())) < 1500
    inline = RetrievalConfig(ltr_model={"models": json.loads(read_packaged(1))["models"]})
    assert len(json.dumps(inline.summary())) < 1500 and inline.model_reference()["name"] == "custom"


def test_an_index_naming_version_1_keeps_ranking_with_version_1(index, adi, tmp_path, embedder):
    v1 = json.loads(read_packaged(1))
    by_reference = index.with_config(replace(index.config, ltr_model=v1_reference()))
    # what a pipeline of the previous release carried inline
    inline = index.with_config(replace(index.config, ltr_model={"description": v1["description"],
                                                                "models": v1["models"]}))
    assert by_reference._stage_params["feedback_gate"] is None  # version 1 always expands
    differs = 0
    for q in QUERIES:
        for mode in ("accurate", "advanced"):
            a, b = by_reference.search(adi["queries"][q], mode, 10), inline.search(adi["queries"][q], mode, 10)
            assert chunks(a) == chunks(b) and [h.score for h in a.hits] == [h.score for h in b.hits]
            differs += chunks(a) != chunks(index.search(adi["queries"][q], mode, 10))
        assert "expand" in by_reference.search(adi["queries"][q], "advanced", 10).timings
    assert differs  # the versions differ, so the reference really selects the older weights
    # built and loaded: the index keeps the reference and ranks alike
    directory = tmp_path / "v1"
    build_index(adi["entries"], adi["embeddings"], by_reference.config, directory)
    loaded = Index.load(directory, embedder)
    assert loaded.config.ltr_model == v1_reference() and not (directory / "models").exists()
    q = adi["queries"]["7"]
    assert chunks(loaded.search(q, "advanced", 10)) == chunks(by_reference.search(q, "advanced", 10))


def test_a_model_from_a_store_is_kept_inside_the_index(adi, tmp_path, embedder):
    custom = {"models": {"accurate": {"features": ["bm25_z", "dense_z"], "weights": [1.0, 0.1]}}}
    store = ModelStore(tmp_path / "store")
    ref = store.put(custom)
    assert ref == reference_of(custom) and store.get(ref["sha256"]) == custom
    config = RetrievalConfig(ltr_model=ref)  # a reference is checked for form, resolved when used
    with pytest.raises(ValueError, match="neither shipped"):
        config.model_document()
    with pytest.raises(ValueError, match="neither shipped"):
        build_index(adi["entries"], adi["embeddings"], config, tmp_path / "nowhere")
    directory = tmp_path / "index"
    (directory / "models").mkdir(parents=True)
    (directory / "models" / f"{'f' * 64}.json").write_text("{}")  # seeded by a caller, unused: removed
    build_index(adi["entries"], adi["embeddings"], config, directory, model_store=store)
    assert sorted(p.name for p in (directory / "models").iterdir()) == [f"{ref['sha256']}.json"]
    loaded = Index.load(directory, embedder)  # no store needed: the index carries its model
    res = loaded.search(adi["queries"]["7"], "accurate", 5)
    assert len(res.hits) == 5 and "ltr" in res.hits[0].stage_scores
    assert loaded.config.model_document(loaded._stores) == custom  # ranked by the custom model
    assert loaded._rankers["accurate"].features == ["bm25_z", "dense_z"]
    # a store file that does not hash to its name is refused
    (tmp_path / "store" / f"{ref['sha256']}.json").write_text(json.dumps(custom, indent=2))
    with pytest.raises(ValueError, match="corrupted"):
        store.get(ref["sha256"])


def test_each_mode_runs_its_stages_and_advanced_expands_only_when_confident(index, adi):
    gate = index._stage_params["feedback_gate"]
    assert gate is not None
    expanded = gated = 0
    for q in (adi["queries"][k] for k in QUERIES):
        fast = index.search(q, "fast", 10)
        assert {"embed", "bm25", "dense", "fuse"} <= set(fast.timings) and "ltr" not in fast.timings
        accurate = index.search(q, "accurate", 10)
        assert {"features", "ltr"} <= set(accurate.timings) and "ltr" in accurate.hits[0].stage_scores
        advanced = index.search(q, "advanced", 10)
        _, _, _, ctx = index._candidates(SearchRequest.preset("advanced", q, 10, index.config), {})
        assert {"feedback", "features", "ltr", "aggregate"} <= set(advanced.timings)
        scores = [h.stage_scores for h in advanced.hits]
        if ctx["confidence"] >= gate:
            expanded += 1
            assert "expand" in advanced.timings
            assert any(s["fused_prf"] != s["fused"] for s in scores)
        else:  # not expanded: the "expanded" retrieval is the query's own
            gated += 1
            assert "expand" not in advanced.timings
            assert all(s["fused_prf"] == s["fused"] and s["bm25_prf"] == s["bm25"] for s in scores)
    assert expanded and gated  # adi has both confident and unsure queries
