"""Config models of the safety providers (light to import)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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
    """Defaults for rules shields; a shield's params may override each."""

    action: Literal["block", "redact"] = "block"
    pii: list[str] = Field(
        default_factory=lambda: [
            "email",
            "phone",
            "ip_address",
            "iban",
            "credit_card",
            "aws_access_key",
            "aws_secret_key",
        ]
    )
    keywords: list[str] = Field(default_factory=list)
    patterns: dict[str, str] = Field(default_factory=dict, description="name → regex")
