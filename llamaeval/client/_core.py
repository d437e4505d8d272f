"""Sans-I/O core shared by the sync and async clients.

Every operation is a generator that *yields instructions* and *returns* its
result. The two clients differ only in the small driver that carries the
instructions out (``LlamaCloud._run`` with blocking calls, ``AsyncLlamaCloud._run``
with ``await``):

* :class:`Send` -> the driver builds the ``httpx.Request`` for the :class:`Call`,
  sends it once and sends back ``(request, response_or_transport_exception)``;
* :class:`Sleep` -> the driver sleeps (``RetryPolicy.sleep`` / ``async_sleep``);
* :class:`Gather` -> the driver runs sub-operations (sequentially in the sync
  client, concurrently up to ``limit`` in the async one) and sends back their results.

Request building, retries, error mapping, JSON parsing and DataFrame building are
therefore written once.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TypeVar

import httpx

from llamaeval._errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    NotFoundError,
    RateLimitError,
    ServerError,
)
from llamaeval.client._config import AUTO, LLAMACLOUD, SIMPLIFIED, ClientConfig
from llamaeval.client._retry import RetryPolicy

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call:
    """One API request, described without I/O; ``path`` is relative to ``/api/v1`` (or the root)."""

    method: str
    path: str
    params: Mapping[str, str] | None = None
    content: bytes | None = None  # a JSON body, already encoded
    files: Mapping[str, tuple[str, bytes, str]] | None = None
    data: Mapping[str, str] | None = None  # multipart form fields sent with ``files``
    idempotent: bool = True
    at_root: bool = False  # path relative to the server root (``/health``), not ``/api/v1``


@dataclass(slots=True)
class Send:
    call: Call


@dataclass(slots=True)
class Sleep:
    seconds: float


@dataclass(slots=True)
class Gather:
    ops: list[Generator[Any, Any, Any]]
    limit: int = 4


Op = Generator[Any, Any, T]
"""An operation: yields Send/Sleep/Gather, returns T."""


@dataclass(slots=True)
class Reply:
    """A successful response plus the client-side wall time (seconds, all attempts)."""

    request: httpx.Request
    response: httpx.Response
    elapsed_s: float
    attempts: int

    def json(self) -> Any:
        """The parsed body; malformed JSON raises APIError (not retried)."""
        try:
            return self.response.json()
        except ValueError as exc:
            raise APIError(
                f"malformed JSON in the response body ({exc})",
                status_code=self.response.status_code,
                request=self.request,
                body=self.response.text[:1000],
            ) from exc

    def json_or_none(self) -> Any:
        """The parsed body, or None for an empty body."""
        if not self.response.content.strip():
            return None
        return self.json()


def _json_default(value: Any) -> Any:
    """Make numpy / pandas scalars and datetimes JSON-serialisable."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    item = getattr(value, "item", None)  # numpy scalar
    if callable(item):
        return item()
    to_dict = getattr(value, "to_dict", None)  # config objects
    if callable(to_dict):
        return to_dict()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def clean_json(value: Any) -> Any:
    """Plain Python values for JSON: NaN / NA become None, numpy scalars Python scalars."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    try:  # pandas NA / NaT and numpy NaN
        import pandas as pd

        if pd.api.types.is_scalar(value) and pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    item = getattr(value, "item", None)
    if callable(item):
        return clean_json(item())
    return value


def encode_json(body: Any) -> bytes:
    """Encode a request body; values that cannot be sent raise ConfigurationError."""
    try:
        return json.dumps(clean_json(body), default=_json_default, allow_nan=False,
                          separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"request body is not JSON serialisable: {exc}") from exc


_STATUS_ERRORS: dict[int, type[APIError]] = {
    400: BadRequestError, 413: BadRequestError, 422: BadRequestError,
    401: AuthenticationError, 403: AuthenticationError,
    404: NotFoundError, 429: RateLimitError,
}


def error_from_response(request: httpx.Request, response: httpx.Response) -> APIError:
    """Map an error response to the exception tree; message = the server's ``detail``."""
    status = response.status_code
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    message: Any = None
    if isinstance(body, dict):
        message = body.get("detail", body.get("message", body.get("error")))
    elif isinstance(body, str) and body.strip():
        message = body.strip()[:500]
    if message is None or message == "":
        message = response.reason_phrase or "error"
    if isinstance(message, list) and all(isinstance(e, dict) and "msg" in e for e in message):
        message = "; ".join(_validation_item(e) for e in message)  # FastAPI's 422 detail list
    if not isinstance(message, str):
        message = json.dumps(message, default=str)
    cls = _STATUS_ERRORS.get(status) or (ServerError if status >= 500 else APIError)
    return cls(message, status_code=status, request=request, body=body)


def _validation_item(error: dict[str, Any]) -> str:
    """``body.alpha: Input should be less than or equal to 1`` from one 422 entry."""
    loc = ".".join(str(x) for x in error.get("loc") or ())
    return f"{loc}: {error['msg']}" if loc else str(error["msg"])


def error_from_exception(exc: Exception, request: httpx.Request, attempts: int) -> Exception:
    """Map a transport exception to APIConnectionError / APITimeoutError."""
    what = f"{request.method} {request.url}"
    tries = f" after {attempts} attempt{'s' if attempts != 1 else ''}"
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"request timed out{tries}: {type(exc).__name__} {exc} ({what})", request=request)
    if isinstance(exc, httpx.RequestError):
        return APIConnectionError(f"could not reach the server{tries}: {type(exc).__name__} {exc} ({what})",
                                  request=request)
    return exc


@dataclass
class Core:
    """What every operation needs: settings, the retry policy and the budget."""

    config: ClientConfig
    policy: RetryPolicy
    max_retries: int
    headers: dict[str, str] = field(default_factory=dict)
    #: the dialect in use: the configured one, or what the probe found (None until then)
    resolved_dialect: str | None = None

    def __post_init__(self) -> None:
        if self.config.dialect != AUTO:
            self.resolved_dialect = self.config.dialect
        from llamaeval import __version__

        self.headers = {
            "Authorization": f"Bearer {self.config.api_key}",
            "Accept": "application/json",
            "User-Agent": f"llamaeval/{__version__}",
        }
        self._json_headers = {**self.headers, "Content-Type": "application/json"}

    def request_kwargs(self, call: Call) -> dict[str, Any]:
        """Arguments for ``httpx.Client.build_request`` (rebuilt for every attempt)."""
        kwargs: dict[str, Any] = {
            "method": call.method,
            "url": (self.config.base_url if call.at_root else self.config.api_root) + call.path,
            "headers": self._json_headers if call.content is not None else self.headers,
        }
        if call.params:
            kwargs["params"] = call.params
        if call.content is not None:
            kwargs["content"] = call.content
        if call.files is not None:
            kwargs["files"] = call.files
        if call.data is not None:
            kwargs["data"] = call.data
        return kwargs

    def dialect(self) -> Op[str]:
        """The API dialect, decided once per client: configured, implied by the host, or
        probed with one ``GET /projects`` (real LlamaCloud projects carry ``organization_id``)."""
        if self.resolved_dialect is None:
            try:
                reply = yield from self.request(Call("GET", "/projects"))
            except NotFoundError:  # no project listing: not the real LlamaCloud API
                self.resolved_dialect = SIMPLIFIED
            else:
                self.resolved_dialect = probe_dialect(reply.json_or_none())
        return self.resolved_dialect

    def request(self, call: Call) -> Op[Reply]:
        """Send ``call`` with retries; return the Reply or raise the mapped error."""
        attempt = 0
        start = time.monotonic()
        while True:
            request, result = yield Send(call)
            if isinstance(result, httpx.Response) and result.status_code < 300:
                return Reply(request, result, time.monotonic() - start, attempt + 1)
            if attempt < self.max_retries:
                delay = self.policy.retry_delay(result, idempotent=call.idempotent, attempt=attempt)
                if delay is not None:
                    yield Sleep(delay)
                    attempt += 1
                    continue
            if isinstance(result, Exception):
                raise error_from_exception(result, request, attempt + 1) from result
            raise error_from_response(request, result)


def probe_dialect(projects: Any) -> str:
    """The dialect a ``GET /projects`` answer reveals: the real API lists the account's
    projects (a ``Default`` one at least) with their ``organization_id``."""
    if isinstance(projects, list) and any(isinstance(p, dict) and "organization_id" in p for p in projects):
        return LLAMACLOUD
    return SIMPLIFIED
