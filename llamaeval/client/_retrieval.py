"""The result of one ``retrieve`` call: a ranked frame plus timing and the request."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from llamaeval.client._records import dtypes, infer_column

if TYPE_CHECKING:
    import pandas as pd

from llamaeval._keys import MODES  # noqa: E402 - the one definition of the mode names

#: Columns every retrieval frame starts with, in order; other metadata keys follow.
RESULT_COLUMNS: tuple[str, ...] = (
    "rank", "score", "text", "file_id", "file_name", "chunk_id", "chunk_index", "doc_id")
_FROM_METADATA = ("file_id", "file_name", "chunk_id", "chunk_index", "doc_id")


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts, buf, quoted, escaped = [], [], False, False
    for ch in text:
        if escaped:
            buf.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            buf.append(ch)
            escaped = True
        elif ch == '"':
            quoted = not quoted
            buf.append(ch)
        elif ch == sep and not quoted:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    parts.append("".join(buf))
    return parts


def parse_server_timing(header: str | None) -> dict[str, float]:
    """Parse a ``Server-Timing`` header into ``{metric: seconds}``.

    ``dur`` is in milliseconds by the standard; values are converted to seconds.
    Metrics without a (valid) ``dur`` are left out; a repeated metric keeps the last value.
    """
    timings: dict[str, float] = {}
    if not header:
        return timings
    for metric in _split_outside_quotes(header, ","):
        pieces = _split_outside_quotes(metric, ";")
        name = pieces[0].strip()
        if not name:
            continue
        for param in pieces[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() != "dur":
                continue
            try:
                ms = float(value.strip().strip('"'))
            except ValueError:
                continue
            if ms == ms and ms not in (float("inf"), float("-inf")):
                timings[name] = ms / 1000.0
    return timings


def results_frame(results: list[Any]) -> pd.DataFrame:
    """Frame of ranked results: RESULT_COLUMNS, then the other metadata keys flattened.

    A nested metadata dict (e.g. ``scores``) becomes ``scores.<key>`` columns.
    ``doc_id`` is a string (NA when the metadata has none).
    """
    import pandas as pd

    n = len(results)
    scores: list[float] = []
    texts: list[Any] = []
    own: dict[str, list[Any]] = {key: [] for key in _FROM_METADATA}
    other: dict[str, list[Any]] = {}
    for i, item in enumerate(results):
        if not isinstance(item, dict):
            item = {}
        score = item.get("score")
        scores.append(float("nan") if score is None else float(score))
        texts.append(item.get("text"))
        metadata = item.get("metadata")
        if not isinstance(metadata, dict):
            metadata = {}
        for key in _FROM_METADATA:
            own[key].append(metadata.get(key))
        for key, value in metadata.items():
            if key in own:
                continue
            if isinstance(value, dict):
                for sub, sub_value in value.items():
                    other.setdefault(f"{key}.{sub}", [None] * n)[i] = sub_value
            else:
                other.setdefault(key, [None] * n)[i] = value
    import numpy as np

    string, int64 = dtypes()["string"], dtypes()["Int64"]

    def strings(values: list[Any]) -> Any:
        return pd.array([v if v is None or isinstance(v, str) else str(v) for v in values], dtype=string)

    columns: dict[str, Any] = {
        "rank": np.arange(1, n + 1, dtype=np.int64),
        "score": np.array(scores, dtype=np.float64),
        "text": strings(texts),
        "file_id": strings(own["file_id"]),
        "file_name": strings(own["file_name"]),
        "chunk_id": strings(own["chunk_id"]),
        "chunk_index": pd.array([v if type(v) is int else None for v in own["chunk_index"]], dtype=int64),
        "doc_id": strings(own["doc_id"]),
    }
    for key, values in other.items():
        columns[key] = infer_column(values)
    return pd.DataFrame(columns, index=pd.RangeIndex(n))


def simplified_results(raw: Any) -> list[dict[str, Any]]:
    """The result objects of a simplified-API response body (``results``)."""
    results = raw.get("results") if isinstance(raw, dict) else None
    return results if isinstance(results, list) else []


@dataclass
class RetrievalResult:
    """One ``retrieve`` call, in either dialect.

    ``results`` are the ranked result objects ``{text, score, metadata}`` (from the real
    API's ``retrieval_nodes``: the node's ``extra_info`` plus ``chunk_id`` and offsets;
    a null score stays NaN); ``frame`` (built on first access) has columns ``rank``
    (1-based), ``score``, ``text``, ``file_id``, ``file_name``, ``chunk_id``, ``chunk_index``,
    ``doc_id`` and the other metadata keys flattened. ``latency_s`` is the client wall time
    in seconds (monotonic clock, from sending the first attempt to receiving the last
    response, retries and their waits included; ``attempts`` says how many).
    ``server_timing`` is the server's stage timings in seconds: the ``Server-Timing``
    header, else the real API's ``retrieval_latency``. ``request`` holds the parameters
    sent (``pipeline_id`` and the exact body); ``raw`` the body as received; ``dialect``
    which API answered.
    """

    request: dict[str, Any]
    raw: dict[str, Any]
    latency_s: float
    server_timing: dict[str, float]
    status_code: int
    attempts: int = 1
    results: list[dict[str, Any]] = None  # type: ignore[assignment]
    dialect: str = "simplified"

    def __post_init__(self) -> None:
        if self.results is None:
            self.results = simplified_results(self.raw)

    @cached_property
    def frame(self) -> pd.DataFrame:
        """The ranked results as a DataFrame (see the class docstring)."""
        return results_frame(self.results)

    def to_frame(self) -> pd.DataFrame:
        """The ranked results (same as ``.frame``)."""
        return self.frame

    @property
    def server_total_s(self) -> float | None:
        """The server's own total time in seconds (``total`` in Server-Timing), if sent."""
        return self.server_timing.get("total")

    def __len__(self) -> int:
        return len(self.results)

    def __repr__(self) -> str:
        what = (f"mode={self.request.get('mode')!r}, top_k={self.request.get('top_k')!r}"
                if self.dialect == "simplified" else
                ", ".join(f"{k}={v!r}" for k, v in self.request.items() if k not in ("query", "pipeline_id")))
        return (f"RetrievalResult(n={len(self)}, {what}, latency_s={self.latency_s:.4f}, "
                f"status_code={self.status_code})")

    def _repr_html_(self) -> str:
        """The ranking as a compact table (rank, score, doc id, a text snippet, file name; chunk
        and file ids short, full on hover) under one line of what was asked and how long it took."""
        from llamaeval._display import STYLE, esc, id_html, ms, plural, snippet

        asked = {k: v for k, v in self.request.items() if k not in ("query", "pipeline_id")}
        what = ", ".join(f"{k}={v}" for k, v in asked.items() if not isinstance(v, (dict, list)))
        server = self.server_total_s
        timing = ms(self.latency_s) + (f" (server {ms(server)})" if server is not None else "")
        retried = f" · {plural(self.attempts, 'attempt')}" if self.attempts > 1 else ""
        head = (f"<h4>{plural(len(self), 'result')} <span class='le-sub'>for "
                f"<i>{esc(snippet(self.request.get('query'), 90))}</i></span></h4>"
                f"<div class='le-muted'>{esc(what)} · {esc(timing)} · HTTP {self.status_code}{retried} · "
                f"pipeline {id_html(self.request.get('pipeline_id'))} · {esc(self.dialect)} API</div>")
        rows = []
        for rank, item in enumerate(self.results[:20], start=1):
            meta = item.get("metadata") if isinstance(item, dict) else None
            meta = meta if isinstance(meta, dict) else {}
            score = item.get("score") if isinstance(item, dict) else None
            rows.append(
                f"<tr><td class='le-num'>{rank}</td>"
                f"<td class='le-num'>{'' if score is None else f'{float(score):.4f}'}</td>"
                f"<td>{esc(meta.get('doc_id', ''))}</td>"
                f"<td class='le-snip'>{esc(snippet(item.get('text') if isinstance(item, dict) else '', 200))}</td>"
                f"<td>{esc(meta.get('file_name', ''))}</td>"
                f"<td>{id_html(meta.get('chunk_id'))}</td></tr>")
        more = (f"<p class='le-muted'>{plural(len(self) - 20, 'more result')}: see <code>.frame</code></p>"
                if len(self) > 20 else "")
        table = ("<table class='le-t'><thead><tr><th>rank</th><th>score</th><th>doc_id</th><th>text</th>"
                 "<th>file</th><th>chunk</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
                 if rows else "<p class='le-muted'>no results</p>")
        return f"{STYLE}<div class='le-card'>{head}{table}{more}</div>"
