"""Bounds of the Responses request model: each applies to the shape it is meant for."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from llamda.api.responses import MAX_INPUT_ITEMS, CreateResponseRequest


def test_a_long_text_input_is_not_taken_for_too_many_items() -> None:
    request = CreateResponseRequest.model_validate({"model": "m", "input": "x" * 50_000})
    assert len(request.input) == 50_000


def test_too_many_items_is_a_validation_error() -> None:
    items = [{"role": "user", "content": "hi"}] * (MAX_INPUT_ITEMS + 1)
    with pytest.raises(ValidationError):
        CreateResponseRequest.model_validate({"model": "m", "input": items})


@pytest.mark.parametrize("allowed", [{"tool_names": None}, {"tool_names": ["a"]}, ["a", "b"], None])
def test_mcp_allowed_tools_shapes(allowed: object) -> None:
    tool = {"type": "mcp", "server_label": "s", "server_url": "https://x.example/mcp"}
    CreateResponseRequest.model_validate(
        {"model": "m", "input": "x", "tools": [{**tool, "allowed_tools": allowed}]}
    )


def test_conversation_as_id_or_object() -> None:
    assert (
        CreateResponseRequest.model_validate(
            {"model": "m", "input": "x", "conversation": {"id": "conv_1"}}
        ).conversation_id
        == "conv_1"
    )
    with pytest.raises(ValidationError):
        CreateResponseRequest.model_validate(
            {"model": "m", "input": "x", "conversation": "c" * 200}
        )
