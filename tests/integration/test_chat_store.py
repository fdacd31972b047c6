"""Stored chat completions (issue 15 item 4) on the live local server, through both SDKs: the
request and reply recorded per tenant, listed/filtered/paged, their messages, metadata updates,
deletes; streams stored once complete (and not at all when cut short); ``n`` > 1 passed to
providers that take it (a 400 naming the provider elsewhere); ``tool_choice: "none"`` never
returns a tool call, even from an upstream that makes one anyway."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from llama_stack_client import LlamaStackClient

from tests.conftest import LiveServer, start_server, stop_server
from tests.fakes.bedrock import FakeBedrockServer
from tests.fakes.openai_upstream import OpenAIUpstream
from tests.integration.test_auth import create_key

CONFIG = """
apis: [inspect, models, inference, agents]
providers:
  inference:
    - {provider_id: vllm, provider_type: vllm, config: {url: "UP"}}
    - {provider_id: ollama, provider_type: ollama, config: {url: "UP"}}
    - {provider_id: bedrock, provider_type: bedrock, config: {region_name: us-east-1, endpoint_url: "BEDROCK"}}
models:
  - {model_id: vllm-m, provider_id: vllm, provider_model_id: upstream-name}
  - {model_id: endless, provider_id: vllm}
  - {model_id: ollama-m, provider_id: ollama}
  - {model_id: br-m, provider_id: bedrock, provider_model_id: br-model}
storage:
  records: {type: sqlite, path: "${env.LLAMDA_HOME}/records.sqlite3"}
  objects: {type: local, root: "${env.LLAMDA_HOME}/objects"}
  vectors: {uri: "${env.LLAMDA_HOME}/lancedb"}
server: {auth: true}
routing: {max_retries: 0, timeout_seconds: 10}
inference_store: {enabled: true, ttl_days: 1}
"""
HI = [{"role": "user", "content": "hi"}]
TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
    },
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[OpenAIUpstream]:
    with OpenAIUpstream() as up:
        up.endless_stream_models.add("endless")
        yield up


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chatstore")


@pytest.fixture(scope="module")
def server(
    home: Path, upstream: OpenAIUpstream, fake_bedrock: FakeBedrockServer
) -> Iterator[LiveServer]:
    config = CONFIG.replace("UP", upstream.url).replace("BEDROCK", fake_bedrock.endpoint)
    (home / "run.yaml").write_text(config)
    live = start_server(home / "run.yaml", home)
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def alice(home: Path, server: LiveServer) -> str:
    return create_key(home, "--tenant", "alice")


@pytest.fixture(scope="module")
def bob(home: Path, server: LiveServer) -> str:
    return create_key(home, "--tenant", "bob")


@pytest.fixture
def client(server: LiveServer, alice: str, upstream: OpenAIUpstream) -> openai.OpenAI:
    upstream.requests.clear()
    upstream.ignore_tool_choice = False
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=alice, max_retries=0)


def _ls(server: LiveServer, key: str) -> LlamaStackClient:
    return LlamaStackClient(base_url=server.url, api_key=key, max_retries=0)


def test_a_stored_completion_round_trips_through_the_openai_sdk(
    client: openai.OpenAI, upstream: OpenAIUpstream
) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "hello "}, {"type": "text", "text": "there"}],
        },
    ]
    reply = client.chat.completions.create(
        model="vllm-m",
        messages=messages,
        metadata={"topic": "greeting"},  # type: ignore[arg-type]
    )
    assert reply.id.startswith("chatcmpl-") and reply.id != "chatcmpl-up"
    # Ours, consumed here: never sent upstream.
    (sent,) = upstream.requests
    assert "store" not in sent["body"] and "metadata" not in sent["body"]

    got = client.chat.completions.retrieve(reply.id)
    assert got.id == reply.id and got.choices[0].message.content == "upstream ok"
    assert got.usage is not None and got.usage.total_tokens == 5
    extra = got.model_dump()
    assert extra["metadata"] == {"topic": "greeting"}
    assert [m["role"] for m in extra["input_messages"]] == ["system", "user"]

    listed = client.chat.completions.messages.list(reply.id)
    assert [m.id for m in listed.data] == [f"{reply.id}-0", f"{reply.id}-1"]
    assert listed.data[0].content == "be brief"
    assert listed.data[1].content == "hello there"
    assert [p.text for p in listed.data[1].content_parts or []] == ["hello ", "there"]  # type: ignore[union-attr]
    page = client.chat.completions.messages.list(reply.id, order="desc", limit=1)
    assert [m.id for m in page.data] == [f"{reply.id}-1"] and page.has_more
    after = client.chat.completions.messages.list(reply.id, after=f"{reply.id}-0")
    assert [m.id for m in after.data] == [f"{reply.id}-1"] and not after.has_more

    updated = client.chat.completions.update(reply.id, metadata={"topic": "changed"})
    assert updated.model_dump()["metadata"] == {"topic": "changed"}
    found = client.chat.completions.list(metadata={"topic": "changed"})
    assert [c.id for c in found.data] == [reply.id]
    assert client.chat.completions.list(metadata={"topic": "greeting"}).data == []

    deleted = client.chat.completions.delete(reply.id)
    assert (
        deleted.id == reply.id and deleted.deleted and deleted.object == "chat.completion.deleted"
    )
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.retrieve(reply.id)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.delete(reply.id)


def test_list_pages_in_creation_order_and_filters_by_model(
    client: openai.OpenAI, server: LiveServer, alice: str
) -> None:
    made = [
        client.chat.completions.create(model="vllm-m", messages=HI, metadata={"run": "paging"}).id
        for _ in range(3)
    ]
    first = client.chat.completions.list(metadata={"run": "paging"}, limit=2)
    assert [c.id for c in first.data] == made[:2] and first.has_more
    everything = [c.id for c in client.chat.completions.list(metadata={"run": "paging"}, limit=2)]
    assert everything == made  # the SDK's auto-paging follows `after`
    newest = client.chat.completions.list(metadata={"run": "paging"}, order="desc", limit=1)
    assert [c.id for c in newest.data] == made[-1:]
    by_model = {c.id for c in client.chat.completions.list(model="vllm-m", limit=100)}
    assert set(made) <= by_model
    assert client.chat.completions.list(model="ollama-m").data == []

    # llama-stack-client's list and retrieve (its shape carries input_messages).
    ls = _ls(server, alice)
    page = ls.chat.completions.list(model="vllm-m", order="desc", limit=2)
    assert [c.id for c in page.data] == made[:0:-1] and page.has_more
    assert page.first_id == made[2] and page.last_id == made[1]
    got = ls.chat.completions.retrieve(made[0])
    assert got.id == made[0] and got.choices[0].message.content == "upstream ok"
    assert got.input_messages[0].content == "hi"  # type: ignore[union-attr]


def test_store_false_stores_nothing_and_store_true_wins_per_request(
    client: openai.OpenAI,
) -> None:
    before = {c.id for c in client.chat.completions.list(limit=100)}
    reply = client.chat.completions.create(model="vllm-m", messages=HI, store=False)
    assert reply.id == "chatcmpl-up"  # the upstream's own id: nothing to retrieve
    assert {c.id for c in client.chat.completions.list(limit=100)} == before


def test_a_stream_is_stored_once_complete_with_every_choice(
    client: openai.OpenAI, server: LiveServer, alice: str
) -> None:
    stream = client.chat.completions.create(
        model="vllm-m", messages=HI, stream=True, n=2, metadata={"kind": "stream"}
    )
    chunks = list(stream)
    ids = {c.id for c in chunks}
    assert len(ids) == 1
    (completion_id,) = ids
    assert completion_id.startswith("chatcmpl-") and completion_id != "chatcmpl-up"
    texts: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    assert texts == {0: "upstream ok 0", 1: "upstream ok 1"}

    # Stored before the stream's end reached the client: retrievable at once.
    got = _ls(server, alice).chat.completions.retrieve(completion_id)
    assert [(c.index, c.message.content, c.finish_reason) for c in got.choices] == [
        (0, "upstream ok 0", "stop"),
        (1, "upstream ok 1", "stop"),
    ]
    assert got.usage is not None and got.usage.total_tokens == 7
    assert client.chat.completions.list(metadata={"kind": "stream"}).data[0].id == completion_id


def test_a_stream_cut_short_is_not_stored(
    server: LiveServer, alice: str, upstream: OpenAIUpstream, client: openai.OpenAI
) -> None:
    upstream.disconnected.clear()
    body = {"model": "endless", "messages": HI, "stream": True, "metadata": {"kind": "cut"}}
    headers = {"authorization": f"Bearer {alice}"}
    with httpx.stream(
        "POST", f"{server.url}/v1/chat/completions", json=body, headers=headers, timeout=30
    ) as response:
        assert response.status_code == 200
        first = next(line for line in response.iter_lines() if line.startswith("data:"))
    completion_id = json.loads(first[5:])["id"]
    assert completion_id.startswith("chatcmpl-")
    # The server closed its upstream stream: the cut-short stream is finished with on our side.
    assert upstream.disconnected.wait(30)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.retrieve(completion_id)
    assert client.chat.completions.list(metadata={"kind": "cut"}).data == []


def test_another_tenant_sees_none_of_it(
    client: openai.OpenAI, server: LiveServer, bob: str
) -> None:
    reply = client.chat.completions.create(model="vllm-m", messages=HI, metadata={"who": "alice"})
    theirs = openai.OpenAI(base_url=f"{server.url}/v1", api_key=bob, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        theirs.chat.completions.retrieve(reply.id)
    with pytest.raises(openai.NotFoundError):
        theirs.chat.completions.messages.list(reply.id)
    with pytest.raises(openai.NotFoundError):
        theirs.chat.completions.update(reply.id, metadata={"who": "bob"})
    with pytest.raises(openai.NotFoundError):
        theirs.chat.completions.delete(reply.id)
    assert reply.id not in {c.id for c in theirs.chat.completions.list(limit=100)}
    assert _ls(server, bob).chat.completions.list(limit=100).data == []
    # Still alice's, unchanged.
    assert client.chat.completions.retrieve(reply.id).model_dump()["metadata"] == {"who": "alice"}


def _expiry(home: Path, completion_id: str) -> int:
    """When storage drops this completion's record (epoch seconds), read from the SQLite file."""
    with sqlite3.connect(home / "records.sqlite3") as db:
        (value,) = db.execute(
            "SELECT json_extract(value, '$._expires_at') FROM records "
            "WHERE tenant = 'alice' AND kind = 'chat_completions' AND key = ?",
            (completion_id.removeprefix("chatcmpl-"),),
        ).fetchone()
    return int(value)


def test_a_big_conversation_is_stored_whole_and_expires(client: openai.OpenAI, home: Path) -> None:
    big = "word " * 70_000  # 350 KB: past a DynamoDB item, kept in the object store
    made = time.time()
    reply = client.chat.completions.create(
        model="vllm-m", messages=[{"role": "user", "content": big}]
    )
    (message,) = client.chat.completions.messages.list(reply.id).data
    assert message.content == big
    expires = _expiry(home, reply.id)
    assert made + 86400 <= expires <= time.time() + 86400 + 1  # inference_store.ttl_days: 1
    # An update rewrites it in place: same messages, same expiry.
    client.chat.completions.update(reply.id, metadata={"size": "big"})
    got = client.chat.completions.retrieve(reply.id).model_dump()
    assert got["metadata"] == {"size": "big"} and got["input_messages"][0]["content"] == big
    assert _expiry(home, reply.id) == expires
    client.chat.completions.delete(reply.id)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.update(reply.id, metadata={"size": "gone"})


def test_bad_ids_and_filters_are_4xx(server: LiveServer, alice: str) -> None:
    h = {"authorization": f"Bearer {alice}"}
    base = f"{server.url}/v1/chat/completions"
    for path in ("/nope", "/chatcmpl-" + "0" * 32, "/chatcmpl-up/messages"):
        got = httpx.get(base + path, headers=h)
        assert got.status_code == 404 and got.json()["error"]["param"] == "completion_id", got.text
    for query, param in (
        ({"after": "x"}, "after"),
        ({"limit": 0}, "limit"),
        ({"order": "sideways"}, "order"),
        ({"metadata": "x"}, "metadata"),
        ({"metadata[" + "k" * 65 + "]": "v"}, "metadata"),
    ):
        got = httpx.get(base, params=query, headers=h)
        assert got.status_code == 400 and got.json()["error"]["param"] == param, (query, got.text)
    bad_meta = {"model": "vllm-m", "messages": HI, "metadata": {"k": "v" * 513}}
    got = httpx.post(base, json=bad_meta, headers=h)
    assert got.status_code == 400, got.text


def test_the_agents_loop_stores_no_chat_completions(
    client: openai.OpenAI, upstream: OpenAIUpstream
) -> None:
    before = {c.id for c in client.chat.completions.list(limit=100)}
    response = client.responses.create(model="vllm-m", input="hi", store=True)
    assert response.output_text == "upstream ok"
    assert any(r["path"] == "/v1/chat/completions" for r in upstream.requests)
    assert {c.id for c in client.chat.completions.list(limit=100)} == before


def test_n_goes_to_providers_that_take_it_and_is_a_400_elsewhere(
    client: openai.OpenAI, upstream: OpenAIUpstream, fake_bedrock: FakeBedrockServer
) -> None:
    reply = client.chat.completions.create(model="vllm-m", messages=HI, n=3)
    assert [c.message.content for c in reply.choices] == [f"upstream ok {i}" for i in range(3)]
    assert upstream.requests[-1]["body"]["n"] == 3
    stored = client.chat.completions.retrieve(reply.id)
    assert len(stored.choices) == 3
    upstream.requests.clear()
    fake_bedrock.fake.reset()
    for model, provider in (("ollama-m", "remote::ollama"), ("br-m", "remote::bedrock")):
        for stream in (False, True):
            with pytest.raises(openai.BadRequestError) as err:
                client.chat.completions.create(model=model, messages=HI, n=2, stream=stream)
            body: Any = err.value.body
            assert body["param"] == "n" and f"'{provider}'" in body["message"], body
    assert upstream.requests == [] and fake_bedrock.fake.calls == []
    # n=1 is every provider's default, accepted everywhere.
    assert client.chat.completions.create(model="ollama-m", messages=HI, n=1).choices


def test_tool_choice_none_never_returns_tool_calls(
    client: openai.OpenAI, upstream: OpenAIUpstream, server: LiveServer, alice: str
) -> None:
    upstream.ignore_tool_choice = True  # an upstream that calls the tool regardless
    auto = client.chat.completions.create(model="vllm-m", messages=HI, tools=[TOOL])
    assert auto.choices[0].message.tool_calls  # it does call tools
    reply = client.chat.completions.create(
        model="vllm-m", messages=HI, tools=[TOOL], tool_choice="none"
    )
    assert upstream.requests[-1]["body"]["tool_choice"] == "none"
    choice = reply.choices[0]
    assert choice.message.tool_calls is None and choice.finish_reason == "stop"
    assert not client.chat.completions.retrieve(reply.id).choices[0].message.tool_calls

    stream = client.chat.completions.create(
        model="vllm-m", messages=HI, tools=[TOOL], tool_choice="none", stream=True
    )
    chunks = list(stream)
    assert chunks and not any(c.delta.tool_calls for ch in chunks for c in ch.choices)
    assert {c.finish_reason for ch in chunks for c in ch.choices} <= {None, "stop"}
    # llama-stack-client sees the same.
    ls_reply = _ls(server, alice).chat.completions.create(
        model="vllm-m", messages=HI, tools=[TOOL], tool_choice="none"
    )
    assert not ls_reply.choices[0].message.tool_calls  # type: ignore[union-attr]


def test_with_the_store_off_only_store_true_is_kept(
    upstream: OpenAIUpstream, tmp_path_factory: pytest.TempPathFactory
) -> None:
    home = tmp_path_factory.mktemp("store-off")
    config = "\n".join(
        line
        for line in CONFIG.replace("UP", upstream.url).splitlines()
        if not line.startswith(("inference_store", "server", "    - {provider_id: bedrock"))
        and "br-m" not in line
    )
    (home / "run.yaml").write_text(config)  # no inference_store section: off, as in aws
    live = start_server(home / "run.yaml", home)
    try:
        client = openai.OpenAI(base_url=f"{live.url}/v1", api_key="none", max_retries=0)
        plain = client.chat.completions.create(model="vllm-m", messages=HI)
        assert plain.id == "chatcmpl-up"
        kept = client.chat.completions.create(model="vllm-m", messages=HI, store=True)
        assert [c.id for c in client.chat.completions.list().data] == [kept.id]
        streamed = client.chat.completions.create(model="vllm-m", messages=HI, stream=True)
        assert {c.id for c in streamed} == {"chatcmpl-up"}
        assert len(client.chat.completions.list().data) == 1
    finally:
        stop_server(live)
