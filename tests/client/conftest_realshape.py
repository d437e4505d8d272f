"""The `realshape_server` fixture: a fresh realshape server (real SDK body shapes) per test.

Use it from a conftest with `from conftest_realshape import realshape_server  # noqa: F401`
or `pytest_plugins = ["conftest_realshape"]` (tests/client is on sys.path under pytest).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from realshape import RealShapeServer


@pytest.fixture()
def realshape_server() -> Iterator[RealShapeServer]:
    """A started server with `.base_url`, `.api_key` and `.state` (flip quirks there); stopped afterwards."""
    with RealShapeServer() as server:
        yield server
