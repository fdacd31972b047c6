"""Config models of the safety providers (light to import)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

# Bounds on what a rules shield may carry (config or POST /v1/shields): the work per judged
# character stays small and fixed.
MAX_KEYWORDS = 256
MAX_PATTERNS = 32
MAX_PATTERN_CHARS = 1024
# The rules provider's PII detectors (providers/safety/rules.py implements each).
PII_DETECTORS = (
    "email",
    "phone",
    "ip_address",
    "iban",
    "credit_card",
    "aws_access_key",
    "aws_secret_key",
)
PatternName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
Keyword = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LlamaGuardConfig(_Config):
    """Runs a registered Llama Guard model (the shield's provider_shield_id) via Inference."""

    excluded_categories: list[str] = Field(
        default_factory=list, description="Hazard codes to ignore, e.g. [S6, S8]."
    )


class BedrockGuardrailsConfig(_Config):
    """ApplyGuardrail; a shield's provider_shield_id is ``<guardrail id or ARN>:<version>``."""

    region_name: str | None = None
    endpoint_url: str | None = None
    timeout_seconds: float = Field(10.0, gt=0)


class RulesConfig(_Config):
    """Defaults for rules shields; a shield's params may override each. Patterns are RE2
    (linear-time) regexes, compiled when the config is loaded or the shield registered."""

    action: Literal["block", "redact"] = "block"
    pii: list[str] = Field(default_factory=lambda: list(PII_DETECTORS), max_length=16)
    keywords: list[Keyword] = Field(default_factory=list, max_length=MAX_KEYWORDS)
    patterns: dict[PatternName, str] = Field(
        default_factory=dict, description="name → RE2 regex", max_length=MAX_PATTERNS
    )

    @field_validator("pii")
    @classmethod
    def _known_detectors(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(PII_DETECTORS))
        if unknown:
            raise ValueError(f"unknown PII detectors {unknown} (known: {sorted(PII_DETECTORS)})")
        return value

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            return value
        from llamda.providers.safety.rules import compile_pattern  # RE2, only when needed

        for name, pattern in value.items():
            if len(pattern) > MAX_PATTERN_CHARS:
                raise ValueError(f"pattern {name!r} is longer than {MAX_PATTERN_CHARS} characters")
            compile_pattern(name, pattern)  # ValueError when RE2 refuses it
        return value


def shield_rules(defaults: RulesConfig | None, params: dict[str, Any]) -> RulesConfig:
    """A rules shield's rules: the provider's defaults overridden by the shield's params.
    ValueError starting with the bad field (``params.patterns: ...``) when they are invalid."""
    base = defaults.model_dump() if defaults is not None else {}
    try:
        return RulesConfig.model_validate({**base, **params})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"][:1]) or "params"
        message = str(err["msg"]).removeprefix("Value error, ")
        raise ValueError(f"params.{where}: {message}") from None
