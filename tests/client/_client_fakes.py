"""Helpers for the client tests: scripted MockTransport handlers, both clients, no real waits."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import httpx

from llamaeval.client import AsyncLlamaCloud, LlamaCloud, RetryPolicy

API_KEY = "test-key-0123456789"
BASE = "http://test.local"


def reply(status: int = 200, json: Any = None, *, headers: dict[str, str] | None = None,
          text: str | None = None) -> Callable[[httpx.Request], httpx.Response]:
    """A factory making a fresh response per request."""
    def make(request: httpx.Request) -> httpx.Response:
        if text is not None:
            return httpx.Response(status, text=text, headers=headers)
        return httpx.Response(status, json=json, headers=headers)
    return make


def fail(exc_type: type[httpx.RequestError], message: str = "injected") -> Callable[[httpx.Request], Any]:
    """A factory raising a transport error for the request."""
    def make(request: httpx.Request) -> Any:
        raise exc_type(message, request=request)
    return make


class Script:
    """A MockTransport handler playing the given steps in order; the last one repeats."""

    def __init__(self, *steps: Callable[[httpx.Request], Any]) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        return step(request)

    @property
    def attempts(self) -> int:
        return len(self.requests)


class Harness:
    """One client (sync or async) plus the sleeps its retries asked for."""

    def __init__(self, kind: str, handler: Callable[[httpx.Request], Any], **kwargs: Any) -> None:
        self.kind = kind
        self.sleeps: list[float] = []

        async def async_sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        policy = kwargs.pop("retry", None) or RetryPolicy(
            sleep=self.sleeps.append, async_sleep=async_sleep, rng=random.Random(0))
        cls = LlamaCloud if kind == "sync" else AsyncLlamaCloud
        kwargs.setdefault("api_key", API_KEY)
        kwargs.setdefault("base_url", BASE)
        kwargs.setdefault("dialect", "simplified")  # scripted simplified-API answers (the probe is tested apart)
        self.client = cls(transport=httpx.MockTransport(handler), retry=policy, **kwargs)

    def run(self, fn: Callable[[Any], Any]) -> Any:
        """Call ``fn(client)``; for the async client, await what it returns."""
        if self.kind == "sync":
            return fn(self.client)

        async def go() -> Any:
            return await fn(self.client)

        return asyncio.run(go())
