"""Safety API shapes: shields (Llama Stack), run-shield (Llama Stack), moderations (OpenAI)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llamda.api.bounds import JsonObject, check_json

SHIELD_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,255}$"
MAX_MODERATION_INPUTS = 256  # each text is one shield call (a model call for Llama Guard)


class Shield(BaseModel):
    identifier: str
    provider_id: str
    provider_resource_id: str
    params: dict[str, Any] = Field(default_factory=dict)
    type: Literal["shield"] = "shield"
    source: Literal["run_config", "registered"]


class ListShieldsResponse(BaseModel):
    data: list[Shield]


class RegisterShieldRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shield_id: str = Field(pattern=SHIELD_ID_PATTERN)
    provider_id: str | None = Field(
        None, max_length=256, description="A safety provider; optional when there is one."
    )
    provider_shield_id: str | None = Field(None, min_length=1, max_length=2048)
    params: JsonObject | None = None
    shared: bool = Field(
        False,
        description="Llamda addition: register for every tenant (admin role); otherwise the "
        "shield is the caller's tenant's own.",
    )


class DeleteShieldResponse(BaseModel):
    id: str
    deleted: bool = True


class ShieldMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | Annotated[list[JsonObject], Field(max_length=256)] | None = None

    @model_validator(mode="after")
    def _bounded_extras(self) -> ShieldMessage:
        """Unknown fields are kept (OpenAI message shapes vary) but bounded like any JSON."""
        if self.model_extra:
            check_json(self.model_extra)
        return self


class RunShieldRequest(BaseModel):
    shield_id: str = Field(min_length=1)
    messages: list[ShieldMessage] = Field(min_length=1, max_length=1024)
    params: JsonObject | None = None


class SafetyViolation(BaseModel):
    violation_level: Literal["info", "warn", "error"]
    user_message: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class RunShieldResponse(BaseModel):
    violation: SafetyViolation | None = None


class ModerationRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    input: str | Annotated[list[str], Field(max_length=MAX_MODERATION_INPUTS)] = Field(
        description=f"Text(s) to classify (at most {MAX_MODERATION_INPUTS}; one shield call each)."
    )
    model: str | None = Field(None, description="A shield id; optional when there is one shield.")


class ModerationResult(BaseModel):
    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float]
    category_applied_input_types: dict[str, list[str]] = Field(default_factory=dict)
    user_message: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class ModerationResponse(BaseModel):
    id: str
    model: str
    results: list[ModerationResult]
