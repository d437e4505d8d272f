"""How objects look in a notebook: short ids, plural nouns, milliseconds, compact HTML cards.

Shared by the records, retrieve results, runs and query sets (their ``_repr_html_``), the
widgets and the report, so every view says things the same way. No import-time work:
pandas is imported only by the functions that render frames.

    short_id("eb643dde-2450-497d-999f-82108179bc7d")  -> "eb643dde"
    id_html(pid)          -> <code title="full id">eb643dde…</code> (full id on hover / copy)
    plural(1, "configuration") -> "1 configuration"
    ms(0.01234)           -> "12.3 ms"
    compact(retrieval_config) -> the scalars, nested objects as "{…N keys}" / "[…N items]"
    card(title, rows)     -> a two-column HTML table under a title
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

#: One stylesheet for every card and table (scoped by the ``le-`` prefix).
STYLE = (
    "<style>"
    ".le-card{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;font-size:12.5px;"
    "max-width:960px;line-height:1.35}"
    ".le-card h4{margin:2px 0 4px;font-size:13.5px}"
    ".le-card .le-sub{color:#666;font-weight:normal}"
    ".le-kv,.le-t{border-collapse:collapse;margin:2px 0}"
    ".le-kv th,.le-kv td,.le-t th,.le-t td{border:1px solid #e3e3e3;padding:2px 8px;text-align:left;"
    "vertical-align:top;line-height:1.3}"
    ".le-kv th{background:#f6f6f6;font-weight:600;white-space:nowrap}"
    ".le-t th{background:#f3f3f3;white-space:nowrap}"
    ".le-t td.le-num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}"
    ".le-card code{font-size:11.5px;background:#f4f4f4;padding:0 3px;border-radius:3px}"
    ".le-muted{color:#777}.le-err{color:#b00020}.le-ok{color:#1b7f1b}"
    ".le-snip{max-width:520px}"
    ".le-rec{border-left:4px solid #1b7f1b;background:#f3faf3;padding:6px 10px;margin:4px 0}"
    ".le-warn{border-left:4px solid #b00020;background:#fdf2f2;padding:6px 10px;margin:4px 0}"
    ".le-rel2{background:#b7e4b7}.le-rel1{background:#e3f5e3}"
    "</style>"
)

ID_CHARS = 8


def esc(value: Any) -> str:
    """HTML-escaped text of ``value`` ("" for None)."""
    return html.escape("" if value is None else str(value))


def short_id(value: Any, n: int = ID_CHARS) -> str:
    """The first ``n`` characters of an id (UUIDs are unique enough there for a person)."""
    text = "" if value is None else str(value)
    return text if len(text) <= n + 1 else text[:n]


def id_html(value: Any, n: int = ID_CHARS) -> str:
    """A short id that shows the full id on hover and copies whole (``title`` attribute)."""
    if value is None or _is_na(value):
        return ""
    text = str(value)
    if len(text) <= n + 1:
        return f"<code>{esc(text)}</code>"
    return f"<code title='{esc(text)}' data-id='{esc(text)}'>{esc(text[:n])}…</code>"


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """``"1 configuration"``, ``"2 configurations"`` (``nouns`` for irregular plurals)."""
    return f"{n:,} {noun if n == 1 else (nouns or noun + 's')}"


def ms(seconds: Any, digits: int = 1) -> str:
    """Seconds as milliseconds text, ``"12.3 ms"`` ("" when missing)."""
    if seconds is None or _is_na(seconds):
        return ""
    return f"{float(seconds) * 1000:.{digits}f} ms"


def duration(seconds: Any) -> str:
    """A human duration: ``"850 ms"``, ``"12.4 s"``, ``"3 min 5 s"``, ``"1 h 2 min"``."""
    if seconds is None or _is_na(seconds):
        return ""
    s = float(seconds)
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"


def when(value: Any) -> str:
    """A datetime (or ISO text) as ``2026-01-31 14:05:09 UTC``."""
    if value is None or _is_na(value):
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
        return value.strftime("%Y-%m-%d %H:%M:%S") + " UTC"
    return str(value)


def snippet(text: Any, n: int = 160) -> str:
    """Whitespace collapsed, cut at a word near ``n`` characters with an ellipsis."""
    s = " ".join(("" if text is None or _is_na(text) else str(text)).split())
    if len(s) <= n:
        return s
    cut = s[:n].rsplit(" ", 1)[0] if " " in s[: n] else s[:n]
    return cut.rstrip(",.;:") + " …"


def compact(value: Any, *, width: int = 90) -> str:
    """A short readable text of a (possibly nested) JSON-like value: scalars shown, nested
    dicts and lists summarised (``{…3 keys}``, ``[…18 items]``), cut at ``width`` characters."""
    text = _compact(value, depth=0)
    return text if len(text) <= width else text[: width - 1] + "…"


def _compact(value: Any, depth: int) -> str:
    if isinstance(value, Mapping):
        if depth >= 1:
            return "{…" + plural(len(value), "key") + "}"
        return "{" + ", ".join(f"{k}: {_compact(v, depth + 1)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        if depth >= 1 or len(value) > 6:
            return "[…" + plural(len(value), "item") + "]"
        return "[" + ", ".join(_compact(v, depth + 1) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str) and depth > 0:
        return value if len(value) <= 40 else value[:39] + "…"
    return str(value)


def dict_html(value: Mapping[str, Any], *, limit: int = 24) -> str:
    """A dict as a compact nested key/value table: scalars shown, nested objects summarised."""
    if not value:
        return "<span class='le-muted'>{}</span>"
    rows = []
    for i, (k, v) in enumerate(value.items()):
        if i == limit:
            rows.append(f"<tr><td colspan='2' class='le-muted'>… {len(value) - limit} more</td></tr>")
            break
        shown = compact(v, width=70) if isinstance(v, (Mapping, list, tuple)) else str(v)
        rows.append(f"<tr><th>{esc(k)}</th><td>{esc(shown)}</td></tr>")
    return "<table class='le-kv'>" + "".join(rows) + "</table>"


def card(title: str, rows: Iterable[tuple[str, str]], *, subtitle: str = "", foot: str = "") -> str:
    """An HTML card: a title line and a two-column table of (label, value HTML)."""
    body = "".join(f"<tr><th>{esc(label)}</th><td>{value}</td></tr>" for label, value in rows)
    sub = f" <span class='le-sub'>{subtitle}</span>" if subtitle else ""
    return (f"{STYLE}<div class='le-card'><h4>{title}{sub}</h4>"
            f"<table class='le-kv'>{body}</table>{foot}</div>")


def value_html(value: Any, *, key: str = "") -> str:
    """One field value for a card: ids shortened, dates readable, dicts compact."""
    if value is None or _is_na(value):
        return "<span class='le-muted'>—</span>"
    if key == "id" or key.endswith("_id"):
        return id_html(value)
    if isinstance(value, datetime):
        return esc(when(value))
    if isinstance(value, Mapping):
        return dict_html(value)
    if isinstance(value, (list, tuple)):
        return esc(compact(list(value)))
    if isinstance(value, float):
        return esc(f"{value:g}")
    return esc(value)


def frame_html(frame: Any, *, max_rows: int = 20, digits: int = 4, ids: Sequence[str] = (),
               wrap: Sequence[str] = ()) -> str:
    """An escaped HTML table of a DataFrame: numbers right-aligned (``digits`` decimals; columns
    ending ``ms`` with one), id columns shortened (``ids``, and every ``*_id`` column), long
    text columns (``wrap``) as snippets; at most ``max_rows`` rows with a note of the rest."""
    if frame is None or len(frame) == 0:
        return "<p class='le-muted'>(none)</p>"
    shown = frame.head(max_rows)
    head = "".join(f"<th>{esc(c)}</th>" for c in shown.columns)
    rows = []
    for rec in shown.itertuples(index=False, name=None):
        cells = []
        for col, v in zip(shown.columns, rec):
            name = str(col)
            if name in ids or name == "id" or name.endswith("_id") and name not in ("doc_id", "query_id"):
                cells.append(f"<td>{id_html(v)}</td>")
            elif name in wrap:
                cells.append(f"<td class='le-snip'>{esc(snippet(v))}</td>")
            elif isinstance(v, (Mapping, list, tuple)):
                cells.append(f"<td title='{esc(json_text(v)[:2000])}'>{esc(compact(v, width=60))}</td>")
            elif isinstance(v, datetime):
                cells.append(f"<td>{esc(when(v))}</td>")
            elif _is_number(v):
                d = 1 if name.endswith("ms") else digits
                cells.append(f"<td class='le-num'>{esc(number(v, d))}</td>")
            else:
                cells.append(f"<td>{'' if v is None or _is_na(v) else esc(v)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = (f"<p class='le-muted'>{plural(len(frame) - max_rows, 'more row')} not shown</p>"
            if len(frame) > max_rows else "")
    return f"<table class='le-t'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{more}"


def number(value: Any, digits: int = 4) -> str:
    """A number as text: ints as they are, floats with ``digits`` decimals, NaN as ""."""
    if value is None or _is_na(value):
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int) or (hasattr(value, "is_integer") and not isinstance(value, float)
                                  and float(value).is_integer()):
        return f"{int(value)}"
    v = float(value)
    if math.isinf(v):
        return "inf"
    return f"{v:.{digits}f}"


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return False
    try:
        import numbers

        return isinstance(value, numbers.Number) and not _is_na(value)
    except TypeError:
        return False


def _is_na(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, (str, bytes, Mapping, list, tuple)):
        return False
    try:
        import pandas as pd

        result = pd.isna(value)
        return bool(result) if isinstance(result, bool) or getattr(result, "ndim", 1) == 0 else False
    except (ImportError, TypeError, ValueError):
        return False


# --- names ------------------------------------------------------------------------------------

def pipeline_names(manifest: Mapping[str, Any] | None) -> dict[str, str]:
    """``{pipeline_id: human name}`` from a run manifest: the pipeline's name, made unique
    (a repeated name gets its short id appended); an unnamed pipeline is its short id."""
    pipes = (manifest or {}).get("pipelines") or []
    names: dict[str, str] = {}
    for info in pipes:
        if isinstance(info, Mapping) and info.get("id"):
            pid = str(info["id"])
            names[pid] = str(info.get("name") or short_id(pid))
    counts: dict[str, int] = {}
    for n in names.values():
        counts[n] = counts.get(n, 0) + 1
    return {pid: (n if counts[n] == 1 else f"{n} ({short_id(pid)})") for pid, n in names.items()}


def pipeline_label(pipeline_id: Any, names: Mapping[str, str] | None = None) -> str:
    """The human name of a pipeline id (its short id when unknown)."""
    return (names or {}).get(str(pipeline_id)) or short_id(pipeline_id)


def config_label(mode: Any, top_k: Any = None, pipeline: str | None = None) -> str:
    """``"fast · top_k=10"`` (``"adi · fast · top_k=10"`` with a pipeline name)."""
    parts = [p for p in (pipeline, str(mode) if mode is not None else None) if p]
    if top_k is not None and not _is_na(top_k):
        parts.append(f"top_k={int(top_k)}")
    return " · ".join(parts)


def json_text(value: Any) -> str:
    """Compact JSON (sorted keys) for ``title`` attributes and copyable cells."""
    return json.dumps(value, sort_keys=True, default=str)


def queryset_html(qs: Any) -> str:
    """A QuerySet as a card: name and split, queries (judged), judgements by grade, corpus size,
    and three example queries. (For ``QuerySet._repr_html_``: ``return queryset_html(self)``.)"""
    queries, qrels, corpus = qs.queries, qs.qrels, getattr(qs, "corpus", None)
    judged = qrels["query_id"].nunique() if len(qrels) else 0
    grades = qrels["relevance"].value_counts().sort_index(ascending=False) if len(qrels) else {}
    grade_text = ", ".join(f"{plural(int(n), 'judgement')} of grade {g}" for g, n in grades.items())
    rows = [("queries", f"{plural(len(queries), 'query', 'queries')}, {judged:,} judged"),
            ("judgements", f"{len(qrels):,}" + (f" ({grade_text})" if grade_text else "")),
            ("corpus", "none (judgements only)" if corpus is None else plural(len(corpus), "document"))]
    examples = "".join(f"<tr><td><code>{esc(q)}</code></td><td>{esc(snippet(t, 120))}</td></tr>"
                       for q, t in zip(queries["query_id"].head(3), queries["text"].head(3)))
    foot = f"<table class='le-t'>{examples}</table>" if examples else ""
    split = getattr(qs, "split", None)
    return card(f"QuerySet <b>{esc(getattr(qs, 'name', ''))}</b>", rows,
                subtitle=esc(f"{split} split") if split else "", foot=foot)
