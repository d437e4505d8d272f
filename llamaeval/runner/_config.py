"""BenchmarkConfig: the knobs of a benchmark run that are not the grid itself."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llamaeval._errors import ConfigurationError

# Parameters the runner sets itself; a user must not override them through retrieve_params.
_RESERVED_PARAMS = frozenset({"pipeline_id", "query", "mode", "top_k"})


@dataclass(frozen=True)
class BenchmarkConfig:
    """How a benchmark is run (the grid itself is given to :func:`benchmark`).

    Attributes:
        warmup: requests per (pipeline, configuration) sent before measuring and excluded
            from every result (warms caches, connections, lazy model loading).
        rate_limit: maximum request rate in requests/second over the whole run
            (``None`` = as fast as ``concurrency`` allows).
        seed: seed of the shuffled send order (and of the warm-up query choice).
        share_k: send one request per (pipeline, configuration, query) at the largest
            ``top_k`` and derive smaller ``top_k`` by truncating its chunk list;
            the derived (smaller-k) rows carry ``shared=True`` and that request's latency.
        retrieve_params: extra keyword arguments for every ``retrieve`` call (to compare
            values, give them as ``benchmark(params=...)`` instead).
        mapping: how a retrieved chunk maps to a judged document id
            (a ``llamaeval.datasets.DocumentMapping``; default: metadata key ``doc_id``).
        progress: show a ``tqdm.auto`` progress bar.
        queries: query ids to run; ``None`` = the judged queries of the query set's split.
        retry_failed: when resuming from ``out``, re-send requests that failed before.
    """

    warmup: int = 2
    rate_limit: float | None = None
    seed: int = 0
    share_k: bool = False
    retrieve_params: Mapping[str, Any] = field(default_factory=dict)
    mapping: Any = None
    progress: bool = True
    queries: Sequence[str] | None = None
    retry_failed: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ConfigurationError(f"warmup must be an int >= 0, got {self.warmup!r}")
        if self.rate_limit is not None:
            if isinstance(self.rate_limit, bool) or not isinstance(self.rate_limit, (int, float)) \
                    or not math.isfinite(self.rate_limit) or self.rate_limit <= 0:
                raise ConfigurationError(
                    f"rate_limit must be a positive number of requests/second or None, got {self.rate_limit!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigurationError(f"seed must be an int, got {self.seed!r}")
        if not isinstance(self.retrieve_params, Mapping):
            raise ConfigurationError(
                f"retrieve_params must be a mapping, got {type(self.retrieve_params).__name__}")
        clash = sorted(_RESERVED_PARAMS & set(self.retrieve_params))
        if clash:
            raise ConfigurationError(
                f"retrieve_params may not set {clash}: the runner sets them from the grid")
        if self.queries is not None:
            if isinstance(self.queries, str) or not all(isinstance(q, str) for q in self.queries):
                raise ConfigurationError("queries must be a sequence of query id strings")
            if len(self.queries) == 0:
                raise ConfigurationError("queries must not be empty (use None for all judged queries)")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe view recorded in the run's manifest."""
        return {
            "warmup": self.warmup,
            "rate_limit": self.rate_limit,
            "seed": self.seed,
            "share_k": self.share_k,
            "retrieve_params": dict(self.retrieve_params),
            "mapping": _mapping_dict(self.mapping),
            "queries": list(self.queries) if self.queries is not None else None,
            "retry_failed": self.retry_failed,
        }


def _mapping_dict(mapping: Any) -> dict[str, Any] | None:
    """The identity of a DocumentMapping as recorded in manifests and resume fingerprints."""
    if mapping is None:
        return None
    to_dict = getattr(mapping, "to_dict", None)
    if callable(to_dict):
        return {"type": type(mapping).__name__, **to_dict()}
    return {"type": type(mapping).__name__, "metadata_key": getattr(mapping, "metadata_key", None)}
