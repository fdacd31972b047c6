"""OpenAI attribute filters → LanceDB predicates (the SQL text; integration tests run them)."""

from __future__ import annotations

import math
import re
from typing import Annotated

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from pydantic import BeforeValidator, TypeAdapter, ValidationError

from llamda.api.vector_stores import CompoundFilter, Filter, check_filter_shape
from llamda.errors import BadRequestError
from llamda.providers.vector_io.lancedb import compile_filter

parse = TypeAdapter(Filter).validate_python


def test_comparisons_by_value_type() -> None:
    assert compile_filter(parse({"type": "eq", "key": "team", "value": "o'neil"})) == (
        "json_get_string(attributes, 'team') = 'o''neil'"
    )
    assert compile_filter(parse({"type": "gte", "key": "year", "value": 2024})) == (
        "TRY_CAST(json_extract(attributes, '$.year') AS DOUBLE) >= 2024.0"
    )
    assert compile_filter(parse({"type": "ne", "key": "ok", "value": True})) == (
        "json_extract(attributes, '$.ok') <> 'true'"
    )


def test_in_nin_and_compound() -> None:
    sql = compile_filter(
        parse(
            {
                "type": "or",
                "filters": [
                    {"type": "in", "key": "a", "value": ["x", 2]},
                    {"type": "and", "filters": [{"type": "nin", "key": "b", "value": ["y"]}]},
                ],
            }
        )
    )
    assert sql == (
        "((json_get_string(attributes, 'a') = 'x' OR "
        "TRY_CAST(json_extract(attributes, '$.a') AS DOUBLE) = 2.0) OR "
        "((json_get_string(attributes, 'b') <> 'y')))"
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "eq", "key": "a') OR 1=1 --", "value": "x"},
        {"type": "eq", "key": "a", "value": ["x"]},
        {"type": "in", "key": "a", "value": "x"},
        {"type": "in", "key": "a", "value": []},
        {"type": "gt", "key": "a", "value": True},
        {"type": "like", "key": "a", "value": "x"},
        {"type": "and", "filters": []},
        {"type": "eq", "key": "a", "value": {"nested": 1}},
    ],
)
def test_bad_filters_are_refused(bad: dict) -> None:
    with pytest.raises(ValidationError):
        parse(bad)


# --- properties (hypothesis) --------------------------------------------------------------------

# Keys and values as a hostile client sends them: quotes, SQL, JSON paths, unicode, numbers
# storage cannot hold.
_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=24) | st.sampled_from(
    ["x' OR '1'='1", "a'); DROP TABLE t; --", "$.a", "\\'", "''", "%", "NaN", "\u0000"]
)
_keys = st.from_regex(r"\A[A-Za-z0-9_-]{1,8}\Z") | _text
_numbers = (
    st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
)
_scalars = _text | st.booleans() | _numbers | st.none()
_ops = st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "like", "and", "or"])
_valid_keys = st.text(alphabet="abcXYZ019_-", min_size=1, max_size=8)
_valid_numbers = st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.floats(
    allow_nan=False, allow_infinity=False
)
# Mostly well-formed leaves (so many trees compile and their SQL is checked), some anything.
_well_formed = st.one_of(
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]),
            "key": _valid_keys,
            "value": _text | _valid_numbers,
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["in", "nin"]),
            "key": _valid_keys,
            "value": st.lists(_text | _valid_numbers, min_size=1, max_size=4),
        }
    ),
)
_anything = st.fixed_dictionaries(
    {"type": _ops, "key": _keys, "value": _scalars | st.lists(_scalars, max_size=4)},
    optional={"filters": st.just([]), "extra": _scalars},
)
_leaves = st.one_of(*[_well_formed] * 8, _anything)
_trees = st.recursive(
    _leaves,
    lambda children: st.one_of(
        *[
            st.fixed_dictionaries(
                {
                    "type": st.sampled_from(["and", "or"]),
                    "filters": st.lists(children, min_size=1, max_size=4),
                }
            )
        ]
        * 6,
        st.fixed_dictionaries(
            {"type": _ops, "filters": st.lists(children, max_size=4)}, optional={"key": _keys}
        ),
    ),
    max_leaves=16,
)

# The compiled SQL, literal by literal: every user string is inside a quoted literal.
_LITERAL = r"'(?:[^']|'')*'"
_TOKEN = re.compile(
    rf"\s*(?:(?P<lit>{_LITERAL})|json_get_string\(attributes, |json_extract\(attributes, "
    r"|TRY_CAST\(|\) AS DOUBLE\)|-?(?:\d+\.\d*|\d*\.\d+|\d+)(?:e[+-]?\d+)?|<>|>=|<=|=|>|<"
    r"|\bAND\b|\bOR\b|\(|\))"
)


def _literals(sql: str) -> list[str]:
    """The SQL's string literals (unescaped); fails if anything is not an expected token."""
    out, pos = [], 0
    while pos < len(sql):
        match = _TOKEN.match(sql, pos)
        assert match and match.end() > pos, f"unexpected SQL at {pos}: {sql[pos : pos + 40]!r}"
        if match.group("lit"):
            out.append(match.group("lit")[1:-1].replace("''", "'"))
        pos = match.end()
    return out


def _user_strings(node: Filter) -> set[str]:
    if isinstance(node, CompoundFilter):
        return set().union(*(_user_strings(f) for f in node.filters))
    values = node.value if isinstance(node.value, list) else [node.value]
    return {node.key, f"$.{node.key}", "true", "false"} | {v for v in values if isinstance(v, str)}


@settings(max_examples=200, deadline=None)
@given(raw=_trees)
def test_any_filter_tree_compiles_or_is_refused(raw: dict) -> None:
    """Arbitrary trees either fail validation (a 400 at the edge) or compile to SQL made only of
    our own tokens, with each user string a properly quoted literal."""
    try:
        node = TypeAdapter(Annotated[Filter, BeforeValidator(check_filter_shape)]).validate_python(
            raw
        )
    except ValidationError:
        event("refused at the edge")
        return
    try:
        sql = compile_filter(node)
    except BadRequestError:
        event("refused by the compiler")
        return
    event("compiled")
    literals = _literals(sql)
    assert set(literals) <= _user_strings(node)


@settings(max_examples=150, deadline=None)
@given(value=_numbers)
def test_numbers_compile_to_finite_literals_or_are_refused(value: int | float) -> None:
    try:
        node = parse({"type": "gte", "key": "n", "value": value})
    except ValidationError:
        assert (isinstance(value, float) and not math.isfinite(value)) or abs(value) >= 2**63
        return
    sql = compile_filter(node)
    number = sql.rsplit(" ", 1)[1]
    assert math.isfinite(float(number)) and float(number) == float(value)
