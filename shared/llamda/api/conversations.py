"""Conversations API shapes (OpenAI): a conversation, its items, and the request bodies."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llamda.api.bounds import json_bounds
from llamda.api.responses import InputItem
from llamda.errors import BadRequestError

# OpenAI: at most 20 items per create call; 16 metadata pairs, keys <= 64, values <= 512 chars.
MAX_ITEMS_PER_CALL = 20
ConversationMetadata = Annotated[
    dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]],
    Field(max_length=16),
    json_bounds(max_bytes=16 * 1024),
]
# Our conversation ids: "conv_" then 32 hex digits (items.new_id). Anything else is unknown.
CONVERSATION_ID = r"^conv_[0-9a-f]{32}$"
ITEM_ID = r"^[a-z]{2,8}_[0-9a-f]{32}$"
_INCLUDABLE = re.compile(r"^[a-z_]{1,40}(\.[a-z_]{1,40}){0,3}$")
MAX_INCLUDES = 8


class CreateConversationRequest(BaseModel):
    """``POST /v1/conversations``."""

    model_config = ConfigDict(extra="forbid")

    items: list[InputItem] | None = Field(None, max_length=MAX_ITEMS_PER_CALL)
    metadata: ConversationMetadata | None = None


class UpdateConversationRequest(BaseModel):
    """``POST /v1/conversations/{id}``: the metadata replaces the old (null clears it)."""

    model_config = ConfigDict(extra="forbid")

    metadata: ConversationMetadata | None


class CreateItemsRequest(BaseModel):
    """``POST /v1/conversations/{id}/items``."""

    model_config = ConfigDict(extra="forbid")

    items: list[InputItem] = Field(min_length=1, max_length=MAX_ITEMS_PER_CALL)


class ConversationObject(BaseModel):
    id: str
    object: Literal["conversation"] = "conversation"
    created_at: int
    metadata: dict[str, str] = Field(default_factory=dict)


class ConversationDeleted(BaseModel):
    id: str
    object: Literal["conversation.deleted"] = "conversation.deleted"
    deleted: bool = True


class ConversationItemList(BaseModel):
    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


def includes(values: list[str]) -> list[str]:
    """The ``include`` values of a query (repeated or comma-separated); a 400 naming a value that
    is not of the shape of OpenAI's includables (``file_search_call.results``…)."""
    found = [v for value in values for v in value.split(",") if v]
    if len(found) > MAX_INCLUDES:
        raise BadRequestError(f"include: at most {MAX_INCLUDES} values", param="include")
    for value in found:
        if not _INCLUDABLE.match(value):
            raise BadRequestError(f"include: {value[:80]!r} is not an includable", param="include")
    return found
