"""Amazon Bedrock Guardrails via ApplyGuardrail: assessments (content filters, denied topics,
word filters, sensitive information, contextual grounding) mapped to a verdict. When Bedrock
only ANONYMIZED (masked) content, the masked text is kept and the content may pass.

As a guardrail (``judge``) every text is one content block of one call; when Bedrock only
masked and there were several texts, each text is masked by its own call so each message gets
its own masked text back."""

from __future__ import annotations

from typing import Any

from llamda.aws import AioClients, clients, error_code
from llamda.errors import BadRequestError, ServiceUnavailableError, UpstreamRateLimitError
from llamda.providers.safety.base import Direction, Verdict, message_text, select_keys
from llamda.providers.safety.config import BedrockGuardrailsConfig

CONFIDENCE = {"NONE": 0.0, "LOW": 0.33, "MEDIUM": 0.66, "HIGH": 1.0}
FILTER_TO_OPENAI = {
    "HATE": ("hate",),
    "INSULTS": ("harassment",),
    "SEXUAL": ("sexual",),
    "VIOLENCE": ("violence",),
    "MISCONDUCT": ("illicit",),
}


def assess(reply: dict[str, Any]) -> Verdict:
    """An ApplyGuardrail response as a verdict."""
    if reply.get("action") != "GUARDRAIL_INTERVENED":
        return Verdict()
    native: dict[str, float] = {}
    categories: dict[str, float] = {}
    blocked = False
    anonymized = False

    def hit(name: str, action: str, score: float = 1.0) -> None:
        nonlocal blocked, anonymized
        native[name] = max(native.get(name, 0.0), score)
        blocked = blocked or action == "BLOCKED"
        anonymized = anonymized or action == "ANONYMIZED"

    for assessment in reply.get("assessments", []):
        for f in assessment.get("contentPolicy", {}).get("filters", []):
            if f.get("action", "NONE") != "NONE":
                score = CONFIDENCE.get(f.get("confidence", "HIGH"), 1.0)
                hit(f"content:{f['type']}", f["action"], score)
                for name in FILTER_TO_OPENAI.get(f["type"], ()):
                    categories[name] = max(categories.get(name, 0.0), score)
        for topic in assessment.get("topicPolicy", {}).get("topics", []):
            if topic.get("action", "NONE") != "NONE":
                hit(f"topic:{topic['name']}", topic["action"])
        words = assessment.get("wordPolicy", {})
        for w in words.get("customWords", []):
            if w.get("action", "NONE") != "NONE":
                hit("word:custom", w["action"])
        for w in words.get("managedWordLists", []):
            if w.get("action", "NONE") != "NONE":
                hit(f"word:{w.get('type', 'MANAGED')}", w["action"])
        sensitive = assessment.get("sensitiveInformationPolicy", {})
        for e in sensitive.get("piiEntities", []):
            if e.get("action", "NONE") != "NONE":
                hit(f"pii:{e['type']}", e["action"])
        for r in sensitive.get("regexes", []):
            if r.get("action", "NONE") != "NONE":
                hit(f"regex:{r.get('name', 'custom')}", r["action"])
        for g in assessment.get("contextualGroundingPolicy", {}).get("filters", []):
            if g.get("action", "NONE") != "NONE":
                hit(f"grounding:{g['type']}", g["action"], 1.0 - float(g.get("score", 0.0)))
    output = "".join(o.get("text", "") for o in reply.get("outputs", []))
    metadata = {"action_reason": reply.get("actionReason"), "findings": sorted(native)}
    if blocked:
        return Verdict(
            blocked=True,
            categories=categories,
            native=native,
            user_message=output or "Blocked by guardrail.",
            metadata=metadata,
        )
    if anonymized:
        return Verdict(
            native=native,
            categories=categories,
            redacted_text=output,
            user_message="Sensitive information was masked.",
            metadata=metadata,
        )
    return Verdict(
        blocked=True,
        categories=categories,
        native=native or {"guardrail": 1.0},
        user_message=output or "Blocked by guardrail.",
        metadata=metadata,
    )


class BedrockGuardrailsProvider:
    REQUEST_PARAMS = ("source", "grounding_source", "query")

    def __init__(
        self,
        provider_id: str,
        provider_type: str,
        config: BedrockGuardrailsConfig,
        aio: AioClients = clients,
    ):
        self.provider_id = provider_id
        self.provider_type = provider_type
        self._config = config
        self._aio = aio

    @staticmethod
    def _guardrail(provider_shield_id: str) -> tuple[str, str]:
        identifier, sep, version = provider_shield_id.rpartition(":")
        if not sep or not identifier or not (version.isdigit() or version == "DRAFT"):
            raise ServiceUnavailableError(
                f"shield misconfigured: provider_shield_id {provider_shield_id!r} must be "
                "'<guardrail id or ARN>:<version>' (a number or DRAFT)"
            )
        return identifier, version

    def select(self, shield_params: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
        chosen = select_keys(self.REQUEST_PARAMS, shield_params, request)
        if chosen.get("source") not in (None, "INPUT", "OUTPUT"):
            raise BadRequestError("params.source must be INPUT or OUTPUT", param="params.source")
        return chosen

    async def check(
        self, provider_shield_id: str, messages: list[dict[str, Any]], params: dict[str, Any]
    ) -> Verdict:
        last = messages[-1]
        source = params.get("source") or ("OUTPUT" if last.get("role") == "assistant" else "INPUT")
        return await self._apply(provider_shield_id, [message_text(last)], source, params)

    async def judge(
        self,
        provider_shield_id: str,
        texts: list[str],
        direction: Direction,
        params: dict[str, Any],
    ) -> Verdict:
        source = "OUTPUT" if direction == "output" else "INPUT"
        verdict = await self._apply(provider_shield_id, texts, source, params)
        if verdict.blocked or verdict.redacted_text is None:
            return verdict
        if len(texts) == 1:
            verdict.redactions = {0: verdict.redacted_text}
            return verdict
        for index, text in enumerate(texts):  # masked only: each text's own masking
            one = await self._apply(provider_shield_id, [text], source, params)
            if one.blocked:
                return one
            if one.redacted_text is not None and one.redacted_text != text:
                verdict.redactions[index] = one.redacted_text
        verdict.redacted_text = verdict.redactions.get(len(texts) - 1)
        return verdict

    async def _apply(
        self, provider_shield_id: str, texts: list[str], source: str, params: dict[str, Any]
    ) -> Verdict:
        identifier, version = self._guardrail(provider_shield_id)
        if source not in ("INPUT", "OUTPUT"):
            raise BadRequestError("params.source must be INPUT or OUTPUT", param="params.source")
        content: list[dict[str, Any]] = []
        if params.get("grounding_source"):
            content.append(
                {
                    "text": {
                        "text": str(params["grounding_source"]),
                        "qualifiers": ["grounding_source"],
                    }
                }
            )
        if params.get("query"):
            content.append({"text": {"text": str(params["query"]), "qualifiers": ["query"]}})
        content.extend({"text": {"text": text or " "}} for text in texts)
        client = await self._aio.client(
            "bedrock-runtime",
            region_name=self._config.region_name,
            endpoint_url=self._config.endpoint_url,
            max_attempts=1,
            read_timeout=self._config.timeout_seconds,
        )
        try:
            reply = await client.apply_guardrail(
                guardrailIdentifier=identifier,
                guardrailVersion=version,
                source=source,
                content=content,
            )
        except Exception as exc:
            code = error_code(exc) or type(exc).__name__
            if code == "ThrottlingException":
                raise UpstreamRateLimitError(f"{self.provider_id}: throttled") from None
            # A missing or forbidden guardrail is the deployment's mistake: 503 with the reason.
            raise ServiceUnavailableError(
                f"{self.provider_id}: ApplyGuardrail failed: {code}: {exc}"
            ) from None
        return assess(reply)

    async def close(self) -> None:
        return None
