"""The inference router's circuit breaker and deadline budget, with an injected clock and sleep.

The router runs for real (config, models registry, sqlite records); only the upstream is a
scripted stand-in, since what is under test is how the router reacts to what it answers.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from llamda.api.inference import ChatCompletion, ChatCompletionRequest
from llamda.config import RunConfig, parse_config
from llamda.context import bind_deadline, bind_provider_data
from llamda.errors import (
    ContextWindowExceededError,
    GuardrailInterventionError,
    UpstreamBadRequestError,
    UpstreamError,
    UpstreamRateLimitError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from llamda.services.inference import Budget, CircuitBreaker, InferenceService, ProviderPool
from llamda.services.models import ModelsService
from llamda.storage.records import build_records

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


REPLY = {
    "id": "c",
    "object": "chat.completion",
    "created": 1,
    "model": "x",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


class Clock:
    """A hand-moved monotonic clock; ``sleep`` moves it instead of waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.woke: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.woke.append(self.now)


# -- the breaker's state machine ------------------------------------------------------------


def test_breaker_closed_open_half_open_closed_and_open_again() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=2, cooldown=30, clock=clock)
    assert breaker.state == "closed"
    for _ in range(2):
        permit = breaker.allow()
        assert permit is not None and not permit.trial
        breaker.failure(permit)
    assert breaker.state == "open" and breaker.allow() is None
    clock.now += 29.9
    assert breaker.allow() is None
    clock.now += 0.1
    assert breaker.state == "half_open"
    trial = breaker.allow()
    assert trial is not None and trial.trial
    assert breaker.allow() is None  # one trial at a time
    breaker.success(trial)
    assert breaker.state == "closed" and breaker.failures == 0
    # ...and open again: threshold failures, cooldown, a failed trial re-opens at once.
    for _ in range(2):
        breaker.failure(breaker.allow())  # type: ignore[arg-type]
    clock.now += 30
    trial = breaker.allow()
    assert trial is not None and trial.trial
    breaker.failure(trial)
    assert breaker.state == "open" and breaker.allow() is None
    clock.now += 30
    assert breaker.allow() is not None  # a new trial after the next cooldown


def test_a_released_trial_lets_the_next_request_probe() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, cooldown=5, clock=clock)
    breaker.failure(breaker.allow())  # type: ignore[arg-type]
    clock.now += 5
    trial = breaker.allow()
    assert trial is not None and trial.trial
    breaker.release(trial)  # e.g. the trial request was a 400: no verdict on the upstream
    breaker.release(trial)  # idempotent
    assert breaker.state == "half_open"
    again = breaker.allow()
    assert again is not None and again.trial


def test_a_late_permit_from_before_the_trial_does_not_free_the_trial() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, cooldown=5, clock=clock)
    early = breaker.allow()  # admitted while closed, still running
    breaker.failure(breaker.allow())  # type: ignore[arg-type]
    clock.now += 5
    trial = breaker.allow()
    assert trial is not None
    breaker.release(early)  # type: ignore[arg-type]
    assert breaker.allow() is None  # the trial is still held by its own request


# -- the budget's arithmetic ------------------------------------------------------------------


def test_budget_shares_and_caps() -> None:
    clock = Clock()
    budget = Budget(120, hard_deadline=clock.now + 8.5, clock=clock)  # Lambda: 10 s - 1.5 s
    assert budget.seconds == 8.5
    share = budget.share_end(models_left=2)  # a primary with one fallback
    assert share == clock.now + 4.25
    assert budget.attempt_timeout(60, share) == 4.25  # not 60
    assert budget.attempt_timeout(2, share) == 2  # the per-attempt limit when smaller
    assert budget.fits(4.0, share) and not budget.fits(4.25, share)
    clock.now += 4.25
    last = budget.share_end(models_left=1)
    assert last == budget.ends_at and budget.attempt_timeout(60, last) == 4.25
    clock.now += 5
    assert budget.left() < 0 and budget.attempt_timeout(60, budget.share_end(1)) <= 0
    local = Budget(120, hard_deadline=None, clock=clock)
    assert local.seconds == 120 and local.attempt_timeout(60, local.share_end(2)) == 60


# -- the router ------------------------------------------------------------------------------

CONFIG = """
apis: [inference]
providers:
  inference:
    - {provider_id: up, provider_type: vllm, config: {url: "http://127.0.0.1:9/v1"}}
    - {provider_id: spare, provider_type: vllm, config: {url: "http://127.0.0.1:9/v1"}}
models:
  - {model_id: primary, provider_id: up, fallbacks: [backup]}
  - {model_id: alone, provider_id: up}
  - {model_id: backup, provider_id: spare}
storage:
  records: {type: sqlite, path: "RECORDS"}
  objects: {type: local, root: "/tmp/unused"}
  vectors: {uri: "/tmp/unused"}
routing: ROUTING
"""

Answer = Callable[[str], Awaitable[Any]]


class Upstream:
    """A provider whose answers the test scripts per model id (a stand-in for the wire)."""

    def __init__(self, provider_id: str, clock: Clock) -> None:
        self.provider_id = provider_id
        self.provider_type = "remote::vllm"
        self.clock = clock
        self.calls: list[str] = []
        self.script: list[Answer] = []

    async def chat(self, request: ChatCompletionRequest, model: str) -> ChatCompletion:
        self.calls.append(model)
        answer = self.script.pop(0) if self.script else ok
        return await answer(model)

    async def close(self) -> None:
        return None


async def ok(model: str) -> ChatCompletion:
    return ChatCompletion.model_validate({**REPLY, "model": model})


def fail(error: UpstreamError, clock: Clock | None = None, takes: float = 0.0) -> Answer:
    async def answer(model: str) -> Any:
        if clock is not None:
            clock.now += takes
        raise error

    return answer


async def hang(model: str) -> Any:
    await asyncio.Event().wait()


def hang_after(reached: asyncio.Event) -> Answer:
    async def answer(model: str) -> Any:
        reached.set()
        await asyncio.Event().wait()

    return answer


class Pool(ProviderPool):
    def __init__(self, config: RunConfig, upstreams: dict[str, Upstream]):
        super().__init__(config)
        self.upstreams = upstreams

    def get(self, provider_id: str) -> Any:
        return self.upstreams[provider_id]


class Router:
    def __init__(self, tmp_path: Path, routing: dict[str, Any]) -> None:
        text = CONFIG.replace("RECORDS", str(tmp_path / "r.sqlite3"))
        config = parse_config(
            yaml.safe_load(
                text.replace("ROUTING", yaml.safe_dump(routing, default_flow_style=True))
            ),
            "test",
        )
        self.clock = Clock()
        self.up = Upstream("up", self.clock)
        self.spare = Upstream("spare", self.clock)
        models = ModelsService(config, build_records(config.storage.records))
        self.service = InferenceService(
            config,
            models,
            Pool(config, {"up": self.up, "spare": self.spare}),
            sleep=self.clock.sleep,
            clock=self.clock,
        )

    async def chat(self, model: str) -> Any:
        request = ChatCompletionRequest.model_validate(
            {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        )
        return await self.service._route(model, "llm", lambda p, m: p.chat(request, m))

    def breaker(self, model: str) -> CircuitBreaker:
        return self.service._breakers[("up", model)]


BREAKER = {"max_retries": 0, "breaker_failure_threshold": 1, "breaker_cooldown_seconds": 10}


@pytest.mark.parametrize(
    "outcome",
    [
        UpstreamBadRequestError("up: bad request"),
        UpstreamBadRequestError("up: invalid key", status_code=401),
        ContextWindowExceededError("up: too long"),
        GuardrailInterventionError("blocked"),
    ],
    ids=["400", "401", "context-window", "guardrail"],
)
async def test_a_4xx_during_the_trial_releases_it(tmp_path: Path, outcome: Exception) -> None:
    router = Router(tmp_path, BREAKER)
    router.up.script = [fail(UpstreamUnavailableError("up: down"))]
    with pytest.raises(UpstreamUnavailableError):
        await router.chat("alone")
    assert router.breaker("alone").state == "open"
    router.clock.now += 10
    router.up.script = [fail(outcome)]  # type: ignore[arg-type]
    with pytest.raises(type(outcome)):
        await router.chat("alone")  # the trial: the request's own fault
    assert router.breaker("alone").state == "half_open"
    served = await router.chat("alone")  # before the fix: "circuit open", forever
    assert served.value.choices[0].message.content == "ok"
    assert router.breaker("alone").state == "closed"


async def test_a_cancelled_trial_is_released(tmp_path: Path) -> None:
    router = Router(tmp_path, BREAKER)
    router.up.script = [fail(UpstreamUnavailableError("up: down"))]
    with pytest.raises(UpstreamUnavailableError):
        await router.chat("alone")
    router.clock.now += 10
    reached = asyncio.Event()
    router.up.script = [hang_after(reached)]
    trial = asyncio.create_task(router.chat("alone"))
    await reached.wait()  # the trial is at the upstream
    assert router.breaker("alone").allow() is None  # the trial is in flight
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial
    assert router.breaker("alone").state == "half_open"
    assert (await router.chat("alone")).value.choices[0].message.content == "ok"
    assert router.breaker("alone").state == "closed"


async def test_the_requests_own_4xx_never_opens_the_breaker(tmp_path: Path) -> None:
    router = Router(tmp_path, {**BREAKER, "breaker_failure_threshold": 2})
    for _ in range(5):
        router.up.script = [fail(UpstreamBadRequestError("up: invalid key", status_code=401))]
        with pytest.raises(UpstreamBadRequestError):
            await router.chat("alone")
    assert router.breaker("alone").snapshot() == {"state": "closed", "consecutive_failures": 0}


@pytest.mark.parametrize(
    "error",
    [UpstreamRateLimitError("up: slow down"), UpstreamUnavailableError("up: ConnectError")],
    ids=["429", "connection"],
)
async def test_failures_with_the_clients_own_key_do_not_count(
    tmp_path: Path, error: UpstreamError
) -> None:
    router = Router(tmp_path, {**BREAKER, "breaker_failure_threshold": 2, "max_retries": 1})
    bind_provider_data({"vllm_api_key": "sk-client-own"})
    try:
        for _ in range(3):
            router.up.script = [fail(error), fail(error)]
            with pytest.raises(type(error)):
                await router.chat("alone")
        assert len(router.up.calls) == 6  # retried as usual
        assert router.breaker("alone").state == "closed"
    finally:
        bind_provider_data(None)
    # The same failures on the server's own credentials are the upstream's: they count.
    router.up.script = [fail(error), fail(error)]
    with pytest.raises(type(error)):
        await router.chat("alone")
    assert router.breaker("alone").state == "open"


async def test_backoff_never_sleeps_past_the_deadline(tmp_path: Path) -> None:
    router = Router(
        tmp_path,
        {
            "max_retries": 5,
            "backoff_base_seconds": 1,
            "backoff_max_seconds": 8,
            "deadline_seconds": 6,
            "timeout_seconds": 60,
        },
    )
    start = router.clock.now
    router.up.script = [fail(UpstreamUnavailableError("up: busy"), router.clock, 0.5)] * 6
    with pytest.raises(UpstreamError) as err:
        await router.chat("alone")
    assert router.clock.sleeps  # it did back off...
    assert all(woke < start + 6 for woke in router.clock.woke)  # ...never past the deadline
    assert len(router.up.calls) < 6  # the retries that did not fit were not made
    assert err.value.status_code in (503, 504)


async def test_a_hanging_primary_leaves_time_for_the_fallback(tmp_path: Path) -> None:
    # Real time here: the attempt timeout is asyncio's. 2 s in all, half for the primary.
    router = Router(tmp_path, {"max_retries": 2, "deadline_seconds": 2, "timeout_seconds": 60})
    router.service._clock = time.monotonic
    router.up.script = [hang, hang, hang]
    served = await router.chat("primary")
    assert served.model.id == "backup"
    assert router.up.calls == ["primary"]  # its share was spent by one attempt: no retry


async def test_out_of_time_is_a_504_naming_the_deadline(tmp_path: Path) -> None:
    router = Router(tmp_path, {"max_retries": 2, "deadline_seconds": 120, "timeout_seconds": 60})
    router.service._clock = time.monotonic
    bind_deadline(1.0)  # as the Lambda runtime binds it: remaining time less the margin
    try:
        router.up.script = [hang, hang, hang]
        with pytest.raises(UpstreamTimeoutError) as err:
            await router.chat("alone")
    finally:
        bind_deadline(None)
    assert err.value.status_code == 504 and err.value.code == "deadline_exceeded"
    assert re.search(r"request deadline \((1|0\.9\d)s\) reached for 'alone'", err.value.message)
    assert router.up.calls == ["alone"]


async def test_no_time_left_tries_nothing(tmp_path: Path) -> None:
    router = Router(tmp_path, {"max_retries": 2})
    router.service._clock = time.monotonic
    bind_deadline(-1.0)  # Lambda had less time left than the margin
    try:
        with pytest.raises(UpstreamTimeoutError, match="deadline"):
            await router.chat("primary")
    finally:
        bind_deadline(None)
    assert router.up.calls == [] and router.spare.calls == []
