"""OpenAI attribute filters → LanceDB predicates (the SQL text; integration tests run them)."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from llamda.api.vector_stores import Filter
from llamda.services.vector_stores import compile_filter

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
