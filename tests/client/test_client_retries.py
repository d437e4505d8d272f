"""Fault injection through httpx.MockTransport: retries made, waits asked for, errors raised."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest
from _client_fakes import API_KEY, Script, fail, reply

from llamaeval import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    RateLimitError,
    ServerError,
)
from llamaeval.client import parse_retry_after

PROJECTS = [{"id": "p1", "name": "demo", "created_at": "2026-01-02T03:04:05Z"}]
PROJECT = PROJECTS[0]
RESULTS = {"results": [{"text": "t", "score": 1.0, "metadata": {"file_id": "f1", "doc_id": "d1"}}]}


def test_429_with_retry_after_then_success(harness):
    script = Script(reply(429, {"detail": "slow down"}, headers={"Retry-After": "2"}), reply(200, PROJECTS))
    h = harness(script)
    frame = h.run(lambda c: c.projects.list())
    assert script.attempts == 2
    assert h.sleeps == [2.0]
    assert list(frame["id"]) == ["p1"]


def test_429_retry_after_http_date(harness):
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    script = Script(reply(429, {"detail": "later"}, headers={"Retry-After": when}), reply(200, PROJECTS))
    h = harness(script)
    h.run(lambda c: c.projects.list())
    assert script.attempts == 2
    assert len(h.sleeps) == 1 and 27.0 <= h.sleeps[0] <= 30.0


def test_429_on_create_is_retried_because_nothing_was_applied(harness):
    script = Script(reply(429, {"detail": "slow"}, headers={"Retry-After": "1"}), reply(201, PROJECT))
    h = harness(script)
    project = h.run(lambda c: c.projects.create("demo"))
    assert script.attempts == 2 and project.id == "p1"
    assert [r.method for r in script.requests] == ["POST", "POST"]


def test_retry_after_longer_than_the_cap_is_not_waited_for(harness):
    script = Script(reply(429, {"detail": "come back tomorrow"}, headers={"Retry-After": "86400"}))
    h = harness(script)
    with pytest.raises(RateLimitError) as info:
        h.run(lambda c: c.projects.list())
    assert script.attempts == 1 and h.sleeps == []
    assert info.value.status_code == 429 and info.value.message == "come back tomorrow"


def test_503_twice_then_success_with_exponential_backoff(harness):
    script = Script(reply(503, {"detail": "busy"}), reply(503, {"detail": "busy"}), reply(200, PROJECTS))
    h = harness(script)
    frame = h.run(lambda c: c.projects.list())
    assert script.attempts == 3
    assert len(frame) == 1
    first, second = h.sleeps  # base 0.5 s doubled, jitter factor in [0.5, 1]
    assert 0.25 <= first <= 0.5 and 0.5 <= second <= 1.0


def test_503_beyond_the_budget_raises_server_error(harness):
    script = Script(reply(503, {"detail": "down for maintenance"}))
    h = harness(script, max_retries=2)
    with pytest.raises(ServerError) as info:
        h.run(lambda c: c.projects.list())
    assert script.attempts == 3
    assert info.value.status_code == 503 and info.value.message == "down for maintenance"


def test_max_retries_zero_means_one_attempt(harness):
    script = Script(reply(502, {"detail": "bad gateway"}))
    h = harness(script, max_retries=0)
    with pytest.raises(ServerError):
        h.run(lambda c: c.projects.list())
    assert script.attempts == 1 and h.sleeps == []


@pytest.mark.parametrize("status", [500, 502, 504])
def test_create_is_not_repeated_after_a_server_error(harness, status):
    script = Script(reply(status, {"detail": "oops"}), reply(201, PROJECT))
    h = harness(script)
    with pytest.raises(ServerError):
        h.run(lambda c: c.projects.create("demo"))
    assert script.attempts == 1


def test_create_is_retried_on_503_with_retry_after(harness):
    script = Script(reply(503, {"detail": "busy"}, headers={"Retry-After": "0"}), reply(201, PROJECT))
    h = harness(script)
    h.run(lambda c: c.projects.create("demo"))
    assert script.attempts == 2 and h.sleeps == [0.0]


def test_sync_job_start_is_not_repeated_after_500(harness):
    script = Script(reply(500, {"detail": "crash"}), reply(200, {"id": "j1", "status": "pending"}))
    h = harness(script)
    with pytest.raises(ServerError):
        h.run(lambda c: c.pipelines.sync("pl1"))
    assert script.attempts == 1


def test_read_timeout_on_a_read_is_retried_then_raised(harness):
    script = Script(fail(httpx.ReadTimeout, "read timed out"))
    h = harness(script)
    with pytest.raises(APITimeoutError) as info:
        h.run(lambda c: c.projects.list())
    assert script.attempts == 3
    assert isinstance(info.value, APIConnectionError)
    assert info.value.request.method == "GET"
    assert "3 attempts" in str(info.value)


def test_timeout_then_success_on_retrieve(harness):
    script = Script(fail(httpx.ReadTimeout), reply(200, RESULTS))
    h = harness(script)
    result = h.run(lambda c: c.pipelines.retrieve("pl1", "query"))
    assert script.attempts == 2 and result.attempts == 2
    assert result.latency_s >= 0.0


def test_read_timeout_on_a_create_is_not_repeated(harness):
    script = Script(fail(httpx.ReadTimeout), reply(201, PROJECT))
    h = harness(script)
    with pytest.raises(APITimeoutError):
        h.run(lambda c: c.files.upload(b"hello", project_id="p1", name="a.txt"))
    assert script.attempts == 1


@pytest.mark.parametrize("exc_type", [httpx.ConnectError, httpx.ConnectTimeout])
def test_create_is_retried_when_the_connection_was_never_made(harness, exc_type):
    script = Script(fail(exc_type), reply(201, PROJECT))
    h = harness(script)
    project = h.run(lambda c: c.projects.create("demo"))
    assert script.attempts == 2 and project.name == "demo"


def test_connection_refused_everywhere_raises_connection_error(harness):
    script = Script(fail(httpx.ConnectError, "connection refused"))
    h = harness(script, max_retries=1)
    with pytest.raises(APIConnectionError) as info:
        h.run(lambda c: c.pipelines.get("pl1"))
    assert not isinstance(info.value, APITimeoutError)
    assert script.attempts == 2 and "connection refused" in str(info.value)


def test_dropped_connection_after_sending_a_create_is_not_repeated(harness):
    script = Script(fail(httpx.RemoteProtocolError, "server disconnected"), reply(201, PROJECT))
    h = harness(script)
    with pytest.raises(APIConnectionError):
        h.run(lambda c: c.pipelines.create("p", "proj"))
    assert script.attempts == 1


def test_malformed_json_raises_api_error_without_retrying(harness):
    script = Script(reply(200, text='{"results": [unterminated'))
    h = harness(script)
    with pytest.raises(APIError) as info:
        h.run(lambda c: c.pipelines.retrieve("pl1", "query"))
    assert type(info.value) is APIError
    assert script.attempts == 1
    assert info.value.status_code == 200 and "malformed JSON" in info.value.message
    assert info.value.body.startswith('{"results"')


def test_401_raises_authentication_error_with_server_message(harness):
    script = Script(reply(401, {"detail": "invalid API key"}))
    h = harness(script)
    with pytest.raises(AuthenticationError) as info:
        h.run(lambda c: c.projects.list())
    err = info.value
    assert script.attempts == 1
    assert err.status_code == 401 and err.message == "invalid API key"
    assert err.request.method == "GET" and str(err.request.url) == "http://test.local/api/v1/projects"
    assert "HTTP 401: invalid API key" in str(err)


def test_404_raises_not_found(harness):
    script = Script(reply(404, {"detail": "pipeline pl9 not found"}))
    h = harness(script)
    with pytest.raises(NotFoundError) as info:
        h.run(lambda c: c.pipelines.get("pl9"))
    assert script.attempts == 1
    assert info.value.message == "pipeline pl9 not found" and info.value.body == {"detail": "pipeline pl9 not found"}


@pytest.mark.parametrize("status", [400, 413, 422])
def test_bad_request_family(harness, status):
    script = Script(reply(status, {"detail": "top_k too large"}))
    h = harness(script)
    with pytest.raises(BadRequestError):
        h.run(lambda c: c.pipelines.retrieve("pl1", "q", top_k=5000))
    assert script.attempts == 1


def test_error_without_json_body_uses_text(harness):
    script = Script(reply(418, text="I'm a teapot"))
    h = harness(script)
    with pytest.raises(APIError) as info:
        h.run(lambda c: c.projects.list())
    assert info.value.status_code == 418 and info.value.message == "I'm a teapot"


def test_every_attempt_carries_the_api_key(harness):
    script = Script(reply(503, {}), reply(200, PROJECTS))
    h = harness(script)
    h.run(lambda c: c.projects.list())
    assert {r.headers["authorization"] for r in script.requests} == {f"Bearer {API_KEY}"}


def test_parse_retry_after_forms():
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after("Thu, 01 Jan 2026 00:00:10 GMT", now=now) == 10.0
    assert parse_retry_after("Wed, 31 Dec 2025 00:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None and parse_retry_after("") is None


def test_retrieve_only_reads_so_a_500_is_retried(harness):
    script = Script(reply(500, {"detail": "index loading"}), reply(200, RESULTS))
    h = harness(script)
    result = h.run(lambda c: c.pipelines.retrieve("pl1", "query"))
    assert script.attempts == 2 and result.attempts == 2 and result.frame["doc_id"].tolist() == ["d1"]


def test_408_on_create_is_retried_because_the_request_was_not_read(harness):
    script = Script(reply(408, {"detail": "request timeout"}), reply(201, {"id": "ds1", "name": "s"}))
    h = harness(script)
    source = h.run(lambda c: c.data_sources.create("s", "directory", {"path": "docs"}))
    assert script.attempts == 2 and source.id == "ds1"
