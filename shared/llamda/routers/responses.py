"""POST/GET /v1/responses, GET/DELETE /v1/responses/{id}, GET /v1/responses/{id}/input_items."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response

from llamda.api.errors import error_responses
from llamda.api.responses import (
    CreateResponseRequest,
    DeletedResponse,
    ItemList,
    ResponseList,
    ResponseObject,
)
from llamda.routers import get_stack
from llamda.routers.inference import SSE_HEADERS
from llamda.sse import SSEResponse
from llamda.stack import Stack

router = APIRouter(tags=["agents"])
StackDep = Annotated[Stack, Depends(get_stack)]
ResponseId = Annotated[str, Path(max_length=128, description="A response id (resp_…).")]
Cursor = Annotated[str | None, Query(max_length=128)]


def _json(value: Any) -> Response:
    return Response(json.dumps(value), media_type="application/json")


async def _sse(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    async for event in events:
        yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


@router.post(
    "/v1/responses",
    summary="Create a response (the agent loop)",
    description="OpenAI's Responses API: function and file_search tools, previous_response_id, "
    "conversation, prompt, text.format; `stream: true` answers with the Responses events.",
    response_model=ResponseObject,
    responses=error_responses(400, 404, 413, 429, 503),
)
async def create_response(body: CreateResponseRequest, stack: StackDep) -> Response:
    if body.stream:
        run = await stack.responses.start(body)
        return SSEResponse(
            _sse(run.events()),
            idle_seconds=stack.config.routing.stream_idle_seconds,
            headers=SSE_HEADERS,
        )
    return _json(await stack.responses.create(body))


@router.get("/v1/responses", summary="List stored responses", response_model=ResponseList)
async def list_responses(
    stack: StackDep,
    after: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    order: Annotated[Literal["asc", "desc"], Query()] = "desc",
    model: Annotated[str | None, Query(max_length=256)] = None,
) -> Response:
    return _json(await stack.responses.list(after=after, limit=limit, order=order, model=model))


@router.get(
    "/v1/responses/{response_id}",
    summary="Get a stored response",
    response_model=ResponseObject,
    responses=error_responses(404),
)
async def get_response(
    response_id: ResponseId,
    stack: StackDep,
    include: Annotated[list[str] | None, Query(max_length=8)] = None,
) -> Response:
    return _json(await stack.responses.get(response_id))


@router.get(
    "/v1/responses/{response_id}/input_items",
    summary="The input items of a stored response",
    response_model=ItemList,
    responses=error_responses(404),
)
async def input_items(
    response_id: ResponseId,
    stack: StackDep,
    after: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Annotated[Literal["asc", "desc"], Query()] = "desc",
    include: Annotated[list[str] | None, Query(max_length=8)] = None,
) -> Response:
    return _json(
        await stack.responses.input_items(response_id, after=after, limit=limit, order=order)
    )


@router.post(
    "/v1/responses/{response_id}/cancel",
    summary="Cancel a background response",
    description="A queued or running background response stops at its next step; one that has "
    "ended is returned as it is.",
    response_model=ResponseObject,
    responses=error_responses(400, 404, 409),
)
async def cancel_response(response_id: ResponseId, stack: StackDep) -> Response:
    return _json(await stack.responses.cancel(response_id))


@router.delete(
    "/v1/responses/{response_id}",
    summary="Delete a stored response",
    response_model=DeletedResponse,
    responses=error_responses(404),
)
async def delete_response(response_id: ResponseId, stack: StackDep) -> Response:
    return _json(await stack.responses.delete(response_id))
