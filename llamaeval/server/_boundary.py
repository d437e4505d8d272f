"""The request boundary, for both dialects: every string and number a client sends is checked
here before a route sees it, and no exception ever reaches the server as an exception.

- :class:`CatchAll` (innermost of each app's middleware): an unexpected exception becomes one
  logged line + traceback and a JSON 500, and is *not* re-raised, so the kept-alive connection
  stays usable (re-raising makes uvicorn close it after the response, and log it again).
- :func:`check_json_body`: a JSON body must be UTF-8 (else the byte position is named), valid
  JSON (line/column named), without ``NaN``/``Infinity``, nested at most ``MAX_DEPTH`` levels,
  every string (keys too) free of NUL characters and lone UTF-16 surrogates, every integer
  inside 64-bit range and every number finite. The first offence is reported with its field.
- :func:`check_text`: the same rule for one string (query parameters, form fields, names).
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any

from pydantic import BaseModel

__all__ = ["CatchAll", "BadRequest", "check_json_body", "check_text", "text_problem", "validation_message",
           "MAX_DEPTH", "INT64_MIN", "INT64_MAX", "error_body"]

log = logging.getLogger("llamaeval.server")

MAX_DEPTH = 64
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1
_SURROGATE = re.compile("[\ud800-\udfff]")


class BadRequest(Exception):
    """A request refused at the boundary: ``loc`` (FastAPI style: ``["body", 0, "metadata"]``),
    ``message`` (what is wrong, for humans) and ``kind`` (FastAPI error ``type``)."""

    def __init__(self, loc: list[Any], message: str, kind: str = "value_error") -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message
        self.kind = kind

    def as_error(self) -> dict[str, Any]:
        return {"loc": self.loc, "msg": self.message, "type": self.kind}


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored or searched (None when it can)."""
    i = value.find("\x00")
    if i >= 0:
        return f"contains a NUL character (\\u0000) at position {i}"
    m = _SURROGATE.search(value)
    if m is not None:
        return (f"contains a lone UTF-16 surrogate (\\u{ord(m.group()):04x}) at position {m.start()}: "
                "send valid Unicode text")
    return None


def check_text(value: str, loc: list[Any]) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise BadRequest(loc, problem)
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (JSON has no NaN or Infinity)")


def check_json_body(raw: bytes) -> Any:
    """The parsed JSON of ``raw``, or :class:`BadRequest` naming the first problem."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(["body"], f"the JSON body is not valid UTF-8: byte 0x{raw[exc.start]:02x} at byte "
                         f"position {exc.start} ({exc.reason}); JSON must be sent as UTF-8",
                         "json_invalid") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise BadRequest(["body"], f"malformed JSON body: {exc.msg} at line {exc.lineno} column {exc.colno} "
                         f"(character {exc.pos})", "json_invalid") from None
    except RecursionError:
        raise BadRequest(["body"], f"the JSON body is nested too deeply (at most {MAX_DEPTH} levels)",
                         "json_invalid") from None
    except ValueError as exc:  # NaN/Infinity, or an integer literal of more than 4300 digits
        raise BadRequest(["body"], f"malformed JSON body: {exc}", "json_invalid") from None
    _walk(value, ["body"], 0)
    return value


def _walk(value: Any, loc: list[Any], depth: int) -> None:
    if isinstance(value, str):
        check_text(value, loc)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise BadRequest(loc, f"integer {_short(value)} is out of range: integers must be within "
                             f"-2**63..2**63-1", "int_out_of_range")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise BadRequest(loc, "number is too large (not a finite 64-bit float)", "float_out_of_range")
    elif depth >= MAX_DEPTH:
        raise BadRequest(loc, f"nested too deeply (at most {MAX_DEPTH} levels)", "json_invalid")
    elif isinstance(value, dict):
        for key, item in value.items():
            problem = text_problem(key)
            if problem is not None:
                raise BadRequest(loc, f"key {key.encode('utf-8', 'backslashreplace').decode('ascii', 'replace')!r} "
                                 f"{problem}")
            _walk(item, loc + [key], depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _walk(item, loc + [i], depth + 1)


def _short(n: int) -> str:
    digits = str(n) if abs(n) < 10 ** 40 else f"with {len(str(abs(n)))} digits"
    return digits


def validation_message(errors: list[dict[str, Any]]) -> str:
    """One sentence for the simplified dialect's 400 from FastAPI-style errors (first five)."""
    parts = []
    for err in errors[:5]:
        etype = err.get("type", "")
        loc = [str(x) for x in err.get("loc", ())]
        where = ".".join(loc[1:]) if loc and loc[0] in ("body", "query", "path", "header") else ".".join(loc)
        if etype == "json_invalid":
            reason = (err.get("ctx") or {}).get("error", "") or err.get("msg", "")
            if reason == "JSON decode error":
                reason = ""
            parts.append(reason if reason.startswith(("malformed JSON", "the JSON body"))
                         else (f"malformed JSON body ({reason})" if reason else "malformed JSON body"))
            continue
        if etype == "missing" and loc == ["body"]:
            parts.append("request body is required")
            continue
        msg = err.get("msg", "invalid value")
        if loc and loc[0] == "query":
            where = f"query parameter {where}"
        elif loc and loc[0] == "path":
            where = f"path parameter {where}"
        elif loc and loc[0] == "body" and where == "":
            where = "request body"
        parts.append(f"{where}: {msg}" if where else msg)
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "invalid request: " + "; ".join(parts) + more


def error_body(real_dialect: bool, exc: BadRequest) -> tuple[int, dict[str, Any]]:
    """(status, JSON) of a boundary refusal: 422 in FastAPI's shape for the real dialect (what the
    official SDKs parse), 400 with one sentence for the simplified one."""
    if real_dialect:
        return 422, {"detail": [exc.as_error()]}
    return 400, {"detail": validation_message([exc.as_error()])}


class CatchAll:
    """ASGI middleware: an unexpected exception is logged once (with its traceback) and answered
    with a JSON 500 when no response has started; it is never re-raised, so the server keeps the
    connection (re-raising makes uvicorn log it a second time and reset the connection)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        state = {"started": False, "ended": False}

        async def tracked(message: dict) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                state["ended"] = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            path = scope.get("root_path", "") + scope.get("path", "")
            log.error("internal error on %s %s: %s: %s", scope.get("method"), path, type(exc).__name__, exc,
                      exc_info=exc)
            if not state["started"]:
                body = json.dumps({"detail": f"internal server error ({type(exc).__name__})"}).encode()
                await send({"type": "http.response.start", "status": 500,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
            elif not state["ended"]:
                try:  # a truncated response: the server closes this one connection
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                except Exception:
                    pass


def unknown_fields(value: Any, path: str = "") -> list[str]:
    """Fields a client sent that no request model knows (pydantic models with ``extra="allow"``),
    with their place: ``topk``, ``[0].metdata``."""
    out: list[str] = []
    if isinstance(value, BaseModel):
        out += [f"{path}{key}" for key in (value.model_extra or {})]
        for name, field_value in value.__dict__.items():  # the model's fields and their values
            if isinstance(field_value, (BaseModel, list)):
                out += unknown_fields(field_value, f"{path}{name}.")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, (BaseModel, list)):
                out += unknown_fields(item, f"{path.removesuffix('.')}[{i}].")
    return out


def unknown_fields_warning(*bodies: Any) -> dict[str, str]:
    """``{"Warning": '299 - "unknown field(s) ignored: topk"'}`` when the bodies carry fields
    nobody reads (so a misspelled parameter is never silently dropped), else ``{}``."""
    names = [name for body in bodies for name in unknown_fields(body)]
    if not names:
        return {}
    shown = (", ".join(names[:10]) + (f" (and {len(names) - 10} more)" if len(names) > 10 else ""))[:500]
    # a header value is printable ASCII: other characters (control ones included: a name with a
    # CR or LF would make the whole response illegal) are shown as backslash escapes
    ascii_only = shown.encode("ascii", "backslashreplace").decode("ascii")
    printable = "".join(ch if " " <= ch <= "~" else f"\\x{ord(ch):02x}" for ch in ascii_only)
    safe = printable.replace("\\", "\\\\").replace('"', '\\"')
    return {"Warning": f'299 - "unknown field(s) ignored: {safe}"'}
