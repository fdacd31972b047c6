"""Conversations (OpenAI shape) on the live local server, through the official openai SDK and
llama-stack-client: lifecycle, item pagination and order, bad input, tenants, expiry."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from llama_stack_client import LlamaStackClient

from tests.conftest import LiveServer
from tests.integration.agents_server import agents_server, create_key


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("conversations")


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[LiveServer]:
    with agents_server(home) as live:
        yield live


@pytest.fixture(scope="module")
def alice(home: Path, server: LiveServer) -> str:
    return create_key(home, "alice")


@pytest.fixture(scope="module")
def bob(home: Path, server: LiveServer) -> str:
    return create_key(home, "bob")


@pytest.fixture(scope="module")
def client(server: LiveServer, alice: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=alice, max_retries=0)


def texts(items: list) -> list[str]:
    return [item.content[0].text for item in items]


def test_conversation_lifecycle_through_the_openai_sdk(client: openai.OpenAI) -> None:
    conv = client.conversations.create(
        items=[
            {"role": "system", "content": "be brief"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"role": "assistant", "content": "hello"},
            {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "42"},
        ],
        metadata={"topic": "demo"},
    )
    assert conv.id.startswith("conv_") and conv.object == "conversation"
    assert conv.metadata == {"topic": "demo"} and conv.created_at > 0

    got = client.conversations.retrieve(conv.id)
    assert (got.id, got.created_at, got.metadata) == (conv.id, conv.created_at, {"topic": "demo"})
    updated = client.conversations.update(conv.id, metadata={"topic": "other", "k": "v"})
    assert updated.metadata == {"topic": "other", "k": "v"}
    assert client.conversations.retrieve(conv.id).metadata == {"topic": "other", "k": "v"}

    added = client.conversations.items.create(
        conv.id, items=[{"role": "user", "content": f"m{i}"} for i in range(4)]
    )
    assert texts(added.data) == ["m0", "m1", "m2", "m3"]
    assert added.first_id == added.data[0].id and added.last_id == added.data[-1].id

    # Default order is newest first; the SDK pages with `after` and `has_more`.
    first = client.conversations.items.list(conv.id, limit=3)
    assert len(first.data) == 3 and first.has_more
    assert texts(first.data) == ["m3", "m2", "m1"]
    newest_first = list(client.conversations.items.list(conv.id, limit=2))
    oldest_first = list(client.conversations.items.list(conv.id, limit=4, order="asc"))
    assert [i.id for i in newest_first] == [i.id for i in reversed(oldest_first)]
    assert [i.type for i in oldest_first] == [
        "message",
        "message",
        "message",
        "function_call",
        "function_call_output",
        "message",
        "message",
        "message",
        "message",
    ]
    assert oldest_first[2].content[0].type == "output_text"  # an assistant's string content
    assert oldest_first[3].call_id == "c1" and oldest_first[4].output == "42"
    assert len({i.id for i in oldest_first}) == 9
    last_page = client.conversations.items.list(
        conv.id, limit=100, order="asc", after=oldest_first[6].id
    )
    assert texts(last_page.data) == ["m2", "m3"] and not last_page.has_more

    one = client.conversations.items.retrieve(oldest_first[1].id, conversation_id=conv.id)
    assert one.id == oldest_first[1].id and one.content[0].text == "hi"
    after_delete = client.conversations.items.delete(oldest_first[1].id, conversation_id=conv.id)
    assert after_delete.id == conv.id and after_delete.object == "conversation"
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.retrieve(oldest_first[1].id, conversation_id=conv.id)
    assert len(list(client.conversations.items.list(conv.id, order="asc"))) == 8

    deleted = client.conversations.delete(conv.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (conv.id, True, "conversation.deleted")
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(conv.id)
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.list(conv.id)
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.retrieve(oldest_first[0].id, conversation_id=conv.id)
    with pytest.raises(openai.NotFoundError):
        client.conversations.delete(conv.id)


def test_llama_stack_client_conversations_basics(server: LiveServer, alice: str) -> None:
    lsc = LlamaStackClient(base_url=server.url, api_key=alice, max_retries=0)
    conv = lsc.conversations.create(
        items=[{"type": "message", "role": "user", "content": "hello"}], metadata={"a": "b"}
    )
    assert conv.id.startswith("conv_") and conv.metadata == {"a": "b"}
    assert lsc.conversations.retrieve(conv.id).id == conv.id
    assert lsc.conversations.update(conv.id, metadata={"a": "c"}).metadata == {"a": "c"}
    long_text = "hi there " * 100  # string content is not bounded like a list of parts
    lsc.conversations.items.create(
        conv.id, items=[{"type": "message", "role": "assistant", "content": long_text}]
    )
    items = list(lsc.conversations.items.list(conv.id, order="asc"))
    assert [i.content[0].text for i in items] == ["hello", long_text]
    assert lsc.conversations.items.get(items[1].id, conversation_id=conv.id).id == items[1].id
    assert lsc.conversations.delete(conv.id).deleted is True


def test_file_search_results_are_listed_only_when_included(
    server: LiveServer, client: openai.OpenAI, alice: str
) -> None:
    item = {
        "type": "file_search_call",
        "id": "fs_client",
        "queries": ["q"],
        "status": "completed",
        "results": [{"file_id": "file-1", "filename": "a.txt", "score": 0.5, "text": "found"}],
    }
    conv = client.conversations.create(items=[item])
    plain = client.conversations.items.list(conv.id).data[0]
    assert plain.type == "file_search_call" and plain.results is None
    included = client.conversations.items.list(conv.id, include=["file_search_call.results"])
    assert included.data[0].results[0].text == "found"
    # llama-stack-client sends include comma-separated.
    raw = httpx.get(
        f"{server.url}/v1/conversations/{conv.id}/items/{plain.id}",
        params={"include": "message.output_text.logprobs,file_search_call.results"},
        headers={"authorization": f"Bearer {alice}"},
    )
    assert raw.status_code == 200 and raw.json()["results"][0]["text"] == "found"


def test_bad_input_is_a_4xx_in_openai_shape(server: LiveServer, client: openai.OpenAI) -> None:
    conv = client.conversations.create()
    assert conv.metadata == {}
    too_many = [{"role": "user", "content": str(i)} for i in range(21)]
    for call in (
        lambda: client.conversations.create(items=too_many),
        lambda: client.conversations.items.create(conv.id, items=too_many),
        lambda: client.conversations.items.create(conv.id, items=[]),
        lambda: client.conversations.items.create(conv.id, items=[{"type": "web_search_call"}]),
        lambda: client.conversations.create(metadata={f"k{i}": "v" for i in range(17)}),
        lambda: client.conversations.create(metadata={"k" * 65: "v"}),
        lambda: client.conversations.items.list(conv.id, limit=101),
        lambda: client.conversations.items.list(conv.id, limit=0),
        lambda: client.conversations.items.list(conv.id, order="sideways"),  # type: ignore[arg-type]
        lambda: client.conversations.items.list(conv.id, after="../etc"),
        lambda: client.conversations.items.list(conv.id, include=["no such/thing"]),  # type: ignore[list-item]
    ):
        with pytest.raises(openai.BadRequestError) as caught:
            call()
        error = caught.value.body
        assert set(error) >= {"message", "type", "param", "code"}, error
    assert len(client.conversations.items.list(conv.id).data) == 0  # nothing was added

    unknown = "conv_" + "0" * 32
    for bad_id in (unknown, "conv_xyz", "x" * 128, "conv_" + "A" * 32):
        with pytest.raises(openai.NotFoundError):
            client.conversations.retrieve(bad_id)
        with pytest.raises(openai.NotFoundError):
            client.conversations.items.create(bad_id, items=[{"role": "user", "content": "x"}])
    for bad_item in ("msg_" + "0" * 32, "nope", "msg_" + "z" * 32):
        with pytest.raises(openai.NotFoundError):
            client.conversations.items.retrieve(bad_item, conversation_id=conv.id)
        with pytest.raises(openai.NotFoundError):
            client.conversations.items.delete(bad_item, conversation_id=conv.id)
    # Malformed bodies and ids never reach a 5xx.
    headers = {"authorization": f"Bearer {client.api_key}", "content-type": "application/json"}
    for path, body in (
        ("/v1/conversations", b"{"),
        ("/v1/conversations", b'{"items": "no"}'),
        ("/v1/conversations", b'{"unknown": 1}'),
        (f"/v1/conversations/{conv.id}", b"{}"),
        (f"/v1/conversations/{conv.id}/items", b'{"items": [{"role": "root", "content": "x"}]}'),
    ):
        reply = httpx.post(f"{server.url}{path}", content=body, headers=headers)
        assert reply.status_code == 400, (path, reply.text)
    not_a_score = {
        "type": "file_search_call",
        "id": "fs_1",
        "results": [{"file_id": "f", "score": False}],
    }
    reply = httpx.post(
        f"{server.url}/v1/conversations", json={"items": [not_a_score]}, headers=headers
    )
    assert reply.status_code == 400 and "score" in reply.json()["error"]["message"]
    # A wrong method names every method of the path (the routes of an included router too).
    wrong = httpx.patch(f"{server.url}/v1/conversations/{conv.id}", headers=headers)
    assert wrong.status_code == 405 and wrong.headers["allow"] == "DELETE, GET, POST"
    weird = httpx.get(f"{server.url}/v1/conversations/%00%ff", headers=headers)
    assert weird.status_code == 404 and weird.json()["error"]["code"]


def test_another_tenants_conversation_is_a_404(
    server: LiveServer, client: openai.OpenAI, bob: str
) -> None:
    conv = client.conversations.create(items=[{"role": "user", "content": "secret"}])
    item_id = client.conversations.items.list(conv.id).data[0].id
    other = openai.OpenAI(base_url=f"{server.url}/v1", api_key=bob, max_retries=0)
    for call in (
        lambda: other.conversations.retrieve(conv.id),
        lambda: other.conversations.update(conv.id, metadata={"x": "y"}),
        lambda: other.conversations.items.list(conv.id),
        lambda: other.conversations.items.create(conv.id, items=[{"role": "user", "content": "x"}]),
        lambda: other.conversations.items.retrieve(item_id, conversation_id=conv.id),
        lambda: other.conversations.items.delete(item_id, conversation_id=conv.id),
        lambda: other.conversations.delete(conv.id),
    ):
        with pytest.raises(openai.NotFoundError) as caught:
            call()
        assert "secret" not in str(caught.value.body)
    # Untouched for its owner.
    assert client.conversations.retrieve(conv.id).metadata == {}
    assert texts(client.conversations.items.list(conv.id).data) == ["secret"]


def test_an_expired_conversation_is_gone(tmp_path: Path) -> None:
    # 0.00002 days is 1.7 s (rounded up to a whole second): there at first, gone within 3 s.
    with agents_server(tmp_path, store_days=0.00002) as live:
        key = create_key(tmp_path, "alice")
        client = openai.OpenAI(base_url=f"{live.url}/v1", api_key=key, max_retries=0)
        conv = client.conversations.create(items=[{"role": "user", "content": "old"}])
        created = time.time()
        item_id = client.conversations.items.list(conv.id).data[0].id
        gone = False
        while not gone and time.time() - created < 4:
            try:
                client.conversations.retrieve(conv.id)
                time.sleep(0.1)
            except openai.NotFoundError:
                gone = True
        assert gone
        with pytest.raises(openai.NotFoundError):
            client.conversations.items.retrieve(item_id, conversation_id=conv.id)
