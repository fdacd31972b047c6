"""Conversations (OpenAI): a conversation and its items, tenant-scoped in Records.

A conversation is one record (kind ``conversations``); each item is one ItemStore record in
kind ``conversation_items:<conversation id>`` keyed by the creation-ordered part of its id, so
listing is creation order and finding an item by id is a computation, not an index. Everything
expires ``store_days`` after the conversation was made (items with their conversation).
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

from pydantic import BaseModel

from llamda.api.conversations import (
    CONVERSATION_ID,
    ConversationItemList,
    ConversationObject,
)
from llamda.config import AgentsConfig
from llamda.errors import BadRequestError, ConflictError, NotFoundError
from llamda.services.agents.items import Item, ItemStore, new_id, normalize, order_key
from llamda.storage.records import EXPIRES, Records, save

CONVERSATIONS = "conversations"
_CONVERSATION_ID = re.compile(CONVERSATION_ID)
DAY = 86400
# Items a conversation's delete removes itself; any beyond expire with the conversation.
DELETE_INLINE = 1000


def items_kind(conversation_id: str) -> str:
    return f"conversation_items:{conversation_id}"


def missing(conversation_id: str) -> NotFoundError:
    return NotFoundError(
        f"No conversation found with id {conversation_id[:128]!r}",
        param="conversation_id",
        code="conversation_not_found",
    )


def _public(record: dict[str, Any]) -> ConversationObject:
    return ConversationObject(
        id=record["id"], created_at=record["created_at"], metadata=record.get("metadata") or {}
    )


def _shown(item: Item, include: list[str]) -> Item:
    """An item as listed: file_search results only when asked for (as OpenAI does)."""
    if item.get("type") == "file_search_call" and "file_search_call.results" not in include:
        return {**item, "results": None}
    return item


class ConversationsService:
    def __init__(self, records: Records, items: ItemStore, config: AgentsConfig):
        self._records = records
        self._items = items
        self._config = config

    async def _record(self, conversation_id: str) -> dict[str, Any]:
        """The conversation's record; 404 when unknown, expired, another tenant's or not an id
        of ours (an id of the wrong shape is never looked up)."""
        if not _CONVERSATION_ID.match(conversation_id):
            raise missing(conversation_id)
        record = await self._records.get(CONVERSATIONS, conversation_id)
        if record is None:
            raise missing(conversation_id)
        return record

    async def create(
        self, items: list[BaseModel], metadata: dict[str, str] | None
    ) -> ConversationObject:
        now = int(time.time())
        conversation_id = new_id("conv")
        record = {
            "id": conversation_id,
            "created_at": now,
            "metadata": metadata or {},
        }
        # Rounded up: kept at least store_days (a record is gone once its second has passed).
        expires_at = math.ceil(time.time() + self._config.store_days * DAY)
        # Items first: a create cut short leaves no conversation, only items that expire.
        await self._put_items(conversation_id, [normalize(i) for i in items], expires_at)
        await self._records.put(
            CONVERSATIONS, conversation_id, record, if_absent=True, expires_at=expires_at
        )
        return _public(record)

    async def get(self, conversation_id: str) -> ConversationObject:
        return _public(await self._record(conversation_id))

    async def update(
        self, conversation_id: str, metadata: dict[str, str] | None
    ) -> ConversationObject:
        for _ in range(5):  # a concurrent writer changed it: apply ours to the newer record
            record = await self._record(conversation_id)  # 404 once deleted
            record["metadata"] = metadata or {}  # null clears, as an empty object does
            if await save(self._records, CONVERSATIONS, conversation_id, record):
                return _public(record)
        raise ConflictError("the conversation is being changed concurrently; retry")

    async def delete(self, conversation_id: str) -> None:
        await self._record(conversation_id)
        # The record first: once it is gone the conversation and its items are unreachable
        # (404; its id is never made again). Then a bounded number of items, so a huge
        # conversation cannot make the request run past its deadline: the items' own expiry
        # (DynamoDB TTL, purge_expired locally) removes the rest.
        await self._records.delete(CONVERSATIONS, conversation_id)
        kind = items_kind(conversation_id)
        for row in await self._records.list(kind, limit=DELETE_INLINE):
            await self._items.delete(kind, row["id"])

    async def add_items(self, conversation_id: str, items: list[BaseModel]) -> ConversationItemList:
        """``POST …/items``: the new items, normalized, in the order given."""
        normalized = [normalize(i) for i in items]
        await self.append(conversation_id, normalized)
        return ConversationItemList(
            data=normalized,
            first_id=normalized[0]["id"] if normalized else None,
            last_id=normalized[-1]["id"] if normalized else None,
            has_more=False,
        )

    async def list_items(
        self,
        conversation_id: str,
        *,
        after: str | None,
        limit: int,
        order: str,
        include: list[str],
    ) -> ConversationItemList:
        await self._record(conversation_id)
        after_key = None
        if after is not None:
            after_key = order_key(after)
            if after_key is None:
                raise BadRequestError(f"after: no item has the id {after[:128]!r}", param="after")
        rows, has_more = await self._items.page(
            items_kind(conversation_id), after=after_key, limit=limit, descending=order == "desc"
        )
        data = [_shown(item, include) for _, item in rows]
        return ConversationItemList(
            data=data,
            first_id=data[0]["id"] if data else None,
            last_id=data[-1]["id"] if data else None,
            has_more=has_more,
        )

    async def get_item(self, conversation_id: str, item_id: str, include: list[str]) -> Item:
        await self._record(conversation_id)
        key = order_key(item_id)
        item = None if key is None else await self._items.get(items_kind(conversation_id), key)
        if item is None or item.get("id") != item_id:
            raise _missing_item(item_id)
        return _shown(item, include)

    async def delete_item(self, conversation_id: str, item_id: str) -> ConversationObject:
        record = await self._record(conversation_id)
        key = order_key(item_id)
        kind = items_kind(conversation_id)
        item = None if key is None else await self._items.get(kind, key)
        if key is None or item is None or item.get("id") != item_id:
            raise _missing_item(item_id)
        await self._items.delete(kind, key)
        return _public(record)

    async def context(self, conversation_id: str, limit: int) -> list[Item]:
        """Every item of the conversation in order (404 when unknown; 400 over ``limit``)."""
        await self._record(conversation_id)
        rows, more = await self._items.page(items_kind(conversation_id), limit=limit)
        if more:
            raise BadRequestError(
                f"conversation {conversation_id!r} holds more than {limit} items; start a new "
                "conversation or delete some of its items",
                param="conversation",
                code="context_too_long",
            )
        return [item for _, item in rows]

    async def append(self, conversation_id: str, items: list[Item]) -> None:
        """Append items (each already has its ``id``) after the existing ones."""
        record = await self._record(conversation_id)
        await self._put_items(conversation_id, items, record.get(EXPIRES))

    async def _put_items(
        self, conversation_id: str, items: list[Item], expires_at: int | None
    ) -> None:
        kind = items_kind(conversation_id)
        for item in items:
            key = order_key(item["id"])
            if key is None:
                raise ValueError(f"item id {item['id']!r} is not one of ours (normalize it)")
            # Items expire with their conversation, never after it.
            await self._items.put(kind, key, item, expires_at=expires_at)


def _missing_item(item_id: str) -> NotFoundError:
    return NotFoundError(
        f"No item found with id {item_id[:128]!r} in this conversation",
        param="item_id",
        code="item_not_found",
    )
