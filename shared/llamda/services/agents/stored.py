"""How a response is stored: its record (kind ``responses``) and its items in
``response_items:<id>`` — the request of a background response (``request``), its input items
(``i…`` keys) and output items (``o…`` keys) — and how a record becomes the Response object."""

from __future__ import annotations

import json
from typing import Any

from llamda.errors import ConflictError, NotFoundError
from llamda.services.agents.items import Item, ItemStore
from llamda.storage.records import EXPIRES, Records

KIND = "responses"
RESULTS = "file_search_call.results"


def items_kind(response_id: str) -> str:
    return f"response_items:{response_id}"


def check_id(response_id: str) -> str:
    if not response_id.startswith("resp_") or len(response_id) > 128:
        raise NotFoundError(f"response {response_id[:80]!r} not found", param="response_id")
    return response_id


def visible(item: Item, include: list[str]) -> Item:
    if item.get("type") == "file_search_call" and RESULTS not in include:
        return {**item, "results": None}
    return item


INTERNAL = ("n_input", "n_output", "include", "steps", "tool_calls", "version", EXPIRES)


def as_response(record: dict[str, Any], output: list[Item]) -> dict[str, Any]:
    include = record.get("include") or []
    response = {k: v for k, v in record.items() if k not in INTERNAL}
    response["output"] = [visible(item, include) for item in output]
    return response


# A DynamoDB item holds 400 KB: past this, a record's big fields (instructions, tools, text
# format, prompt) move to a ``record`` item of its own (which itself spills to the object store).
RECORD_INLINE_BYTES = 256 * 1024
BIG_FIELDS = ("instructions", "tools", "text", "prompt")


class ResponseRecords:
    """Response records: every read and write goes through here (the spill rule in one place).
    Mutable fields (status, usage, version...) always stay in the record itself."""

    def __init__(self, records: Records, items: ItemStore):
        self._records = records
        self._items = items

    async def get(self, response_id: str) -> dict[str, Any] | None:
        record = await self._records.get(KIND, check_id(response_id))
        return None if record is None else await self._joined(record)

    async def _joined(self, record: dict[str, Any]) -> dict[str, Any]:
        if not record.pop("spilled", False):
            return record
        big = await self._items.get(items_kind(record["id"]), "record") or {}
        return {**record, **big}

    async def put(
        self,
        record: dict[str, Any],
        *,
        expires_at: int,
        if_absent: bool = False,
        if_version: int | None = None,
    ) -> bool:
        """Write ``record`` (``if_version``: only over that version, then False when it
        changed meanwhile, and ``record["version"]`` is the next one on success)."""
        stub = {k: v for k, v in record.items() if k != EXPIRES}
        if len(json.dumps(stub)) > RECORD_INLINE_BYTES:
            big = {k: stub.pop(k) for k in BIG_FIELDS if k in stub}
            await self._items.put(items_kind(record["id"]), "record", big, expires_at=expires_at)
            stub["spilled"] = True
        if if_version is not None:
            stub["version"] = if_version + 1
        try:
            await self._records.put(
                KIND,
                record["id"],
                stub,
                if_absent=if_absent,
                if_version=if_version,
                expires_at=expires_at,
            )
        except ConflictError:
            if if_version is None:
                raise
            return False
        if if_version is not None:
            record["version"] = if_version + 1
        return True

    async def list(
        self, *, after: str | None, limit: int, descending: bool
    ) -> list[dict[str, Any]]:
        rows = await self._records.list(KIND, after=after, limit=limit, descending=descending)
        return [await self._joined(row) for row in rows]

    async def delete(self, response_id: str) -> bool:
        return await self._records.delete(KIND, response_id)
