"""Inline llama.cpp (the ``local`` extra): a GGUF file served in-process, fully offline.

llama.cpp is neither async nor thread-safe: calls run in a worker thread, one at a time. A
request that is given up (timed out by the router, cancelled, its stream closed) stops its
generation at the next token, so the model is free for the next request (e.g. its retry).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from llamda.api.inference import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    EmbeddingsRequest,
    EmbeddingsResponse,
)
from llamda.errors import (
    ContextWindowExceededError,
    UpstreamBadRequestError,
    UpstreamUnavailableError,
)
from llamda.providers.inference.base import unsupported
from llamda.providers.inference.config import LlamaCppConfig, packaged_gguf
from llamda.providers.inference.fields import upstream_fields

# Our (OpenAI/vLLM) names → llama-cpp-python's.
_LLAMA_CPP_NAMES = {"repetition_penalty": "repeat_penalty"}
_LLAMA_CPP_EXTRAS = (
    "frequency_penalty",
    "presence_penalty",
    "top_k",
    "min_p",
    "repetition_penalty",
)


def _map_error(provider_id: str, exc: Exception) -> Exception:
    message = f"{provider_id}: {exc}"
    if "context window" in str(exc).lower() or "exceed context" in str(exc).lower():
        return ContextWindowExceededError(message)
    if isinstance(exc, ValueError):
        return UpstreamBadRequestError(message)
    return UpstreamUnavailableError(message)


class LlamaCppProvider:
    def __init__(self, provider_id: str, provider_type: str, config: LlamaCppConfig):
        self.provider_id = provider_id
        self.provider_type = provider_type
        self._config = config
        self._llm: Any = None
        self._lock = threading.Lock()  # one generation at a time
        self._cancel: threading.Event | None = None  # the running generation's, under _lock

    def _model(self) -> Any:
        if self._llm is None:
            try:
                from llama_cpp import Llama  # the `local` extra

                path = self._config.model_path or packaged_gguf(self._config.model_package or "")
            except (ImportError, FileNotFoundError) as exc:
                raise UpstreamUnavailableError(
                    f"{self.provider_id}: {exc} (scripts/bootstrap --with-local)"
                ) from None
            self._llm = Llama(
                model_path=path,
                n_ctx=self._config.n_ctx,
                n_threads=self._config.n_threads,
                chat_format=self._config.chat_format,
                embedding=self._config.embedding,
                verbose=False,
            )
            self._llm.create_completion = self._cancellable(self._llm.create_completion)
        return self._llm

    def _cancellable(self, create_completion: Callable[..., Any]) -> Callable[..., Any]:
        """``create_completion`` with a stopping criterion that ends the generation at the next
        token once the running request is given up. Every generation goes through it: the
        chat handlers of llama-cpp-python end in ``llama.create_completion`` (and
        ``create_chat_completion`` takes no stopping criteria of its own). A logits processor
        would not do: it runs in a ctypes callback, where exceptions are swallowed."""
        from llama_cpp import StoppingCriteriaList

        def given_up(input_ids: Any, logits: Any) -> bool:
            return self._cancel is not None and self._cancel.is_set()

        def create(*args: Any, stopping_criteria: Any = None, **kwargs: Any) -> Any:
            criteria = StoppingCriteriaList([given_up, *(stopping_criteria or [])])
            return create_completion(*args, stopping_criteria=criteria, **kwargs)

        return create

    @contextlib.contextmanager
    def _holding(self, cancel: threading.Event) -> Iterator[bool]:
        """Hold the model for one request; yields False when it was given up while waiting."""
        with self._lock:
            self._cancel = cancel
            try:
                yield not cancel.is_set()
            finally:
                self._cancel = None

    async def _call(self, fn: Callable[[Any], Any]) -> Any:
        cancel = threading.Event()

        def locked() -> Any:
            with self._holding(cancel) as wanted:
                return fn(self._model()) if wanted else None

        try:
            return await asyncio.to_thread(locked)
        except (ValueError, RuntimeError) as exc:
            raise _map_error(self.provider_id, exc) from None
        finally:
            # Returned, failed, timed out or cancelled: a generation still running in the
            # thread stops at its next token and releases the model.
            cancel.set()

    async def _stream(
        self, fn: Callable[[Any], Iterator[dict[str, Any]]]
    ) -> AsyncIterator[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        cancel = threading.Event()

        def put(kind: str, value: Any) -> None:
            if cancel.is_set():
                return  # nobody reads any more (and the loop may be gone)
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
            except RuntimeError:
                cancel.set()  # the event loop is closed

        def produce() -> None:
            try:
                with self._holding(cancel) as wanted:
                    if not wanted:
                        return
                    for item in fn(self._model()):
                        put("item", item)
            except Exception as exc:
                put("error", exc)
            put("end", None)

        threading.Thread(target=produce, daemon=True).start()
        try:
            while True:
                kind, value = await queue.get()
                if kind == "end":
                    return
                if kind == "error":
                    raise _map_error(self.provider_id, value)
                yield value
        finally:
            cancel.set()  # closed early, timed out or cancelled: stop at the next token

    def _sampling(self, request: ChatCompletionRequest | CompletionRequest) -> dict[str, Any]:
        # The one field check (fields.py): a field llama.cpp cannot honour is a 400.
        fields = upstream_fields(request, self.provider_type, self._config.image_url_allow)
        options: dict[str, Any] = {
            _LLAMA_CPP_NAMES.get(name, name): fields[name]
            for name in _LLAMA_CPP_EXTRAS
            if name in fields
        }
        limit = getattr(request, "token_limit", None) or getattr(request, "max_tokens", None)
        if limit:
            options["max_tokens"] = limit
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.top_p is not None:
            options["top_p"] = request.top_p
        if request.stop is not None:
            options["stop"] = request.stop
        if request.seed is not None:
            options["seed"] = request.seed
        return options

    def _chat_args(self, request: ChatCompletionRequest) -> dict[str, Any]:
        args = {
            "messages": [m.model_dump(exclude_none=True) for m in request.messages],
            **self._sampling(request),
        }
        if request.tools:
            args["tools"] = [t.model_dump(exclude_none=True) for t in request.tools]
            if request.tool_choice is not None:
                args["tool_choice"] = (
                    request.tool_choice
                    if isinstance(request.tool_choice, str)
                    else request.tool_choice.model_dump()
                )
        if request.response_format is not None and request.response_format.type != "text":
            fmt: dict[str, Any] = {"type": "json_object"}
            if request.response_format.json_schema is not None:
                fmt["schema"] = request.response_format.json_schema.schema_
            args["response_format"] = fmt
        return args

    async def chat(self, request: ChatCompletionRequest, model: str) -> ChatCompletion:
        args = self._chat_args(request)
        reply = await self._call(lambda llm: llm.create_chat_completion(**args))
        return ChatCompletion.model_validate({**reply, "model": request.model})

    async def chat_stream(
        self, request: ChatCompletionRequest, model: str
    ) -> AsyncIterator[ChatCompletionChunk]:
        args = self._chat_args(request)
        async for chunk in self._stream(
            lambda llm: llm.create_chat_completion(**args, stream=True)
        ):
            yield ChatCompletionChunk.model_validate({**chunk, "model": request.model})

    async def completion(self, request: CompletionRequest, model: str) -> Completion:
        options = self._sampling(request)
        reply = await self._call(lambda llm: llm.create_completion(request.prompt, **options))
        return Completion.model_validate({**reply, "model": request.model})

    async def completion_stream(
        self, request: CompletionRequest, model: str
    ) -> AsyncIterator[dict[str, Any]]:
        options = self._sampling(request)
        async for chunk in self._stream(
            lambda llm: llm.create_completion(request.prompt, stream=True, **options)
        ):
            yield {**chunk, "model": request.model}

    async def embeddings(self, request: EmbeddingsRequest, model: str) -> EmbeddingsResponse:
        if not self._config.embedding:
            raise unsupported(self.provider_type, "embeddings unless loaded with embedding: true")
        texts = request.texts
        reply = await self._call(lambda llm: llm.create_embedding(texts))
        return EmbeddingsResponse.model_validate({**reply, "model": request.model})

    async def close(self) -> None:
        self._llm = None
