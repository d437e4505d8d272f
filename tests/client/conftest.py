"""Client-test fixtures: a parametrised sync/async harness around MockTransport handlers."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from _client_fakes import Harness


@pytest.fixture(params=["sync", "async"])
def harness(request: pytest.FixtureRequest) -> Callable[..., Harness]:
    """Build a Harness of the parametrised kind around a handler."""
    return lambda handler, **kwargs: Harness(request.param, handler, **kwargs)


from conftest_realshape import realshape_server  # noqa: E402,F401  - the real-shaped LlamaCloud double
