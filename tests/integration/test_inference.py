"""Inference through the live local server with the official SDKs: Bedrock (the wire-level
fake, reached by real aioboto3 clients) and the remote OpenAI-compatible provider (a second
live Llamda server, itself backed by the fake), with retries, fallbacks and breakers."""

from __future__ import annotations

import base64
import json
import socket
import struct
from collections.abc import Iterator

import httpx
import openai
import pytest
from llama_stack_client import LlamaStackClient

from tests.conftest import LiveServer, start_server, stop_server
from tests.fakes.bedrock import FakeBedrockServer, Reply
from tests.fakes.openai_upstream import OpenAIUpstream

LLAMA = "us.meta.llama3-1-8b-instruct-v1:0"

UPSTREAM_CONFIG = """
apis: [inspect, models, inference]
providers:
  inference:
    - {provider_id: bedrock, provider_type: bedrock, config: {region_name: us-east-1, endpoint_url: "ENDPOINT"}}
models:
  - {model_id: upstream-llama, provider_id: bedrock, provider_model_id: upstream-model}
storage:
  records: {type: sqlite, path: "${env.LLAMDA_HOME}/r.sqlite3"}
  objects: {type: local, root: "${env.LLAMDA_HOME}/o"}
  vectors: {uri: "${env.LLAMDA_HOME}/v"}
"""

MAIN_CONFIG = """
apis: [inspect, models, inference]
providers:
  inference:
    - {provider_id: bedrock, provider_type: bedrock, config: {region_name: us-east-1, endpoint_url: "ENDPOINT"}}
    - {provider_id: vllm, provider_type: vllm, config: {url: "UPSTREAM/v1", api_key: upstream-key}}
models:
  - {model_id: llama, provider_id: bedrock, provider_model_id: LLAMA}
  - {model_id: flaky, provider_id: bedrock, provider_model_id: flaky-model, fallbacks: [remote-llama]}
  - {model_id: breaker, provider_id: bedrock, provider_model_id: breaker-model, fallbacks: [remote-llama]}
  - {model_id: hangs, provider_id: bedrock, provider_model_id: hang-model, fallbacks: [remote-llama]}
  - {model_id: small-ctx, provider_id: bedrock, provider_model_id: small-model, context_window_fallbacks: [llama]}
  - {model_id: remote-llama, provider_id: vllm, provider_model_id: upstream-llama}
  - {model_id: titan, provider_id: bedrock, provider_model_id: "amazon.titan-embed-text-v2:0", model_type: embedding, metadata: {embedding_dimension: 1024, supported_dimensions: [256, 512, 1024]}}
  - {model_id: cohere, provider_id: bedrock, provider_model_id: cohere.embed-english-v3, model_type: embedding, metadata: {embedding_dimension: 1024}}
storage:
  records: {type: sqlite, path: "${env.LLAMDA_HOME}/r.sqlite3"}
  objects: {type: local, root: "${env.LLAMDA_HOME}/o"}
  vectors: {uri: "${env.LLAMDA_HOME}/v"}
routing: {max_retries: 2, backoff_base_seconds: 0.01, backoff_max_seconds: 0.5, breaker_failure_threshold: 3, breaker_cooldown_seconds: 60, timeout_seconds: 5}
"""


@pytest.fixture(scope="module")
def servers(
    fake_bedrock: FakeBedrockServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, LiveServer]]:
    up_home = tmp_path_factory.mktemp("upstream")
    (up_home / "run.yaml").write_text(UPSTREAM_CONFIG.replace("ENDPOINT", fake_bedrock.endpoint))
    upstream = start_server(up_home / "run.yaml", up_home)
    home = tmp_path_factory.mktemp("main")
    config = (
        MAIN_CONFIG.replace("ENDPOINT", fake_bedrock.endpoint)
        .replace("UPSTREAM", upstream.url)
        .replace("LLAMA", LLAMA)
    )
    (home / "run.yaml").write_text(config)
    main = start_server(home / "run.yaml", home)
    yield main, upstream
    stop_server(main)
    stop_server(upstream)


@pytest.fixture
def fake(fake_bedrock: FakeBedrockServer):  # type: ignore[no-untyped-def]
    fake_bedrock.fake.reset()
    return fake_bedrock.fake


@pytest.fixture(scope="module")
def main(servers: tuple[LiveServer, LiveServer]) -> LiveServer:
    return servers[0]


@pytest.fixture(scope="module")
def client(main: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{main.url}/v1", api_key="unused", max_retries=0)


def test_chat_plain_maps_messages_and_parameters(client: openai.OpenAI, fake) -> None:  # type: ignore[no-untyped-def]
    raw = client.chat.completions.with_raw_response.create(
        model="llama",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "No emojis."}]},
            {"role": "user", "content": "hello world"},
        ],
        temperature=0.2,
        top_p=0.9,
        max_tokens=50,
        stop=["END"],
        seed=7,
        user="u-1",
    )
    reply = raw.parse()
    assert raw.headers["x-llamda-provider"] == "bedrock"
    assert reply.choices[0].message.content == "You said: hello world"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.model == "llama"
    assert reply.usage.prompt_tokens == 6 and reply.usage.completion_tokens == 4
    assert reply.usage.total_tokens == 10
    (call,) = fake.calls_for("converse", LLAMA)
    body = call["body"]
    assert body["system"] == [{"text": "Be brief."}, {"text": "No emojis."}]
    assert body["messages"] == [{"role": "user", "content": [{"text": "hello world"}]}]
    assert body["inferenceConfig"] == {
        "maxTokens": 50,
        "temperature": 0.2,
        "topP": 0.9,
        "stopSequences": ["END"],
    }


def test_max_tokens_maps_to_length(client: openai.OpenAI, fake) -> None:  # type: ignore[no-untyped-def]
    fake.script(LLAMA, Reply(text="one two three four five six"))
    reply = client.chat.completions.create(
        model="llama", messages=[{"role": "user", "content": "count"}], max_completion_tokens=3
    )
    assert reply.choices[0].finish_reason == "length"
    assert reply.choices[0].message.content == "one two three"


def test_image_parts_reach_converse_as_bytes(client: openai.OpenAI, fake) -> None:  # type: ignore[no-untyped-def]
    png = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
    client.chat.completions.create(
        model="llama",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
                ],
            }
        ],
    )
    block = fake.calls_for("converse", LLAMA)[0]["body"]["messages"][0]["content"][1]
    assert block["image"]["format"] == "png"
    assert base64.b64decode(block["image"]["source"]["bytes"]) == b"\x89PNG\r\n\x1a\nfake"


def test_tools_round_trip(client: openai.OpenAI, fake) -> None:  # type: ignore[no-untyped-def]
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    fake.script(LLAMA, Reply(tool={"name": "get_weather", "input": {"city": "Paris"}}))
    first = client.chat.completions.create(
        model="llama",
        messages=[{"role": "user", "content": "weather in Paris?"}],
        tools=tools,
        tool_choice="auto",
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {
        "city": "Paris"
    }
    sent = fake.calls_for("converse", LLAMA)[0]["body"]["toolConfig"]
    assert sent["toolChoice"] == {"auto": {}}
    assert sent["tools"][0]["toolSpec"]["inputSchema"]["json"]["required"] == ["city"]

    final = client.chat.completions.create(
        model="llama",
        messages=[
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"},
        ],
        tools=tools,
    )
    assert final.choices[0].message.content == "You said: 18C and sunny"
    turns = fake.calls_for("converse", LLAMA)[1]["body"]["messages"]
    assert turns[1]["content"][0]["toolUse"] == {
        "toolUseId": call.id,
        "name": "get_weather",
        "input": {"city": "Paris"},
    }
    assert turns[2]["content"][0]["toolResult"]["toolUseId"] == call.id


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("required", {"any": {}}),
        ({"type": "function", "function": {"name": "f"}}, {"tool": {"name": "f"}}),
    ],
)
def test_tool_choice_mapping(client: openai.OpenAI, fake, choice, expected) -> None:  # type: ignore[no-untyped-def]
    tools = [
        {
            "type": "function",
            "function": {"name": "f", "parameters": {"type": "object", "properties": {}}},
        }
    ]
    client.chat.completions.create(
        model="llama", messages=[{"role": "user", "content": "x"}], tools=tools, tool_choice=choice
    )
    assert fake.calls_for("converse", LLAMA)[0]["body"]["toolConfig"]["toolChoice"] == expected


def test_tool_choice_none_sends_no_tools(client: openai.OpenAI, fake) -> None:  # type: ignore[no-untyped-def]
    tools = [
        {
            "type": "function",
            "function": {"name": "f", "parameters": {"type": "object", "properties": {}}},
        }
    ]
    reply = client.chat.completions.create(
        model="llama", messages=[{"role": "user", "content": "x"}], tools=tools, tool_choice="none"
    )
    assert reply.choices[0].message.tool_calls is None
    assert "toolConfig" not in fake.calls_for("converse", LLAMA)[0]["body"]


def test_json_schema_response_format(client: openai.OpenAI, fake) -> None:  # type: ignore[no-untyped-def]
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["name", "age"],
    }
    reply = client.chat.completions.create(
        model="llama",
        messages=[{"role": "user", "content": "a person"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": schema},
        },
    )
    data = json.loads(reply.choices[0].message.content)
    assert set(data) == {"name", "age", "tags"} and isinstance(data["age"], int)
    assert reply.choices[0].finish_reason == "stop" and reply.choices[0].message.tool_calls is None
    sent = fake.calls_for("converse", LLAMA)[0]["body"]["toolConfig"]
    assert sent["toolChoice"] == {"tool": {"name": "json_response"}}
    assert sent["tools"][0]["toolSpec"]["inputSchema"]["json"] == schema


def test_json_object_adds_an_instruction(client: openai.OpenAI, fake) -> None:  # type: ignore[no-untyped-def]
    fake.script(LLAMA, Reply(text='{"ok": true}'))
    reply = client.chat.completions.create(
        model="llama",
        messages=[{"role": "user", "content": "x"}],
        response_format={"type": "json_object"},
    )
    assert json.loads(reply.choices[0].message.content) == {"ok": True}
    assert "JSON" in fake.calls_for("converse", LLAMA)[0]["body"]["system"][-1]["text"]


def test_streaming_with_usage(client: openai.OpenAI, fake) -> None:  # type: ignore[no-untyped-def]
    stream = client.chat.completions.create(
        model="llama",
        messages=[{"role": "user", "content": "stream me please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: stream me please"
    assert (
        len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 5
    )  # token by token
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 3 + 5
    assert fake.calls_for("converse-stream", LLAMA)


def test_streaming_without_usage_has_no_usage_chunk(client: openai.OpenAI, fake) -> None:  # type: ignore[no-untyped-def]
    chunks = list(
        client.chat.completions.create(
            model="llama", messages=[{"role": "user", "content": "x"}], stream=True
        )
    )
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)


def test_streaming_tool_calls(client: openai.OpenAI, fake) -> None:  # type: ignore[no-untyped-def]
    fake.script(LLAMA, Reply(tool={"name": "lookup", "input": {"q": "llamas", "n": 3}}))
    tools = [
        {
            "type": "function",
            "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
        }
    ]
    chunks = list(
        client.chat.completions.create(
            model="llama", messages=[{"role": "user", "content": "x"}], tools=tools, stream=True
        )
    )
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].id.startswith("tooluse_") and deltas[0].function.name == "lookup"
    arguments = "".join(d.function.arguments or "" for d in deltas)
    assert json.loads(arguments) == {"q": "llamas", "n": 3}
    assert [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ] == ["tool_calls"]


def test_error_after_first_token_ends_stream_without_switching(client: openai.OpenAI, fake) -> None:  # type: ignore[no-untyped-def]
    fake.script(
        "flaky-model",
        Reply(
            text="partial answer then boom",
            stream_error=("modelStreamErrorException", "model crashed"),
            stream_error_after=2,
        ),
    )
    received = []
    with pytest.raises(openai.APIError, match="model crashed"):
        for chunk in client.chat.completions.create(
            model="flaky", messages=[{"role": "user", "content": "x"}], stream=True
        ):
            received.append(chunk)
    assert (
        "".join(c.choices[0].delta.content or "" for c in received if c.choices) == "partial answer"
    )
    assert not fake.calls_for(
        "converse-stream", "upstream-model"
    )  # no fallback once tokens were sent


def test_retries_then_succeeds(client: openai.OpenAI, fake) -> None:  # type: ignore[no-untyped-def]
    fake.script(
        LLAMA,
        Reply(error=("ThrottlingException", "Too many requests")),
        Reply(error=("ServiceUnavailableException", "busy")),
    )
    raw = client.chat.completions.with_raw_response.create(
        model="llama", messages=[{"role": "user", "content": "persist"}]
    )
    assert raw.parse().choices[0].message.content == "You said: persist"
    assert raw.headers["x-llamda-provider"] == "bedrock"
    assert len(fake.calls_for("converse", LLAMA)) == 3


def test_fallback_to_remote_provider(client: openai.OpenAI, fake, main: LiveServer) -> None:  # type: ignore[no-untyped-def]
    fake.script("flaky-model", *[Reply(error=("InternalServerException", "boom"))] * 3)
    raw = client.chat.completions.with_raw_response.create(
        model="flaky", messages=[{"role": "user", "content": "fall back"}]
    )
    reply = raw.parse()
    assert (
        raw.headers["x-llamda-provider"] == "vllm"
        and raw.headers["x-llamda-model"] == "remote-llama"
    )
    assert reply.choices[0].message.content == "You said: fall back"
    assert len(fake.calls_for("converse", "flaky-model")) == 3  # 1 try + 2 retries
    assert len(fake.calls_for("converse", "upstream-model")) == 1  # served via the upstream server


def test_429_then_500_then_hang_is_served_by_the_fallback(client: openai.OpenAI, fake) -> None:  # type: ignore[no-untyped-def]
    fake.script(
        "hang-model",
        Reply(error=("ThrottlingException", "slow down")),
        Reply(error=("InternalServerException", "oops")),
        Reply(delay=6, text="too late"),
    )
    chunks = list(
        client.chat.completions.create(
            model="hangs", messages=[{"role": "user", "content": "one two three"}], stream=True
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: one two three"  # once, from the fallback: no duplicate tokens
    assert len(fake.calls_for("converse-stream", "hang-model")) == 3
    assert len(fake.calls_for("converse-stream", "upstream-model")) == 1


def test_breaker_opens_and_skips_the_provider(
    client: openai.OpenAI, fake, main: LiveServer
) -> None:  # type: ignore[no-untyped-def]
    fake.script("breaker-model", *[Reply(error=("ServiceUnavailableException", "down"))] * 10)
    client.chat.completions.create(model="breaker", messages=[{"role": "user", "content": "a"}])
    assert len(fake.calls_for("converse", "breaker-model")) == 3  # threshold 3 reached: open
    raw = client.chat.completions.with_raw_response.create(
        model="breaker", messages=[{"role": "user", "content": "b"}]
    )
    assert raw.headers["x-llamda-provider"] == "vllm"
    assert len(fake.calls_for("converse", "breaker-model")) == 3  # skipped while open
    health = httpx.get(f"{main.url}/v1/providers/bedrock").json()["health"]
    assert health["status"] == "Error"
    assert health["breakers"]["breaker-model"] == {"state": "open", "consecutive_failures": 3}


def test_context_window_fallback(client: openai.OpenAI, fake) -> None:  # type: ignore[no-untyped-def]
    fake.script(
        "small-model",
        Reply(error=("ValidationException", "Input is too long for requested model.")),
    )
    raw = client.chat.completions.with_raw_response.create(
        model="small-ctx", messages=[{"role": "user", "content": "long"}]
    )
    assert raw.headers["x-llamda-model"] == "llama"
    assert len(fake.calls_for("converse", "small-model")) == 1  # not retried


@pytest.mark.parametrize(
    ("code", "status", "error_class"),
    [
        ("AccessDeniedException", 403, openai.PermissionDeniedError),
        ("ResourceNotFoundException", 404, openai.NotFoundError),
        ("ValidationException", 400, openai.BadRequestError),
        ("ThrottlingException", 429, openai.RateLimitError),
        ("ModelNotReadyException", 503, openai.InternalServerError),
        ("ServiceUnavailableException", 503, openai.InternalServerError),
        ("ModelTimeoutException", 504, openai.InternalServerError),
    ],
)
def test_bedrock_errors_map_to_statuses(
    client: openai.OpenAI, fake, main: LiveServer, code: str, status: int, error_class
) -> None:  # type: ignore[no-untyped-def]
    # A registered model of its own, so each case starts with a closed circuit.
    model = f"err-{code}"
    registered = httpx.post(
        f"{main.url}/v1/models", json={"model_id": model, "provider_id": "bedrock"}
    )
    assert registered.status_code == 200
    fake.script(model, *[Reply(error=(code, f"bedrock says {code}"))] * 3)
    with pytest.raises(error_class) as err:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == status
    assert f"bedrock says {code}" in err.value.message


def test_bad_requests(client: openai.OpenAI, main: LiveServer) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError, match="embedding"):
        client.chat.completions.create(model="titan", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError, match="completions"):
        client.completions.create(model="llama", prompt="once upon")
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="llama", messages=[])
    with pytest.raises(openai.BadRequestError, match="data URL"):
        client.chat.completions.create(
            model="llama",
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}],
                }
            ],
        )
    for body in (
        {"model": "llama", "messages": [{"role": "wizard", "content": "x"}]},
        {"model": "llama", "messages": "hello"},
        {"model": "llama", "messages": [{"role": "user", "content": "x"}], "temperature": 9},
        {
            "model": "llama",
            "messages": [{"role": "user", "content": "x"}],
            "tool_choice": "required",
        },
        {"model": "llama", "messages": [{"role": "user", "content": "x"}], "n": 2},
        {"model": "llama", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
        {
            "model": "llama",
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function"}],
        },
        {
            "model": "llama",
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "bad name!"}}],
        },
        {
            "model": "llama",
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema"},
        },
        {"model": "llama", "messages": [{"role": "tool", "content": "x"}]},
        {"model": 12, "messages": [{"role": "user", "content": "x"}]},
    ):
        reply = httpx.post(f"{main.url}/v1/chat/completions", json=body)
        assert reply.status_code == 400, (body, reply.text)
        assert reply.json()["error"]["type"] == "invalid_request_error"
    bad_header = httpx.post(
        f"{main.url}/v1/chat/completions",
        json={"model": "llama", "messages": [{"role": "user", "content": "x"}]},
        headers={"X-LlamaStack-Provider-Data": "not json"},
    )
    assert (
        bad_header.status_code == 400
        and bad_header.json()["error"]["code"] == "invalid_provider_data"
    )


def test_embeddings_float_base64_dimensions(client: openai.OpenAI, fake) -> None:  # type: ignore[no-untyped-def]
    reply = client.embeddings.create(
        model="titan", input=["llamas are great", "alpacas too"], dimensions=256
    )
    assert [d.index for d in reply.data] == [0, 1]
    assert len(reply.data[0].embedding) == 256
    assert reply.usage.prompt_tokens == 5
    raw = httpx.post(
        f"{client.base_url}embeddings",
        json={
            "model": "titan",
            "input": "llamas are great",
            "encoding_format": "base64",
            "dimensions": 256,
        },
    ).json()
    decoded = struct.unpack("<256f", base64.b64decode(raw["data"][0]["embedding"]))
    assert decoded == pytest.approx(reply.data[0].embedding, abs=1e-6)
    # Titan embeds one text per (concurrent) call: in any order.
    assert {
        "inputText": "llamas are great",
        "normalize": True,
        "dimensions": 256,
    } in [call["body"] for call in fake.calls_for("invoke", "amazon.titan-embed-text-v2:0")]
    single = client.embeddings.create(model="cohere", input="hello")
    assert len(single.data) == 1 and len(single.data[0].embedding) == 1024
    with pytest.raises(openai.BadRequestError, match="embedding model"):
        client.embeddings.create(model="llama", input="x")


def test_base64_embeddings_with_both_sdks(main: LiveServer, client: openai.OpenAI) -> None:
    """base64 is OpenAI's: little-endian float32. The openai SDK asks for it by default and
    decodes it; llama-stack-client hands back the string."""
    texts = ["llamas are great", "alpacas too"]
    floats = [
        d.embedding
        for d in client.embeddings.create(model="titan", input=texts, encoding_format="float").data
    ]
    as_f32 = [list(struct.unpack("<1024f", struct.pack("<1024f", *v))) for v in floats]
    raw = client.embeddings.with_raw_response.create(model="titan", input=texts)
    assert isinstance(raw.http_response.json()["data"][0]["embedding"], str)
    assert [d.embedding for d in raw.parse().data] == as_f32
    lsc = LlamaStackClient(base_url=main.url, max_retries=0)
    encoded = lsc.embeddings.create(model="titan", input=texts, encoding_format="base64")
    for item, expected in zip(encoded.data, as_f32, strict=True):
        assert isinstance(item.embedding, str)
        assert list(struct.unpack("<1024f", base64.b64decode(item.embedding))) == expected


def test_embeddings_input_dimensions_and_user(client: openai.OpenAI, fake) -> None:  # type: ignore[no-untyped-def]
    for empty in ([], ""):
        with pytest.raises(openai.BadRequestError) as err:
            client.embeddings.create(model="titan", input=empty)
        assert err.value.body["param"] == "input", err.value.body  # type: ignore[index]
        assert "empty" in err.value.message
    # Titan v2 declares 256/512/1024 (metadata.supported_dimensions); Cohere declares none.
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="titan", input="x", dimensions=300)
    assert err.value.body["param"] == "dimensions" and "256, 512, 1024" in err.value.message  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="cohere", input="x", dimensions=256)
    assert err.value.body["param"] == "dimensions" and "cohere" in err.value.message  # type: ignore[index]
    own = client.embeddings.create(model="cohere", input="x", dimensions=1024, user="alice")
    assert len(own.data[0].embedding) == 1024
    assert fake.calls_for("invoke", "amazon.titan-embed-text-v2:0") == []


def test_llama_stack_client_chat_and_embeddings(main: LiveServer, fake) -> None:  # type: ignore[no-untyped-def]
    lsc = LlamaStackClient(base_url=main.url, max_retries=0)
    reply = lsc.chat.completions.create(
        model="llama", messages=[{"role": "user", "content": "from llama stack"}]
    )
    assert reply.choices[0].message.content == "You said: from llama stack"
    emb = lsc.embeddings.create(model="titan", input="hello llamas")
    assert len(emb.data[0].embedding) == 1024
    chunks = list(
        lsc.chat.completions.create(
            model="llama", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "You said: hi"


def test_remote_provider_passes_through(client: openai.OpenAI, fake, servers) -> None:  # type: ignore[no-untyped-def]
    raw = client.chat.completions.with_raw_response.create(
        model="remote-llama", messages=[{"role": "user", "content": "via vllm"}], max_tokens=20
    )
    assert raw.headers["x-llamda-provider"] == "vllm"
    assert raw.parse().choices[0].message.content == "You said: via vllm"
    chunks = list(
        client.chat.completions.create(
            model="remote-llama",
            messages=[{"role": "user", "content": "via stream"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == "You said: via stream"
    )
    assert chunks[-1].usage is not None
    # The upstream's Bedrock provider cannot do completions: its 400 comes back as a 400.
    with pytest.raises(openai.BadRequestError, match="completions"):
        client.completions.create(model="remote-llama", prompt="x")


# -- deadlines, breaker trials, a request's own failures, idle streams (hardening) ----------

ROUTED_CONFIG = """
apis: [inspect, models, inference]
providers:
  inference:
    - {provider_id: up, provider_type: vllm, config: {url: "UPSTREAM"}}
models:
  - {model_id: stuck, provider_id: up, provider_model_id: hang-model, fallbacks: [steady]}
  - {model_id: lonely, provider_id: up, provider_model_id: hang-alone}
  - {model_id: steady, provider_id: up, provider_model_id: ok-model}
  - {model_id: keyed, provider_id: up, provider_model_id: keyed-model}
  - {model_id: endless, provider_id: up, provider_model_id: endless-model}
storage:
  records: {type: sqlite, path: "${env.LLAMDA_HOME}/r.sqlite3"}
  objects: {type: local, root: "${env.LLAMDA_HOME}/o"}
  vectors: {uri: "${env.LLAMDA_HOME}/v"}
routing: ROUTING
"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[OpenAIUpstream]:
    with OpenAIUpstream() as fake_upstream:
        fake_upstream.hang_models |= {"hang-model", "hang-alone"}
        fake_upstream.endless_stream_models.add("endless-model")
        yield fake_upstream


def _routed_server(
    upstream: OpenAIUpstream, tmp_path_factory: pytest.TempPathFactory, routing: str
) -> LiveServer:
    home = tmp_path_factory.mktemp("routed")
    config = ROUTED_CONFIG.replace("UPSTREAM", upstream.url).replace("ROUTING", routing)
    (home / "run.yaml").write_text(config)
    return start_server(home / "run.yaml", home)


@pytest.fixture(scope="module")
def routed(
    upstream: OpenAIUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """Per attempt 60 s as by default, but 6 s in all; the breaker opens after 2 failures."""
    server = _routed_server(
        upstream,
        tmp_path_factory,
        "{max_retries: 2, backoff_base_seconds: 0.01, backoff_max_seconds: 0.05,"
        " timeout_seconds: 60, deadline_seconds: 6,"
        " breaker_failure_threshold: 2, breaker_cooldown_seconds: 60}",
    )
    yield server
    stop_server(server)


@pytest.fixture
def up(upstream: OpenAIUpstream) -> OpenAIUpstream:
    upstream.requests.clear()
    upstream.failures.clear()
    upstream.disconnects.clear()
    upstream.disconnected.clear()
    return upstream


def _calls(upstream: OpenAIUpstream, model: str) -> int:
    return sum(1 for r in upstream.requests if r["body"].get("model") == model)


def _chat(server: LiveServer, model: str, **kwargs) -> httpx.Response:  # type: ignore[no-untyped-def]
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=30, **kwargs)


def test_a_hanging_primary_leaves_time_for_the_fallback(
    routed: LiveServer, up: OpenAIUpstream
) -> None:
    reply = _chat(routed, "stuck")  # before: 3 attempts of 60 s each, then the fallback
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-llamda-model"] == "steady"
    assert reply.json()["choices"][0]["message"]["content"] == "upstream ok"
    assert _calls(up, "hang-model") == 1  # its share of the deadline went to one attempt
    assert _calls(up, "ok-model") == 1


def test_out_of_time_is_a_504_naming_the_deadline(routed: LiveServer, up: OpenAIUpstream) -> None:
    reply = _chat(routed, "lonely")
    assert reply.status_code == 504, reply.text
    error = reply.json()["error"]
    assert error["code"] == "deadline_exceeded"
    assert "request deadline (6s) reached for 'lonely'" in error["message"]
    assert _calls(up, "hang-alone") == 1


def test_a_requests_own_key_never_opens_the_shared_breaker(
    routed: LiveServer, up: OpenAIUpstream
) -> None:
    own_key = {"X-LlamaStack-Provider-Data": json.dumps({"vllm_api_key": "sk-bad\nkey"})}
    for _ in range(3):  # an unsendable key: before, 3 x 3 "connection errors" opened it
        assert _chat(routed, "keyed", headers=own_key).status_code >= 400
    own_key = {"X-LlamaStack-Provider-Data": json.dumps({"vllm_api_key": "sk-revoked"})}
    up.failures.extend([(401, {})] * 3 + [(429, {"retry-after": "0"})] * 6)
    for status in (401, 401, 401, 429, 429):
        assert _chat(routed, "keyed", headers=own_key).status_code == status
    up.failures.clear()
    reply = _chat(routed, "keyed")  # another client, the server's own key
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-llamda-model"] == "keyed"
    breakers = httpx.get(f"{routed.url}/v1/providers/up").json()["health"]["breakers"]
    assert breakers["keyed-model"]["state"] == "closed"


def _open_stream(server: LiveServer, model: str) -> socket.socket:
    """A streamed chat on a raw socket with a tiny receive window; returns once the response
    has started (the stream was routed and is flowing)."""
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "go"}], "stream": True}
    ).encode()
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: "
        + host.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    assert sock.recv(1024).startswith(b"HTTP/1.1 200")
    return sock


def test_a_stream_nobody_reads_is_ended_and_its_upstream_released(
    probing: LiveServer, up: OpenAIUpstream
) -> None:
    sock = _open_stream(probing, "endless")
    try:
        # The client holds the connection open and reads nothing more; before the fix the
        # server waited on it forever, holding the upstream connection.
        assert up.disconnected.wait(60), "the upstream stream was never closed"
        assert up.disconnects == ["endless-model"]
        assert httpx.get(f"{probing.url}/v1/health").status_code == 200
    finally:
        sock.close()


def test_a_client_that_hangs_up_releases_the_upstream(
    probing: LiveServer, up: OpenAIUpstream
) -> None:
    sock = _open_stream(probing, "endless")
    sock.recv(65536)
    sock.close()
    assert up.disconnected.wait(60), "the upstream stream was never closed"
    assert up.disconnects == ["endless-model"]


@pytest.fixture(scope="module")
def probing(
    upstream: OpenAIUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """One failure opens the breaker and the next request is the half-open trial at once;
    a stream nobody reads is ended after 1 s."""
    server = _routed_server(
        upstream,
        tmp_path_factory,
        "{max_retries: 0, breaker_failure_threshold: 1, breaker_cooldown_seconds: 0,"
        " stream_idle_seconds: 1}",
    )
    yield server
    stop_server(server)


@pytest.mark.parametrize("trial_status", [400, 401, 404])
def test_a_4xx_during_the_half_open_trial_does_not_wedge_the_model(
    probing: LiveServer, up: OpenAIUpstream, trial_status: int
) -> None:
    up.failures.append((503, {}))
    assert _chat(probing, "steady").status_code == 503  # opens the circuit
    up.failures.append((trial_status, {}))
    assert _chat(probing, "steady").status_code == trial_status  # the trial: our fault
    reply = _chat(probing, "steady")  # before: "circuit open" for good
    assert reply.status_code == 200, reply.text
    breakers = httpx.get(f"{probing.url}/v1/providers/up").json()["health"]["breakers"]
    assert breakers["ok-model"] == {"state": "closed", "consecutive_failures": 0}
