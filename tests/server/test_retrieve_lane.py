"""The retrieve lane (``llamaeval/server/_retrieve_lane.py``) answers exactly as the FastAPI routes
do: every request below is sent twice, once as it is (the lane takes the well-formed ones, counted)
and once with a query string (the lane leaves those to FastAPI), and the two answers must be the same."""

from __future__ import annotations

from typing import Any

import pytest

from llamaeval.server._retrieve_lane import RetrieveLane

SIMPLIFIED: list[tuple[str, Any, bool]] = [  # (name, body, the lane answers it)
    ("fast", {"query": "rigid zeppelin", "top_k": 2}, True),
    ("accurate", {"query": "rigid zeppelin", "mode": "accurate"}, True),
    ("unknown field named in Warning", {"query": "helium", "topk": 3}, True),
    ("top_k over the limit", {"query": "helium", "top_k": 10 ** 6}, True),
    ("NUL in the query (the gatekeeper refuses it)", {"query": "heli\u0000um"}, False),
    ("unknown mode", {"query": "helium", "mode": "fastest"}, False),
    ("top_k a string", {"query": "helium", "top_k": "3"}, False),
    ("no query", {"top_k": 3}, False),
    ("a list", [{"query": "helium"}], False),
]
REAL: list[tuple[str, Any, bool]] = [  # the last four: refused by the answer (lane) or the model (FastAPI)
    ("chunks", {"query": "rigid zeppelin"}, True),
    ("no reranking, top 1", {"query": "rigid zeppelin", "enable_reranking": False, "dense_similarity_top_k": 1}, True),
    ("files via content", {"query": "helium", "retrieval_mode": "files_via_content"}, True),
    ("auto routed", {"query": "helium", "retrieval_mode": "auto_routed"}, True),
    ("filters", {"query": "helium", "search_filters": {"filters": [{"key": "file_name", "value": "a.txt"}]}}, True),
    ("unknown field", {"query": "helium", "alpha2": 0.5}, True),
    ("blank query", {"query": "   "}, True),
    ("bad filter operator", {"query": "helium", "search_filters": {"filters": [
        {"key": "file_name", "value": "a.txt", "operator": "~~"}]}}, True),
    ("empty query", {"query": ""}, False),
    ("top_k a list", {"query": "helium", "dense_similarity_top_k": [1]}, False),
]


def _comparable(r: Any) -> tuple[int, Any, dict[str, str]]:
    """Status, JSON (timings dropped) and headers (those that vary between two runs dropped)."""
    body = r.json()
    if isinstance(body, dict):
        body.pop("retrieval_latency", None)
    headers = {k: v for k, v in r.headers.items() if k not in ("server-timing", "content-length", "date")}
    return r.status_code, body, headers


def _lane(app: Any) -> RetrieveLane:
    layer = app.middleware_stack
    while not isinstance(layer, RetrieveLane):
        layer = layer.app
    return layer


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from fastapi.testclient import TestClient

    from llamaeval.server import ServerConfig, create_api_key_in, create_app
    from server_helpers import synced_pipeline

    data = tmp_path_factory.mktemp("lane") / "d"
    app = create_app(ServerConfig(data_dir=data))
    key, _ = create_api_key_in(data)
    with TestClient(app, base_url="http://testserver/api/v1", headers={"Authorization": f"Bearer {key}"}) as c:
        pipeline = synced_pipeline(c, {"a.txt": "Airships and blimps float with helium.",
                                       "b.txt": "A zeppelin is a rigid airship."})
        yield app, c, pipeline


@pytest.mark.parametrize("dialect, name, body, taken", [("simplified", *case) for case in SIMPLIFIED]
                         + [("real", *case) for case in REAL], ids=lambda v: v if isinstance(v, str) else None)
def test_the_lane_answers_as_the_route_does(served: Any, dialect: str, name: str, body: Any,
                                            taken: bool) -> None:
    app, c, pipeline = served
    url = (f"/pipelines/{pipeline}/retrieve" if dialect == "simplified"
           else f"http://testserver/cloud/api/v1/pipelines/{pipeline}/retrieve")
    lane = _lane(app)
    before = lane.answered
    via_lane = c.post(url, json=body)
    answered = lane.answered - before
    via_route = c.post(url + "?via=route", json=body)
    assert lane.answered - before == answered  # a query string always goes to FastAPI
    assert answered == int(taken), (name, via_lane.text)
    assert _comparable(via_lane) == _comparable(via_route), name
    assert via_lane.status_code < 500, via_lane.text


def test_the_lane_finds_the_same_chunks_with_an_unknown_pipeline_or_key_refused(served: Any) -> None:
    app, c, pipeline = served
    lane = _lane(app)
    ok = c.post(f"/pipelines/{pipeline}/retrieve", json={"query": "rigid zeppelin", "top_k": 1})
    assert ok.status_code == 200 and ok.json()["results"][0]["metadata"]["file_name"] == "b.txt"
    before = lane.answered
    missing = c.post("/pipelines/nope/retrieve", json={"query": "helium"})
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]
    assert lane.answered == before + 1  # refused by the services, through the dialect's handler
    no_key = c.post(f"/pipelines/{pipeline}/retrieve", json={"query": "helium"}, headers={"Authorization": ""})
    assert no_key.status_code == 401 and lane.answered == before + 1  # the gatekeeper answered first
    text = c.post(f"/pipelines/{pipeline}/retrieve", content=b'{"query": "helium"}',
                  headers={"content-type": "text/plain"})
    assert text.status_code == 400 and lane.answered == before + 1  # not JSON to FastAPI either
