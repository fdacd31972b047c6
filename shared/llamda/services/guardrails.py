"""Guardrails on chat: input shields before the model, output shields on its reply.

Shields come from the model (``input_shields`` / ``output_shields`` in the run config) plus the
request (``guardrails: {input: [...], output: [...]}``). A blocked input never reaches the model.
A redacting shield (rules with ``action: redact``, Bedrock ANONYMIZED) lets content pass masked.
On a block, ``guardrails.on_violation`` decides: ``error`` → 400 naming the violation;
``refuse`` → a normal reply carrying the refusal with finish_reason ``content_filter``
(a request may choose with ``guardrails.on_violation``).

Streams: input shields run before the first token. With output shields the reply is generated
in full, checked, then streamed out, so unsafe text is never sent; without output shields it
streams token by token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from llamda.api.inference import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest
from llamda.config import GuardrailsConfig
from llamda.errors import GuardrailInterventionError
from llamda.observability import record_metrics
from llamda.providers.inference.base import new_id, now
from llamda.services.inference import InferenceService, Served
from llamda.services.models import ModelsService
from llamda.services.safety import SafetyService


class Blocked(Exception):
    def __init__(self, shield_id: str, direction: str, message: str, categories: list[str]):
        super().__init__(message)
        self.shield_id, self.direction, self.message, self.categories = (
            shield_id,
            direction,
            message,
            categories,
        )


class GuardrailsService:
    def __init__(
        self,
        config: GuardrailsConfig,
        models: ModelsService,
        inference: InferenceService,
        safety: SafetyService,
    ):
        self._config = config
        self._models = models
        self._inference = inference
        self._safety = safety

    async def _shields(self, request: ChatCompletionRequest) -> tuple[list[str], list[str]]:
        model = await self._models.get(request.model)
        extra = request.guardrails
        inputs = [*model.input_shields, *(extra.input if extra else [])]
        outputs = [*model.output_shields, *(extra.output if extra else [])]
        return list(dict.fromkeys(inputs)), list(dict.fromkeys(outputs))

    async def _apply(
        self, shields: list[str], messages: list[dict[str, Any]], direction: str
    ) -> str | None:
        """Run shields on the last message; raise Blocked, or return its redacted text if any."""
        redacted: str | None = None
        for shield_id in shields:
            verdict = await self._safety.check(shield_id, messages)
            if verdict.blocked:
                record_metrics({"shield": shield_id, "direction": direction}, guardrail_blocks=1)
                raise Blocked(
                    shield_id,
                    direction,
                    verdict.user_message or "Blocked by a guardrail.",
                    sorted(verdict.native),
                )
            if verdict.redacted_text is not None:
                redacted = verdict.redacted_text
                messages = [*messages[:-1], {**messages[-1], "content": redacted}]
        return redacted

    def _blocked(self, exc: Blocked, request: ChatCompletionRequest) -> ChatCompletion:
        mode = (request.guardrails and request.guardrails.on_violation) or self._config.on_violation
        if mode == "error":
            raise GuardrailInterventionError(
                f"{exc.direction} blocked by shield '{exc.shield_id}': {exc.message} "
                f"(categories: {', '.join(exc.categories) or 'unspecified'})",
                param="messages" if exc.direction == "input" else None,
            )
        return ChatCompletion.model_validate(
            {
                "id": new_id("chatcmpl"),
                "created": now(),
                "model": request.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": None, "refusal": exc.message},
                        "finish_reason": "content_filter",
                    }
                ],
            }
        )

    async def _guard_input(
        self, request: ChatCompletionRequest, shields: list[str]
    ) -> ChatCompletionRequest:
        if not shields:
            return request
        messages = [m.model_dump(exclude_none=True) for m in request.messages]
        redacted = await self._apply(shields, messages, "input")
        if redacted is None:
            return request
        messages[-1]["content"] = redacted
        return request.model_copy(
            update={
                "messages": ChatCompletionRequest.model_validate(
                    {"model": request.model, "messages": messages}
                ).messages
            }
        )

    async def chat(self, request: ChatCompletionRequest) -> Served[ChatCompletion]:
        inputs, outputs = await self._shields(request)
        try:
            request = await self._guard_input(request, inputs)
        except Blocked as exc:
            return await self._refusal(exc, request)
        served = await self._inference.chat(request)
        message = served.value.choices[0].message if served.value.choices else None
        if outputs and message is not None and message.content:
            try:
                redacted = await self._apply(
                    outputs, [{"role": "assistant", "content": message.content}], "output"
                )
            except Blocked as exc:
                served.value = self._blocked(exc, request)
                served.blocked_by = exc.shield_id
                return served
            if redacted is not None:
                message.content = redacted
        return served

    async def _refusal(
        self, exc: Blocked, request: ChatCompletionRequest
    ) -> Served[ChatCompletion]:
        model = await self._models.get(request.model)
        return Served(
            self._blocked(exc, request), model, request.model, attempts=0, blocked_by=exc.shield_id
        )

    async def chat_stream(
        self, request: ChatCompletionRequest
    ) -> Served[AsyncIterator[ChatCompletionChunk]]:
        inputs, outputs = await self._shields(request)
        try:
            request = await self._guard_input(request, inputs)
        except Blocked as exc:
            refusal = await self._refusal(exc, request)
            return Served(
                _as_stream(refusal.value), refusal.model, request.model, 0, blocked_by=exc.shield_id
            )
        served = await self._inference.chat_stream(request)
        if not outputs:
            return served
        chunks = [chunk async for chunk in served.value]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        if text:
            try:
                redacted = await self._apply(
                    outputs, [{"role": "assistant", "content": text}], "output"
                )
            except Blocked as exc:
                served.value = _as_stream(self._blocked(exc, request))
                served.blocked_by = exc.shield_id
                return served
            if redacted is not None:
                chunks = _redacted_chunks(chunks, redacted)
        served.value = _replay(chunks)
        return served


async def _replay(chunks: list[ChatCompletionChunk]) -> AsyncIterator[ChatCompletionChunk]:
    for chunk in chunks:
        yield chunk


def _redacted_chunks(chunks: list[ChatCompletionChunk], text: str) -> list[ChatCompletionChunk]:
    """The same stream with its text replaced by ``text`` in the first content chunk."""
    out, placed = [], False
    for chunk in chunks:
        if chunk.choices and chunk.choices[0].delta.content:
            if placed:
                continue
            chunk = chunk.model_copy(deep=True)
            chunk.choices[0].delta.content = text
            placed = True
        out.append(chunk)
    return out


async def _as_stream(completion: ChatCompletion) -> AsyncIterator[ChatCompletionChunk]:
    choice = completion.choices[0]
    yield ChatCompletionChunk.model_validate(
        {
            "id": completion.id,
            "created": completion.created,
            "model": completion.model,
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "role": "assistant",
                        "content": choice.message.refusal or choice.message.content,
                    },
                    "finish_reason": choice.finish_reason,
                }
            ],
        }
    )
