"""Invalid arguments raise ConfigurationError and send nothing."""

from __future__ import annotations

import pytest
from _client_fakes import Script, reply

from llamaeval import ConfigurationError


@pytest.mark.parametrize(("call", "needle"), [
    (lambda c: c.pipelines.retrieve("pl", "q", mode="fastest"), "mode"),
    (lambda c: c.pipelines.retrieve("pl", "q", top_k=0), "top_k"),
    (lambda c: c.pipelines.retrieve("pl", "q", top_k=True), "top_k"),
    (lambda c: c.pipelines.retrieve("pl", "q", top_k=2.0), "top_k"),
    (lambda c: c.pipelines.retrieve("pl", "   "), "query"),
    (lambda c: c.pipelines.retrieve("pl", None), "query"),
    (lambda c: c.pipelines.retrieve("", "q"), "pipeline_id"),
    (lambda c: c.pipelines.retrieve("pl", "q", top_k=3, mode="fast", **{"filters": object()}), "JSON"),
    (lambda c: c.projects.create(""), "name"),
    (lambda c: c.projects.get(None), "project_id"),
    (lambda c: c.pipelines.create("p", "proj", sync_interval=0), "sync_interval"),
    (lambda c: c.pipelines.create("p", "proj", retrieval_config=[1]), "retrieval_config"),
    (lambda c: c.pipelines.files.add("pl", []), "empty"),
    (lambda c: c.pipelines.files.add("pl", "f1"), "list"),
    (lambda c: c.pipelines.files.add("pl", [{"file_id": "f", "metadata": "doc"}]), "metadata"),
    (lambda c: c.pipelines.data_sources.add("pl", [{"name": "x"}]), "source_type"),
    (lambda c: c.data_sources.create("s", ""), "source_type"),
    (lambda c: c.files.upload(b"abc", project_id="p"), "name="),
    (lambda c: c.files.upload("/no/such/file.txt", project_id="p"), "no such file"),
    (lambda c: c.files.upload(12, project_id="p"), "path, bytes"),
    (lambda c: c.pipelines.wait_for_sync("pl", timeout=0), "timeout"),
    (lambda c: c.pipelines.wait_for_sync("pl", poll_interval=-1), "poll_interval"),
])
def test_invalid_arguments_send_nothing(harness, call, needle):
    script = Script(reply(200, {}))
    h = harness(script)
    with pytest.raises(ConfigurationError, match=needle):
        h.run(call)
    assert script.attempts == 0


def test_extra_retrieve_parameters_are_sent(harness):
    script = Script(reply(200, {"results": []}))
    h = harness(script)
    result = h.run(lambda c: c.pipelines.retrieve("pl", "q", top_k=3, trace=7))
    import json

    assert json.loads(script.requests[0].content) == {"query": "q", "mode": "fast", "top_k": 3, "trace": 7}
    assert result.request["trace"] == 7 and len(result.frame) == 0


def test_real_knobs_are_refused_by_the_simplified_dialect(harness):
    """A grid over alpha against a simplified server would otherwise measure one configuration six times."""
    script = Script(reply(200, {"results": []}))
    h = harness(script)
    with pytest.raises(ConfigurationError, match="real LlamaCloud API"):
        h.run(lambda c: c.pipelines.retrieve("pl", "q", top_k=3, alpha=0.0))
    assert script.attempts == 0


def test_ids_are_path_quoted(harness):
    script = Script(reply(200, {"id": "a/b"}))
    h = harness(script)
    h.run(lambda c: c.pipelines.get("a/b"))
    assert script.requests[0].url.raw_path == b"/api/v1/pipelines/a%2Fb"


def test_health_is_read_at_the_server_root(harness):
    script = Script(reply(503, {"detail": "starting"}), reply(200, {"status": "ok", "version": "0.1.0"}))
    h = harness(script)
    assert h.run(lambda c: c.health()) == {"status": "ok", "version": "0.1.0"}
    assert [str(r.url) for r in script.requests] == ["http://test.local/health"] * 2
