"""``pipelines.create(..., embedding_model=)`` in both dialects against the local server: the
pipeline is created with that model (its record says so), and a name the server does not know is
its 4xx naming the models it has."""

from __future__ import annotations

import importlib.util

import pytest

import llamaeval as le
from llamaeval.engine._embed import DEFAULT_MODEL_NAME
from llamaeval.engine._static_embed import WORDLLAMA_MODEL_NAME

pytestmark = pytest.mark.skipif(importlib.util.find_spec("wordllama") is None,
                                reason="the fast-embed extra (wordllama) is not installed")


@pytest.mark.parametrize("dialect", ["simplified", "llamacloud"])
def test_a_pipeline_is_created_with_the_named_embedding_model(live_server, dialect):
    base = live_server.base_url + ("/cloud" if dialect == "llamacloud" else "")
    with le.LlamaCloud(api_key=live_server.api_key, base_url=base, dialect=dialect, max_retries=0) as lc:
        project = lc.projects.create(f"embedding-model-{dialect}")
        static = lc.pipelines.create("static", project.id, embedding_model=WORDLLAMA_MODEL_NAME)
        default = lc.pipelines.create("default", project.id)
        assert static.embedding_model == WORDLLAMA_MODEL_NAME
        assert lc.pipelines.get(static.id).embedding_model == WORDLLAMA_MODEL_NAME
        assert default.embedding_model == DEFAULT_MODEL_NAME
        with pytest.raises(le.LlamaEvalError) as err:
            lc.pipelines.create("unknown", project.id, embedding_model="no-such-model")
        assert err.value.status_code in (400, 422) and DEFAULT_MODEL_NAME in str(err.value)
        with pytest.raises(le.ConfigurationError, match="embedding_model must be a model name"):
            lc.pipelines.create("blank", project.id, embedding_model=" ")
