"""Typed records for the API's objects, and the DataFrames built from them.

A record keeps the spec's fields (plus the local server's documented additions) as
typed attributes and every other field the server sent in ``.extra``. Lists of
records become DataFrames with typed columns: datetimes are ``datetime64[UTC]``,
statuses are categorical (the spec's values first), integers are nullable
``Int64``, strings are ``string``; a pipeline file's ``metadata`` is flattened
into ``metadata.<key>`` columns; unknown fields become extra columns (typed from
their values; ISO strings in ``*_at`` fields become UTC datetimes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    import pandas as pd

R = TypeVar("R", bound="Record")


def parse_datetime(value: Any) -> datetime | None:
    """ISO 8601 string (or datetime) -> timezone-aware datetime; naive values are taken as UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    else:
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def _to_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _to_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _to_dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def _to_opt_dict(value: Any) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, dict) else None


_CONVERT = {
    "str": _to_str, "status": _to_str, "int": _to_int, "datetime": parse_datetime,
    "dict": _to_dict, "optdict": _to_opt_dict,
}


@dataclass
class Record:
    """Base of the API records: typed fields + ``extra`` + ``to_frame()``."""

    #: field name -> kind ("str", "status", "int", "datetime", "dict", "optdict")
    _KINDS: ClassVar[dict[str, str]] = {}
    #: status values from the spec, in the order used for the categorical
    _STATUSES: ClassVar[tuple[str, ...]] = ()
    #: dict fields flattened into "<name>.<key>" columns in frames
    _FLATTEN: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_json(cls: type[R], data: Any) -> R:
        """Build from a parsed JSON object; unknown keys go to ``extra``."""
        if not isinstance(data, dict):
            raise TypeError(f"expected a JSON object for {cls.__name__}, got {type(data).__name__}")
        kinds = cls._KINDS
        values = {name: _CONVERT[kind](data.get(name)) for name, kind in kinds.items()}
        extra = {k: v for k, v in data.items() if k not in kinds}
        return cls(**values, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """The record as a flat dict of typed fields followed by the extra fields."""
        out = {name: getattr(self, name) for name in self._KINDS}
        out.update(self.extra)
        return out

    def to_frame(self) -> pd.DataFrame:
        """A one-row DataFrame with the same columns and dtypes as the list endpoints."""
        return records_frame(type(self), [self])

    def __repr__(self) -> str:
        """One line: the fields that are set, nested configs summarised (``{…19 keys}``)."""
        from llamaeval._display import compact

        parts = []
        for name in self._KINDS:
            value = getattr(self, name)
            if value is None or value == {}:
                continue
            if isinstance(value, dict):
                text = compact(value, width=60)
            elif isinstance(value, datetime):
                text = repr(value.isoformat())
            else:
                text = repr(value)
            parts.append(f"{name}={text}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def _repr_html_(self) -> str:
        """A compact card: name and short id, then the fields that are set (full ids on hover;
        configs of more than a few keys folded, one click away)."""
        from llamaeval._display import card, dict_html, esc, id_html, plural, value_html

        ident = getattr(self, "id", None) or getattr(self, "file_id", None)
        name = getattr(self, "name", None)
        title = f"{type(self).__name__} <b>{esc(name)}</b>" if name else type(self).__name__
        rows = []
        for key, value in [*((k, getattr(self, k)) for k in self._KINDS), *self.extra.items()]:
            if key in ("id", "name") or value is None or value == {} or value == "":
                continue
            if isinstance(value, dict) and len(value) > 4:
                shown = (f"<details><summary>{plural(len(value), 'setting')}</summary>"
                         f"{dict_html(value)}</details>")
            else:
                shown = value_html(value, key=key)
            rows.append((key, shown))
        return card(title, rows, subtitle=id_html(ident) if ident else "")


@dataclass(repr=False)
class Project(Record):
    """A project (container of pipelines, files, data sources)."""

    id: str
    name: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    _KINDS: ClassVar[dict[str, str]] = {
        "id": "str", "name": "str", "created_at": "datetime", "updated_at": "datetime"}


@dataclass(repr=False)
class File(Record):
    """An uploaded file; ``file_size`` in bytes."""

    id: str
    name: str | None = None
    project_id: str | None = None
    file_size: int | None = None
    content_type: str | None = None
    created_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    _KINDS: ClassVar[dict[str, str]] = {
        "id": "str", "name": "str", "project_id": "str", "file_size": "int",
        "content_type": "str", "created_at": "datetime"}


@dataclass(repr=False)
class Pipeline(Record):
    """A pipeline; ``sync_interval`` in seconds. Fields after ``updated_at`` are the local
    server's additions (None when a server does not send them); ``error`` says why the
    last sync failed."""

    id: str
    name: str | None = None
    project_id: str | None = None
    status: str | None = None
    sync_interval: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    embedding_model: str | None = None
    num_files: int | None = None
    num_chunks: int | None = None
    last_synced_at: datetime | None = None
    retrieval_config: dict[str, Any] | None = None
    chunking_config: dict[str, Any] | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    _KINDS: ClassVar[dict[str, str]] = {
        "id": "str", "name": "str", "project_id": "str", "status": "status",
        "sync_interval": "int", "created_at": "datetime", "updated_at": "datetime",
        "embedding_model": "str", "num_files": "int", "num_chunks": "int",
        "last_synced_at": "datetime", "retrieval_config": "optdict", "chunking_config": "optdict",
        "error": "str"}
    _STATUSES: ClassVar[tuple[str, ...]] = ("idle", "syncing", "active", "error")


@dataclass(repr=False)
class PipelineFile(Record):
    """A file inside a pipeline, with its processing status and custom metadata."""

    file_id: str
    name: str | None = None
    status: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    _KINDS: ClassVar[dict[str, str]] = {
        "file_id": "str", "name": "str", "status": "status", "metadata": "dict"}
    _STATUSES: ClassVar[tuple[str, ...]] = ("pending", "processing", "completed", "error")
    _FLATTEN: ClassVar[tuple[str, ...]] = ("metadata",)


@dataclass(repr=False)
class PipelineJob(Record):
    """An ingestion (sync) job. ``error`` is the server's failure message, if any."""

    id: str
    pipeline_id: str | None = None
    status: str | None = None
    created_at: datetime | None = None
    completed_at: datetime | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    _KINDS: ClassVar[dict[str, str]] = {
        "id": "str", "pipeline_id": "str", "status": "status", "created_at": "datetime",
        "completed_at": "datetime", "error": "str"}
    _STATUSES: ClassVar[tuple[str, ...]] = ("pending", "running", "completed", "failed")

    @property
    def duration_s(self) -> float | None:
        """Seconds from creation to completion, when both are known."""
        if self.created_at is None or self.completed_at is None:
            return None
        return (self.completed_at - self.created_at).total_seconds()

    @property
    def progress(self) -> dict[str, int] | None:
        """The job's counters when the server reports them (the local server): ``files`` to
        process, ``files_done`` (completed or failed), ``files_failed``, and ``chunks`` of those
        files (known once they are cut; 0 before), ``chunks_done`` (embedded or found in the
        server's embedding cache), ``chunks_cached``; None otherwise."""
        names = {"files": "num_files", "files_done": "num_processed", "files_failed": "num_failed",
                 "chunks": "num_chunks_total", "chunks_done": "num_chunks_done", "chunks_cached": "num_chunks_cached"}
        raw = self.extra.get("parameters") if isinstance(self.extra.get("parameters"), dict) else self.extra
        out = {k: raw.get(v) for k, v in names.items()}
        if not all(isinstance(out[k], int) and not isinstance(out[k], bool) for k in ("files", "files_done",
                                                                                      "files_failed")):
            return None
        return {k: v for k, v in out.items() if isinstance(v, int) and not isinstance(v, bool)}


@dataclass(repr=False)
class DataSource(Record):
    """A data source (project level or connected to a pipeline)."""

    id: str
    name: str | None = None
    source_type: str | None = None
    project_id: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    _KINDS: ClassVar[dict[str, str]] = {
        "id": "str", "name": "str", "source_type": "str", "project_id": "str",
        "config": "dict", "created_at": "datetime"}


@dataclass(repr=False)
class DataSink(Record):
    """A data sink of a pipeline (where its index lives)."""

    id: str
    name: str | None = None
    sink_type: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    _KINDS: ClassVar[dict[str, str]] = {"id": "str", "name": "str", "sink_type": "str", "config": "dict"}


# --------------------------------------------------------------------------- frames

@lru_cache(maxsize=1)
def dtypes() -> dict[str, Any]:
    """pandas dtype objects, made once (string lookups of dtypes are slow in hot paths)."""
    import pandas as pd

    return {"string": pd.StringDtype(), "Int64": pd.Int64Dtype(), "boolean": pd.BooleanDtype()}


def infer_column(values: list[Any]) -> Any:
    """A typed column for loosely typed values (metadata, extra fields)."""
    import numpy as np
    import pandas as pd

    kinds = {type(v) for v in values if v is not None}
    if kinds:
        if kinds == {bool}:
            return pd.array(values, dtype=dtypes()["boolean"])
        if kinds == {int}:
            return pd.array(values, dtype=dtypes()["Int64"])
        if kinds <= {int, float}:
            return np.array([float("nan") if v is None else float(v) for v in values], dtype=np.float64)
        if kinds == {str}:
            return pd.array(values, dtype=dtypes()["string"])
    return _object_array(values)


def _object_array(values: list[Any]) -> Any:
    """An object column holding the values as they are (dicts, lists, mixed types)."""
    import numpy as np

    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = value
    return out


def typed_column(kind: str, values: list[Any], statuses: tuple[str, ...] = ()) -> Any:
    """A column of a known kind (see Record._KINDS)."""
    import pandas as pd

    if kind == "str":
        return pd.array(values, dtype=dtypes()["string"])
    if kind == "int":
        return pd.array(values, dtype=dtypes()["Int64"])
    if kind == "datetime":
        return pd.DatetimeIndex(pd.to_datetime(values, utc=True)).as_unit("us")
    if kind == "status":
        extras = sorted({v for v in values if v is not None and v not in statuses})
        return pd.Categorical(values, categories=[*statuses, *extras])
    return _object_array(values)


def records_frame(cls: type[Record], records: list[Record]) -> pd.DataFrame:
    """A DataFrame with one typed column per field, flattened dicts and extra fields."""
    import pandas as pd

    columns: dict[str, Any] = {}
    for name, kind in cls._KINDS.items():
        values = [getattr(r, name) for r in records]
        if name in cls._FLATTEN:
            keys: dict[str, None] = {}
            for v in values:
                keys.update(dict.fromkeys(v or {}))
            for key in keys:
                columns[f"{name}.{key}"] = infer_column([(v or {}).get(key) for v in values])
            continue
        columns[name] = typed_column(kind, values, cls._STATUSES)
    extra_keys: dict[str, None] = {}
    for r in records:
        extra_keys.update(dict.fromkeys(r.extra))
    for key in extra_keys:
        if key not in columns:
            values = [r.extra.get(key) for r in records]
            if key.endswith("_at") and all(v is None or isinstance(v, str) for v in values):
                parsed = [parse_datetime(v) for v in values]
                if all((p is None) == (v is None) for p, v in zip(parsed, values, strict=True)):
                    columns[key] = typed_column("datetime", parsed)
                    continue
            columns[key] = infer_column(values)
    return pd.DataFrame(columns, index=pd.RangeIndex(len(records)))


def frame_from_json(cls: type[Record], items: list[Any]) -> pd.DataFrame:
    """Parse a JSON array of objects into a typed frame."""
    return records_frame(cls, [cls.from_json(item) for item in items])
