"""The conversations routes (agents API): ``/v1/conversations`` and its ``/items``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query

from llamda.api.conversations import (
    ConversationDeleted,
    ConversationItemList,
    ConversationObject,
    CreateConversationRequest,
    CreateItemsRequest,
    UpdateConversationRequest,
    includes,
)
from llamda.api.errors import error_responses
from llamda.routers import get_stack
from llamda.stack import Stack

router = APIRouter(tags=["agents"])
StackDep = Annotated[Stack, Depends(get_stack)]
# Any id shape reaches the service, which answers 404 for one that is not ours.
ConversationId = Annotated[str, Path(max_length=128, description="A conversation id (conv_…).")]
ItemId = Annotated[str, Path(max_length=128, description="An item id.")]


def _include(
    include: Annotated[
        list[str], Query(max_length=8, description="e.g. file_search_call.results")
    ] = [],  # noqa: B006 (FastAPI copies query defaults)
    include_brackets: Annotated[list[str], Query(alias="include[]", max_length=8)] = [],  # noqa: B006
) -> list[str]:
    """``include`` as each SDK sends it: repeated, ``include[]=`` (openai) or comma-separated
    (llama-stack-client)."""
    return includes([*include, *include_brackets])


Include = Annotated[list[str], Depends(_include)]


@router.post(
    "/v1/conversations",
    summary="Create a conversation",
    response_model=ConversationObject,
    responses=error_responses(400),
)
async def create_conversation(
    stack: StackDep, body: CreateConversationRequest | None = None
) -> ConversationObject:
    body = body or CreateConversationRequest()
    return await stack.conversations.create(list(body.items or []), body.metadata)


@router.get(
    "/v1/conversations/{conversation_id}",
    summary="Get a conversation",
    response_model=ConversationObject,
    responses=error_responses(404),
)
async def get_conversation(conversation_id: ConversationId, stack: StackDep) -> ConversationObject:
    return await stack.conversations.get(conversation_id)


@router.post(
    "/v1/conversations/{conversation_id}",
    summary="Update a conversation's metadata",
    response_model=ConversationObject,
    responses=error_responses(400, 404),
)
async def update_conversation(
    conversation_id: ConversationId, body: UpdateConversationRequest, stack: StackDep
) -> ConversationObject:
    return await stack.conversations.update(conversation_id, body.metadata)


@router.delete(
    "/v1/conversations/{conversation_id}",
    summary="Delete a conversation and its items",
    response_model=ConversationDeleted,
    responses=error_responses(404),
)
async def delete_conversation(
    conversation_id: ConversationId, stack: StackDep
) -> ConversationDeleted:
    await stack.conversations.delete(conversation_id)
    return ConversationDeleted(id=conversation_id)


@router.post(
    "/v1/conversations/{conversation_id}/items",
    summary="Add items to a conversation",
    response_model=ConversationItemList,
    responses=error_responses(400, 404),
)
async def create_items(
    conversation_id: ConversationId,
    body: CreateItemsRequest,
    stack: StackDep,
    include: Include,
) -> ConversationItemList:
    return await stack.conversations.add_items(conversation_id, list(body.items))


@router.get(
    "/v1/conversations/{conversation_id}/items",
    summary="List a conversation's items",
    response_model=ConversationItemList,
    responses=error_responses(400, 404),
)
async def list_items(
    conversation_id: ConversationId,
    stack: StackDep,
    include: Include,
    after: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Annotated[Literal["asc", "desc"], Query()] = "desc",
) -> ConversationItemList:
    return await stack.conversations.list_items(
        conversation_id, after=after, limit=limit, order=order, include=include
    )


@router.get(
    "/v1/conversations/{conversation_id}/items/{item_id}",
    summary="Get one item of a conversation",
    response_model=dict[str, Any],
    responses=error_responses(404),
)
async def get_item(
    conversation_id: ConversationId,
    item_id: ItemId,
    stack: StackDep,
    include: Include,
) -> dict[str, Any]:
    return await stack.conversations.get_item(conversation_id, item_id, include)


@router.delete(
    "/v1/conversations/{conversation_id}/items/{item_id}",
    summary="Delete one item of a conversation",
    description="Returns the conversation, as OpenAI's API does.",
    response_model=ConversationObject,
    responses=error_responses(404),
)
async def delete_item(
    conversation_id: ConversationId, item_id: ItemId, stack: StackDep
) -> ConversationObject:
    return await stack.conversations.delete_item(conversation_id, item_id)
