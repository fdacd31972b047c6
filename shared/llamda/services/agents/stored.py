"""How a response is stored: its record (kind ``responses``) and its items in
``response_items:<id>`` — the request of a background response (``request``), its input items
(``i…`` keys) and output items (``o…`` keys) — and how a record becomes the Response object."""

from __future__ import annotations

from typing import Any

from llamda.errors import NotFoundError
from llamda.services.agents.items import Item
from llamda.storage.records import EXPIRES

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
