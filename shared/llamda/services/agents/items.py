"""Responses-API items kept in Records, one record per item, in key order.

A DynamoDB item holds at most 400 KB, and one item (an image as a data URL, a long tool output,
file_search results) can be bigger: such an item's JSON is kept in the object store (tenant-
scoped like every object) and its record points at it. Every record of this store expires with
the thing it belongs to (``expires_at``).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from pydantic import BaseModel

from llamda.storage.objects import Objects
from llamda.storage.records import EXPIRES, Records, save

Item = dict[str, Any]
# Items larger than this (JSON bytes) live in the object store; DynamoDB's limit is 400 KB.
INLINE_BYTES = 256 * 1024
_PREFIX = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "file_search_call": "fs",
}


_clock_lock = threading.Lock()
_last_ns = 0
# Our ids: a prefix, then 16 hex digits of a strictly increasing ns clock, then randomness.
OUR_ID = re.compile(r"^([a-z]{2,8})_([0-9a-f]{16}[0-9a-f]{16})$")


def _tick() -> int:
    global _last_ns
    with _clock_lock:
        _last_ns = max(time.time_ns(), _last_ns + 1)
        return _last_ns


def new_id(prefix: str) -> str:
    """An id whose text after the prefix sorts in creation order (also within a process when
    two are made in the same nanosecond), then randomness."""
    return f"{prefix}_{_tick():016x}{secrets.token_hex(8)}"


def order_key(our_id: str) -> str | None:
    """The creation-ordered part of one of our ids (a record key), None if it is not ours."""
    match = OUR_ID.match(our_id)
    return match.group(2) if match else None


def normalize(item: BaseModel) -> Item:
    """An input item (api/responses.py) in the stored shape, with a new id of ours: message
    content is always a list of parts; ids the client sent are not kept (an output item sent
    back as input would otherwise appear twice)."""
    data = item.model_dump(exclude_none=True, by_alias=True)
    kind = data.get("type", "message")
    data["type"] = kind
    if kind == "message":
        content = data.get("content")
        if isinstance(content, str):
            part = "output_text" if data["role"] == "assistant" else "input_text"
            data["content"] = [{"type": part, "text": content}]
            if part == "output_text":
                data["content"][0]["annotations"] = []
    data.setdefault("status", "completed")
    data["id"] = new_id(_PREFIX.get(kind, "item"))
    return data


def public(record: dict[str, Any]) -> dict[str, Any]:
    """A stored document without the storage's own fields."""
    return {k: v for k, v in record.items() if k not in (EXPIRES, "version")}


class Page(NamedTuple):
    items: list[tuple[str, Item]]
    has_more: bool
    last_scanned: str | None = None  # set when the scan stopped at its bound


class ItemStore:
    """Items of one collection (``kind``, e.g. ``response_items:resp_…``), keyed by the caller."""

    def __init__(self, records: Records, objects: Objects):
        self._records = records
        self._objects = objects

    @staticmethod
    def _object_key(kind: str, key: str) -> str:
        return f"agents/{kind.replace(':', '/')}/{key}.json"

    async def put(self, kind: str, key: str, item: Item, *, expires_at: int | None) -> None:
        data = json.dumps(item, separators=(",", ":")).encode()
        record: dict[str, Any] = {"id": key}
        if len(data) > INLINE_BYTES:
            await self._objects.put(self._object_key(kind, key), data)
            record["spilled"] = True
        else:
            record["item"] = item
        await self._records.put(kind, key, record, expires_at=expires_at)

    async def _load(self, kind: str, record: dict[str, Any]) -> Item:
        if record.get("spilled"):
            return json.loads(await self._objects.get(self._object_key(kind, record["id"])))
        return record["item"]

    async def get(self, kind: str, key: str) -> Item | None:
        record = await self._records.get(kind, key)
        return None if record is None else await self._load(kind, record)

    async def page(
        self,
        kind: str,
        *,
        after: str | None = None,
        limit: int = 100,
        descending: bool = False,
        prefix: str = "",
    ) -> tuple[list[tuple[str, Item]], bool]:
        """Up to ``limit`` (key, item) pairs after the key ``after``, only keys starting with
        ``prefix``; and whether more follow."""
        found = await self.filtered_page(
            kind, after=after, limit=limit, descending=descending, prefix=prefix
        )
        return found.items, found.has_more

    async def filtered_page(
        self,
        kind: str,
        *,
        after: str | None = None,
        limit: int = 100,
        descending: bool = False,
        prefix: str = "",
        keep: Callable[[Item], bool] | None = None,
        max_scanned: int | None = None,
    ) -> Page:
        """``page`` of the items ``keep`` accepts. At most ``max_scanned`` items are read, so a
        filter that matches little cannot make one request read a whole collection: the page
        is then short (maybe empty), ``has_more`` is true and ``last_scanned`` is the key to
        continue after."""
        if after is None and prefix:
            after = prefix if not descending else prefix + "\U0010ffff"
        rows_out: list[dict[str, Any]] = []
        kept: dict[str, Item] = {}  # items already loaded to be filtered
        cursor, done, scanned, cut = after, False, 0, False
        last_scanned: str | None = None
        while not done and not cut and len(rows_out) <= limit:
            rows = await self._records.list(
                kind, after=cursor, limit=max(limit + 1, 100), descending=descending
            )
            done = not rows
            for row in rows:
                if not row["id"].startswith(prefix):
                    done = True
                    break
                if keep is not None:
                    if max_scanned is not None and scanned >= max_scanned:
                        cut = True
                        break
                    scanned += 1
                    last_scanned = row["id"]
                    item = await self._load(kind, row)
                    if not keep(item):
                        continue
                    kept[row["id"]] = item
                rows_out.append(row)
                if len(rows_out) > limit:
                    break
            if rows:
                cursor = rows[-1]["id"]
        loaded = [
            (row["id"], kept.get(row["id"]) or await self._load(kind, row))
            for row in rows_out[:limit]
        ]
        return Page(loaded, cut or len(rows_out) > limit, last_scanned if cut else None)

    async def all(self, kind: str, *, prefix: str = "", limit: int) -> list[tuple[str, Item]]:
        """Every item (up to ``limit``; the caller checks the count) in key order."""
        items, _ = await self.page(kind, limit=limit, prefix=prefix)
        return items

    async def update(self, kind: str, key: str, change: Callable[[Item], None]) -> Item | None:
        """Apply ``change`` to a stored item and write it back unless it was changed or deleted
        meanwhile (then read again; None once it is gone: a deleted item never comes back).
        The record keeps its expiry."""
        from llamda.errors import ConflictError

        for _ in range(5):
            record = await self._records.get(kind, key)
            if record is None:
                return None
            item = await self._load(kind, record)
            change(item)
            data = json.dumps(item, separators=(",", ":")).encode()
            spilled = bool(record.get("spilled")) or len(data) > INLINE_BYTES
            if spilled:
                await self._objects.put(self._object_key(kind, key), data)
                record.pop("item", None)
                record["spilled"] = True
            else:
                record["item"] = item
            if await save(self._records, kind, key, record):
                return item
            if await self._records.get(kind, key) is None:
                if spilled:  # written after the delete removed it: remove it again
                    await self._objects.delete(self._object_key(kind, key))
                return None
        raise ConflictError("the item is being changed concurrently; retry")

    async def delete(self, kind: str, key: str) -> bool:
        record = await self._records.get(kind, key)
        if record is None:
            return False
        if record.get("spilled"):
            await self._objects.delete(self._object_key(kind, key))
        return await self._records.delete(kind, key)

    async def delete_all(self, kind: str) -> None:
        while True:
            rows = await self._records.list(kind, limit=500)
            if not rows:
                return
            for row in rows:
                await self.delete(kind, row["id"])
