"""Contract test: every operation of the spec (our copy in data/), status codes, fields and enums."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import httpx
import pytest
import yaml

from server_helpers import SPEC_PATH, api, upload, wait_job

pytestmark = pytest.mark.both_backends

PREFIX = "/api/v1"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return yaml.safe_load(SPEC_PATH.read_text("utf-8"))


def _operations(spec: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """operationId -> (METHOD, path)."""
    return {op["operationId"]: (method.upper(), path)
            for path, item in spec["paths"].items() for method, op in item.items()}


def _resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    return schema


def check(value: Any, schema: dict[str, Any], spec: dict[str, Any], where: str = "$") -> None:
    """Every property the spec lists is present with its type, format and enum.

    null is accepted only where the spec's description makes the field conditional
    ("if configured", "if applicable")."""
    schema = _resolve(schema, spec)
    kind = schema.get("type")
    if kind == "array":
        assert isinstance(value, list), f"{where}: expected array, got {value!r}"
        for i, item in enumerate(value):
            check(item, schema["items"], spec, f"{where}[{i}]")
        return
    if kind == "object":
        assert isinstance(value, dict), f"{where}: expected object, got {value!r}"
        for name in schema.get("required", []):
            assert name in value, f"{where}: required field {name!r} missing"
        for name, prop in schema.get("properties", {}).items():
            assert name in value, f"{where}: field {name!r} of the spec missing"
            prop = _resolve(prop, spec)
            if value[name] is None:
                assert " if " in prop.get("description", ""), f"{where}.{name}: null for a non-optional field"
                continue
            check(value[name], prop, spec, f"{where}.{name}")
        return
    py = {"string": str, "integer": int, "number": (int, float), "boolean": bool}.get(kind)
    if py is not None:
        assert isinstance(value, py) and not (kind != "boolean" and isinstance(value, bool)), \
            f"{where}: expected {kind}, got {value!r}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if schema.get("format") == "date-time":
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        assert parsed.tzinfo is not None, f"{where}: {value!r} has no timezone"


class Walker:
    """Calls operations by operationId and checks each answer against the spec."""

    def __init__(self, spec: dict[str, Any], client: httpx.Client) -> None:
        self.spec = spec
        self.client = client
        self.ops = _operations(spec)
        self.seen: set[str] = set()

    def call(self, op_id: str, expect: int, path_args: dict[str, str] | None = None, **kw: Any) -> Any:
        method, path = self.ops[op_id]
        op = self.spec["paths"][path][method.lower()]
        assert str(expect) in op["responses"], f"{op_id}: {expect} is not a documented status"
        r = self.client.request(method, path.format(**(path_args or {})), **kw)
        assert r.status_code == expect, f"{op_id}: {r.status_code} {r.text}"
        self.seen.add(op_id)
        body = r.json()
        content = op["responses"][str(expect)].get("content")
        if content:
            check(body, content["application/json"]["schema"], self.spec, op_id)
        return body


def test_every_operation_of_the_spec(server, spec, account_sources):
    (account_sources / "contract").mkdir()
    (account_sources / "contract" / "note.md").write_text("# Gliders\n\nGliders fly without engines.\n")
    with api(server) as c:
        w = Walker(spec, c)
        w.call("listProjects", 200)
        project = w.call("createProject", 201, json={"name": "contract"})
        assert w.call("getProject", 200, {"projectId": project["id"]}) == project
        assert project in w.call("listProjects", 200)
        f = w.call("uploadFile", 200, params={"project_id": project["id"]},
                   files={"file": ("airfoil.txt", b"Airfoil lift and drag at low speed.", "text/plain")})
        assert f["file_size"] == 35 and f["project_id"] == project["id"]
        assert w.call("listPipelines", 200, params={"project_id": project["id"]}) == []
        pipeline = w.call("createPipeline", 201, json={"name": "p", "project_id": project["id"]})
        assert pipeline["status"] == "idle"
        pid = {"pipelineId": pipeline["id"]}
        assert w.call("getPipeline", 200, pid)["id"] == pipeline["id"]
        assert [p["id"] for p in w.call("listPipelines", 200, params={"project_id": project["id"]})] \
            == [pipeline["id"]]
        w.call("addFilesToPipeline", 200, pid, json=[{"file_id": f["id"], "metadata": {"doc_id": "A1"}}])
        files = w.call("listPipelineFiles", 200, pid)
        assert [(x["file_id"], x["status"], x["metadata"]) for x in files] == [(f["id"], "pending", {"doc_id": "A1"})]
        ds = w.call("createDataSource", 201, json={"name": "notes", "source_type": "directory",
                                                    "project_id": project["id"], "config": {"path": "contract"}})
        assert ds["source_type"] == "directory"
        assert [d["id"] for d in w.call("listDataSources", 200, params={"project_id": project["id"]})] == [ds["id"]]
        w.call("addDataSourcesToPipeline", 200, pid, json=[{"name": "more", "source_type": "directory",
                                                             "config": {"path": "contract"}}])
        c.put(f"/pipelines/{pipeline['id']}/data-sources", json=[{"data_source_id": ds["id"]}]).raise_for_status()
        assert len(w.call("listPipelineDataSources", 200, pid)) == 2
        job = w.call("syncPipeline", 200, pid)
        assert job["pipeline_id"] == pipeline["id"]
        done = wait_job(c, pipeline["id"], job["id"])
        assert done["status"] == "completed", done
        jobs = w.call("listPipelineJobs", 200, pid)
        assert jobs[-1]["id"] == job["id"] and jobs[-1]["status"] == "completed"
        result = w.call("runSearch", 200, pid, json={"query": "gliders without engines", "mode": "fast", "top_k": 2})
        assert result["results"][0]["metadata"]["file_name"] == "note.md"
        sinks = w.call("listPipelineDataSinks", 200, pid)
        assert sinks[0]["config"]["num_chunks"] >= 2 and sinks[0]["config"]["dimensions"] == 384
        w.call("deletePipeline", 200, pid)
        r = c.get(f"/pipelines/{pipeline['id']}")
        assert r.status_code == 404 and "detail" in r.json()
    assert w.seen == set(w.ops), f"operations not exercised: {set(w.ops) - w.seen}"


def test_every_operation_needs_a_key(server, spec):
    ops = _operations(spec)
    with httpx.Client(base_url=server.api_url) as anon, api(server, key="llx-wrong") as wrong:
        for op_id, (method, path) in ops.items():
            url = path.format(projectId="x", pipelineId="x")
            for client in (anon, wrong):
                r = client.request(method, url, json={})
                assert r.status_code == 401, f"{op_id}: {r.status_code}"
                assert isinstance(r.json()["detail"], str) and r.json()["detail"]


def test_unknown_ids_are_404_with_detail(server, spec):
    with api(server) as c:
        for op_id, (method, path) in _operations(spec).items():
            if "{" not in path:
                continue
            r = c.request(method, path.format(projectId="nope", pipelineId="nope"),
                          json=[] if method == "PUT" else {"query": "q"})
            assert r.status_code == 404, f"{op_id}: {r.status_code} {r.text}"
            assert "not found" in r.json()["detail"]


def test_served_openapi_lists_every_spec_operation(server, spec):
    served = httpx.get(server.base_url + "/openapi.json").json()
    for op_id, (method, path) in _operations(spec).items():
        op = served["paths"].get(PREFIX + path, {}).get(method.lower())
        assert op is not None, f"{op_id} ({method} {path}) missing from the served OpenAPI"
        assert op["operationId"] == op_id
        documented = set(spec["paths"][path][method.lower()]["responses"])
        assert documented <= set(op["responses"]), f"{op_id}: served responses {set(op['responses'])}"
        assert "422" not in op["responses"]
    assert served["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    docs = httpx.get(server.base_url + "/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    for asset in re.findall(r'(?:src|href)="(/docs-static/[^"]+)"', docs.text):  # served locally: works offline
        assert httpx.get(server.base_url + asset).status_code == 200, asset
    health = httpx.get(server.base_url + "/health").json()
    assert health["status"] == "ok" and health["max_top_k"] >= 100
