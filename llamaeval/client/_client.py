"""LlamaCloud (blocking) and AsyncLlamaCloud: configuration plus a small driver each."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from llamaeval._errors import ConfigurationError
from llamaeval.client import _operations as ops
from llamaeval.client._config import ClientConfig, mask_key, resolve_config
from llamaeval.client._core import Core, Gather, Send, Sleep
from llamaeval.client._resources import DataSources, Files, Pipelines, Projects
from llamaeval.client._retry import RetryPolicy


class _BaseClient:
    """Settings and namespaces shared by both clients."""

    def __init__(self, api_key: str | None, base_url: str | None, region: str,
                 timeout: float | httpx.Timeout | None, max_retries: int,
                 transport: Any, http_client: Any, retry: RetryPolicy | None, dialect: str) -> None:
        self._config: ClientConfig = resolve_config(api_key, base_url, region, dialect=dialect)
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigurationError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        if timeout is not None and not isinstance(timeout, httpx.Timeout) and (
                isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
            raise ConfigurationError(f"timeout must be seconds > 0, an httpx.Timeout or None, got {timeout!r}")
        if transport is not None and http_client is not None:
            raise ConfigurationError("pass either transport= or http_client=, not both")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
        self.timeout = timeout
        self.max_retries = max_retries
        self.transport = transport
        self.retry = retry or RetryPolicy()
        self._core = Core(self._config, self.retry, max_retries)
        self._owns_http = http_client is None
        self.projects = Projects(self)
        self.files = Files(self)
        self.pipelines = Pipelines(self)
        self.data_sources = DataSources(self)

    @property
    def config(self) -> ClientConfig:
        """The resolved settings (``api_key``, ``base_url`` without ``/api/v1``, ``api_root``)."""
        return self._config

    @property
    def base_url(self) -> str:
        """The server root, without ``/api/v1``."""
        return self._config.base_url

    @property
    def api_key(self) -> str:
        return self._config.api_key

    @property
    def dialect(self) -> str:
        """``"simplified"`` or ``"llamacloud"``; ``"auto"`` until the first request decided it."""
        return self._core.resolved_dialect or self._config.dialect

    def _settings(self) -> dict[str, Any]:
        return {"api_key": self.api_key, "base_url": self.base_url, "timeout": self.timeout,
                "max_retries": self.max_retries, "retry": self.retry, "dialect": self.dialect}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(base_url={self.base_url!r}, api_key={mask_key(self.api_key)!r}, "
                f"dialect={self.dialect!r})")


class LlamaCloud(_BaseClient):
    """Blocking client for the LlamaCloud REST API (and the local llamaeval server).

    Settings: argument, then ``LLAMA_CLOUD_API_KEY`` / ``LLAMA_CLOUD_BASE_URL``,
    then ``region`` ("us" or "eu"). ``timeout`` in seconds (or an ``httpx.Timeout``);
    ``max_retries`` retries after the first attempt; ``transport`` an
    ``httpx.BaseTransport`` or ``http_client`` an ``httpx.Client`` you own;
    ``retry`` a :class:`RetryPolicy` (backoff, injectable sleep); ``dialect`` ``"auto"``
    (LlamaCloud's hosts speak the real API; another server is asked once, on first use),
    ``"llamacloud"`` or ``"simplified"``. Thread-safe; use as a context manager or call :meth:`close`.
    """

    def __init__(self, api_key: str | None = None, base_url: str | None = None, region: str = "us",
                 timeout: float | httpx.Timeout | None = 60.0, max_retries: int = 2,
                 transport: httpx.BaseTransport | None = None, http_client: httpx.Client | None = None,
                 *, retry: RetryPolicy | None = None, dialect: str = "auto") -> None:
        super().__init__(api_key, base_url, region, timeout, max_retries, transport, http_client, retry, dialect)
        if http_client is not None and not isinstance(http_client, httpx.Client):
            raise ConfigurationError(f"http_client must be an httpx.Client, got {type(http_client).__name__}")
        self._http = http_client or httpx.Client(transport=transport, timeout=timeout, follow_redirects=True)

    def _run(self, op: Any) -> Any:
        """Drive an operation with blocking I/O."""
        http, policy = self._http, self.retry
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                instruction = op.send(value) if error is None else op.throw(error)
            except StopIteration as stop:
                return stop.value
            value = error = None
            if type(instruction) is Send:
                request = http.build_request(**self._core.request_kwargs(instruction.call))
                try:
                    value = (request, http.send(request))
                except httpx.RequestError as exc:
                    value = (request, exc)
            elif type(instruction) is Sleep:
                policy.sleep(instruction.seconds)
            elif type(instruction) is Gather:
                try:
                    value = [self._run(sub) for sub in instruction.ops]
                except Exception as exc:
                    error = exc
            else:  # pragma: no cover - a programming error in an operation
                raise TypeError(f"unknown instruction {instruction!r}")

    def health(self) -> dict[str, Any]:
        """``GET /health`` of the server root (no auth; the local server answers it)."""
        return self._run(ops.health(self._core))

    def to_async(self) -> AsyncLlamaCloud:
        """An AsyncLlamaCloud with the same settings (and transport, if it can run async)."""
        transport = self.transport
        if not self._owns_http:
            raise ConfigurationError("this client wraps your own httpx.Client; build the AsyncLlamaCloud yourself")
        if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
            raise ConfigurationError("this client's transport cannot run asynchronously")
        return AsyncLlamaCloud(**self._settings(), transport=transport)

    def close(self) -> None:
        """Close the connection pool (not an ``http_client`` you passed in)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> LlamaCloud:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class AsyncLlamaCloud(_BaseClient):
    """Asynchronous twin of :class:`LlamaCloud`: same arguments and namespaces; every
    method returns an awaitable. ``transport`` is an ``httpx.AsyncBaseTransport``,
    ``http_client`` an ``httpx.AsyncClient``. Use ``async with`` or ``await aclose()``.
    """

    def __init__(self, api_key: str | None = None, base_url: str | None = None, region: str = "us",
                 timeout: float | httpx.Timeout | None = 60.0, max_retries: int = 2,
                 transport: httpx.AsyncBaseTransport | None = None, http_client: httpx.AsyncClient | None = None,
                 *, retry: RetryPolicy | None = None, dialect: str = "auto") -> None:
        super().__init__(api_key, base_url, region, timeout, max_retries, transport, http_client, retry, dialect)
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise ConfigurationError(f"http_client must be an httpx.AsyncClient, got {type(http_client).__name__}")
        self._http = http_client or httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=True)

    def _run(self, op: Any) -> Any:
        return self._drive(op)

    async def _drive(self, op: Any) -> Any:
        """Drive an operation with ``await``ed I/O."""
        http, policy = self._http, self.retry
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                instruction = op.send(value) if error is None else op.throw(error)
            except StopIteration as stop:
                return stop.value
            value = error = None
            if type(instruction) is Send:
                request = http.build_request(**self._core.request_kwargs(instruction.call))
                try:
                    value = (request, await http.send(request))
                except httpx.RequestError as exc:
                    value = (request, exc)
            elif type(instruction) is Sleep:
                await policy.async_sleep(instruction.seconds)
            elif type(instruction) is Gather:
                try:
                    value = await self._gather(instruction)
                except Exception as exc:
                    error = exc
            else:  # pragma: no cover - a programming error in an operation
                raise TypeError(f"unknown instruction {instruction!r}")

    async def _gather(self, gather: Gather) -> list[Any]:
        """Run sub-operations concurrently (at most ``gather.limit`` at once); first error cancels the rest."""
        semaphore = asyncio.Semaphore(max(1, gather.limit))

        async def one(sub: Any) -> Any:
            async with semaphore:
                return await self._drive(sub)

        tasks = [asyncio.ensure_future(one(sub)) for sub in gather.ops]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def health(self) -> dict[str, Any]:
        """``GET /health`` of the server root (no auth; the local server answers it)."""
        return await self._drive(ops.health(self._core))

    def copy(self) -> AsyncLlamaCloud:
        """A fresh AsyncLlamaCloud with the same settings and its own connection pool.

        httpx connections are bound to the event loop that opened them; use the copy
        on another loop. Raises ConfigurationError when this client wraps your own
        ``httpx.AsyncClient`` (it cannot be duplicated).
        """
        if not self._owns_http:
            raise ConfigurationError(
                "this AsyncLlamaCloud wraps your own httpx.AsyncClient, which is bound to its event loop")
        return AsyncLlamaCloud(**self._settings(), transport=self.transport)

    async def aclose(self) -> None:
        """Close the connection pool (not an ``http_client`` you passed in)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncLlamaCloud:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()
