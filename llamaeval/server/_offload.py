"""Where a retrieve request's blocking work runs: on the event loop itself when one client is
talking to the server, one request at a time; else on a worker thread.

A worker-thread hop (hand the call to a thread, wake the loop when it is done) costs ~0.5-1 ms of
CPU per request on a small machine — 5-10% of a 10 ms ``fast`` search — and buys nothing when
nobody else is waiting for the loop. With other requests in flight, or another connection seen in
the last ``ACTIVE_WINDOW_S`` seconds, the search goes to a thread as before, so concurrent clients
are parsed, answered and searched alongside it (the search gate still bounds how many searches run
at once). The connection rule matters: a request that arrives while an inline search blocks the
loop is only counted once that search is over, so two clients taking turns would otherwise see
"one request in flight" every time and be served one search at a time. Heavy queries never run
inline.

The counts are kept by the request gatekeeper (:class:`llamaeval.server._auth.Gatekeeper`) on the
event loop's thread only, so they need no lock. Before deciding, a request yields to the loop
once: the requests whose bytes arrived together with it get to count themselves first.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Hashable, TypeVar

from starlette.concurrency import run_in_threadpool

__all__ = ["RequestLoad", "ACTIVE_WINDOW_S"]

T = TypeVar("T")

#: A connection that sent a request within this many seconds counts as an active client.
ACTIVE_WINDOW_S = 1.0


class RequestLoad:
    """API requests in flight in this server process, the connections that sent them lately, and
    where their blocking work runs."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.in_flight = 0
        self._clock = clock
        self._last_seen: dict[Hashable, float] = {}  # connection -> when it last sent a request
        #: how many requests ran inline / on a worker thread (for tests and diagnostics)
        self.inline_runs = 0
        self.thread_runs = 0

    def enter(self, connection: Any = None) -> None:
        """A request starts; ``connection`` identifies its client connection (ASGI ``scope["client"]``)."""
        self.in_flight += 1
        now = self._clock()
        self._last_seen[connection] = now
        if len(self._last_seen) > 1:
            self._last_seen = {c: t for c, t in self._last_seen.items() if now - t <= ACTIVE_WINDOW_S}

    def leave(self) -> None:
        self.in_flight -= 1

    def alone(self) -> bool:
        """Whether this is the only request in flight, from the only connection seen lately (a
        request whose connection the server does not know, e.g. on a Unix socket, never is)."""
        if self.in_flight > 1:
            return False
        now = self._clock()
        active = [c for c, t in self._last_seen.items() if now - t <= ACTIVE_WINDOW_S]
        return len(active) == 1 and active[0] is not None

    async def run(self, work: Callable[[], T], inline: bool = True) -> T:
        """``work()`` inline when ``inline`` allows it and the request is :meth:`alone`, else in a
        worker thread; its result (or its exception)."""
        if inline:
            await asyncio.sleep(0)  # requests that arrived with this one count themselves first
            if self.alone():
                self.inline_runs += 1
                return work()
        self.thread_runs += 1
        return await run_in_threadpool(work)
