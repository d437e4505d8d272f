"""Bearer API keys, checked before a body is read (both dialects), and the body-size guard."""

from __future__ import annotations

import json
from typing import Any

from fastapi import HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from llamaeval.server._keys import hash_key

__all__ = ["account_id", "Gatekeeper", "send_json"]

_bearer = HTTPBearer(auto_error=False, scheme_name="bearerAuth", bearerFormat="API Key",
                     description="An API key from `llamaeval keys create`, as `Authorization: Bearer <key>`.")


def account_id(request: Request, _creds: HTTPAuthorizationCredentials | None = Security(_bearer)) -> str:
    """The caller's account; the gatekeeper middleware has already answered 401 otherwise."""
    acct = request.scope.get("state", {}).get("account_id")
    if acct is None:  # pragma: no cover - the middleware guarantees it
        raise HTTPException(401, "missing API key", headers={"WWW-Authenticate": "Bearer"})
    return acct


class Gatekeeper:
    """ASGI middleware run before the body is read: 413 for oversized bodies, 401 for bad keys
    on every path under one of ``protected`` prefixes (each dialect's API root).

    Doing this before FastAPI parses the body means an unauthenticated client never gets
    a 400 about its JSON, and a huge upload is refused from its Content-Length.
    """

    def __init__(self, app: Any, max_upload_bytes: int, protected: tuple[str, ...]) -> None:
        self.app = app
        self.max_upload_bytes = max_upload_bytes
        self.max_body_bytes = max_upload_bytes + 1024 * 1024  # room for the multipart envelope
        self.protected = protected

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path: str = scope.get("path", "")
        if any(path == prefix or path.startswith(prefix + "/") for prefix in self.protected):
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
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            limit_mb = self.max_upload_bytes / 1024 / 1024
            return await send_json(send, 413, f"request body of {int(length)} bytes is larger than the server's "
                                   f"upload limit of {limit_mb:.2f} MB (see --max-upload-mb)")
        return await self.app(scope, receive, send)


async def send_json(send: Any, status: int, detail: str, extra: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
