"""Every operation of the OpenAPI spec has a client method, sending the right method and path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _client_fakes import Script, reply

ROOT = Path(__file__).resolve().parents[2]
SPEC_COPIES = [ROOT / "tests" / "server" / "data" / "llamacloud-openapi.yml",
               ROOT.parent / "shared" / "spec" / "llamacloud-openapi.yml"]

JOB = {"id": "j1", "status": "completed"}
# operationId -> (client call, JSON the fake server answers)
CALLS = {
    "listProjects": (lambda c: c.projects.list(), []),
    "createProject": (lambda c: c.projects.create("p"), {"id": "P"}),
    "getProject": (lambda c: c.projects.get("P"), {"id": "P"}),
    "uploadFile": (lambda c: c.files.upload(b"x", project_id="P", name="a.txt"), {"id": "F"}),
    "listPipelines": (lambda c: c.pipelines.list("P"), []),
    "createPipeline": (lambda c: c.pipelines.create("n", "P"), {"id": "L"}),
    "getPipeline": (lambda c: c.pipelines.get("L"), {"id": "L"}),
    "deletePipeline": (lambda c: c.pipelines.delete("L"), {"id": "L", "deleted": True}),
    "syncPipeline": (lambda c: c.pipelines.sync("L"), JOB),
    "runSearch": (lambda c: c.pipelines.retrieve("L", "q"), {"results": []}),
    "listPipelineFiles": (lambda c: c.pipelines.files.list("L"), []),
    "addFilesToPipeline": (lambda c: c.pipelines.files.add("L", ["F"]), []),
    "listPipelineDataSources": (lambda c: c.pipelines.data_sources.list("L"), []),
    "addDataSourcesToPipeline": (lambda c: c.pipelines.data_sources.add("L", ["D"]), []),
    "listPipelineDataSinks": (lambda c: c.pipelines.data_sinks.list("L"), []),
    "listPipelineJobs": (lambda c: c.pipelines.jobs.list("L"), [JOB]),
    "listDataSources": (lambda c: c.data_sources.list("P"), []),
    "createDataSource": (lambda c: c.data_sources.create("d", "directory"), {"id": "D"}),
}


def _spec_operations() -> dict[str, tuple[str, str]]:
    """operationId -> (METHOD, path template) read from the spec's ``paths`` section."""
    spec = next((p for p in SPEC_COPIES if p.is_file()), None)
    assert spec is not None, f"no copy of the spec in {SPEC_COPIES}"
    ops, path, method = {}, None, None
    for line in spec.read_text(encoding="utf-8").splitlines():
        if m := re.match(r"^  (/\S*):\s*$", line):
            path = m.group(1)
        elif m := re.match(r"^    (get|post|put|delete|patch):\s*$", line):
            method = m.group(1).upper()
        elif (m := re.match(r"^      operationId:\s*(\w+)", line)) and path:
            ops[m.group(1)] = (method, path)
        elif line.startswith("components:"):
            break
    return ops


def test_the_spec_has_18_operations_and_all_are_covered():
    ops = _spec_operations()
    assert len(ops) == 18
    assert set(ops) == set(CALLS)


@pytest.mark.parametrize("operation", sorted(CALLS))
def test_operation_sends_the_specs_method_and_path(harness, operation):
    method, template = _spec_operations()[operation]
    call, answer = CALLS[operation]
    script = Script(reply(200, answer))
    harness(script).run(call)
    request = script.requests[0]
    pattern = "^/api/v1" + re.sub(r"\{\w+\}", "[^/]+", template) + "$"
    assert request.method == method
    assert re.match(pattern, request.url.path), (request.url.path, template)
