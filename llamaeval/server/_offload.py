"""Where a retrieve request's blocking work runs: on the event loop itself when it is the only
API request the server has, else on a worker thread.

A worker-thread hop (hand the call to a thread, wake the loop when it is done) costs ~0.5-1 ms of
CPU per request on a small machine — 5-10% of a 10 ms ``fast`` search — and buys nothing when
no other request is waiting for the loop. When others are in flight the search goes to a thread
as before, so they are parsed, answered and searched alongside it (the search gate still bounds
how many searches run at once). Requests that arrive while an inline search runs wait for it
(at most one search; heavy queries never run inline).

The count is kept by the request gatekeeper (:class:`llamaeval.server._auth.Gatekeeper`) on the
event loop's thread only, so it needs no lock. Before deciding, a request yields to the loop
once: the requests whose bytes arrived together with it get to count themselves first.
"""

from __future__ import annotations

import asyncio
from typing import Callable, TypeVar

__all__ = ["RequestLoad"]

T = TypeVar("T")


class RequestLoad:
    """API requests in flight in this server process, and where their blocking work runs."""

    def __init__(self) -> None:
        self.in_flight = 0
        #: how many requests ran inline / on a worker thread (for tests and diagnostics)
        self.inline_runs = 0
        self.thread_runs = 0

    def enter(self) -> None:
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1

    async def run(self, work: Callable[[], T], inline: bool = True) -> T:
        """``work()`` inline when ``inline`` allows it and this is the only request in flight,
        else in a worker thread; its result (or its exception)."""
        from starlette.concurrency import run_in_threadpool

        if inline:
            await asyncio.sleep(0)  # requests that arrived with this one count themselves first
            if self.in_flight <= 1:
                self.inline_runs += 1
                return work()
        self.thread_runs += 1
        return await run_in_threadpool(work)
