"""Responses items → chat messages (what the model is sent at each step)."""

from __future__ import annotations

import json

import pytest

from llamda.api.inference import ChatCompletionRequest
from llamda.errors import BadRequestError
from llamda.services.agents.convert import check_calls_answered, to_messages
from llamda.services.agents.run import queries_of as _queries


def msg(role: str, text: str) -> dict:
    kind = "output_text" if role == "assistant" else "input_text"
    return {"type": "message", "id": "m", "role": role, "content": [{"type": kind, "text": text}]}


def call(call_id: str, name: str = "f", arguments: str = "{}") -> dict:
    return {
        "type": "function_call",
        "id": "fc",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def output(call_id: str, text: str) -> dict:
    return {"type": "function_call_output", "id": "o", "call_id": call_id, "output": text}


def test_a_turn_with_text_and_parallel_calls_is_one_assistant_message() -> None:
    items = [
        msg("user", "weather?"),
        msg("assistant", "Let me check."),
        call("c1", arguments='{"city": "Paris"}'),
        call("c2", arguments='{"city": "Oslo"}'),
        output("c1", "18C"),
        output("c2", "-3C"),
    ]
    messages = to_messages(items, ["Be brief."], server_tools=set())
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "tool"]
    assert messages[2]["content"] == "Let me check."
    assert [c["id"] for c in messages[2]["tool_calls"]] == ["c1", "c2"]
    assert [m["tool_call_id"] for m in messages[3:]] == ["c1", "c2"]
    ChatCompletionRequest.model_validate({"model": "m", "messages": messages})  # a valid request


def test_images_stay_parts_and_developer_is_system() -> None:
    image = {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"}
    items = [
        {
            "type": "message",
            "id": "d",
            "role": "developer",
            "content": [{"type": "input_text", "text": "rules"}],
        },
        {
            "type": "message",
            "id": "u",
            "role": "user",
            "content": [{"type": "input_text", "text": "what?"}, image],
        },
    ]
    messages = to_messages(items, [], server_tools=set())
    assert messages[0] == {"role": "system", "content": "rules"}
    assert messages[1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"},
    }


def test_file_search_history_is_a_tool_turn_or_text_without_the_tool() -> None:
    search = {
        "type": "file_search_call",
        "id": "fs_1",
        "queries": ["kettle"],
        "status": "completed",
        "results": [{"filename": "w.txt", "score": 0.9, "text": "24 months"}],
    }
    with_tool = to_messages([msg("user", "q"), search], [], server_tools={"file_search"})
    assert with_tool[1]["tool_calls"][0]["function"]["name"] == "file_search"
    assert json.loads(with_tool[1]["tool_calls"][0]["function"]["arguments"]) == {
        "queries": ["kettle"]
    }
    assert "24 months" in with_tool[2]["content"] and with_tool[2]["role"] == "tool"
    without = to_messages([msg("user", "q"), search], [], server_tools=set())
    assert all(m["role"] != "tool" and not m.get("tool_calls") for m in without)
    assert "24 months" in without[-1]["content"]


def test_calls_and_outputs_must_pair() -> None:
    check_calls_answered([msg("user", "q"), call("c1"), output("c1", "ok")])
    with pytest.raises(BadRequestError, match="no function_call before it"):
        check_calls_answered([msg("user", "q"), output("c1", "ok")])
    with pytest.raises(BadRequestError, match="no function_call_output for call_id 'c2'"):
        check_calls_answered([call("c1"), call("c2"), output("c1", "ok")])


@pytest.mark.parametrize(
    ("arguments", "queries"),
    [
        ('{"queries": ["a", " b "]}', ["a", "b"]),
        ('{"query": "solo"}', ["solo"]),
        ('{"queries": "as text"}', ["as text"]),
        ("not json", []),
        ('["a"]', []),
        ('{"queries": [1, "", "ok"]}', ["ok"]),
    ],
)
def test_model_search_arguments_are_read_leniently(arguments: str, queries: list[str]) -> None:
    assert _queries(arguments) == queries
