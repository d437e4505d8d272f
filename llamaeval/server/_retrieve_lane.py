"""The retrieve lane: a well-formed retrieve request of either dialect answered without FastAPI's
routing, dependency and body machinery, which cost ~0.8 ms CPU a request here (a quarter of what
HTTP added to an in-process ``fast`` search; ``benchmarks/results/http_overhead.md``).

It runs inside the :class:`~llamaeval.server._auth.Gatekeeper` — the key, the URL, the body's size
and its JSON already checked, the parsed body left in ``scope["state"]["json_body"]`` — and calls
the same answer function as the dialect's route, with the route's own request model. Everything
it does not take as it is goes on to FastAPI unchanged, body and all: a body the model refuses,
a query string, a body that is not JSON. So every refusal keeps its one shape (and its one place);
a refusal the answer function itself raises goes through the dialect's own exception handlers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.routing import compile_path

__all__ = ["LaneRoute", "RetrieveLane"]

#: ``answer(services, account_id, pipeline_id, body) -> Response``
Answer = Callable[[Any, str, str, Any], Awaitable[Any]]


@dataclass(frozen=True)
class LaneRoute:
    """One retrieve operation: its full ``path`` template (one ``{...}`` parameter: the pipeline
    id), its request ``model``, its ``answer`` function and the dialect app's ``exception_handlers``."""

    path: str
    model: type[BaseModel]
    answer: Answer
    exception_handlers: dict[Any, Callable[..., Any]]

    def pattern(self) -> re.Pattern[str]:
        return compile_path(self.path)[0]


class RetrieveLane:
    """ASGI middleware (inside the Gatekeeper) that answers ``POST`` to one of ``routes``."""

    def __init__(self, app: Any, routes: tuple[LaneRoute, ...]) -> None:
        self.app = app
        self.routes = [(route.pattern(), route) for route in routes]
        #: requests this lane answered (for tests and diagnostics)
        self.answered = 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        taken = self._take(scope)
        if taken is None:
            return await self.app(scope, receive, send)
        route, pipeline_id, body = taken
        self.answered += 1
        try:
            response = await route.answer(scope["app"].state.llamaeval, scope["state"]["account_id"],
                                          pipeline_id, body)
        except Exception as exc:
            handler = next((route.exception_handlers[cls] for cls in type(exc).__mro__
                            if cls in route.exception_handlers), None)
            if handler is None:
                raise  # the CatchAll middleware answers 500
            response = await handler(Request(scope), exc)
        await response(scope, receive, send)

    def _take(self, scope: dict) -> tuple[LaneRoute, str, Any] | None:
        """(route, pipeline id, validated body) when this lane answers the request, else None."""
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("query_string"):
            return None
        path = scope.get("path", "")
        if not path.endswith("/retrieve"):
            return None
        state = scope.get("state") or {}
        if "json_body" not in state or "account_id" not in state:
            return None
        for pattern, route in self.routes:
            match = pattern.match(path)
            if match is None:
                continue
            try:
                body = route.model.model_validate(state["json_body"])
            except ValidationError:
                return None  # FastAPI refuses it, in the dialect's shape
            return route, match.group(1), body
        return None
