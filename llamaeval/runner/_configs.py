"""Configurations: what one benchmarked setting sends to ``retrieve`` besides the query and top_k.

A configuration is a retrieval mode, a set of retrieve parameters, or both::

    Configuration("fast", "fast", {})                                   modes only
    Configuration("alpha=0.5", None, {"alpha": 0.5})                    params only
    Configuration("fast alpha=0.5", "fast", {"alpha": 0.5})             modes x params

Its ``name`` is what the ``mode`` column of the run's frames holds, so every grouping
by ``(pipeline_id, mode, top_k)`` works per configuration.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from llamaeval._errors import ConfigurationError
from llamaeval._keys import MODES
from llamaeval.runner._config import _RESERVED_PARAMS
from llamaeval.runner._records import RECORD_COLUMNS, REQUEST_COLUMNS, REQUEST_TAIL, RESULT_COLUMNS

NAME_KEY = "name"  # in a list item or a flat dict: the parameter set's name, not a parameter
# Columns of the run's frames (and of run.configurations) a parameter column may not replace.
_TAKEN_COLUMNS = frozenset({*RESULT_COLUMNS, *REQUEST_COLUMNS, *REQUEST_TAIL, *RECORD_COLUMNS,
                            "retrieve_mode", "params"})


@dataclass(frozen=True)
class Configuration:
    """One benchmarked setting: ``retrieve(..., mode=mode, top_k=k, **params)`` under ``name``.

    ``mode`` is None when the configuration is its parameters alone; ``params`` are
    JSON-safe retrieve keyword arguments (e.g. ``{"alpha": 0.5, "enable_reranking": True}``).
    """

    name: str
    mode: str | None
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """``{"name", "mode", "params"}``, as recorded in the manifest."""
        return {"name": self.name, "mode": self.mode, "params": dict(self.params)}

    def retrieve_arguments(self, top_k: int, common: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The keyword arguments of this configuration's ``retrieve`` at ``top_k``: ``mode``,
        ``top_k``, the run-wide ``common`` parameters (``BenchmarkConfig.retrieve_params``), its own."""
        return {"mode": self.mode, "top_k": top_k, **(common or {}), **self.params}


def build_configurations(modes: Sequence[str] | None, params: Any) -> list[Configuration]:
    """The configurations of ``benchmark(modes=..., params=...)``, in the order given.

    ``modes`` None means none (the caller resolves the default). With both, each mode is
    combined with each parameter set (modes outer). Raises ConfigurationError for bad
    parameters, empty grids and duplicate names.
    """
    if params is None:
        if not modes:
            raise ConfigurationError("give modes or params: there is nothing to benchmark")
        configs = [Configuration(m, m, {}) for m in modes]
    else:
        sets = parameter_sets(params)
        if modes is None:
            configs = [Configuration(name or "default", None, p) for name, p in sets]
        else:
            configs = [Configuration(f"{m} {name}" if name else m, m, p) for m in modes for name, p in sets]
    names = [c.name for c in configs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigurationError(f"configuration names must be unique; repeated: {dup} "
                                 "(give each parameter set its own \"name\")")
    for c in configs:
        if c.name in MODES and c.mode != c.name:
            raise ConfigurationError(f"configuration name {c.name!r} is a mode name, but the configuration "
                                     f"does not use that mode; choose another name")
    return configs


def parameter_sets(params: Any) -> list[tuple[str, dict[str, Any]]]:
    """``(name, params)`` pairs of a ``params`` argument (name "" = no name and no items).

    - ``{"alpha": [0, 1], "enable_reranking": [False, True]}``: a grid (a value that is a
      list is an axis, a scalar is fixed); the cartesian product, first key slowest;
      each cell named by its axis values, ``"alpha=0, enable_reranking=False"``.
    - ``{"hybrid": {"alpha": 0.5}, "sparse": {"alpha": 0}}``: named parameter sets
      (a dict whose values are all dicts).
    - ``[{"alpha": 0.5}, {"name": "sparse", "alpha": 0}]``: a list of parameter sets,
      each named by its ``"name"`` or else by its items.
    - ``{"alpha": 0.5}``: one parameter set (a dict of scalars; may carry ``"name"``).
    """
    if isinstance(params, Mapping):
        if not params:
            raise ConfigurationError("params is an empty dict: give at least one parameter")
        values = list(params.values())
        if all(isinstance(v, Mapping) for v in values):
            return [_named_set(k, v) for k, v in params.items()]
        if any(_is_axis(v) for v in values):
            return _grid(params)
        return [_item(params, "params")]
    if isinstance(params, Sequence) and not isinstance(params, (str, bytes)):
        if len(params) == 0:
            raise ConfigurationError("params is an empty list: give at least one parameter set")
        out = []
        for i, item in enumerate(params):
            if not isinstance(item, Mapping):
                raise ConfigurationError(f"params[{i}] must be a dict of retrieve parameters, got {item!r}")
            out.append(_item(item, f"params[{i}]"))
        return out
    raise ConfigurationError("params must be a dict (a grid, named sets or one set) or a list of dicts, "
                             f"got {type(params).__name__}")


def _is_axis(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def _named_set(name: Any, values: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(f"a parameter set's name must be a non-empty string, got {name!r}")
    return name.strip(), _checked(values, f"params[{name!r}]", allow_name=False)


def _item(values: Mapping[str, Any], where: str) -> tuple[str, dict[str, Any]]:
    params = _checked(values, where, allow_name=True)
    if NAME_KEY not in values:
        return describe(params), params
    name = values[NAME_KEY]
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(f"{where}: \"name\" must be a non-empty string, got {name!r}")
    return name.strip(), params


def _grid(grid: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    _check_keys(list(grid), "params grid", allow_name=False)
    empty = [k for k, v in grid.items() if _is_axis(v) and len(v) == 0]
    if empty:
        raise ConfigurationError(f"params grid has empty value list(s) for {empty}: nothing to benchmark")
    keys = list(grid)
    axes = [list(v) if _is_axis(v) else [v] for v in grid.values()]
    varying = {k for k, v in grid.items() if _is_axis(v)}
    out = []
    for combo in itertools.product(*axes):
        params = _checked(dict(zip(keys, combo)), "params grid", allow_name=False)
        out.append((describe({k: v for k, v in params.items() if k in varying}), params))
    return out


def _check_keys(keys: list[Any], where: str, *, allow_name: bool) -> None:
    bad_type = [k for k in keys if not isinstance(k, str) or not k]
    if bad_type:
        raise ConfigurationError(f"{where}: parameter names must be non-empty strings, got {bad_type}")
    reserved = sorted(_RESERVED_PARAMS & set(keys))
    if reserved:
        raise ConfigurationError(f"{where} may not set {reserved}: the runner sets them "
                                 "(use modes= and top_k=)")
    if not allow_name and NAME_KEY in keys:
        raise ConfigurationError(f"{where}: \"name\" names a parameter set only in a list of dicts "
                                 "or a single dict")
    taken = sorted(k for k in keys if k in _TAKEN_COLUMNS or (k.startswith("server_") and k.endswith("_s")))
    if taken:
        raise ConfigurationError(f"{where}: parameter(s) {taken} would replace a column of the run's frames")


def _checked(values: Mapping[str, Any], where: str, *, allow_name: bool) -> dict[str, Any]:
    """The parameters as JSON-safe values (tuples become lists); ConfigurationError otherwise."""
    _check_keys(list(values), where, allow_name=allow_name)
    params = {k: v for k, v in values.items() if k != NAME_KEY}
    try:
        return json.loads(json.dumps(params, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{where}: parameter values must be JSON-serialisable: {exc}") from None


def describe(params: Mapping[str, Any]) -> str:
    """A short readable name for a parameter set: ``alpha=0.5, enable_reranking=True``."""
    return ", ".join(f"{k}={format_value(v)}" for k, v in params.items())


def format_value(value: Any) -> str:
    """A parameter value as text: numbers and booleans as Python writes them, strings bare,
    lists and dicts as compact JSON."""
    if value is None or isinstance(value, (bool, int)):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# --- parameter columns of the run's frames ---------------------------------------------------

def parameter_keys(configs: Sequence[Configuration]) -> list[str]:
    """Every parameter key of the configurations, in the order first seen."""
    return list(dict.fromkeys(k for c in configs for k in c.params))


def column_dtype(values: Sequence[Any]) -> str:
    """The dtype of a parameter column: boolean, Int64, float64 or string (JSON text for
    lists, dicts and mixed types); None values become NA."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return "boolean"
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "Int64"
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return "float64"
    return "string"


def _cell(value: Any, dtype: str) -> Any:
    if value is None:
        return None
    if dtype == "string" and not isinstance(value, str):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return value


def add_parameter_columns(frame: Any, configs: Sequence[Configuration]) -> Any:
    """``frame`` with one column per parameter key, looked up by its ``mode`` (configuration
    name); NA for configurations without that parameter. Same dtypes whatever the rows."""
    for key in parameter_keys(configs):
        dtype = column_dtype([c.params.get(key) for c in configs])
        by_name = {c.name: _cell(c.params.get(key), dtype) for c in configs}
        values = pd.Series([by_name.get(name) for name in frame["mode"]], index=frame.index, dtype=object)
        frame[key] = values.astype(dtype)
    return frame
