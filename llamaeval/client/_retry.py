"""When to retry a request, and how long to wait first.

Rules (documented in the package docstring):

* Idempotent requests (GET, PUT, DELETE, and ``retrieve``, which only reads) are
  retried on 408, 429, 5xx except 501, and on any transport error or timeout.
* Non-idempotent creates (``POST /projects``, ``/pipelines``, ``/data-sources``,
  ``/files``, and ``POST /pipelines/{id}/sync``, which starts a job) are retried only
  when the server cannot have applied them: a connection that was never established
  (connect error/timeout, pool timeout), 408 (the server gave up reading the request),
  429, and 503 *with* ``Retry-After`` (the server explicitly asks to come back).
  A 500/502/504, a read timeout or a dropped connection after sending raise at once,
  so a create is never silently repeated.
* The wait is ``Retry-After`` when the server sends one (seconds or an HTTP date);
  otherwise exponential backoff ``min(backoff_max, backoff_base * 2**attempt)``
  scaled by a random factor in [0.5, 1] (jitter). A ``Retry-After`` longer than
  ``max_retry_after`` seconds is not waited for: the error is raised.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import httpx

from llamaeval._errors import ConfigurationError

#: Errors raised before any byte of the request reached the server.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


@dataclass
class RetryPolicy:
    """Backoff settings; the number of retries is the client's ``max_retries``.

    ``sleep`` / ``async_sleep`` are injectable so tests run without waiting;
    ``rng`` makes the jitter reproducible. All durations are seconds.
    """

    backoff_base: float = 0.5
    backoff_max: float = 8.0
    max_retry_after: float = 60.0
    jitter: bool = True
    sleep: Callable[[float], None] = time.sleep
    async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        for name in ("backoff_base", "backoff_max", "max_retry_after"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ConfigurationError(f"RetryPolicy.{name} must be a number >= 0 (seconds), got {value!r}")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt + 1`` (``attempt`` counts from 0)."""
        delay = min(self.backoff_max, self.backoff_base * (2.0 ** attempt))
        if self.jitter:
            delay *= 0.5 + 0.5 * self.rng.random()
        return delay

    def retry_delay(self, result: httpx.Response | Exception, *, idempotent: bool, attempt: int) -> float | None:
        """Seconds to wait before retrying after ``result`` (the response or transport
        exception of attempt number ``attempt``, from 0), or None when it must not be retried.

        The caller enforces the budget (``max_retries``).
        """
        if isinstance(result, Exception):
            if not isinstance(result, httpx.TransportError):
                return None  # e.g. a decoding error: repeating it will not help
            if not idempotent and not isinstance(result, _NOT_SENT):
                return None  # the server may have applied it
            return self.backoff(attempt)
        status = result.status_code
        if status < 400:
            return None
        retry_after = parse_retry_after(result.headers.get("retry-after"))
        if status in (408, 429):
            pass  # the server did not act on the request
        elif status == 503 and retry_after is not None:
            pass  # the server explicitly asks to come back later
        elif status >= 500 and status != 501 and idempotent:
            pass
        else:
            return None
        if retry_after is None:
            return self.backoff(attempt)
        if retry_after > self.max_retry_after:
            return None
        return retry_after


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or HTTP date), or None when absent/invalid."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN / inf
        return None
    return max(0.0, seconds)
