"""What the Responses loop reads from and appends to a conversation (``context``/``append``), on
the real local stores: order, limits, spilled items, unknown ids, tenants."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from llamda.api.responses import FunctionCallItem, MessageItem
from llamda.config import AgentsConfig
from llamda.context import tenant_scope
from llamda.errors import BadRequestError, NotFoundError
from llamda.services.agents.conversations import ConversationsService, items_kind
from llamda.services.agents.items import INLINE_BYTES, ItemStore, normalize
from llamda.storage.objects_local import LocalObjectStore
from llamda.storage.records_sqlite import SqliteRecordStore


@pytest.fixture
def service(tmp_path: Path) -> ConversationsService:
    records = SqliteRecordStore(tmp_path / "records.sqlite3")
    items = ItemStore(records, LocalObjectStore(tmp_path / "objects"))
    return ConversationsService(records, items, AgentsConfig())


def user(text: str) -> MessageItem:
    return MessageItem(role="user", content=text)


def test_context_is_every_item_in_order_with_appended_ones_last(
    service: ConversationsService,
) -> None:
    async def run() -> None:
        with tenant_scope("alice"):
            conv = await service.create([user("one"), user("two")], None)
            big = "x" * (INLINE_BYTES + 10)  # kept in the object store, read back whole
            appended = [
                normalize(FunctionCallItem(type="function_call", call_id="c", name="f")),
                normalize(MessageItem(role="assistant", content=big)),
            ]
            await service.append(conv.id, appended)
            context = await service.context(conv.id, limit=4)
            assert [i["type"] for i in context] == [
                "message",
                "message",
                "function_call",
                "message",
            ]
            assert context[0]["content"][0]["text"] == "one"
            assert context[2:] == appended and context[3]["content"][0]["text"] == big
            with pytest.raises(BadRequestError) as caught:
                await service.context(conv.id, limit=3)
            assert caught.value.param == "conversation"
        with tenant_scope("bob"), pytest.raises(NotFoundError):
            await service.context(conv.id, limit=10)
        with tenant_scope("bob"), pytest.raises(NotFoundError):
            await service.append(conv.id, [normalize(user("intruder"))])
        with tenant_scope("alice"):
            assert len(await service.context(conv.id, limit=4)) == 4

    asyncio.run(run())


@pytest.mark.parametrize("bad", ["conv_" + "0" * 32, "conv_nope", "", "../conversations"])
def test_unknown_or_malformed_ids_are_404(service: ConversationsService, bad: str) -> None:
    async def run() -> None:
        with tenant_scope("alice"):
            with pytest.raises(NotFoundError):
                await service.context(bad, limit=10)
            with pytest.raises(NotFoundError):
                await service.append(bad, [normalize(user("x"))])

    asyncio.run(run())


def test_delete_removes_the_items_and_their_spilled_objects(tmp_path: Path) -> None:
    records = SqliteRecordStore(tmp_path / "records.sqlite3")
    service = ConversationsService(
        records, ItemStore(records, LocalObjectStore(tmp_path / "objects")), AgentsConfig()
    )

    async def run() -> None:
        with tenant_scope("alice"):
            big = MessageItem(role="user", content="y" * (INLINE_BYTES + 1))
            conv = await service.create([user("small"), big], None)
            kind = items_kind(conv.id)
            assert len(await records.list(kind)) == 2
            assert [p for p in (tmp_path / "objects").rglob("*.json")]
            await service.delete(conv.id)
            assert await records.list(kind) == []
            assert not [p for p in (tmp_path / "objects").rglob("*.json")]
            with pytest.raises(NotFoundError):
                await service.context(conv.id, limit=10)

    asyncio.run(run())
