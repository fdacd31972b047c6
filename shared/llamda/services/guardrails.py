"""Guardrails: the one choke point of every model call the inference service makes (chat,
completions, streamed or not). ``InferenceService``'s public methods call through here, so
routers, agents, eval and batches cannot reach a model unguarded; only a shield's own judge
model (Llama Guard) uses the explicitly named ``InferenceService.unguarded_chat``.

Shields come from the requested model (``input_shields`` / ``output_shields`` in the run
config; they govern its fallbacks too) plus the request (``guardrails: {input: [...],
output: [...]}``). Input shields judge everything that reaches the model: every message
(system, developer, user, assistant, tool; earlier turns too), the text parts of multimodal
content, the arguments of earlier tool calls, tool definitions, and a completion's prompt.
Output shields judge the reply: its text and its tool calls (name and arguments). A blocked
input never reaches the model. A redacting shield (rules with ``action: redact``, Bedrock
ANONYMIZED) lets content pass masked, in each message it was found in; where a masked value
cannot be written back (a tool definition, tool-call arguments that would stop being JSON) the
content is blocked instead. On a block, ``guardrails.on_violation`` decides: ``error`` → 400
naming the violation; ``refuse`` → a normal reply carrying the refusal with finish_reason
``content_filter`` (a request may choose with ``guardrails.on_violation``).

Streams: input shields run before the first token. With output shields the reply is generated
in full, checked, then streamed out, so unsafe text is never sent; without output shields it
streams token by token.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from llamda.api.inference import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
)
from llamda.config import GuardrailsConfig
from llamda.errors import GuardrailInterventionError, NotFoundError, ServiceUnavailableError
from llamda.observability import record_metrics
from llamda.providers.inference.base import new_id, now
from llamda.providers.safety.base import Direction
from llamda.services.inference import Served
from llamda.services.models import ModelsService
from llamda.services.safety import SafetyService

Request = ChatCompletionRequest | CompletionRequest
Call = Callable[[Any], Awaitable[Served[Any]]]


class Blocked(Exception):
    def __init__(self, shield_id: str, direction: str, message: str, categories: list[str]):
        super().__init__(message)
        self.shield_id, self.direction, self.message, self.categories = (
            shield_id,
            direction,
            message,
            categories,
        )


@dataclass
class Segment:
    """One text a shield judges, and how to write its redacted form back (None: it cannot be
    redacted in place, so a redaction there blocks; a put returning False likewise)."""

    text: str
    put: Callable[[str], bool] | None = None


def _setter(holder: Any, key: Any) -> Callable[[str], bool]:
    def put(text: str) -> bool:
        if isinstance(holder, dict | list):
            holder[key] = text
        else:
            setattr(holder, key, text)
        return True

    return put


def _json_setter(holder: Any, key: str, original: str) -> Callable[[str], bool]:
    """Writes redacted tool-call arguments back only if they are still JSON (when they were)."""

    def put(text: str) -> bool:
        if _is_json(original) and not _is_json(text):
            return False
        return _setter(holder, key)(text)

    return put


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _content_segments(message: dict[str, Any]) -> list[Segment]:
    content = message.get("content")
    if isinstance(content, str):
        return [Segment(content, _setter(message, "content"))]
    if isinstance(content, list):  # text parts; images are not judged
        return [
            Segment(part["text"], _setter(part, "text"))
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        ]
    return []


def chat_input_segments(body: dict[str, Any]) -> list[Segment]:
    """Everything of a chat request that reaches the model (a dict of the request)."""
    segments: list[Segment] = []
    for message in body.get("messages", []):
        segments += _content_segments(message)
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            segments.append(Segment(str(function.get("name", ""))))
            arguments = str(function.get("arguments", ""))
            segments.append(Segment(arguments, _json_setter(function, "arguments", arguments)))
    for tool in body.get("tools") or []:
        segments.append(Segment(json.dumps(tool.get("function", {}), ensure_ascii=False)))
    response_format = body.get("response_format") or {}
    if response_format.get("json_schema"):
        segments.append(Segment(json.dumps(response_format["json_schema"], ensure_ascii=False)))
    return [s for s in segments if s.text]


def completion_input_segments(body: dict[str, Any]) -> list[Segment]:
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [Segment(prompt, _setter(body, "prompt"))] if prompt else []
    return [Segment(p, _setter(prompt, i)) for i, p in enumerate(prompt or []) if p]


def chat_output_segments(reply: ChatCompletion) -> list[Segment]:
    segments: list[Segment] = []
    for choice in reply.choices:
        message = choice.message
        for key in ("content", "refusal"):
            if getattr(message, key):
                segments.append(Segment(getattr(message, key), _setter(message, key)))
        for call in message.tool_calls or []:
            segments.append(Segment(call.function.name))
            args = call.function.arguments
            segments.append(Segment(args, _json_setter(call.function, "arguments", args)))
    return [s for s in segments if s.text]


def completion_output_segments(reply: Completion) -> list[Segment]:
    return [Segment(c.text, _setter(c, "text")) for c in reply.choices if c.text]


def _spread(parts: list[tuple[Any, str]], text: str) -> bool:
    """A streamed text (the ``key`` of several holders) replaced by ``text``: all of it in the
    first holder, the others emptied."""
    for i, (holder, key) in enumerate(parts):
        _setter(holder, key)(text if i == 0 else "")
    return True


def chat_stream_segments(chunks: list[ChatCompletionChunk]) -> list[Segment]:
    """The streamed reply's text and tool calls, each rebuilt from its deltas (per choice:
    with ``n`` > 1 each choice is its own text, and a redaction stays in its choice)."""
    content: dict[int, list[tuple[Any, str]]] = {}
    names: dict[tuple[int, int], str] = {}
    arguments: dict[tuple[int, int], list[tuple[Any, str]]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            delta = choice.delta
            if delta.content:
                content.setdefault(choice.index, []).append((delta, "content"))
            for call in delta.tool_calls or []:
                function = call.function or {}
                key = (choice.index, call.index)
                if function.get("name"):
                    names[key] = names.get(key, "") + function["name"]
                if function.get("arguments"):
                    arguments.setdefault(key, []).append((function, "arguments"))
    segments: list[Segment] = []
    for _, held in sorted(content.items()):
        text = "".join(h.content for h, _ in held)
        segments.append(Segment(text, lambda t, parts=held: _spread(parts, t)))
    for index in sorted(set(names) | set(arguments)):
        segments.append(Segment(names.get(index, "")))
        parts = arguments.get(index, [])
        args = "".join(h["arguments"] for h, _ in parts)

        def put(t: str, parts: list[tuple[Any, str]] = parts, args: str = args) -> bool:
            return (not _is_json(args) or _is_json(t)) and _spread(parts, t)

        segments.append(Segment(args, put))
    return [s for s in segments if s.text]


def completion_stream_segments(chunks: list[dict[str, Any]]) -> list[Segment]:
    parts = [
        (choice, "text")
        for chunk in chunks
        for choice in chunk.get("choices") or []
        if isinstance(choice, dict) and choice.get("text")
    ]
    if not parts:
        return []
    text = "".join(choice["text"] for choice, _ in parts)
    return [Segment(text, lambda t: _spread(parts, t))]


class Guardrails:
    """Applies shields around a routed model call (``call``: the unguarded routed call)."""

    def __init__(
        self, config: GuardrailsConfig, models: ModelsService, safety: SafetyService | None
    ):
        self._config = config
        self._models = models
        self._safety = safety

    async def _shields(self, request: Request) -> tuple[list[str], list[str]]:
        """The request's shields, and every model's that may serve it: the requested model,
        its fallbacks, and — so that a private alias or fallback cannot walk around them — any
        visible model (run-config, shared or the tenant's own) that reaches the same upstream
        model (provider and provider model id)."""
        model = await self._models.get(request.model)
        chain = [model]
        for fallback in dict.fromkeys(
            [*model.fallbacks, *model.context_window_fallbacks, *model.content_policy_fallbacks]
        ):
            with contextlib.suppress(NotFoundError):
                chain.append(await self._models.get(fallback))
        targets = {(m.provider_id, m.provider_resource_id) for m in chain}
        # Run-config models only: the other run-config models suffice (no I/O per request).
        only_static = all(m.source == "run_config" for m in chain)
        candidates = self._models.static() if only_static else await self._models.list()
        chain += [m for m in candidates if (m.provider_id, m.provider_resource_id) in targets]
        extra = request.guardrails
        inputs = [*(s for m in chain for s in m.input_shields), *(extra.input if extra else [])]
        outputs = [*(s for m in chain for s in m.output_shields), *(extra.output if extra else [])]
        if (inputs or outputs) and self._safety is None:
            raise ServiceUnavailableError(
                f"model '{request.model}' needs shields but safety is not available here"
            )
        return list(dict.fromkeys(inputs)), list(dict.fromkeys(outputs))

    async def _judge(
        self,
        shields: list[str],
        segments: list[Segment],
        direction: Direction,
        param: str,
        clean: set[tuple[str, str, str]] | None = None,
    ) -> bool:
        """Run each shield on all segments in turn (a later shield sees earlier redactions);
        raise Blocked, or return whether anything was redacted. With ``clean`` (an agent
        run's verdicts), a text a shield passed unchanged before is not judged again."""
        assert self._safety is not None
        if not segments:
            return False
        changed = False
        for shield_id in shields:
            keys = [(shield_id, direction, _digest(s.text)) for s in segments]
            todo = [i for i, key in enumerate(keys) if clean is None or key not in clean]
            if not todo:
                continue
            if (
                direction == "output"
                and sum(len(s.text) for s in segments) > self._safety.max_chars
            ):
                # Not the client's input: a reply that cannot be judged must not pass.
                raise Blocked(
                    shield_id,
                    direction,
                    "The reply is too long for the output shields to judge.",
                    ["too_long_to_judge"],
                )
            verdict = await self._safety.judge(
                shield_id,
                [segments[i].text for i in todo],
                direction,
                param=param,
            )
            blocked = verdict.blocked
            message = verdict.user_message or "Blocked by a guardrail."
            redacted: set[int] = set()
            for index, text in sorted(verdict.redactions.items()):
                segment = segments[todo[index]]
                if segment.put is None or not segment.put(text):
                    blocked = True  # found where it cannot be masked: it must not pass
                    message = "Sensitive information was found where it cannot be masked."
                    break
                segment.text, changed = text, True
                redacted.add(todo[index])
            if blocked:
                record_metrics({"shield": shield_id, "direction": direction}, guardrail_blocks=1)
                raise Blocked(shield_id, direction, message, sorted(verdict.native))
            if clean is not None:
                clean.update(keys[i] for i in todo if i not in redacted)
        return changed

    def _mode(self, request: Request) -> str:
        return (request.guardrails and request.guardrails.on_violation) or self._config.on_violation

    def _error(self, exc: Blocked, request: Request, param: str) -> GuardrailInterventionError:
        return GuardrailInterventionError(
            f"{exc.direction} blocked by shield '{exc.shield_id}': {exc.message} "
            f"(categories: {', '.join(exc.categories) or 'unspecified'})",
            param=param if exc.direction == "input" else None,
        )

    def _chat_refusal(self, exc: Blocked, request: ChatCompletionRequest) -> ChatCompletion:
        if self._mode(request) == "error":
            raise self._error(exc, request, "messages")
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

    def _completion_refusal(self, exc: Blocked, request: CompletionRequest) -> Completion:
        if self._mode(request) == "error":
            raise self._error(exc, request, "prompt")
        return Completion.model_validate(
            {
                "id": new_id("cmpl"),
                "created": now(),
                "model": request.model,
                "choices": [{"index": 0, "text": exc.message, "finish_reason": "content_filter"}],
            }
        )

    async def _answered_by_guardrail(self, value: Any, exc: Blocked, request: Request) -> Served:
        model = await self._models.get(request.model)
        return Served(value, model, request.model, attempts=0, blocked_by=exc.shield_id)

    # -- inputs -----------------------------------------------------------------------------

    async def _guard_chat_input(
        self, request: ChatCompletionRequest, shields: list[str]
    ) -> ChatCompletionRequest:
        if not shields:
            return request
        body = request.model_dump(by_alias=True, exclude_unset=True)
        clean = request._verdicts
        if await self._judge(shields, chat_input_segments(body), "input", "messages", clean):
            redacted = ChatCompletionRequest.model_validate(body)
            redacted._verdicts = clean
            return redacted
        return request

    async def _guard_completion_input(
        self, request: CompletionRequest, shields: list[str]
    ) -> CompletionRequest:
        if not shields:
            return request
        body = request.model_dump(by_alias=True, exclude_unset=True)
        if await self._judge(shields, completion_input_segments(body), "input", "prompt"):
            return CompletionRequest.model_validate(body)
        return request

    async def _held_back[C](
        self, stream: AsyncIterator[C], shield_id: str, size: Callable[[C], int]
    ) -> list[C]:
        """A stream read in full before anything is sent (so it can be judged); one longer
        than the shields can judge is stopped there (its upstream released) and blocked."""
        assert self._safety is not None
        chunks: list[C] = []
        total = 0
        async for chunk in stream:
            chunks.append(chunk)
            total += size(chunk)
            if total > self._safety.max_chars:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()
                raise Blocked(
                    shield_id,
                    "output",
                    "The reply is too long for the output shields to judge.",
                    ["too_long_to_judge"],
                )
        return chunks

    # -- the four model calls -----------------------------------------------------------------

    async def chat(self, request: ChatCompletionRequest, call: Call) -> Served[ChatCompletion]:
        inputs, outputs = await self._shields(request)
        try:
            request = await self._guard_chat_input(request, inputs)
        except Blocked as exc:
            return await self._answered_by_guardrail(self._chat_refusal(exc, request), exc, request)
        served: Served[ChatCompletion] = await call(request)
        if outputs:
            try:
                await self._judge(outputs, chat_output_segments(served.value), "output", "")
            except Blocked as exc:
                served.value = self._chat_refusal(exc, request)
                served.blocked_by = exc.shield_id
        return served

    async def chat_stream(
        self, request: ChatCompletionRequest, call: Call
    ) -> Served[AsyncIterator[ChatCompletionChunk]]:
        inputs, outputs = await self._shields(request)
        try:
            request = await self._guard_chat_input(request, inputs)
        except Blocked as exc:
            refusal = self._chat_refusal(exc, request)
            return await self._answered_by_guardrail(_chat_as_stream(refusal), exc, request)
        served: Served[AsyncIterator[ChatCompletionChunk]] = await call(request)
        if not outputs:
            return served
        try:
            chunks = await self._held_back(served.value, outputs[0], _chat_chunk_size)
            await self._judge(outputs, chat_stream_segments(chunks), "output", "")
        except Blocked as exc:
            served.value = _chat_as_stream(self._chat_refusal(exc, request))
            served.blocked_by = exc.shield_id
            return served
        served.value = _replay(chunks)
        return served

    async def completion(self, request: CompletionRequest, call: Call) -> Served[Completion]:
        inputs, outputs = await self._shields(request)
        try:
            request = await self._guard_completion_input(request, inputs)
        except Blocked as exc:
            return await self._answered_by_guardrail(
                self._completion_refusal(exc, request), exc, request
            )
        served: Served[Completion] = await call(request)
        if outputs:
            try:
                await self._judge(outputs, completion_output_segments(served.value), "output", "")
            except Blocked as exc:
                served.value = self._completion_refusal(exc, request)
                served.blocked_by = exc.shield_id
        return served

    async def completion_stream(
        self, request: CompletionRequest, call: Call
    ) -> Served[AsyncIterator[dict[str, Any]]]:
        inputs, outputs = await self._shields(request)
        try:
            request = await self._guard_completion_input(request, inputs)
        except Blocked as exc:
            refusal = self._completion_refusal(exc, request)
            return await self._answered_by_guardrail(_replay([refusal.model_dump()]), exc, request)
        served: Served[AsyncIterator[dict[str, Any]]] = await call(request)
        if not outputs:
            return served
        try:
            chunks = await self._held_back(served.value, outputs[0], _completion_chunk_size)
            await self._judge(outputs, completion_stream_segments(chunks), "output", "")
        except Blocked as exc:
            served.value = _replay([self._completion_refusal(exc, request).model_dump()])
            served.blocked_by = exc.shield_id
            return served
        served.value = _replay(chunks)
        return served


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def _chat_chunk_size(chunk: ChatCompletionChunk) -> int:
    size = 0
    for choice in chunk.choices:
        size += len(choice.delta.content or "")
        for call in choice.delta.tool_calls or []:
            size += sum(len(v or "") for v in (call.function or {}).values())
    return size


def _completion_chunk_size(chunk: dict[str, Any]) -> int:
    return sum(len(c.get("text") or "") for c in chunk.get("choices") or [] if isinstance(c, dict))


async def _replay[T](items: list[T]) -> AsyncIterator[T]:
    for item in items:
        yield item


async def _chat_as_stream(completion: ChatCompletion) -> AsyncIterator[ChatCompletionChunk]:
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
