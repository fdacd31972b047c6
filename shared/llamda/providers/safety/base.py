"""What every safety provider returns: a verdict, mapped to Llama Stack violations and OpenAI
moderation results by the Safety service."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from llamda.errors import BadRequestError

# OpenAI's moderation categories (omni-moderation), always present in a result.
OPENAI_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)


@dataclass
class Verdict:
    """``blocked``: the content must not pass. ``redacted``: it may pass as ``redacted_text``.
    ``categories``: OpenAI category → score; ``native``: the source's own categories.
    ``redactions``: for a judgment of several texts, index → that text redacted."""

    blocked: bool = False
    categories: dict[str, float] = field(default_factory=dict)
    native: dict[str, float] = field(default_factory=dict)
    user_message: str | None = None
    redacted_text: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    redactions: dict[int, str] = field(default_factory=dict)

    @property
    def flagged(self) -> bool:
        return self.blocked or self.redacted_text is not None or bool(self.redactions)

    @property
    def level(self) -> Literal["info", "warn", "error"]:
        return "error" if self.blocked else "warn"


Direction = Literal["input", "output"]


class SafetyProvider(Protocol):
    provider_id: str
    provider_type: str

    def select(self, shield_params: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
        """The params one call runs with: the shield's, narrowed by what a request may choose
        (BadRequestError naming ``params.<key>`` for anything else)."""

    async def check(
        self, provider_shield_id: str, messages: list[dict[str, Any]], params: dict[str, Any]
    ) -> Verdict:
        """Run-shield / moderations: judge the last message of ``messages`` (OpenAI chat
        messages as dicts) in the context of the others."""

    async def judge(
        self,
        provider_shield_id: str,
        texts: list[str],
        direction: Direction,
        params: dict[str, Any],
    ) -> Verdict:
        """Guardrails: judge every text (all of what reaches the model, or all of its reply);
        a redacting source returns ``redactions`` by index."""

    async def close(self) -> None: ...


def message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def select_keys(
    allowed: tuple[str, ...], shield_params: dict[str, Any], request: dict[str, Any]
) -> dict[str, Any]:
    """The shield's params with the request's values for the keys a request may set."""
    for key in request:
        if key not in allowed:
            raise BadRequestError(
                f"unknown param {key!r} (a request may set: {', '.join(allowed) or 'nothing'})",
                param=f"params.{key}",
            )
    return {**shield_params, **request}
