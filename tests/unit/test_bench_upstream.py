"""The benchmarks' instant upstream (scripts/bench/instant_upstream.py) as the openai SDK sees
it: valid SSE when streamed, a scripted tool call on a user turn with tools, text otherwise."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
USER = {"role": "user", "content": "hi"}


@pytest.fixture(scope="module")
def client() -> Iterator[openai.OpenAI]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    script = ROOT / "scripts/bench/instant_upstream.py"
    proc = subprocess.Popen([sys.executable, str(script), str(port)])
    base = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(100):
            try:
                httpx.get(f"{base}/models", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield openai.OpenAI(base_url=base, api_key="unused", max_retries=0)
    finally:
        proc.terminate()
        proc.wait(10)


def _stream(client: openai.OpenAI, **kwargs: object) -> tuple[str, list, str | None, object]:
    text, calls, finish, usage = "", [], None, None
    for chunk in client.chat.completions.create(
        model="bench-model", stream=True, stream_options={"include_usage": True}, **kwargs
    ):
        usage = chunk.usage or usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            calls += choice.delta.tool_calls or []
            finish = choice.finish_reason or finish
    return text, calls, finish, usage


def test_plain_call_answers_text(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="bench-model", messages=[USER])
    assert reply.choices[0].message.content == "ok"
    assert reply.choices[0].finish_reason == "stop"


def test_stream_without_tools_answers_text_and_usage(client: openai.OpenAI) -> None:
    text, calls, finish, usage = _stream(client, messages=[USER])
    assert (text, calls, finish) == ("ok", [], "stop")
    assert usage is not None and usage.total_tokens == 2


def test_stream_with_tools_on_a_user_turn_calls_the_first_tool(client: openai.OpenAI) -> None:
    text, calls, finish, _ = _stream(client, messages=[USER], tools=TOOLS)
    assert text == "" and finish == "tool_calls"
    assert [(c.id, c.function.name) for c in calls] == [("call_bench", "lookup")]


def test_after_a_tool_result_it_answers_text(client: openai.OpenAI) -> None:
    call = {
        "id": "call_bench",
        "type": "function",
        "function": {"name": "lookup", "arguments": "{}"},
    }
    messages = [
        USER,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_bench", "content": "42"},
    ]
    text, calls, finish, _ = _stream(client, messages=messages, tools=TOOLS)
    assert (text, calls, finish) == ("ok", [], "stop")
    plain = client.chat.completions.create(model="bench-model", messages=messages, tools=TOOLS)
    assert plain.choices[0].message.content == "ok"


def test_non_streamed_tool_call(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="bench-model", messages=[USER], tools=TOOLS)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls[0].function.name == "lookup"


def test_embeddings_one_unit_vector_per_input(client: openai.OpenAI) -> None:
    reply = client.embeddings.create(model="bench-model", input=["a", "b", "c"])
    assert [d.index for d in reply.data] == [0, 1, 2]
    for item in reply.data:
        assert abs(sum(x * x for x in item.embedding) - 1) < 1e-9
