"""The inference router: model id → provider, retries, fallbacks and circuit breakers. This is
the only retry loop of the stack (providers and SDK clients do not retry).

Order of things, as LiteLLM users expect: retry the model (jittered exponential backoff,
honouring Retry-After) on 429/5xx/timeouts, then walk its ``fallbacks``; a context-window error
goes straight to ``context_window_fallbacks``, a provider content-policy refusal to
``content_policy_fallbacks``; a guardrail intervention is final. A stream is routed until its
first chunk arrives; after that it never switches provider (the client has seen tokens).
All of it runs within the request's deadline (``Budget``); only failures that say the upstream
is unwell count against its circuit breaker (``_counts_against_upstream``).
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
from llamda.context import add_tokens, provider_data, request_deadline
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
from llamda.services.embeddings import client_reply, upstream_request
from llamda.services.models import ModelsService

if TYPE_CHECKING:
    from llamda.services.guardrails import Guardrails

T = TypeVar("T")
EMBED_BATCH = 128  # texts per upstream embeddings call


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


class Permit:
    """One attempt's admission through a breaker; ``trial`` when it is the half-open probe."""

    __slots__ = ("trial",)

    def __init__(self, trial: bool):
        self.trial = trial


class CircuitBreaker:
    """Opens after ``threshold`` consecutive upstream failures; after ``cooldown`` lets one
    trial through (half-open): its success closes the circuit, its failure opens it again.

    Every admitted attempt ends with ``success``, ``failure`` or ``release``: an outcome that
    says nothing about the upstream's health (the request's own 4xx, a guardrail, a context
    window error, a cancellation) only releases the trial, so the next request may probe."""

    def __init__(
        self, threshold: int, cooldown: float, clock: Callable[[], float] = time.monotonic
    ):
        self.threshold = threshold
        self.cooldown = cooldown
        self.failures = 0
        self.opened_at: float | None = None
        self._trial: Permit | None = None
        self._clock = clock

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if self._clock() - self.opened_at >= self.cooldown else "open"

    def allow(self) -> Permit | None:
        """A permit for one attempt, or None while the circuit refuses."""
        state = self.state
        if state == "closed":
            return Permit(trial=False)
        if state == "half_open" and self._trial is None:
            self._trial = Permit(trial=True)
            return self._trial
        return None

    def success(self, permit: Permit) -> None:
        self.failures, self.opened_at = 0, None
        self.release(permit)

    def failure(self, permit: Permit) -> None:
        self.failures += 1
        if permit.trial or self.failures >= self.threshold:
            self.opened_at = self._clock()
        self.release(permit)

    def release(self, permit: Permit) -> None:
        """End an attempt without a verdict; frees the trial if this permit holds it. Safe to
        call more than once (the router always calls it in ``finally``)."""
        if self._trial is permit:
            self._trial = None

    def snapshot(self) -> dict[str, Any]:
        return {"state": self.state, "consecutive_failures": self.failures}


class Budget:
    """The time one request's routing may use, retries, backoff sleeps and fallbacks included.

    It ends at ``min(start + routing.deadline_seconds, the request's hard deadline)`` (in Lambda
    the function's remaining time less a margin). Each model in the chain may use an equal
    share of what is left when its turn comes (``share_end``): with one fallback left, a
    hanging primary gets half, so the fallback still has time to answer; the last model gets
    everything left. No attempt's timeout and no backoff sleep crosses its model's share."""

    def __init__(self, seconds: float, hard_deadline: float | None, clock: Callable[[], float]):
        self._clock = clock
        now = clock()
        self.ends_at = now + seconds
        if hard_deadline is not None:
            self.ends_at = min(self.ends_at, hard_deadline)
        self.seconds = max(0.0, self.ends_at - now)

    def left(self) -> float:
        return self.ends_at - self._clock()

    def share_end(self, models_left: int) -> float:
        """When the current model's share ends, ``models_left`` counting it."""
        return self._clock() + max(0.0, self.left()) / max(1, models_left)

    def attempt_timeout(self, per_attempt: float, share_end: float) -> float:
        """An attempt's timeout: the per-attempt limit, cut to what is left of the share."""
        return min(per_attempt, share_end - self._clock())

    def fits(self, delay: float, share_end: float) -> bool:
        """Whether sleeping ``delay`` still leaves time before the share ends."""
        return self._clock() + delay < share_end


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
        clock: Callable[[], float] = time.monotonic,
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
        self._clock = clock  # time.monotonic, like the request deadline in llamda.context

    # -- public API: every model call goes through the guardrails ---------------------------

    async def chat(self, request: ChatCompletionRequest) -> Served[ChatCompletion]:
        return await self._guardrails.chat(request, self.unguarded_chat)

    async def unguarded_chat(self, request: ChatCompletionRequest) -> Served[ChatCompletion]:
        """The routed call WITHOUT guardrails: only for a shield's own judge model (Llama
        Guard), which must not be judged by shields again. Everything else uses ``chat``."""
        served = await self._route(request.model, "llm", lambda p, m: p.chat(request, m))
        if request.tool_choice == "none":
            _drop_tool_calls(served.value)
        return served

    async def chat_stream(
        self, request: ChatCompletionRequest
    ) -> Served[AsyncIterator[ChatCompletionChunk]]:
        async def routed(r: ChatCompletionRequest) -> Served[AsyncIterator[ChatCompletionChunk]]:
            served = await self._route(r.model, "llm", lambda p, m: _started(p.chat_stream(r, m)))
            if r.tool_choice == "none":
                served.value = _without_tool_calls(served.value)
            return served

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
        """Providers return floats for what each model can do (services/embeddings.py checks
        ``dimensions`` per model tried, fallbacks included); the reply is encoded as asked."""
        try:
            request.texts  # noqa: B018 - validates the input form
        except ValueError as exc:
            raise BadRequestError(str(exc), param="input") from None
        texts = request.texts
        served: Served[EmbeddingsResponse] | None = None
        # Big requests go upstream in batches, each routed (and timed) on its own: an attempt
        # is a bounded amount of work, so its timeout says something about the upstream, not
        # about the size of one client's request (the breaker is shared by every tenant).
        for start in range(0, len(texts), EMBED_BATCH):
            part = (
                request
                if len(texts) <= EMBED_BATCH
                else request.model_copy(update={"input": texts[start : start + EMBED_BATCH]})
            )
            got = await self._embed(part)
            for item in got.value.data:
                item.index += start
            if served is None:
                served = got
            else:
                served.value.data.extend(got.value.data)
                served.value.usage.prompt_tokens += got.value.usage.prompt_tokens
                served.value.usage.total_tokens += got.value.usage.total_tokens
                served.attempts += got.attempts
        assert served is not None
        served.value = client_reply(served.value, request)
        return served

    async def _embed(self, request: EmbeddingsRequest) -> Served[EmbeddingsResponse]:
        """One routed embeddings call; each model tried gets the request it can honour."""
        asked: dict[str, EmbeddingsRequest] = {}

        def prepare(model: Model) -> None:
            asked["request"] = upstream_request(request, model)

        return await self._route(
            request.model,
            "embedding",
            lambda p, m: p.embeddings(asked["request"], m),
            prepare=prepare,
        )

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
                self._routing.breaker_failure_threshold,
                self._routing.breaker_cooldown_seconds,
                self._clock,
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
        prepare: Callable[[Model], None] | None = None,
    ) -> Served[T]:
        """``prepare`` sees each model before it is tried (it may raise a client error)."""
        budget = Budget(self._routing.deadline_seconds, request_deadline(), self._clock)
        primary = await self._model(model_id, model_type)
        queue: list[str] = [primary.id, *primary.fallbacks]
        tried: set[str] = set()
        failures: list[str] = []
        last: UpstreamError | None = None
        attempts = 0
        out_of_time = False  # time, not the upstreams' answers, ended the routing
        while queue:
            candidate_id = queue.pop(0)
            if candidate_id in tried:
                continue
            if budget.left() <= 0:
                out_of_time = True
                break
            tried.add(candidate_id)
            model = (
                primary
                if candidate_id == primary.id
                else await self._model(candidate_id, model_type)
            )
            if prepare is not None:
                prepare(model)
            breaker = self._breaker(model)
            provider = self.pool.get(model.provider_id)
            models_left = 1 + len({c for c in queue if c not in tried})
            share_end = budget.share_end(models_left)
            last_share = models_left == 1  # its share ends with the whole budget
            for retry in range(self._routing.max_retries + 1):
                permit = breaker.allow()
                if permit is None:
                    if retry == 0:
                        failures.append(f"{model.id}: circuit open")
                    break
                timeout = budget.attempt_timeout(self._routing.timeout_seconds, share_end)
                if timeout <= 0:
                    breaker.release(permit)
                    out_of_time = out_of_time or last_share
                    break
                attempts += 1
                started = time.perf_counter()
                try:
                    try:
                        async with asyncio.timeout(timeout):
                            value = await call(provider, model.provider_resource_id)
                    except TimeoutError:
                        cut = timeout < self._routing.timeout_seconds
                        error: UpstreamError = UpstreamTimeoutError(
                            f"{model.provider_id}: no reply within {_seconds(timeout)}s"
                            + (" (its share of the request deadline)" if cut else "")
                        )
                        out_of_time = out_of_time or (cut and last_share)
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
                            raise  # the request's own fault (4xx): no verdict on the upstream
                        error = exc
                    else:
                        breaker.success(permit)
                        served = Served(value, model, model_id, attempts)
                        _observe(served, (time.perf_counter() - started) * 1000)
                        return served
                    if _counts_against_upstream(error, provider):
                        breaker.failure(permit)
                finally:
                    # Whatever ended the attempt (a 4xx, a guardrail, a context-window error,
                    # a cancellation...), a half-open trial is never left held.
                    breaker.release(permit)
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
                if not budget.fits(delay, share_end):
                    break  # no sleep crosses the share: on to the fallback, or the last error
                await self._sleep(delay)
        detail = "; ".join(dict.fromkeys(failures)) or "no model could be tried"
        if out_of_time:
            within = _seconds(budget.seconds)
            raise UpstreamTimeoutError(
                f"request deadline ({within}s) reached for '{model_id}': {detail}",
                code="deadline_exceeded",
            )
        if last is not None and len(tried) == 1:
            raise last  # one model, its own error
        if last is not None:
            last.message = f"all providers failed for '{model_id}': {detail}"
            raise last
        raise ServiceUnavailableError(f"all providers failed for '{model_id}': {detail}")


def _seconds(value: float) -> str:
    return f"{round(value, 2):g}"


def _counts_against_upstream(error: UpstreamError, provider: InferenceProvider) -> bool:
    """Whether a retryable failure is evidence that the shared upstream is unwell.

    Timeouts, 5xx and connection errors count; so does a 429 on the server's own credentials
    (its quota is shared: shedding load to fallbacks while it lasts is right). A request that
    brings its own key (``X-LlamaStack-Provider-Data``) is still retried, but its failures never
    move the shared breaker: its 429 is its own quota, its connection error may be its own
    malformed key, and one client must not switch the model off for every other client."""
    return error.retryable and not _own_credentials(provider.provider_type)


def _own_credentials(provider_type: str) -> bool:
    data = provider_data()
    stem = provider_type.rpartition("::")[2]  # Llama Stack's keys name the short stem
    names = {stem, stem.replace("-", "_")}
    return any(data.get(f"{name}_api_{kind}") for name in names for kind in ("key", "token"))


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


def _drop_tool_calls(completion: ChatCompletion) -> None:
    """``tool_choice: "none"`` holds whatever the upstream did: a tool call it made anyway is
    dropped (the caller said it would run none), and the choice ends as a plain ``stop``."""
    for choice in completion.choices:
        if choice.message.tool_calls:
            choice.message.tool_calls = None
            if choice.message.content is None:
                choice.message.content = ""
        if choice.finish_reason in ("tool_calls", "function_call"):
            choice.finish_reason = "stop"


async def _without_tool_calls(
    stream: AsyncIterator[ChatCompletionChunk],
) -> AsyncIterator[ChatCompletionChunk]:
    """The streamed form of ``_drop_tool_calls``: tool call deltas never reach the caller."""
    try:
        async for chunk in stream:
            for choice in chunk.choices:
                choice.delta.tool_calls = None
                if choice.finish_reason in ("tool_calls", "function_call"):
                    choice.finish_reason = "stop"
            yield chunk
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


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
    try:
        for item in head:
            yield item
        async for item in rest:
            yield item
    finally:
        # Closed early (client gone, idle, deadline): close the provider's stream now, which
        # releases its upstream connection, instead of whenever it is garbage-collected.
        aclose = getattr(rest, "aclose", None)
        if aclose is not None:
            await aclose()
