"""The inference router: model id → provider, retries, fallbacks and circuit breakers. This is
the only retry loop of the stack (providers and SDK clients do not retry).

Order of things, as LiteLLM users expect: retry the model (jittered exponential backoff,
honouring Retry-After) on 429/5xx/timeouts, then walk its ``fallbacks``; a context-window error
goes straight to ``context_window_fallbacks``, a provider content-policy refusal to
``content_policy_fallbacks``; a guardrail intervention is final. A stream is routed until its
first chunk arrives; after that it never switches provider (the client has seen tokens).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from llamda.api.inference import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    EmbeddingsRequest,
    EmbeddingsResponse,
)
from llamda.api.models import Model
from llamda.config import RoutingConfig, RunConfig
from llamda.context import add_tokens
from llamda.errors import (
    BadRequestError,
    ContentPolicyError,
    ContextWindowExceededError,
    GuardrailInterventionError,
    ServiceUnavailableError,
    UpstreamError,
    UpstreamTimeoutError,
)
from llamda.observability import logger, record_metrics
from llamda.providers.inference.base import InferenceProvider
from llamda.providers.registry import get_spec, load_implementation
from llamda.services.models import ModelsService

if TYPE_CHECKING:
    from llamda.services.guardrails import Guardrails

T = TypeVar("T")


@dataclass
class Served[T]:
    """A result and who produced it."""

    value: T
    model: Model
    requested: str
    attempts: int
    blocked_by: str | None = None  # a guardrail's shield id, when one answered instead

    @property
    def provider_id(self) -> str:
        return f"guardrail:{self.blocked_by}" if self.blocked_by else self.model.provider_id

    @property
    def fell_back(self) -> bool:
        return self.model.id != self.requested


class CircuitBreaker:
    """Opens after ``threshold`` consecutive failures; after ``cooldown`` lets one trial through
    (half-open): its success closes the circuit, its failure opens it again."""

    def __init__(
        self, threshold: int, cooldown: float, clock: Callable[[], float] = time.monotonic
    ):
        self.threshold = threshold
        self.cooldown = cooldown
        self.failures = 0
        self.opened_at: float | None = None
        self._trial = False
        self._clock = clock

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if self._clock() - self.opened_at >= self.cooldown else "open"

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial:
            self._trial = True
            return True
        return False

    def success(self) -> None:
        self.failures, self.opened_at, self._trial = 0, None, False

    def failure(self) -> None:
        self.failures += 1
        if self._trial or self.failures >= self.threshold:
            self.opened_at = self._clock()
        self._trial = False

    def snapshot(self) -> dict[str, Any]:
        return {"state": self.state, "consecutive_failures": self.failures}


class ProviderPool:
    """Provider instances by id, built on first use (imports stay lazy)."""

    def __init__(self, config: RunConfig):
        self._config = config
        self._providers: dict[str, InferenceProvider] = {}

    def get(self, provider_id: str) -> InferenceProvider:
        if provider_id not in self._providers:
            found = self._config.provider(provider_id)
            if found is None or found[0] != "inference":
                raise ServiceUnavailableError(f"provider '{provider_id}' is not configured")
            api, entry = found
            spec = get_spec(api, entry.provider_type)
            assert spec is not None  # checked when the config was loaded
            try:
                cls = load_implementation(spec)
            except ImportError as exc:
                raise ServiceUnavailableError(
                    f"provider '{provider_id}' ({entry.provider_type}) is not installed: {exc.name}"
                ) from None
            self._providers[provider_id] = cls(provider_id, entry.provider_type, entry.settings)
        return self._providers[provider_id]

    async def close(self) -> None:
        for provider in self._providers.values():
            await provider.close()


class InferenceService:
    def __init__(
        self,
        config: RunConfig,
        models: ModelsService,
        pool: ProviderPool | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        guardrails: Guardrails | None = None,
    ):
        from llamda.services.guardrails import Guardrails  # it imports Served from here

        self._routing: RoutingConfig = config.routing
        self._models = models
        self.pool = pool or ProviderPool(config)
        self._breakers: dict[tuple[str, str], CircuitBreaker] = {}
        self._sleep = sleep
        # Without safety, a model or request that names shields is refused (503), never
        # served unguarded.
        self._guardrails = guardrails or Guardrails(config.guardrails, models, None)

    # -- public API: every model call goes through the guardrails ---------------------------

    async def chat(self, request: ChatCompletionRequest) -> Served[ChatCompletion]:
        return await self._guardrails.chat(request, self.unguarded_chat)

    async def unguarded_chat(self, request: ChatCompletionRequest) -> Served[ChatCompletion]:
        """The routed call WITHOUT guardrails: only for a shield's own judge model (Llama
        Guard), which must not be judged by shields again. Everything else uses ``chat``."""
        return await self._route(request.model, "llm", lambda p, m: p.chat(request, m))

    async def chat_stream(
        self, request: ChatCompletionRequest
    ) -> Served[AsyncIterator[ChatCompletionChunk]]:
        async def routed(r: ChatCompletionRequest) -> Served[AsyncIterator[ChatCompletionChunk]]:
            return await self._route(r.model, "llm", lambda p, m: _started(p.chat_stream(r, m)))

        return await self._guardrails.chat_stream(request, routed)

    async def completion(self, request: CompletionRequest) -> Served[Completion]:
        async def routed(r: CompletionRequest) -> Served[Completion]:
            return await self._route(r.model, "llm", lambda p, m: p.completion(r, m))

        return await self._guardrails.completion(request, routed)

    async def completion_stream(
        self, request: CompletionRequest
    ) -> Served[AsyncIterator[dict[str, Any]]]:
        async def routed(r: CompletionRequest) -> Served[AsyncIterator[dict[str, Any]]]:
            return await self._route(
                r.model, "llm", lambda p, m: _started(p.completion_stream(r, m))
            )

        return await self._guardrails.completion_stream(request, routed)

    async def embeddings(self, request: EmbeddingsRequest) -> Served[EmbeddingsResponse]:
        try:
            request.texts  # noqa: B018 - validates the input form
        except ValueError as exc:
            raise BadRequestError(str(exc), param="input") from None
        return await self._route(request.model, "embedding", lambda p, m: p.embeddings(request, m))

    def breaker_states(self, provider_id: str) -> dict[str, Any]:
        return {
            model: breaker.snapshot()
            for (pid, model), breaker in self._breakers.items()
            if pid == provider_id
        }

    async def close(self) -> None:
        await self.pool.close()

    # -- routing ----------------------------------------------------------------------------

    async def _model(self, model_id: str, model_type: str) -> Model:
        model = await self._models.get(model_id)
        wanted = {"llm": "an llm", "embedding": "an embedding model"}[model_type]
        if model.model_type != model_type:
            raise BadRequestError(
                f"model '{model_id}' is a {model.model_type} model, not {wanted}",
                param="model",
                code="wrong_model_type",
            )
        return model

    def _breaker(self, model: Model) -> CircuitBreaker:
        key = (model.provider_id, model.provider_resource_id)
        if key not in self._breakers:
            self._breakers[key] = CircuitBreaker(
                self._routing.breaker_failure_threshold, self._routing.breaker_cooldown_seconds
            )
        return self._breakers[key]

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        ceiling = min(
            self._routing.backoff_max_seconds, self._routing.backoff_base_seconds * 2**attempt
        )
        return random.uniform(ceiling / 2, ceiling)

    async def _route(
        self,
        model_id: str,
        model_type: str,
        call: Callable[[InferenceProvider, str], Awaitable[T]],
    ) -> Served[T]:
        primary = await self._model(model_id, model_type)
        queue: list[str] = [primary.id, *primary.fallbacks]
        tried: set[str] = set()
        failures: list[str] = []
        last: UpstreamError | None = None
        attempts = 0
        while queue:
            candidate_id = queue.pop(0)
            if candidate_id in tried:
                continue
            tried.add(candidate_id)
            model = (
                primary
                if candidate_id == primary.id
                else await self._model(candidate_id, model_type)
            )
            breaker = self._breaker(model)
            if not breaker.allow():
                failures.append(f"{model.id}: circuit open")
                continue
            provider = self.pool.get(model.provider_id)
            for retry in range(self._routing.max_retries + 1):
                attempts += 1
                started = time.perf_counter()
                try:
                    async with asyncio.timeout(self._routing.timeout_seconds):
                        value = await call(provider, model.provider_resource_id)
                except TimeoutError:
                    error: UpstreamError = UpstreamTimeoutError(
                        f"{model.provider_id}: no reply within {self._routing.timeout_seconds:g}s"
                    )
                except GuardrailInterventionError:
                    raise
                except ContextWindowExceededError as exc:
                    if not model.context_window_fallbacks:
                        raise
                    queue = list(model.context_window_fallbacks)
                    last = exc
                    break
                except ContentPolicyError as exc:
                    if not model.content_policy_fallbacks:
                        raise
                    queue = list(model.content_policy_fallbacks)
                    last = exc
                    break
                except UpstreamError as exc:
                    if not exc.retryable:
                        raise
                    error = exc
                else:
                    breaker.success()
                    served = Served(value, model, model_id, attempts)
                    _observe(served, (time.perf_counter() - started) * 1000)
                    return served
                breaker.failure()
                record_metrics({"provider": model.provider_id, "model": model.id}, errors=1)
                last = error
                failures.append(f"{model.id}: {error.message}")
                logger.warning(
                    "inference attempt failed",
                    model=model.id,
                    provider=model.provider_id,
                    status=error.status_code,
                    retry=retry,
                )
                delay = self._delay(retry, error.retry_after)
                if retry >= self._routing.max_retries or delay > self._routing.backoff_max_seconds:
                    break
                if not breaker.allow():
                    break
                await self._sleep(delay)
        if last is not None and len(tried) == 1:
            raise last  # one model, its own error
        detail = "; ".join(dict.fromkeys(failures)) or "no model could be tried"
        if last is not None:
            last.message = f"all providers failed for '{model_id}': {detail}"
            raise last
        raise ServiceUnavailableError(f"all providers failed for '{model_id}': {detail}")


def _observe(served: Served[Any], latency_ms: float) -> None:
    """Who served it, how fast, tokens in/out: one log line and, in Lambda, EMF metrics."""
    usage = getattr(served.value, "usage", None)
    tokens_in = getattr(usage, "prompt_tokens", 0) or 0
    tokens_out = getattr(usage, "completion_tokens", 0) or 0
    add_tokens(tokens_in + tokens_out)  # charged to the caller's tokens-per-minute limit
    logger.info(
        "inference served",
        model=served.requested,
        served_model=served.model.id,
        provider=served.provider_id,
        attempts=served.attempts,
        fallback=served.fell_back,
        latency_ms=round(latency_ms, 1),
        tokens_in=tokens_in,
        tokens_out=tokens_out,
    )
    record_metrics(
        {"provider": served.provider_id, "model": served.model.id},
        requests=1,
        latency_ms=latency_ms,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        fallbacks=1 if served.fell_back else 0,
    )


async def _started[T](stream: AsyncIterator[T]) -> AsyncIterator[T]:
    """Wait for the stream's first item (so errors before any token can still be re-routed),
    then hand back a stream that replays it."""
    iterator = aiter(stream)
    try:
        first = await anext(iterator)
    except StopAsyncIteration:
        return _replay([], iterator)
    return _replay([first], iterator)


async def _replay[T](head: list[T], rest: AsyncIterator[T]) -> AsyncIterator[T]:
    for item in head:
        yield item
    async for item in rest:
        yield item
