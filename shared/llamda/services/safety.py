"""Safety: run a shield on messages (Llama Stack run-shield), moderate texts (OpenAI
moderations), judge everything a guarded model call sends or answers (guardrails). Shields
name a safety provider; Llama Guard reaches its model through the Inference service's
unguarded call (in-process, no HTTP hop; the judge is not judged again).

Bounds: at most ``guardrails.max_judged_chars`` characters per shield call (more → 400 naming
the field); request params only choose among what the shield configures (no request regex)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from llamda.api.inference import ChatCompletion, ChatCompletionRequest
from llamda.api.safety import (
    ModerationRequest,
    ModerationResponse,
    ModerationResult,
    RunShieldRequest,
    RunShieldResponse,
    SafetyViolation,
)
from llamda.config import RunConfig
from llamda.errors import BadRequestError, ServiceUnavailableError
from llamda.observability import record_metrics
from llamda.providers.inference.base import new_id
from llamda.providers.registry import get_spec, load_implementation
from llamda.providers.safety.base import (
    OPENAI_CATEGORIES,
    Direction,
    SafetyProvider,
    Verdict,
    message_text,
)
from llamda.services.shields import ShieldsService, check_shield_params

Chat = Callable[[ChatCompletionRequest], Awaitable[ChatCompletion]]


def violation_of(verdict: Verdict, shield_id: str) -> SafetyViolation | None:
    if not verdict.flagged:
        return None
    metadata = {**verdict.metadata, "shield_id": shield_id, "categories": sorted(verdict.native)}
    if verdict.redacted_text is not None:
        metadata["redacted_text"] = verdict.redacted_text
    return SafetyViolation(
        violation_level=verdict.level, user_message=verdict.user_message, metadata=metadata
    )


def moderation_of(verdict: Verdict) -> ModerationResult:
    scores = {name: 0.0 for name in OPENAI_CATEGORIES}
    scores.update(verdict.categories)
    scores.update(verdict.native)  # the source's own category names, beside OpenAI's
    return ModerationResult(
        flagged=verdict.flagged,
        categories={name: score > 0 for name, score in scores.items()},
        category_scores=scores,
        category_applied_input_types={
            name: ["text"] for name, score in scores.items() if score > 0
        },
        user_message=verdict.user_message,
        metadata={
            **verdict.metadata,
            **(
                {"redacted_text": verdict.redacted_text}
                if verdict.redacted_text is not None
                else {}
            ),
        },
    )


class SafetyService:
    def __init__(self, config: RunConfig, shields: ShieldsService, chat: Chat):
        self._config = config
        self.shields = shields
        self._chat = chat
        self._providers: dict[str, SafetyProvider] = {}
        self.max_chars = config.guardrails.max_judged_chars
        # The configured shields' params: checked by the stack at start
        # (shields.check_configured_shields), before anything builds this service.

    def validate_shield(self, provider_id: str, params: dict[str, Any]) -> None:
        """A shield's params checked (and its rules compiled) before the shield exists:
        BadRequestError naming the param otherwise."""
        check_shield_params(self._config, provider_id, params)

    def _provider(self, provider_id: str) -> SafetyProvider:
        if provider_id not in self._providers:
            found = self._config.provider(provider_id)
            if found is None or found[0] != "safety":
                raise ServiceUnavailableError(
                    f"shield misconfigured: provider '{provider_id}' "
                    "is not a configured safety provider"
                )
            api, entry = found
            spec = get_spec(api, entry.provider_type)
            assert spec is not None
            cls = load_implementation(spec)
            deps: dict[str, Any] = (
                {"chat": self._chat} if entry.provider_type == "inline::llama-guard" else {}
            )
            self._providers[provider_id] = cls(
                provider_id, entry.provider_type, entry.settings, **deps
            )
        return self._providers[provider_id]

    def _bound(self, size: int, param: str) -> None:
        if size > self.max_chars:
            raise BadRequestError(
                f"{param} is too long to be judged by a shield: {size} characters "
                f"(at most {self.max_chars})",
                param=param,
                code="too_long_to_judge",
            )

    async def check(
        self,
        shield_id: str,
        messages: list[dict[str, Any]],
        params: dict[str, Any] | None = None,
        *,
        param: str = "messages",
    ) -> Verdict:
        """Run-shield / moderations: the last message judged (in the context of the others)."""
        if not messages:
            raise BadRequestError("messages must not be empty", param="messages")
        self._bound(sum(len(message_text(m)) for m in messages), param)
        shield = await self.shields.get(shield_id)
        provider = self._provider(shield.provider_id)
        chosen = provider.select(shield.params, params or {})
        verdict = await provider.check(shield.provider_resource_id, messages, chosen)
        if verdict.flagged:
            record_metrics({"shield": shield_id}, flagged=1)
        return verdict

    async def judge(
        self, shield_id: str, texts: list[str], direction: Direction, *, param: str
    ) -> Verdict:
        """Guardrails: every text of one side of a model call, judged by one shield."""
        self._bound(sum(len(t) for t in texts), param)
        shield = await self.shields.get(shield_id)
        provider = self._provider(shield.provider_id)
        chosen = provider.select(shield.params, {})
        verdict = await provider.judge(shield.provider_resource_id, texts, direction, chosen)
        record_metrics(
            {"shield": shield_id, "direction": direction}, shield_texts_judged=len(texts)
        )
        if verdict.flagged:
            record_metrics({"shield": shield_id}, flagged=1)
        return verdict

    async def run_shield(self, request: RunShieldRequest) -> RunShieldResponse:
        messages = [m.model_dump(exclude_none=True) for m in request.messages]
        verdict = await self.check(request.shield_id, messages, request.params)
        return RunShieldResponse(violation=violation_of(verdict, request.shield_id))

    async def moderate(self, request: ModerationRequest) -> ModerationResponse:
        shield_id = request.model
        if shield_id is None:
            shields = await self.shields.list()
            if len(shields) != 1:
                raise BadRequestError(
                    "model (a shield id) is required when there is not exactly one shield",
                    param="model",
                )
            shield_id = shields[0].identifier
        texts = [request.input] if isinstance(request.input, str) else request.input
        if not texts:
            raise BadRequestError("input must not be empty", param="input")
        results = [
            moderation_of(
                await self.check(shield_id, [{"role": "user", "content": t}], param="input")
            )
            for t in texts
        ]
        return ModerationResponse(id=new_id("modr"), model=shield_id, results=results)

    async def close(self) -> None:
        for provider in self._providers.values():
            await provider.close()
