"""The Responses API as users call it: the openai SDK and llama-stack-client against a live
server whose models are the wire-level fake Bedrock (scripted tool calls) and a recording
OpenAI-compatible upstream."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from llama_stack_client import LlamaStackClient

from tests.conftest import LiveServer, log_text, start_server, stop_server
from tests.fakes.bedrock import FakeBedrockServer, Reply
from tests.fakes.openai_upstream import OpenAIUpstream

AGENT = "meta.llama3-3-70b-instruct-v1:0"  # the fake Bedrock's model id for "llama-agent"
GUARDED = "meta.llama3-1-8b-instruct-v1:0"  # "guarded-agent": the pii shield on its inputs
CARD = "4111 1111 1111 1111"

CONFIG = """
version: 1
profile: local
apis: [inspect, models, inference, safety, files, vector_io, agents]
providers:
  inference:
    - provider_id: fake-bedrock
      provider_type: bedrock
      config: {{region_name: us-east-1, endpoint_url: "{bedrock}"}}
    - provider_id: upstream
      provider_type: vllm
      config: {{url: "{upstream}"}}
  safety:
    - {{provider_id: rules, provider_type: rules}}
  vector_io:
    - {{provider_id: lancedb, provider_type: lancedb}}
models:
  - {{model_id: llama-agent, provider_id: fake-bedrock, provider_model_id: "{agent}"}}
  - {{model_id: guarded-agent, provider_id: fake-bedrock, provider_model_id: "{guarded}",
     input_shields: [pii]}}
  - {{model_id: upstream-llama, provider_id: upstream}}
  - {{model_id: "amazon.titan-embed-text-v2:0", provider_id: fake-bedrock,
     model_type: embedding, metadata: {{embedding_dimension: 1024}}}}
shields:
  - {{shield_id: pii, provider_id: rules}}
storage:
  records: {{type: sqlite, path: "{home}/records.sqlite3"}}
  objects: {{type: local, root: "{home}/objects"}}
  vectors: {{uri: "{home}/lancedb"}}
routing: {{max_retries: 0, timeout_seconds: 10}}
agents: {{max_steps: 6}}
"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[OpenAIUpstream]:
    with OpenAIUpstream() as fake:
        yield fake


def _config(home: Path, bedrock: str, upstream: str) -> Path:
    path = home / "run.yaml"
    path.write_text(
        CONFIG.format(home=home, bedrock=bedrock, upstream=upstream, agent=AGENT, guarded=GUARDED)
    )
    return path


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    fake_bedrock: FakeBedrockServer,
    upstream: OpenAIUpstream,
) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("responses")
    live = start_server(_config(home, fake_bedrock.endpoint, upstream.url), home)
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def oai(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(autouse=True)
def _fresh_scripts(fake_bedrock: FakeBedrockServer) -> Iterator[None]:
    fake_bedrock.fake.reset()
    yield
    fake_bedrock.fake.reset()


WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def _bodies(fake_bedrock: FakeBedrockServer) -> list[dict]:
    return [c["body"] for c in fake_bedrock.fake.calls if c["op"] == "converse-stream"]


def test_plain_response_is_stored_listed_and_deleted(oai: openai.OpenAI) -> None:
    response = oai.responses.create(
        model="llama-agent", input="hello there", instructions="Be brief.", metadata={"k": "v"}
    )
    assert response.status == "completed"
    assert response.output_text == "You said: hello there"
    assert response.usage is not None and response.usage.output_tokens > 0
    assert response.metadata == {"k": "v"} and response.instructions == "Be brief."
    again = oai.responses.retrieve(response.id)
    assert again.output_text == response.output_text and again.id == response.id
    items = oai.responses.input_items.list(response.id)
    assert [i.type for i in items.data] == ["message"]
    assert items.data[0].content[0].text == "hello there"
    listed = httpx.get(f"{oai.base_url}responses", params={"limit": 100}).json()
    assert response.id in [r["id"] for r in listed["data"]]
    oai.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(response.id)


def test_instructions_reach_the_model_as_system(
    oai: openai.OpenAI, fake_bedrock: FakeBedrockServer
) -> None:
    oai.responses.create(model="llama-agent", input="hi", instructions="Answer in French.")
    body = _bodies(fake_bedrock)[-1]
    assert body["system"] == [{"text": "Answer in French."}]


def test_an_image_input_reaches_the_model(
    oai: openai.OpenAI, fake_bedrock: FakeBedrockServer
) -> None:
    import base64

    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 32).decode()
    oai.responses.create(
        model="llama-agent",
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {"type": "input_image", "image_url": f"data:image/png;base64,{png}"},
                ],
            }
        ],
    )
    blocks = _bodies(fake_bedrock)[-1]["messages"][0]["content"]
    assert blocks[0] == {"text": "What is this?"}
    assert blocks[1]["image"]["format"] == "png"
    assert base64.b64decode(blocks[1]["image"]["source"]["bytes"]).startswith(b"\x89PNG")


def test_streaming_events_in_order(oai: openai.OpenAI) -> None:
    events = list(oai.responses.create(model="llama-agent", input="one two three", stream=True))
    types = [e.type for e in events]
    assert types[:5] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 3  # token by token, as the fake streams words
    final = events[-1].response
    assert "".join(deltas) == final.output_text == "You said: one two three"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    # A streamed response is stored like any other.
    assert oai.responses.retrieve(final.id).output_text == final.output_text


def test_streaming_a_function_call(oai: openai.OpenAI, fake_bedrock: FakeBedrockServer) -> None:
    fake_bedrock.fake.script(
        AGENT, Reply(text="Checking.", tool={"name": "get_weather", "input": {"city": "Rome"}})
    )
    events = list(
        oai.responses.create(model="llama-agent", input="Rome?", tools=[WEATHER], stream=True)
    )
    types = [e.type for e in events]
    # The message is closed before the call's item opens; arguments stream in pieces.
    assert types.index("response.output_text.done") < types.index("response.output_item.added", 3)
    added = [e for e in events if e.type == "response.output_item.added"]
    assert [e.item.type for e in added] == ["message", "function_call"]
    assert added[1].item.arguments == ""
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert len(deltas) >= 2 and "".join(deltas) == done.arguments
    assert json.loads(done.arguments) == {"city": "Rome"}
    assert types[-1] == "response.completed"
    final = events[-1].response
    assert [item.type for item in final.output] == ["message", "function_call"]


def test_a_failing_model_fails_the_stream_and_the_request(
    oai: openai.OpenAI, fake_bedrock: FakeBedrockServer
) -> None:
    fake_bedrock.fake.script(
        AGENT,
        Reply(error=("ServiceUnavailableException", "down")),
        Reply(error=("ServiceUnavailableException", "down")),
    )
    events = list(oai.responses.create(model="llama-agent", input="hi", stream=True))
    assert [e.type for e in events[-2:]] == ["error", "response.failed"]
    assert events[-1].response.status == "failed" and events[-1].response.error is not None
    with pytest.raises(openai.APIStatusError) as err:
        oai.responses.create(model="llama-agent", input="hi")
    assert err.value.status_code in (502, 503)


def test_function_tool_round_trip_with_previous_response_id(
    oai: openai.OpenAI, fake_bedrock: FakeBedrockServer
) -> None:
    fake_bedrock.fake.script(AGENT, Reply(tool={"name": "get_weather", "input": {"city": "Paris"}}))
    first = oai.responses.create(
        model="llama-agent", input="What is the weather in Paris?", tools=[WEATHER]
    )
    assert first.status == "completed"
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    second = oai.responses.create(
        model="llama-agent",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "22C sunny"}],
        tools=[WEATHER],
    )
    assert second.status == "completed"
    assert second.output_text == "You said: 22C sunny"
    # The model saw the whole chain: question, its tool use, and the result for that use.
    last = _bodies(fake_bedrock)[-1]["messages"]
    assert last[0]["content"][0]["text"] == "What is the weather in Paris?"
    use = next(b["toolUse"] for b in last[1]["content"] if "toolUse" in b)
    result = next(b["toolResult"] for b in last[2]["content"] if "toolResult" in b)
    assert use["name"] == "get_weather" and result["toolUseId"] == use["toolUseId"]


def test_parallel_calls_and_a_failing_tool(
    oai: openai.OpenAI, fake_bedrock: FakeBedrockServer
) -> None:
    fake_bedrock.fake.script(
        AGENT,
        Reply(
            tool={"name": "get_weather", "input": {"city": "Paris"}},
            tools=[{"name": "get_weather", "input": {"city": "Atlantis"}}],
        ),
    )
    first = oai.responses.create(model="llama-agent", input="Paris and Atlantis?", tools=[WEATHER])
    calls = [item for item in first.output if item.type == "function_call"]
    assert [json.loads(c.arguments)["city"] for c in calls] == ["Paris", "Atlantis"]
    outputs = [
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "18C"},
        {
            "type": "function_call_output",
            "call_id": calls[1].call_id,
            "output": "error: no such city",
        },
    ]
    second = oai.responses.create(
        model="llama-agent", previous_response_id=first.id, input=outputs, tools=[WEATHER]
    )
    assert second.status == "completed"
    assert "18C" in second.output_text and "error: no such city" in second.output_text
    # One answer to one call is not enough: the model cannot be sent half a turn.
    with pytest.raises(openai.BadRequestError) as err:
        oai.responses.create(
            model="llama-agent",
            previous_response_id=first.id,
            input=outputs[:1],
            tools=[WEATHER],
        )
    assert "function_call_output" in err.value.message


@pytest.fixture(scope="module")
def store(oai: openai.OpenAI) -> str:
    docs = {
        "warranty.txt": "The warranty period for the Zephyr kettle is 24 months from purchase.",
        "recipes.txt": "Pancakes need flour, eggs, milk and a pinch of salt.",
        "billing.txt": f"Customer card on file: {CARD}. Do not share it.",
    }
    ids = [
        oai.files.create(file=(name, text.encode()), purpose="assistants").id
        for name, text in docs.items()
    ]
    created = oai.vector_stores.create(
        name="kb", file_ids=ids, extra_body={"embedding_model": "amazon.titan-embed-text-v2:0"}
    )
    return created.id


def test_file_search_runs_server_side_and_feeds_back(
    oai: openai.OpenAI, fake_bedrock: FakeBedrockServer, store: str
) -> None:
    fake_bedrock.fake.script(
        AGENT,
        Reply(
            tool={"name": "file_search", "input": {"queries": ["Zephyr kettle warranty period"]}}
        ),
    )
    response = oai.responses.create(
        model="llama-agent",
        input="How long is the kettle warranty?",
        tools=[{"type": "file_search", "vector_store_ids": [store], "max_num_results": 2}],
        include=["file_search_call.results"],
    )
    assert response.status == "completed"
    search = next(item for item in response.output if item.type == "file_search_call")
    assert search.queries == ["Zephyr kettle warranty period"] and search.status == "completed"
    assert search.results and search.results[0].filename == "warranty.txt"
    assert len(search.results) <= 2
    # The results went back to the model, which answered from them.
    assert "24 months" in response.output_text
    # Without the include, the results are not returned (but were used).
    stored = oai.responses.retrieve(response.id)
    assert stored.output[0].type == "file_search_call"
    plain = httpx.get(f"{oai.base_url}responses/{response.id}").json()
    assert plain["output"][0]["results"] is not None  # stored with include: shown


def test_max_tool_calls_ends_incomplete(oai: openai.OpenAI, store: str) -> None:
    # The OpenAI-compatible fake calls the first tool whenever it has tools: a runaway agent.
    response = oai.responses.create(
        model="upstream-llama",
        input="search forever",
        tools=[{"type": "file_search", "vector_store_ids": [store]}],
        max_tool_calls=2,
    )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_tool_calls"
    assert [item.type for item in response.output] == ["file_search_call"] * 2


def test_step_cap_ends_incomplete(oai: openai.OpenAI, store: str) -> None:
    response = oai.responses.create(
        model="upstream-llama",
        input="search forever",
        tools=[{"type": "file_search", "vector_store_ids": [store]}],
    )
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_steps"  # agents.max_steps: 6
    assert len(response.output) == 6


def test_poisoned_tool_output_is_judged_and_refused(
    oai: openai.OpenAI, fake_bedrock: FakeBedrockServer, store: str
) -> None:
    fake_bedrock.fake.script(
        GUARDED, Reply(tool={"name": "file_search", "input": {"queries": ["customer card"]}})
    )
    response = oai.responses.create(
        model="guarded-agent",
        input="What is on file for billing?",
        tools=[{"type": "file_search", "vector_store_ids": [store], "max_num_results": 1}],
    )
    assert response.status == "completed"
    message = response.output[-1]
    assert message.type == "message" and message.content[0].type == "refusal"
    # The model was called once (the search); the card never reached it.
    bodies = [c["body"] for c in fake_bedrock.fake.calls if c.get("model") == GUARDED]
    assert len(bodies) == 1 and CARD not in json.dumps(bodies)


def _judged(server: LiveServer) -> float:
    metrics = httpx.get(f"{server.url}/metrics").text
    prefix = 'llamda_shield_texts_judged_total{direction="input",shield="pii"} '
    return sum(
        float(line[len(prefix) :]) for line in metrics.splitlines() if line.startswith(prefix)
    )


def test_a_long_loop_does_not_rejudge_its_history(
    oai: openai.OpenAI, fake_bedrock: FakeBedrockServer, store: str, server: LiveServer
) -> None:
    tools = [{"type": "file_search", "vector_store_ids": [store], "max_num_results": 1}]
    question = "Tell me about pancakes and kettles."
    before = _judged(server)
    oai.responses.create(model="guarded-agent", input=question, tools=tools)  # one step
    one_step = _judged(server) - before
    fake_bedrock.fake.script(
        GUARDED,
        Reply(tool={"name": "file_search", "input": {"queries": ["pancakes"]}}),
        Reply(tool={"name": "file_search", "input": {"queries": ["kettle"]}}),
    )
    before = _judged(server)
    response = oai.responses.create(model="guarded-agent", input=question, tools=tools)
    assert response.status == "completed" and response.output_text
    assert len(response.output) == 3  # two searches, then the answer: three model calls
    # Each later step judges only what is new: the call's arguments and the tool's output
    # (and, the first time, the called function's name). Without the cache: 2 + 6 + 10.
    assert _judged(server) - before == one_step + 3 + 2


def test_json_schema_output(oai: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    }
    response = oai.responses.create(
        model="llama-agent",
        input="Plan a trip",
        text={"format": {"type": "json_schema", "name": "trip", "schema": schema}},
    )
    data = json.loads(response.output_text)
    assert set(data) == {"city", "days"} and isinstance(data["days"], int)


def test_bad_input_is_4xx(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        oai.responses.create(model="llama-agent", input="x", previous_response_id="resp_nope")
    with pytest.raises(openai.NotFoundError):
        oai.responses.create(model="no-such-model", input="x")
    with pytest.raises(openai.BadRequestError) as err:
        oai.responses.create(
            model="llama-agent",
            input="x",
            tools=[{"type": "function", "name": "f", "parameters": {"type": "string"}}],
        )
    assert err.value.body["param"].startswith("tools")
    with pytest.raises(openai.BadRequestError) as err:
        oai.responses.create(model="llama-agent", input="x", tools=[{"type": "web_search_preview"}])
    assert "not supported" in err.value.message
    with pytest.raises(openai.BadRequestError) as err:  # no MCP server is allowed here
        oai.responses.create(
            model="llama-agent",
            input="x",
            tools=[{"type": "mcp", "server_label": "s", "server_url": "http://x.example/mcp"}],
        )
    assert "not allowed" in err.value.message
    with pytest.raises(openai.BadRequestError):
        oai.responses.create(
            model="llama-agent",
            input=[{"type": "function_call_output", "call_id": "c1", "output": "x"}],
        )
    with pytest.raises(openai.NotFoundError):
        oai.responses.create(
            model="llama-agent",
            input="x",
            tools=[{"type": "file_search", "vector_store_ids": ["vs_missing"]}],
        )
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve("resp_../../etc")
    with pytest.raises(openai.BadRequestError):
        oai.responses.create(model="llama-agent", input=[])
    with pytest.raises(openai.NotFoundError) as err:
        oai.responses.create(
            model="llama-agent", input="x", stream=True, extra_body={"guardrails": ["nope"]}
        )
    assert err.value.body["param"] == "guardrails"


def test_llama_stack_client_basics(server: LiveServer) -> None:
    client = LlamaStackClient(base_url=server.url, max_retries=0)
    response = client.responses.create(model="llama-agent", input="hi from llama stack")
    assert response.status == "completed"
    assert response.output[0].content[0].text == "You said: hi from llama stack"
    got = client.responses.retrieve(response.id)
    assert got.id == response.id
    listed = client.responses.list(limit=5)
    assert any(r.id == response.id for r in listed)


def test_state_survives_a_new_server_process(
    tmp_path: Path, fake_bedrock: FakeBedrockServer, upstream: OpenAIUpstream
) -> None:
    config = _config(tmp_path, fake_bedrock.endpoint, upstream.url)
    first = start_server(config, tmp_path)
    try:
        client = openai.OpenAI(base_url=f"{first.url}/v1", api_key="x", max_retries=0)
        fake_bedrock.fake.script(
            AGENT, Reply(tool={"name": "get_weather", "input": {"city": "Oslo"}})
        )
        one = client.responses.create(model="llama-agent", input="Oslo?", tools=[WEATHER])
    finally:
        stop_server(first)
    second = start_server(config, tmp_path)
    try:
        client = openai.OpenAI(base_url=f"{second.url}/v1", api_key="x", max_retries=0)
        call = client.responses.retrieve(one.id).output[0]
        two = client.responses.create(
            model="llama-agent",
            previous_response_id=one.id,
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "-3C"}],
            tools=[WEATHER],
        )
        assert two.output_text == "You said: -3C"
    finally:
        stop_server(second)


def test_a_conversation_over_three_turns(
    oai: openai.OpenAI, fake_bedrock: FakeBedrockServer
) -> None:
    conversation = oai.conversations.create(metadata={"topic": "test"})
    for turn in range(1, 4):
        response = oai.responses.create(
            model="llama-agent", input=f"turn {turn}", conversation=conversation.id
        )
        assert response.output_text == f"You said: turn {turn}"
    # The third call saw the whole conversation: three questions and two answers.
    messages = _bodies(fake_bedrock)[-1]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"] * 2 + ["user"]
    assert messages[2]["content"][0]["text"] == "turn 2"
    items = oai.conversations.items.list(conversation.id, order="asc", limit=100)
    texts = [item.content[0].text for item in items.data]
    assert texts == [
        "turn 1",
        "You said: turn 1",
        "turn 2",
        "You said: turn 2",
        "turn 3",
        "You said: turn 3",
    ]
    with pytest.raises(openai.BadRequestError):  # one or the other, as OpenAI answers
        oai.responses.create(
            model="llama-agent",
            input="x",
            conversation=conversation.id,
            previous_response_id=response.id,
        )
    with pytest.raises(openai.NotFoundError):
        oai.responses.create(model="llama-agent", input="x", conversation="conv_nope")


def test_a_prompt_with_variables_and_versions(
    server: LiveServer, oai: openai.OpenAI, fake_bedrock: FakeBedrockServer
) -> None:
    client = LlamaStackClient(base_url=server.url, max_retries=0)
    prompt = client.prompts.create(prompt="You are a {{ role }} assistant.", variables=["role"])
    client.prompts.update(
        prompt.prompt_id,
        prompt="You are a {{ role }} assistant. Be terse.",
        variables=["role"],
        version=prompt.version,
        set_as_default=True,
    )
    oai.responses.create(
        model="llama-agent",
        input="hi",
        prompt={"id": prompt.prompt_id, "variables": {"role": "pirate"}},
    )
    assert _bodies(fake_bedrock)[-1]["system"] == [
        {"text": "You are a pirate assistant. Be terse."}
    ]
    oai.responses.create(
        model="llama-agent",
        input="hi",
        instructions="Answer in French.",
        prompt={"id": prompt.prompt_id, "version": "1", "variables": {"role": "chef"}},
    )
    assert _bodies(fake_bedrock)[-1]["system"] == [
        {"text": "You are a chef assistant."},
        {"text": "Answer in French."},
    ]
    with pytest.raises(openai.BadRequestError):  # a variable the template needs is missing
        oai.responses.create(model="llama-agent", input="hi", prompt={"id": prompt.prompt_id})
    with pytest.raises(openai.NotFoundError):
        oai.responses.create(
            model="llama-agent",
            input="hi",
            prompt={"id": prompt.prompt_id, "version": "9", "variables": {"role": "x"}},
        )


def _finished(
    oai: openai.OpenAI, response_id: str, timeout: float = 30
) -> openai.types.responses.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = oai.responses.retrieve(response_id)
        if response.status not in ("queued", "in_progress"):
            return response
        time.sleep(0.1)
    raise AssertionError(f"{response_id} still {response.status}")


def test_background_response_runs_and_is_polled(
    oai: openai.OpenAI, fake_bedrock: FakeBedrockServer, store: str
) -> None:
    fake_bedrock.fake.script(
        AGENT,
        Reply(tool={"name": "file_search", "input": {"queries": ["kettle warranty"]}}),
    )
    queued = oai.responses.create(
        model="llama-agent",
        input="How long is the warranty?",
        tools=[{"type": "file_search", "vector_store_ids": [store]}],
        background=True,
    )
    assert queued.status in ("queued", "in_progress") and queued.background is True
    done = _finished(oai, queued.id)
    assert done.status == "completed"
    assert [item.type for item in done.output] == ["file_search_call", "message"]
    assert "24 months" in done.output_text
    assert [i.type for i in oai.responses.input_items.list(queued.id).data] == ["message"]
    with pytest.raises(openai.BadRequestError) as err:
        oai.responses.create(model="llama-agent", input="x", background=True, store=False)
    assert err.value.body["param"] == "store"
    with pytest.raises(openai.BadRequestError) as err:
        oai.responses.create(model="llama-agent", input="x", background=True, stream=True)
    assert err.value.body["param"] == "stream"
    with pytest.raises(openai.BadRequestError):  # only background responses can be cancelled
        oai.responses.cancel(oai.responses.create(model="llama-agent", input="plain").id)


def test_background_response_is_cancelled_mid_run(
    oai: openai.OpenAI, fake_bedrock: FakeBedrockServer, server: LiveServer
) -> None:
    release = threading.Event()
    fake_bedrock.fake.script(
        AGENT, Reply(tool={"name": "get_weather", "input": {"city": "Lima"}}, hold=release)
    )
    try:
        queued = oai.responses.create(
            model="llama-agent", input="Weather in Lima?", tools=[WEATHER], background=True
        )
        deadline = time.monotonic() + 20
        while not fake_bedrock.fake.calls and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fake_bedrock.fake.calls, "the model was never called"
        running = oai.responses.retrieve(queued.id)
        assert running.status == "in_progress"  # progress is visible while it runs
        cancelled = oai.responses.cancel(queued.id)
        assert cancelled.status == "cancelled"
    finally:
        release.set()
    # The model answers; the run sees the cancel at its next checkpoint and stops.
    stopped = f"background response stopped: {queued.id}"
    assert stopped in log_text(server, stopped)
    final = oai.responses.retrieve(queued.id)
    assert final.status == "cancelled" and final.output == []
    assert oai.responses.cancel(queued.id).status == "cancelled"  # idempotent
