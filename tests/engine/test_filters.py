"""Metadata filters (``search_filters``): operators, conditions, validation, round trip, mask."""

from __future__ import annotations

import numpy as np
import pytest

from llamaeval.engine._filters import (
    MAX_CONDITIONS, MAX_DEPTH, OPERATORS, FilterGroup, MetadataFilter, parse_filters,
)

# Five hand-checkable chunks' metadata.
M = [
    {"year": 2019, "lang": "en", "tags": ["a", "b"], "title": "Deep Learning", "score": 0.5},
    {"year": 2021, "lang": "fr", "tags": ["b"], "title": "deep nets", "score": 2},
    {"year": 2020.0, "lang": "en", "tags": [], "title": "", "flag": True},
    {"year": "2020", "lang": None, "tags": "a", "title": 7},
    {},
]


def hits(*filters: dict, condition: str = "and") -> list[int]:
    group = parse_filters({"filters": list(filters), "condition": condition})
    assert group is not None
    return [i for i, m in enumerate(M) if group.matches(m)]


def f(key: str, op: str, value=None) -> dict:
    return {"key": key, "value": value, "operator": op}


# --- one test per operator ------------------------------------------------------------

def test_eq_numbers_strings_bools_and_missing():
    assert hits(f("year", "==", 2020)) == [2]  # 2020.0 == 2020; "2020" is a string
    assert hits(f("year", "==", "2020")) == [3]
    assert hits(f("score", "==", 2.0)) == [1]
    assert hits(f("flag", "==", True)) == [2]
    assert hits(f("flag", "==", 1)) == []  # a boolean is not a number
    assert hits(f("tags", "==", "b")) == []  # a list never equals a scalar
    assert hits(f("tags", "==", ["b"])) == [1]
    assert hits(f("nope", "==", None)) == []  # missing key matches nothing


def test_ne_missing_key_matches():
    assert hits(f("year", "!=", 2020)) == [0, 1, 3, 4]
    assert hits(f("lang", "!=", "en")) == [1, 3, 4]  # None and missing count as "not en"


def test_gt():
    assert hits(f("year", ">", 2019)) == [1, 2]  # "2020" vs 2019 is incomparable -> False
    assert hits(f("score", ">", 1)) == [1]


def test_lt():
    assert hits(f("year", "<", 2021)) == [0, 2]


def test_gte():
    assert hits(f("year", ">=", 2020)) == [1, 2]


def test_lte():
    assert hits(f("year", "<=", 2019.5)) == [0]


def test_ordering_strings_and_incomparable_types_never_raise():
    assert hits(f("lang", ">", "e")) == [0, 1, 2]  # strings compare lexicographically
    assert hits(f("lang", ">", 3)) == []  # "en" > 3: False, not TypeError
    assert hits(f("tags", "<", 3)) == []
    assert hits(f("flag", ">", 0)) == []  # booleans are not ordered
    assert hits(f("year", "<", None)) == []


def test_in():
    assert hits(f("lang", "in", ["en", "de"])) == [0, 2]
    assert hits(f("year", "in", [2020, 1999])) == [2]
    assert hits(f("tags", "in", ["a", "b"])) == [3]  # list-valued fields are never "in"; 3 has scalar "a"
    assert hits(f("lang", "in", [])) == []


def test_nin():
    assert hits(f("lang", "nin", ["en"])) == [1, 3, 4]  # None / missing -> True
    assert hits(f("tags", "nin", ["a"])) == [0, 1, 2, 4]


def test_any():
    assert hits(f("tags", "any", ["a", "c"])) == [0, 3]  # scalar "a" is a one-element list
    assert hits(f("tags", "any", [])) == []
    assert hits(f("title", "any", ["eep"])) == []  # no substring matching


def test_all():
    assert hits(f("tags", "all", ["a", "b"])) == [0]
    assert hits(f("tags", "all", ["b"])) == [0, 1]
    assert hits(f("tags", "all", [])) == [0, 1, 2, 3]  # vacuously true when the key is present


def test_contains():
    assert hits(f("tags", "contains", "b")) == [0, 1]
    assert hits(f("tags", "contains", "a")) == [0, 3]
    assert hits(f("title", "contains", "Deep")) == []  # not a substring test
    assert hits(f("title", "contains", "deep nets")) == [1]


def test_text_match_is_case_sensitive_substring():
    assert hits(f("title", "text_match", "eep")) == [0, 1]
    assert hits(f("title", "text_match", "Deep")) == [0]
    assert hits(f("title", "text_match", "7")) == []  # non-string field -> False


def test_text_match_insensitive():
    assert hits(f("title", "text_match_insensitive", "DEEP")) == [0, 1]
    assert hits(f("lang", "text_match_insensitive", "N")) == [0, 2]


def test_is_empty():
    assert hits(f("title", "is_empty")) == [2, 4]
    assert hits(f("tags", "is_empty")) == [2, 4]
    assert hits(f("lang", "is_empty")) == [3, 4]
    assert hits({"key": "flag", "operator": "is_empty"}) == [0, 1, 3, 4]  # value may be omitted


# --- conditions and nesting ------------------------------------------------------------

EN = f("lang", "==", "en")
RECENT = f("year", ">=", 2020)


def test_and_or():
    assert hits(EN, RECENT, condition="and") == [2]
    assert hits(EN, RECENT, condition="or") == [0, 1, 2]


def test_not_is_none_of():
    # NOT(OR): neither condition holds. NOT(AND) would give [0, 1, 3, 4].
    assert hits(EN, RECENT, condition="not") == [3, 4]
    assert hits(EN, condition="not") == [1, 3, 4]


def test_nested_groups():
    spec = {
        "filters": [
            {"filters": [EN], "condition": "not"},
            {"filters": [f("tags", "contains", "b"), f("year", "==", "2020")], "condition": "or"},
        ],
        "condition": "and",
    }
    group = parse_filters(spec)
    assert [i for i, m in enumerate(M) if group.matches(m)] == [1, 3]


def test_empty_nested_group_matches_everything():
    assert hits({"filters": [], "condition": "or"}, EN) == [0, 2]
    assert hits({"filters": [], "condition": "not"}) == [0, 1, 2, 3, 4]


def test_matches_none_metadata():
    g = parse_filters({"filters": [f("lang", "!=", "en")]})
    assert g.matches(None) is True
    assert parse_filters({"filters": [EN]}).matches(None) is False


# --- parsing: defaults, aliases, None ----------------------------------------------------

def test_none_and_empty_give_none():
    assert parse_filters(None) is None
    assert parse_filters({"filters": []}) is None
    assert parse_filters({"filters": [], "condition": "or"}) is None


def test_defaults():
    g = parse_filters({"filters": [{"key": "lang", "value": "en"}], "condition": None})
    assert g == FilterGroup((MetadataFilter("lang", "en", "=="),), "and")
    g = parse_filters({"filters": [{"key": "lang", "value": "en", "operator": None}]})
    assert g.filters[0].operator == "=="


@pytest.mark.parametrize("alias, canonical", [
    ("EQ", "=="), ("=", "=="), ("ne", "!="), ("GT", ">"), ("lt", "<"), ("gte", ">="), ("LTE", "<="),
    ("IN", "in"), ("NIN", "nin"), ("Any", "any"), ("ALL", "all"), ("TEXT_MATCH", "text_match"),
    ("TEXT_MATCH_INSENSITIVE", "text_match_insensitive"), ("CONTAINS", "contains"), ("IS_EMPTY", "is_empty"),
])
def test_operator_aliases(alias, canonical):
    value = ["x"] if canonical in ("in", "nin", "any", "all") else "x"
    g = parse_filters({"filters": [{"key": "k", "value": value, "operator": alias}], "condition": "OR"})
    assert g.filters[0].operator == canonical
    assert g.condition == "or"


# --- validation errors name the path ----------------------------------------------------

@pytest.mark.parametrize("spec, message", [
    ([EN], "search_filters: expected an object, got list"),
    ("x", "search_filters: expected an object, got string"),
    ({}, "search_filters: missing 'filters'"),
    ({"filters": "x"}, "search_filters.filters: expected a list, got string"),
    ({"filters": [EN, 3]}, "search_filters.filters[1]: expected an object, got number"),
    ({"filters": [{"value": 1}]}, "search_filters.filters[0]: missing 'key'"),
    ({"filters": [{"key": 5, "value": 1}]}, "search_filters.filters[0].key: expected a non-empty string"),
    ({"filters": [{"key": "a", "operator": "=="}]}, "search_filters.filters[0]: missing 'value'"),
    ({"filters": [EN, f("a", "like", 1)]},
     "search_filters.filters[1].operator: unknown operator 'like'; use one of ==, !=, >, <, >=, <=, in, nin, "
     "any, all, text_match, text_match_insensitive, contains, is_empty"),
    ({"filters": [EN], "condition": "xor"}, "search_filters.condition: unknown condition 'xor'; use one of and, or, not"),
    ({"filters": [{"filters": [EN], "condition": 1}]}, "search_filters.filters[0].condition: unknown condition 1"),
    ({"filters": [{"filters": [EN, f("a", "in", "x")]}]},
     "search_filters.filters[0].filters[1].value: operator 'in' needs a list value, got string"),
    ({"filters": [f("a", "nin", None)]}, "search_filters.filters[0].value: operator 'nin' needs a list value, got null"),
    ({"filters": [f("a", "any", "x")]}, "search_filters.filters[0].value: operator 'any' needs a list value"),
    ({"filters": [f("a", "all", 1)]}, "search_filters.filters[0].value: operator 'all' needs a list value"),
    ({"filters": [f("a", "text_match", 1)]}, "search_filters.filters[0].value: operator 'text_match' needs a string value"),
    ({"filters": [f("a", ">", [1])]}, "search_filters.filters[0].value: operator '>' needs a single value, got a list"),
    ({"filters": [f("a", "==", {"b": 1})]}, "search_filters.filters[0].value: expected a string, number, boolean, null"),
    ({"filters": [f("a", "in", [1, [2]])]}, "search_filters.filters[0].value[1]: expected a string, number"),
])
def test_validation_errors(spec, message):
    with pytest.raises(ValueError) as err:
        parse_filters(spec)
    assert str(err.value).startswith(message), str(err.value)


def test_custom_name_in_path():
    with pytest.raises(ValueError, match=r"^filters\.filters\[0\]: missing 'key'"):
        parse_filters({"filters": [{}]}, name="filters")


def nested(levels: int) -> dict:
    spec: dict = {"filters": [EN]}
    for _ in range(levels - 1):
        spec = {"filters": [spec]}
    return spec


def test_depth_limit():
    assert parse_filters(nested(MAX_DEPTH)) is not None
    with pytest.raises(ValueError) as err:
        parse_filters(nested(MAX_DEPTH + 1))
    assert str(err.value) == "search_filters" + ".filters[0]" * MAX_DEPTH + ": filters nested deeper than 8 levels"


def test_condition_count_limit():
    assert parse_filters({"filters": [EN] * MAX_CONDITIONS}) is not None
    with pytest.raises(ValueError, match=r"^search_filters\.filters\[100\]: more than 100 conditions in total"):
        parse_filters({"filters": [EN] * (MAX_CONDITIONS + 1)})
    # counted across nested groups
    spec = {"filters": [EN] * 50 + [{"filters": [EN] * 51}]}
    with pytest.raises(ValueError, match=r"^search_filters\.filters\[50\]\.filters\[50\]: more than 100"):
        parse_filters(spec)


# --- direct construction, round trip, mask ----------------------------------------------

def test_direct_construction():
    mf = MetadataFilter("tags", ["a"], "ANY")
    assert mf.operator == "any" and mf.value == ("a",)
    hash(mf)
    assert mf.matches(M[0]) and not mf.matches(M[1])
    with pytest.raises(ValueError, match="unknown operator 'like'"):
        MetadataFilter("k", 1, "like")
    with pytest.raises(ValueError, match="unknown condition 'xor'"):
        FilterGroup((mf,), "xor")
    assert FilterGroup([mf], "OR").filters == (mf,)
    assert set(OPERATORS) == {
        "==", "!=", ">", "<", ">=", "<=", "in", "nin", "any", "all",
        "text_match", "text_match_insensitive", "contains", "is_empty",
    }


def test_round_trip():
    spec = {
        "filters": [
            {"key": "lang", "value": "en", "operator": "=="},
            {"key": "tags", "value": ["a", "b"], "operator": "any"},
            {"filters": [
                {"key": "year", "value": 2020, "operator": ">="},
                {"key": "title", "value": None, "operator": "is_empty"},
            ], "condition": "not"},
        ],
        "condition": "or",
    }
    group = parse_filters(spec)
    assert group.to_dict() == spec
    assert parse_filters(group.to_dict()) == group
    # aliases and defaults are written back canonically
    g = parse_filters({"filters": [{"key": "k", "value": [1], "operator": "IN"}, {"key": "j", "value": 2}]})
    assert g.to_dict() == {
        "filters": [{"key": "k", "value": [1], "operator": "in"}, {"key": "j", "value": 2, "operator": "=="}],
        "condition": "and",
    }


def test_mask():
    group = parse_filters({"filters": [EN, RECENT], "condition": "or"})
    mask = group.mask(M)
    assert isinstance(mask, np.ndarray) and mask.dtype == bool and mask.shape == (5,)
    assert mask.tolist() == [True, True, True, False, False]
    assert group.mask([]).shape == (0,)
    assert parse_filters({"filters": [EN], "condition": "not"}).mask(M).tolist() == [False, True, False, True, True]
