"""Llama Guard (3 and 4) through the Inference service: the official prompt with the S1-S14
hazard taxonomy, the verdict parsed from ``safe`` / ``unsafe\\nS1,S10``.

As the model card describes, the prompt asks about the last turn only: a user turn is judged
as 'User' (prompt classification), an assistant turn as 'Agent' (response classification).
As a guardrail (``judge``), everything that reaches the model (system, tool and earlier turns
too) is one User turn, and everything the model answered (text and tool calls) one Agent turn,
so the one turn the model assesses holds all of it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from llamda.api.inference import ChatCompletion, ChatCompletionRequest
from llamda.errors import BadRequestError, ServiceUnavailableError
from llamda.providers.safety.base import Direction, Verdict, message_text, select_keys
from llamda.providers.safety.config import LlamaGuardConfig

CATEGORIES: dict[str, str] = {
    "S1": "Violent Crimes",
    "S2": "Non-Violent Crimes",
    "S3": "Sex Crimes",
    "S4": "Child Exploitation",
    "S5": "Defamation",
    "S6": "Specialized Advice",
    "S7": "Privacy",
    "S8": "Intellectual Property",
    "S9": "Indiscriminate Weapons",
    "S10": "Hate",
    "S11": "Self-Harm",
    "S12": "Sexual Content",
    "S13": "Elections",
    "S14": "Code Interpreter Abuse",
}
# Llama Guard hazard → OpenAI moderation categories (the closest ones; some have none).
TO_OPENAI: dict[str, tuple[str, ...]] = {
    "S1": ("violence", "illicit/violent"),
    "S2": ("illicit",),
    "S3": ("sexual",),
    "S4": ("sexual/minors",),
    "S5": ("harassment",),
    "S9": ("illicit/violent", "violence"),
    "S10": ("hate",),
    "S11": ("self-harm",),
    "S12": ("sexual",),
}

# The model card's prompt, word for word.
TEMPLATE = """Task: Check if there is unsafe content in '{role}' messages in conversations according our safety policy with the below categories.

<BEGIN UNSAFE CONTENT CATEGORIES>
{categories}
<END UNSAFE CONTENT CATEGORIES>

<BEGIN CONVERSATION>

{conversation}

<END CONVERSATION>

Provide your safety assessment for ONLY THE LAST {role} message in the above conversation:
 - First line must read 'safe' or 'unsafe'.
 - If unsafe, a second line must include a comma-separated list of violated categories."""

Chat = Callable[[ChatCompletionRequest], Awaitable[ChatCompletion]]


def build_prompt(messages: list[dict[str, Any]], excluded: set[str]) -> str:
    turns = []
    for message in messages:
        role = message.get("role")
        if role in ("user", "assistant"):
            turns.append(f"{'User' if role == 'user' else 'Agent'}: {message_text(message)}")
    if not turns:
        raise BadRequestError(
            "Llama Guard needs at least one user or assistant message", param="messages"
        )
    role = "Agent" if messages[-1].get("role") == "assistant" else "User"
    categories = "\n".join(
        f"{code}: {name}." for code, name in CATEGORIES.items() if code not in excluded
    )
    return TEMPLATE.format(role=role, categories=categories, conversation="\n\n".join(turns))


def parse(reply: str, excluded: set[str]) -> Verdict:
    lines = [line.strip() for line in reply.strip().splitlines() if line.strip()]
    if not lines or lines[0].lower() not in {"safe", "unsafe"}:
        raise ServiceUnavailableError(
            f"Llama Guard replied in an unexpected format: {reply[:120]!r}"
        )
    if lines[0].lower() == "safe":
        return Verdict()
    codes = re.findall(r"S\d{1,2}", lines[1]) if len(lines) > 1 else []
    codes = [c for c in codes if c not in excluded]
    if not codes and len(lines) > 1:
        return Verdict()  # only excluded categories were violated
    native = {f"{c}: {CATEGORIES.get(c, 'Unknown')}": 1.0 for c in codes} or {"unsafe": 1.0}
    categories = {name: 1.0 for c in codes for name in TO_OPENAI.get(c, ())}
    return Verdict(
        blocked=True,
        categories=categories,
        native=native,
        user_message="I can't help with that: it violates the content policy.",
        metadata={"violation_type": ",".join(codes)},
    )


class LlamaGuardProvider:
    REQUEST_PARAMS = ("excluded_categories",)

    def __init__(
        self, provider_id: str, provider_type: str, config: LlamaGuardConfig, *, chat: Chat
    ):
        self.provider_id = provider_id
        self.provider_type = provider_type
        self._excluded = set(config.excluded_categories)
        self._chat = chat

    def select(self, shield_params: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
        chosen = select_keys(self.REQUEST_PARAMS, shield_params, request)
        codes = request.get("excluded_categories", [])
        if not isinstance(codes, list) or not set(codes) <= set(CATEGORIES):
            raise BadRequestError(
                f"params.excluded_categories must list hazard codes ({', '.join(CATEGORIES)})",
                param="params.excluded_categories",
            )
        chosen["excluded_categories"] = [*shield_params.get("excluded_categories", []), *codes]
        return chosen

    async def judge(
        self,
        provider_shield_id: str,
        texts: list[str],
        direction: Direction,
        params: dict[str, Any],
    ) -> Verdict:
        role = "assistant" if direction == "output" else "user"
        turn = {"role": role, "content": "\n\n".join(t for t in texts if t)}
        return await self.check(provider_shield_id, [turn], params)

    async def check(
        self, provider_shield_id: str, messages: list[dict[str, Any]], params: dict[str, Any]
    ) -> Verdict:
        excluded = self._excluded | set(params.get("excluded_categories", []))
        prompt = build_prompt(messages, excluded)
        request = ChatCompletionRequest.model_validate(
            {
                "model": provider_shield_id,
                "messages": [{"role": "user", "content": prompt}],
                "temperature": 0,
                "max_tokens": 20,
            }
        )
        reply = await self._chat(request)
        return parse(reply.choices[0].message.content or "", excluded)

    async def close(self) -> None:
        return None
