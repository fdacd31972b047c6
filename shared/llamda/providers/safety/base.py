"""What every safety provider returns: a verdict, mapped to Llama Stack violations and OpenAI
moderation results by the Safety service."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

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
    ``categories``: OpenAI category → score; ``native``: the source's own categories."""

    blocked: bool = False
    categories: dict[str, float] = field(default_factory=dict)
    native: dict[str, float] = field(default_factory=dict)
    user_message: str | None = None
    redacted_text: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def flagged(self) -> bool:
        return self.blocked or self.redacted_text is not None

    @property
    def level(self) -> Literal["info", "warn", "error"]:
        return "error" if self.blocked else "warn"


class SafetyProvider(Protocol):
    provider_id: str
    provider_type: str

    async def check(
        self, provider_shield_id: str, messages: list[dict[str, Any]], params: dict[str, Any]
    ) -> Verdict:
        """Judge the last message of ``messages`` (OpenAI chat messages as dicts)."""

    async def close(self) -> None: ...


def message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""
