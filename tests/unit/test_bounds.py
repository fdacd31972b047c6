"""The input bounds and the validation-error renderer, without a server (the live-server tests
are tests/integration/test_bounds.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from llamda.api import bounds
from llamda.api.vector_stores import SearchRequest
from llamda.app import _validation_message


def _nested_lists(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


def test_depth_is_checked_without_recursion() -> None:
    """100,000 levels: refused by the walk, no RecursionError on the way."""
    with pytest.raises(PydanticCustomError) as err:
        bounds.check_json({"a": _nested_lists(100_000)})
    assert err.value.type == "json_too_deep"
    assert bounds.check_json({"a": _nested_lists(31)}) == {"a": _nested_lists(31)}


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ({"n": float("nan")}, "finite_number"),
        ({"n": [1, float("-inf")]}, "finite_number"),
        ({"n": 2**63}, "int_too_large"),
        ({"n": -(2**63) - 1}, "int_too_large"),
        ({"s": "é" * 9000}, "json_too_large"),  # 18,000 bytes as UTF-8
        ({str(i): i for i in range(600)}, "json_too_many_keys"),
    ],
)
def test_json_bounds(value: dict[str, Any], kind: str) -> None:
    with pytest.raises(PydanticCustomError) as err:
        bounds.check_json(value)
    assert err.value.type == kind


@pytest.fixture
def short_queries() -> Iterator[None]:
    bounds.configure(max_query_chars=16)
    yield
    bounds.configure(max_query_chars=bounds.DEFAULT_MAX_QUERY_CHARS)


def test_query_length_follows_the_config(short_queries: None) -> None:
    assert SearchRequest(query="x" * 16).queries == ["x" * 16]
    with pytest.raises(ValidationError, match="longer than 16 characters"):
        SearchRequest(query="x" * 17)


def _rendered(body: dict[str, Any]) -> tuple[str, str | None]:
    try:
        SearchRequest.model_validate(body)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        message, param, _ = _validation_message(RequestValidationError(errors))
        return message, param
    raise AssertionError("valid")


@pytest.mark.parametrize(
    ("body", "message", "param"),
    [
        (
            {"query": "q", "filters": {"type": "eq", "key": "a", "value": ["x"]}},
            "filters: eq needs a string, number or boolean value",
            "filters",
        ),
        (
            {"query": "q", "filters": {"type": "or", "filters": [{"type": "eq", "key": "a"}]}},
            "filters.filters[0].value: Field required",
            "filters.filters[0].value",
        ),
        ({"query": 5}, "query: Input should be a valid string or a valid list", "query"),
        (
            {"query": "q", "filters": {"type": "eq", "key": "a", "value": 2**70}},
            "filters.value: integers must fit in 64 bits (±9223372036854775807)",
            "filters.value",
        ),
    ],
)
def test_union_noise_is_stripped(body: dict[str, Any], message: str, param: str) -> None:
    assert _rendered(body) == (message, param)


def test_a_long_flat_list_is_refused_before_it_is_walked() -> None:
    with pytest.raises(PydanticCustomError) as err:
        bounds.check_json({"a": [0] * 1_000_000})
    assert err.value.type == "json_too_large"
