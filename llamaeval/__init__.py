"""llamaeval: measure how well, and how fast, a LlamaCloud-style pipeline retrieves.

Public names are loaded lazily (PEP 562), so ``import llamaeval`` does no work
and pulls no heavy dependency until a name is used.
"""

from __future__ import annotations

import importlib
from typing import Any

from llamaeval._errors import (
    AlignmentError,
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    EmptyPipelineError,
    EvaluationError,
    LlamaEvalError,
    NotFoundError,
    QuerySetError,
    RateLimitError,
    ServerError,
    SyncError,
)

__version__ = "0.1.0"

# name -> module that defines it; resolved on first attribute access.
_LAZY: dict[str, str] = {
    "LlamaCloud": "llamaeval.client",
    "AsyncLlamaCloud": "llamaeval.client",
    "QuerySet": "llamaeval.datasets",
    "DocumentMapping": "llamaeval.datasets",
    "load_queryset": "llamaeval.datasets",
    "ingest": "llamaeval.datasets",
    "benchmark": "llamaeval.runner",
    "BenchmarkConfig": "llamaeval.runner",
    "BenchmarkRun": "llamaeval.runner",
    "EmbeddedServer": "llamaeval.server",
}
_SUBMODULES = {"client", "datasets", "runner", "metrics", "plots", "widgets", "report", "server", "engine"}

__all__ = [
    "__version__",
    # errors
    "LlamaEvalError", "ConfigurationError", "APIError", "BadRequestError",
    "AuthenticationError", "NotFoundError", "RateLimitError", "ServerError",
    "APIConnectionError", "APITimeoutError", "QuerySetError", "AlignmentError",
    "SyncError", "EmptyPipelineError", "EvaluationError",
    # lazily loaded
    *_LAZY,
    "metrics", "plots", "widgets", "report",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"llamaeval.{name}")
    raise AttributeError(f"module 'llamaeval' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(__all__) | set(globals()))
