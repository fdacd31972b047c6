"""The inference provider Protocol and what every implementation shares."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Protocol

from llamda.api.inference import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    EmbeddingsRequest,
    EmbeddingsResponse,
)
from llamda.errors import UnsupportedError


class InferenceProvider(Protocol):
    """One backend. ``model`` is always the provider's own model id. Providers raise the
    Upstream* errors of llamda.errors and never retry: the router does."""

    provider_id: str
    provider_type: str

    async def chat(self, request: ChatCompletionRequest, model: str) -> ChatCompletion: ...

    def chat_stream(
        self, request: ChatCompletionRequest, model: str
    ) -> AsyncIterator[ChatCompletionChunk]: ...

    async def completion(self, request: CompletionRequest, model: str) -> Completion: ...

    def completion_stream(
        self, request: CompletionRequest, model: str
    ) -> AsyncIterator[dict[str, Any]]:
        """Completion chunks as OpenAI ``text_completion`` objects."""

    async def embeddings(self, request: EmbeddingsRequest, model: str) -> EmbeddingsResponse: ...

    async def close(self) -> None: ...


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def unsupported(provider_type: str, what: str) -> UnsupportedError:
    return UnsupportedError(
        f"provider type '{provider_type}' does not support {what}", param="model"
    )
