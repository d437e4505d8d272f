"""Metadata filters of the retrieve API (``search_filters``), evaluated over chunk metadata.

The wire shape is LlamaIndex's ``MetadataFilters``::

    {"filters": [{"key": "year", "value": 2020, "operator": ">="},
                 {"filters": [...], "condition": "or"}],
     "condition": "and"}

Semantics follow ``build_metadata_filter_fn`` of llama-index-core (what SimpleVectorStore
runs), with these choices where LlamaIndex is undefined (it raises) or accidental:

* A missing key and an explicit ``None`` are the same. They match only ``!=``, ``nin`` and
  ``is_empty``; every other operator is False (as in LlamaIndex).
* Equality is JSON-like: ints and floats compare by value (``1 == 1.0``), a boolean equals
  only a boolean (LlamaIndex's Python ``==`` has ``True == 1``), ``"1" != 1``.
* ``>``, ``<``, ``>=``, ``<=`` compare two numbers, or two strings (lexicographically, handy
  for ISO dates); anything else (``"a" > 3``, lists, booleans, None) is False, never an error.
* ``in``/``nin`` test the whole metadata value against the list (a list-valued field is
  never ``in``, as in LlamaIndex). ``nin`` is exactly ``not in``.
* ``contains``/``any``/``all`` are for list-valued fields: the list holds the value / at
  least one / every one of the values. A scalar field counts as a one-element list.
  LlamaIndex's Python ``in`` would do a substring test on a string field; we do not (use
  ``text_match`` for that). ``all`` with an empty list is True for a present key.
* ``text_match`` is a case-sensitive substring test, ``text_match_insensitive`` the same
  after ``str.lower()``; a non-string field is False (LlamaIndex raises).
* ``is_empty``: missing, None, ``""`` or an empty list. Its value is ignored.
* Conditions: ``and`` = all, ``or`` = any, ``not`` = none of the filters matches (LlamaIndex's
  "NOT" is NOT(OR), not NOT(AND)). A group without filters matches everything.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

__all__ = [
    "OPERATORS", "CONDITIONS", "MAX_DEPTH", "MAX_CONDITIONS",
    "MetadataFilter", "FilterGroup", "parse_filters",
]

#: The operators of LlamaIndex's ``FilterOperator``, as sent on the wire.
OPERATORS: tuple[str, ...] = (
    "==", "!=", ">", "<", ">=", "<=", "in", "nin", "any", "all",
    "text_match", "text_match_insensitive", "contains", "is_empty",
)
#: The conditions of LlamaIndex's ``FilterCondition``.
CONDITIONS: tuple[str, ...] = ("and", "or", "not")
#: Deepest nesting accepted; the top-level group is level 1.
MAX_DEPTH = 8
#: Most single conditions (leaves) accepted in one filter tree.
MAX_CONDITIONS = 100

# The SDKs (Stainless llama-cloud, Fern llama_cloud) send the values above. Also accepted:
# LlamaIndex's enum member names in any case ("EQ", "gte", "TEXT_MATCH") and "=".
_ALIASES: dict[str, str] = {
    "eq": "==", "=": "==", "ne": "!=", "gt": ">", "lt": "<", "gte": ">=", "lte": "<=",
}
_LIST_OPERATORS = frozenset({"in", "nin", "any", "all"})
_SCALAR_OPERATORS = frozenset({">", "<", ">=", "<=", "contains", "text_match", "text_match_insensitive"})
_TEXT_OPERATORS = frozenset({"text_match", "text_match_insensitive"})


def _canonical_operator(op: Any) -> str | None:
    if not isinstance(op, str):
        return None
    if op in OPERATORS:
        return op
    low = op.strip().lower()
    if low in OPERATORS:
        return low
    return _ALIASES.get(low)


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _thaw(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_eq(x, y) for x, y in zip(a, b))
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return False
    try:
        return bool(a == b)
    except Exception:
        return False


def _order(a: Any, b: Any, op: str) -> bool:
    if not ((_is_number(a) and _is_number(b)) or (isinstance(a, str) and isinstance(b, str))):
        return False
    try:
        if op == ">":
            return bool(a > b)
        if op == "<":
            return bool(a < b)
        if op == ">=":
            return bool(a >= b)
        return bool(a <= b)
    except Exception:
        return False


def _member(x: Any, seq: Sequence[Any]) -> bool:
    return any(_eq(x, s) for s in seq)


def _as_list(x: Any) -> Sequence[Any]:
    return x if isinstance(x, (list, tuple)) else (x,)


@dataclass(frozen=True)
class MetadataFilter:
    """One condition: ``metadata[key] <operator> value`` (list values are stored as tuples)."""

    key: str
    value: Any = None
    operator: str = "=="

    def __post_init__(self) -> None:
        op = _canonical_operator(self.operator)
        if op is None:
            raise ValueError(f"unknown operator {self.operator!r}; use one of {', '.join(OPERATORS)}")
        object.__setattr__(self, "operator", op)
        object.__setattr__(self, "value", _freeze(self.value))

    def matches(self, metadata: Mapping[str, Any] | None) -> bool:
        """Whether ``metadata`` (None = no metadata) satisfies this condition."""
        got = metadata.get(self.key) if metadata is not None else None
        op, want = self.operator, self.value
        if op == "is_empty":
            return got is None or got == "" or (isinstance(got, (list, tuple)) and len(got) == 0)
        if got is None:
            return op in ("!=", "nin")
        if op == "==":
            return _eq(got, want)
        if op == "!=":
            return not _eq(got, want)
        if op in (">", "<", ">=", "<="):
            return _order(got, want, op)
        if op == "in":
            return isinstance(want, tuple) and _member(got, want)
        if op == "nin":
            return not (isinstance(want, tuple) and _member(got, want))
        if op == "contains":
            return _member(want, _as_list(got))
        if op == "any":
            items = _as_list(got)
            return isinstance(want, tuple) and any(_member(v, items) for v in want)
        if op == "all":
            items = _as_list(got)
            return isinstance(want, tuple) and all(_member(v, items) for v in want)
        if op == "text_match":
            return isinstance(got, str) and isinstance(want, str) and want in got
        if op == "text_match_insensitive":
            return isinstance(got, str) and isinstance(want, str) and want.lower() in got.lower()
        return False  # pragma: no cover - operators are validated on construction

    def to_dict(self) -> dict[str, Any]:
        """The wire shape ``{"key", "value", "operator"}``."""
        return {"key": self.key, "value": _thaw(self.value), "operator": self.operator}


@dataclass(frozen=True)
class FilterGroup:
    """Filters (conditions or nested groups) combined by ``and``, ``or`` or ``not`` (none matches)."""

    filters: tuple[Union[MetadataFilter, "FilterGroup"], ...] = field(default_factory=tuple)
    condition: str = "and"

    def __post_init__(self) -> None:
        cond = self.condition.strip().lower() if isinstance(self.condition, str) else self.condition
        if cond not in CONDITIONS:
            raise ValueError(f"unknown condition {self.condition!r}; use one of {', '.join(CONDITIONS)}")
        object.__setattr__(self, "condition", cond)
        object.__setattr__(self, "filters", tuple(self.filters))

    def matches(self, metadata: Mapping[str, Any] | None) -> bool:
        """Whether ``metadata`` satisfies the group; an empty group matches everything."""
        if not self.filters:
            return True
        results = (f.matches(metadata) for f in self.filters)
        if self.condition == "and":
            return all(results)
        if self.condition == "or":
            return any(results)
        return not any(results)

    def mask(self, metadatas: Sequence[Mapping[str, Any] | None]) -> np.ndarray:
        """A boolean array, one entry per metadata mapping, True where it matches."""
        return np.fromiter((self.matches(m) for m in metadatas), dtype=bool, count=len(metadatas))

    def to_dict(self) -> dict[str, Any]:
        """The wire shape ``{"filters": [...], "condition": ...}``."""
        return {"filters": [f.to_dict() for f in self.filters], "condition": self.condition}


def _type_name(x: Any) -> str:
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "boolean"
    if isinstance(x, Mapping):
        return "object"
    if isinstance(x, (list, tuple)):
        return "list"
    if _is_number(x):
        return "number"
    if isinstance(x, str):
        return "string"
    return type(x).__name__


def _is_scalar(x: Any) -> bool:
    return x is None or isinstance(x, (str, bool)) or _is_number(x)


class _Parser:
    def __init__(self) -> None:
        self.count = 0

    def group(self, spec: Any, path: str, depth: int) -> FilterGroup:
        if not isinstance(spec, Mapping):
            raise ValueError(f"{path}: expected an object, got {_type_name(spec)}")
        if depth > MAX_DEPTH:
            raise ValueError(f"{path}: filters nested deeper than {MAX_DEPTH} levels")
        if "filters" not in spec:
            raise ValueError(f"{path}: missing 'filters'")
        raw_cond = spec.get("condition")
        if raw_cond is None:
            cond = "and"
        else:
            cond = raw_cond.strip().lower() if isinstance(raw_cond, str) else None
            if cond not in CONDITIONS:
                raise ValueError(
                    f"{path}.condition: unknown condition {raw_cond!r}; use one of {', '.join(CONDITIONS)}"
                )
        items = spec["filters"]
        if not isinstance(items, (list, tuple)):
            raise ValueError(f"{path}.filters: expected a list, got {_type_name(items)}")
        children: list[MetadataFilter | FilterGroup] = []
        for i, item in enumerate(items):
            sub = f"{path}.filters[{i}]"
            if isinstance(item, Mapping) and "filters" in item:
                children.append(self.group(item, sub, depth + 1))
            else:
                children.append(self.leaf(item, sub))
        return FilterGroup(tuple(children), cond)

    def leaf(self, spec: Any, path: str) -> MetadataFilter:
        if not isinstance(spec, Mapping):
            raise ValueError(f"{path}: expected an object, got {_type_name(spec)}")
        self.count += 1
        if self.count > MAX_CONDITIONS:
            raise ValueError(f"{path}: more than {MAX_CONDITIONS} conditions in total")
        if "key" not in spec:
            raise ValueError(f"{path}: missing 'key'")
        key = spec["key"]
        if not isinstance(key, str) or not key:
            raise ValueError(f"{path}.key: expected a non-empty string, got {_type_name(key)}")
        raw_op = spec.get("operator")
        op = "==" if raw_op is None else _canonical_operator(raw_op)
        if op is None:
            raise ValueError(f"{path}.operator: unknown operator {raw_op!r}; use one of {', '.join(OPERATORS)}")
        if "value" not in spec and op != "is_empty":
            raise ValueError(f"{path}: missing 'value'")
        value = spec.get("value")
        vpath = f"{path}.value"
        if isinstance(value, (list, tuple)):
            for j, v in enumerate(value):
                if not _is_scalar(v):
                    raise ValueError(f"{vpath}[{j}]: expected a string, number, boolean or null, got {_type_name(v)}")
        elif not _is_scalar(value):
            raise ValueError(
                f"{vpath}: expected a string, number, boolean, null or a list of them, got {_type_name(value)}"
            )
        if op in _LIST_OPERATORS and not isinstance(value, (list, tuple)):
            raise ValueError(f"{vpath}: operator '{op}' needs a list value, got {_type_name(value)}")
        if op in _TEXT_OPERATORS and not isinstance(value, str):
            raise ValueError(f"{vpath}: operator '{op}' needs a string value, got {_type_name(value)}")
        if op in _SCALAR_OPERATORS and isinstance(value, (list, tuple)):
            raise ValueError(f"{vpath}: operator '{op}' needs a single value, got a list")
        return MetadataFilter(key, list(value) if isinstance(value, tuple) else value, op)


def parse_filters(spec: Mapping[str, Any] | None, *, name: str = "search_filters") -> FilterGroup | None:
    """Validate a wire ``MetadataFilters`` dict; None or no filters gives None.

    Raises ``ValueError`` naming the path (``name.filters[1].operator: ...``). A missing or
    null ``operator`` means ``==`` and a null ``condition`` means ``and`` (LlamaIndex's
    defaults); ``value`` may be omitted only for ``is_empty``.
    """
    if spec is None:
        return None
    group = _Parser().group(spec, name, 1)
    return group if group.filters else None
