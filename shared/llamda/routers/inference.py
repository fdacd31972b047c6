"""POST /v1/chat/completions, /v1/completions, /v1/embeddings (OpenAI-compatible)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from llamda.api.errors import error_responses
from llamda.api.inference import (
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    EmbeddingsRequest,
    EmbeddingsResponse,
    StreamOptions,
)
from llamda.config import RoutingConfig
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
        return _sse(
            await stack.inference.chat_stream(body), body.stream_options, stack.config.routing
        )
    return _json(await stack.inference.chat(body))


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
