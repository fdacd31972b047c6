"""POST /v1/chat/completions, /v1/completions, /v1/embeddings (OpenAI-compatible)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from llamda.api.errors import error_responses
from llamda.api.inference import (
    ChatCompletion,
    ChatCompletionDeleted,
    ChatCompletionList,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    EmbeddingsRequest,
    EmbeddingsResponse,
    StoredChatCompletion,
    StoredMessageList,
    StreamOptions,
    UpdateChatCompletionRequest,
)
from llamda.config import RoutingConfig
from llamda.errors import BadRequestError
from llamda.routers import get_stack
from llamda.services.inference import Served
from llamda.sse import SSEResponse, events
from llamda.stack import Stack

router = APIRouter(tags=["inference"])
StackDep = Annotated[Stack, Depends(get_stack)]
ERRORS = error_responses(400, 404, 413, 429, 503)
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def _served_headers(served: Served[Any]) -> dict[str, str]:
    return {"x-llamda-provider": served.provider_id, "x-llamda-model": served.model.id}


def _json(served: Served[BaseModel]) -> Response:
    """The reply as JSON, serialized once (FastAPI would validate the model again first)."""
    return Response(
        served.value.model_dump_json(),
        media_type="application/json",
        headers=_served_headers(served),
    )


def _sse(
    served: Served[AsyncIterator[Any]],
    options: StreamOptions | None,
    routing: RoutingConfig | None = None,
) -> StreamingResponse:
    """Server-sent events (llamda.sse): ended, and the upstream released, when the client is
    gone or reads nothing for ``routing.stream_idle_seconds``."""
    idle = (routing or RoutingConfig()).stream_idle_seconds
    include_usage = bool(options and options.include_usage)
    return SSEResponse(
        events(served.value, include_usage, served.provider_id),
        idle_seconds=idle,
        headers={**SSE_HEADERS, **_served_headers(served)},
    )


@router.post(
    "/v1/chat/completions",
    summary="Create a chat completion",
    description="OpenAI-compatible; `stream: true` answers with server-sent events.",
    response_model=ChatCompletion,
    responses=ERRORS,
)
async def chat_completions(body: ChatCompletionRequest, stack: StackDep) -> Response:
    if body.stream:
        served = stack.chat_store.chat_stream(body, await stack.inference.chat_stream(body))
        return _sse(served, body.stream_options, stack.config.routing)
    return _json(await stack.chat_store.chat(body, await stack.inference.chat(body)))


# Any id shape reaches the service, which answers 404 for one that is not ours.
CompletionId = Annotated[str, Path(max_length=128, description="A chat completion id.")]
_METADATA_PARAM = re.compile(r"^metadata\[(.{1,64})\]$")


def _metadata_filter(request: Request) -> dict[str, str]:
    """``metadata[key]=value`` query parameters, as the openai SDK sends a metadata filter."""
    found: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if not name.startswith("metadata"):
            continue
        match = _METADATA_PARAM.match(name)
        if match is None or len(value) > 512 or len(found) >= 16:
            raise BadRequestError(
                "metadata: filter as metadata[key]=value, at most 16 pairs (keys up to 64 "
                "characters, values up to 512)",
                param="metadata",
            )
        found[match.group(1)] = value
    return found


@router.get(
    "/v1/chat/completions",
    summary="List stored chat completions",
    description="Completions stored with `store: true` (or by the inference_store config).",
    response_model=ChatCompletionList,
    responses=error_responses(400),
)
async def list_chat_completions(
    stack: StackDep,
    metadata: Annotated[dict[str, str], Depends(_metadata_filter)],
    after: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Annotated[Literal["asc", "desc"], Query()] = "asc",
    model: Annotated[str | None, Query(max_length=256)] = None,
) -> ChatCompletionList:
    return await stack.chat_store.list(
        after=after, limit=limit, order=order, model=model, metadata=metadata
    )


@router.get(
    "/v1/chat/completions/{completion_id}",
    summary="Get a stored chat completion",
    response_model=StoredChatCompletion,
    responses=error_responses(404),
)
async def get_chat_completion(completion_id: CompletionId, stack: StackDep) -> Any:
    return await stack.chat_store.get(completion_id)


@router.post(
    "/v1/chat/completions/{completion_id}",
    summary="Update a stored chat completion's metadata",
    response_model=StoredChatCompletion,
    responses=error_responses(400, 404),
)
async def update_chat_completion(
    completion_id: CompletionId, body: UpdateChatCompletionRequest, stack: StackDep
) -> Any:
    return await stack.chat_store.update(completion_id, body.metadata)


@router.get(
    "/v1/chat/completions/{completion_id}/messages",
    summary="List a stored chat completion's messages",
    response_model=StoredMessageList,
    responses=error_responses(400, 404),
)
async def list_chat_completion_messages(
    completion_id: CompletionId,
    stack: StackDep,
    after: Annotated[str | None, Query(max_length=160)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Annotated[Literal["asc", "desc"], Query()] = "asc",
) -> StoredMessageList:
    return await stack.chat_store.messages(completion_id, after=after, limit=limit, order=order)


@router.delete(
    "/v1/chat/completions/{completion_id}",
    summary="Delete a stored chat completion",
    response_model=ChatCompletionDeleted,
    responses=error_responses(404),
)
async def delete_chat_completion(
    completion_id: CompletionId, stack: StackDep
) -> ChatCompletionDeleted:
    return await stack.chat_store.delete(completion_id)


@router.post(
    "/v1/completions",
    summary="Create a completion (prompt continuation)",
    response_model=Completion,
    responses=ERRORS,
)
async def completions(body: CompletionRequest, stack: StackDep) -> Response:
    if body.stream:
        return _sse(
            await stack.inference.completion_stream(body),
            body.stream_options,
            stack.config.routing,
        )
    return _json(await stack.inference.completion(body))


@router.post(
    "/v1/embeddings",
    summary="Create embeddings",
    response_model=EmbeddingsResponse,
    responses=ERRORS,
)
async def embeddings(body: EmbeddingsRequest, stack: StackDep) -> Response:
    return _json(await stack.inference.embeddings(body))
