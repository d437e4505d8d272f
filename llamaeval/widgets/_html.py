"""Small HTML helpers shared by the widgets: escaped tables and status lines."""

from __future__ import annotations

import base64
import html
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

TABLE_STYLE = (
    "<style>.le-t{border-collapse:collapse;font-size:12px;font-family:sans-serif}"
    ".le-t th,.le-t td{border:1px solid #ddd;padding:2px 6px;text-align:left}"
    ".le-t th{background:#f3f3f3}.le-rel2{background:#b7e4b7}.le-rel1{background:#e3f5e3}"
    ".le-err{color:#b00020}.le-muted{color:#777}</style>"
)


def frame_html(frame: "pd.DataFrame", *, max_rows: int = 200, floatfmt: str = "{:.4f}") -> str:
    """An escaped HTML table of ``frame`` (first ``max_rows`` rows), or a note when empty."""
    if frame is None or len(frame) == 0:
        return "<p class='le-muted'>(none)</p>"
    shown = frame.head(max_rows)
    body = shown.to_html(index=False, escape=True, classes="le-t", border=0, na_rep="",
                         float_format=lambda v: floatfmt.format(v))
    more = f"<p class='le-muted'>{len(frame) - max_rows} more rows not shown</p>" if len(frame) > max_rows else ""
    return TABLE_STYLE + body + more


def error_html(exc: BaseException) -> str:
    return f"<p class='le-err'>{html.escape(type(exc).__name__)}: {html.escape(str(exc))}</p>"


def png_img(png: bytes, alt: str = "figure") -> str:
    b64 = base64.b64encode(png).decode("ascii")
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{b64}'/>"


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))
