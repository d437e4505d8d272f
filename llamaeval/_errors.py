"""The exception tree of llamaeval.

    LlamaEvalError                 root: catch this to catch everything below
    ├── ConfigurationError         bad arguments or settings, raised before any request
    ├── APIError                   the server answered with an error (status, message, request)
    │   ├── BadRequestError        400, 413, 422
    │   ├── AuthenticationError    401
    │   ├── NotFoundError          404
    │   ├── RateLimitError         429
    │   └── ServerError            5xx
    ├── APIConnectionError         the server could not be reached
    │   └── APITimeoutError        the request timed out
    ├── QuerySetError              a query set is malformed (duplicate ids, bad grades, ...)
    ├── AlignmentError             run and judgements barely overlap (misaligned ids)
    ├── SyncError                  a pipeline sync failed or timed out
    │   └── EmptyPipelineError     the pipeline holds nothing searchable (pre-flight check)
    └── EvaluationError            metrics cannot be computed (empty run, unknown metric)
        └── IncomparableRunsError  two runs cannot be paired (other queries or judgements)
"""

from __future__ import annotations

from typing import Any


class LlamaEvalError(Exception):
    """Root of every error llamaeval raises on purpose."""


class ConfigurationError(LlamaEvalError, ValueError):
    """An argument or setting is invalid; nothing was sent."""


class APIError(LlamaEvalError):
    """The API answered with an error status.

    Attributes: ``status_code`` (int), ``message`` (the server's ``detail``),
    ``request`` (the ``httpx.Request`` or None), ``body`` (parsed JSON or text).
    """

    def __init__(self, message: str, *, status_code: int | None = None,
                 request: Any = None, body: Any = None) -> None:
        self.message = message
        self.status_code = status_code
        self.request = request
        self.body = body
        where = ""
        if request is not None:
            where = f" ({request.method} {request.url})"
        prefix = f"HTTP {status_code}: " if status_code is not None else ""
        super().__init__(f"{prefix}{message}{where}")


class BadRequestError(APIError):
    """The server refused the request's content (400, 413, 422)."""


class AuthenticationError(APIError):
    """Missing or wrong API key (401)."""


class NotFoundError(APIError):
    """The object does not exist or belongs to another account (404)."""


class RateLimitError(APIError):
    """Too many requests (429); retried automatically before this is raised."""


class ServerError(APIError):
    """The server failed (5xx); retried automatically before this is raised."""


class APIConnectionError(LlamaEvalError):
    """The server could not be reached (refused, reset, DNS)."""

    def __init__(self, message: str, *, request: Any = None) -> None:
        self.message = message
        self.request = request
        super().__init__(message)


class APITimeoutError(APIConnectionError):
    """The request did not complete within the timeout (seconds)."""


class QuerySetError(LlamaEvalError, ValueError):
    """A query set or its judgements are malformed."""


class AlignmentError(LlamaEvalError):
    """A run's query or document ids barely overlap the judgements."""


class SyncError(LlamaEvalError):
    """A pipeline sync failed, or did not finish within the timeout."""


class EmptyPipelineError(SyncError):
    """A pipeline holds no searchable chunks (nothing ingested, or ingestion reported success
    with no chunks): benchmarking it would score zero everywhere."""


class EvaluationError(LlamaEvalError, ValueError):
    """Metrics cannot be computed for this input."""


class IncomparableRunsError(EvaluationError):
    """Two runs cannot be compared query by query: their queries or judgements differ (by
    content hash), or no configuration of one sends the same request as one of the other."""
