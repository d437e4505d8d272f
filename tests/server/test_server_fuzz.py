"""Fuzz both dialects from the OpenAPI documents the server serves: no generated request gets a 5xx.

schemathesis generates valid and invalid requests for every operation (bounded per operation,
seeded by hypothesis' database-free derandomised mode, so a run is reproducible)."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from llamaeval.server import EmbeddedServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

FUZZ = settings(max_examples=12, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory):
    with EmbeddedServer(data_dir=tmp_path_factory.mktemp("fuzz"), max_upload_mb=0.25) as srv:
        yield srv


def _fuzz(server: EmbeddedServer, root: str) -> int:
    """Every operation of the document served under ``root``; returns how many were fuzzed."""
    raw = httpx.get(f"{server.base_url}{root}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(raw)
    failures: list[str] = []
    n = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        n += 1

        @FUZZ
        @given(case=operation.as_strategy())
        def no_server_error(case) -> None:
            response = case.call(base_url=server.base_url + root, timeout=60,
                                 headers={"Authorization": f"Bearer {server.api_key}"})
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}")

        try:
            no_server_error()
        except AssertionError as exc:
            failures.append(str(exc).splitlines()[0])
    assert not failures, "\n".join(failures)
    return n


def test_simplified_api_has_no_5xx(fuzz_server):
    assert _fuzz(fuzz_server, "") >= 18


def test_real_dialect_has_no_5xx(fuzz_server):
    assert _fuzz(fuzz_server, "/cloud") >= 40
