"""What the runner needs from a client: an async client, pipeline details, the server version."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from llamaeval._errors import ConfigurationError, LlamaEvalError


@contextlib.asynccontextmanager
async def async_client(client: Any, *, twin: bool = False) -> AsyncIterator[Any]:
    """Yield an AsyncLlamaCloud for ``client``; a sync LlamaCloud gets its ``to_async()`` twin
    (same key, base URL, timeout, retries and transport), closed on exit.

    ``twin=True`` also replaces an AsyncLlamaCloud by a fresh one with the same settings:
    needed when running on another event loop than the one the client was used on
    (httpx connections are bound to their loop).
    """
    from llamaeval.client import AsyncLlamaCloud, LlamaCloud

    if isinstance(client, AsyncLlamaCloud):
        if not twin:
            yield client
            return
        try:
            fresh = client.copy()
        except ConfigurationError as exc:
            raise ConfigurationError(
                f"{exc}: use `await llamaeval.runner.abenchmark(...)` here instead of benchmark(...)") from None
        async with fresh:
            yield fresh
        return
    if not isinstance(client, LlamaCloud):
        raise ConfigurationError(
            f"client must be a llamaeval.LlamaCloud or AsyncLlamaCloud, got {type(client).__name__}")
    derived = client.to_async()  # ConfigurationError if its transport cannot run async
    async with derived:
        yield derived


async def server_info(aclient: Any) -> dict[str, Any]:
    """``GET /health`` of the server: ``{"base_url", "version", "status"}`` (``error`` if it failed)."""
    info: dict[str, Any] = {"base_url": aclient.base_url, "version": None}
    try:
        body = await aclient.health()
    except (LlamaEvalError, httpx.HTTPError, ValueError) as exc:
        info["error"] = f"{type(exc).__name__}: {exc}"
        return info
    if isinstance(body, dict):
        info["version"] = body.get("version")
        info["status"] = body.get("status")
    return info


async def pipeline_info(aclient: Any, pipeline_id: str) -> dict[str, Any]:
    """The pipeline's name and retrieval/chunking configuration, and in the real API its
    ``preset_retrieval_parameters`` (what a request omits), JSON-safe (raises on 404/401)."""
    pipe = await aclient.pipelines.get(pipeline_id)
    extra = getattr(pipe, "extra", None) or {}
    out: dict[str, Any] = {"id": pipeline_id}
    for name in ("name", "project_id", "retrieval_config", "chunking_config", "embedding_model",
                 "num_files", "num_chunks", "last_synced_at", "status", "preset_retrieval_parameters"):
        value = getattr(pipe, name, None)
        if value is None:
            value = extra.get(name)
        out[name] = _json_safe(value)
    return out


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "to_dict"):
        return _json_safe(value.to_dict())
    return str(value)
