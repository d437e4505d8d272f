"""Bearer API keys, checked before a body is read (both dialects), and the body guards: size
limits (uploads and JSON separately) and the JSON boundary check of :mod:`._boundary`."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qsl

from fastapi import HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from llamaeval.server._boundary import BadRequest, check_json_body, error_body, text_problem
from llamaeval.server._keys import hash_key

__all__ = ["account_id", "Gatekeeper", "send_json", "MULTIPART_ENVELOPE", "retrieve_body_bytes"]

#: Room for the multipart envelope around an upload of the maximal size.
MULTIPART_ENVELOPE = 1024 * 1024
#: A client that sends no part of its body for this many seconds gets 408 (a half-open
#: connection does not hold a worker forever).
BODY_IDLE_TIMEOUT_S = 30.0
#: Sent with a refusal that leaves the body unread: the server closes the connection instead of
#: reading (and parsing) the rest of a body it has refused, e.g. a 5 MB query.
_CLOSE = {"connection": "close"}
#: A body over its limit is still read (and dropped) up to this many times the limit, so the
#: client, which sends its whole body before it reads the answer, gets the 413 and keeps its
#: connection; beyond that the 413 goes with ``Connection: close`` and nothing more is read.
DRAIN_FACTOR = 2

_bearer = HTTPBearer(auto_error=False, scheme_name="bearerAuth", bearerFormat="API Key",
                     description="An API key from `llamaeval keys create`, as `Authorization: Bearer <key>`.")


async def account_id(request: Request, _creds: HTTPAuthorizationCredentials | None = Security(_bearer)) -> str:
    """The caller's account; the gatekeeper middleware has already answered 401 otherwise.
    A coroutine, so that FastAPI does not hand it to a worker thread on every request (a
    thread hop costs more than this lookup)."""
    acct = request.scope.get("state", {}).get("account_id")
    if acct is None:  # pragma: no cover - the middleware guarantees it
        raise HTTPException(401, "missing API key", headers={"WWW-Authenticate": "Bearer"})
    return acct


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.2f} MB"


def _fastapi_reads_json(content_type: str) -> bool:
    """Whether FastAPI parses a body of this (lower-cased, parameter-less) type as JSON:
    ``application/json`` or ``application/*+json`` (a body without a type it does not)."""
    main, _, sub = content_type.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


class Gatekeeper:
    """ASGI middleware run before FastAPI reads a body, on every path under one of ``protected``
    prefixes (each dialect's API root; ``real_prefix``: the real dialect's, whose refusals are
    422 in FastAPI's shape):

    1. 401 for a missing or unknown key (so an unauthenticated client never learns about its JSON);
    2. a NUL character in the path or a query parameter: 400/422 naming the parameter;
    3. 413 when the body is over its limit — multipart uploads ``max_upload_bytes`` (+ the
       envelope), retrieve requests ``retrieve_body_bytes(max_query_chars)`` (a maximal query
       and room for filters: a 5 MB query is refused from its Content-Length, before any
       parsing), every other body ``max_json_bytes`` — from ``Content-Length`` or, for a
       streamed body, as soon as the count passes it; a body more than ``DRAIN_FACTOR`` times
       its limit is not read at all (the connection is closed after the 413);
    4. a JSON body is read here and checked (:func:`check_json_body`: UTF-8, syntax, NUL,
       lone surrogates, 64-bit integers, finite numbers, depth) before it is handed on;
    5. 408 when a body stalls for ``BODY_IDLE_TIMEOUT_S`` seconds (a half-open connection).
    """

    def __init__(self, app: Any, max_upload_bytes: int, protected: tuple[str, ...], max_json_bytes: int,
                 real_prefix: str = "", max_query_chars: int = 4096) -> None:
        self.app = app
        self.max_upload_bytes = max_upload_bytes
        self.max_multipart_bytes = max_upload_bytes + MULTIPART_ENVELOPE
        self.max_json_bytes = max_json_bytes
        self.protected = protected
        self.real_prefix = real_prefix
        self.max_query_chars = max_query_chars
        self.max_retrieve_bytes = min(max_json_bytes, retrieve_body_bytes(max_query_chars))

    def _upload_too_large(self, size: str) -> str:
        return (f"request body of {size} is larger than the server's upload limit of "
                f"{_mb(self.max_upload_bytes)} (see --max-upload-mb / LLAMAEVAL_MAX_UPLOAD_MB)")

    def _json_too_large(self, size: str) -> str:
        return (f"request body of {size} is larger than the server's JSON body limit of "
                f"{_mb(self.max_json_bytes)} (see --max-json-mb / LLAMAEVAL_MAX_JSON_MB; upload files with POST /files "
                "instead)")

    def _retrieve_too_large(self, size: str) -> str:
        return (f"retrieve request body of {size} is larger than the server's limit for retrieve requests of "
                f"{self.max_retrieve_bytes} bytes (a query of at most {self.max_query_chars} characters, "
                "see --max-query-chars / LLAMAEVAL_MAX_QUERY_CHARS, and 64 KB for the other parameters)")

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path: str = scope.get("path", "")
        if not any(path == prefix or path.startswith(prefix + "/") for prefix in self.protected):
            return await self.app(scope, receive, send)
        load = scope["app"].state.llamaeval.load  # requests in flight: where a search runs (see _offload)
        load.enter(scope.get("client"))
        try:
            return await self._protected(scope, receive, send, headers, path)
        finally:
            load.leave()

    async def _protected(self, scope: dict, receive: Any, send: Any, headers: dict[str, str], path: str) -> None:
        real = bool(self.real_prefix) and (path == self.real_prefix or path.startswith(self.real_prefix + "/"))
        auth = headers.get("authorization", "")
        scheme, _, key = auth.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return await send_json(send, 401, "missing API key: send the header 'Authorization: Bearer <key>'",
                                   {"www-authenticate": "Bearer"})
        services = scope["app"].state.llamaeval
        acct = services.storage.account_for_key_hash(hash_key(key.strip()))
        if acct is None:
            return await send_json(send, 401, "invalid API key", {"www-authenticate": "Bearer"})
        scope.setdefault("state", {})["account_id"] = acct
        try:
            self._check_url(scope)
        except BadRequest as exc:
            status, payload = error_body(real, exc)
            return await send_json(send, status, payload)

        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        multipart = content_type.startswith("multipart/")
        if multipart:
            limit, too_large = self.max_multipart_bytes, self._upload_too_large
        elif path.endswith("/retrieve"):
            limit, too_large = self.max_retrieve_bytes, self._retrieve_too_large
        else:
            limit, too_large = self.max_json_bytes, self._json_too_large
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            if int(length) > DRAIN_FACTOR * limit:
                return await send_json(send, 413, too_large(f"{int(length)} bytes"), _CLOSE)
            drained = await _drain(receive, DRAIN_FACTOR * limit)
            return await send_json(send, 413, too_large(f"{int(length)} bytes"), None if drained else _CLOSE)
        if multipart:
            return await self.app(scope, _counting(receive, limit, too_large), send)
        if scope.get("method") in ("GET", "HEAD", "DELETE", "OPTIONS") and length in (None, "0") \
                and "transfer-encoding" not in headers:
            return await self.app(scope, receive, send)
        jsonish = (not content_type or content_type == "application/json" or content_type.endswith("+json"))
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                message = await _receive_in_time(receive)
            except asyncio.TimeoutError:
                return await send_json(send, 408, _stalled(), _CLOSE)
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                drained = not message.get("more_body", False) or await _drain(receive, DRAIN_FACTOR * limit - size)
                return await send_json(send, 413, too_large(f"more than {limit} bytes"), None if drained else _CLOSE)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if jsonish and body:
            try:
                parsed = check_json_body(body)
            except BadRequest as exc:
                status, payload = error_body(real, exc)
                return await send_json(send, status, payload)
            if path.endswith("/retrieve") and _fastapi_reads_json(content_type):
                scope["state"]["json_body"] = parsed  # the retrieve lane takes it from here (no second parse)
        return await self.app(scope, _replay(body, receive), send)

    @staticmethod
    def _check_url(scope: dict) -> None:
        problem = text_problem(scope.get("path", ""))
        if problem is not None:
            raise BadRequest(["path"], f"the URL path {problem}")
        raw = scope.get("query_string", b"")
        if raw:
            for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
                for part in (name, value):
                    problem = text_problem(part)
                    if problem is not None:
                        raise BadRequest(["query", name.replace("\x00", "\\u0000")], problem)


def retrieve_body_bytes(max_query_chars: int) -> int:
    """The largest retrieve request body: the query at 6 bytes a character (a JSON ``\\uXXXX``
    escape) and 64 KB for every other parameter (filters included)."""
    return 6 * max_query_chars + 64 * 1024


async def _drain(receive: Any, budget: int) -> bool:
    """Read and drop the rest of a refused body, at most ``budget`` bytes; whether it all came."""
    while budget >= 0:
        try:
            message = await _receive_in_time(receive)
        except asyncio.TimeoutError:
            return False
        if message["type"] != "http.request":
            return False
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return budget >= 0
    return False


def _replay(body: bytes, receive: Any) -> Any:
    """A ``receive`` that hands on ``body`` once, then the client's own messages (disconnect)."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _counting(receive: Any, limit: int, too_large: Any) -> Any:
    """A ``receive`` that refuses (413) a streamed body as soon as it passes ``limit`` bytes."""
    size = 0

    async def counted() -> dict:
        nonlocal size
        try:
            message = await _receive_in_time(receive)
        except asyncio.TimeoutError:
            raise HTTPException(408, _stalled(), headers=_CLOSE) from None
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                raise HTTPException(413, too_large(f"more than {limit} bytes"), headers=_CLOSE)
        return message

    return counted


async def _receive_in_time(receive: Any) -> dict:
    """The client's next message, or ``TimeoutError`` after ``BODY_IDLE_TIMEOUT_S`` seconds
    (``asyncio.timeout``: ``wait_for`` made a task, and a turn of the event loop, per message)."""
    async with asyncio.timeout(BODY_IDLE_TIMEOUT_S):
        return await receive()


def _stalled() -> str:
    return f"no part of the request body arrived for {BODY_IDLE_TIMEOUT_S:.0f} s: request timed out"


async def send_json(send: Any, status: int, detail: Any, extra: dict[str, str] | None = None) -> None:
    """Answer with ``{"detail": detail}`` (or ``detail`` itself when it is already a dict)."""
    payload = detail if isinstance(detail, dict) else {"detail": detail}
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
