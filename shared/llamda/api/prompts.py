"""Prompts API shapes (Llama Stack 0.7): versioned templates with `{{ variable }}`."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

MAX_TEMPLATE_BYTES = 64 * 1024
MAX_VARIABLES = 64
# Llama Stack's ids: "pmpt_" then 48 hex digits.
PROMPT_ID = r"^pmpt_[0-9a-f]{48}$"
VariableName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
# Control characters other than tab and newlines make no sense in a prompt and cost six bytes
# each in JSON: refused, so a listed page stays within bounds.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _template(value: str) -> str:
    if len(value.encode()) > MAX_TEMPLATE_BYTES:
        raise ValueError(f"at most {MAX_TEMPLATE_BYTES} bytes (UTF-8)")
    if _CONTROL.search(value):
        raise ValueError("control characters other than tab and newlines are not allowed")
    return value


Template = Annotated[str, Field(min_length=1), AfterValidator(_template)]
Variables = Annotated[list[VariableName], Field(max_length=MAX_VARIABLES)]


class CreatePromptRequest(BaseModel):
    """``POST /v1/prompts``: ``variables`` must name exactly the template's placeholders."""

    model_config = ConfigDict(extra="forbid")

    prompt: Template
    variables: Variables | None = None


class UpdatePromptRequest(BaseModel):
    """``POST /v1/prompts/{id}``: a new version; ``version`` is the latest one (else 409)."""

    model_config = ConfigDict(extra="forbid")

    prompt: Template
    version: int = Field(ge=1, le=2**31 - 1, strict=True)
    variables: Variables | None = None
    set_as_default: bool = Field(True, strict=True)


class SetDefaultVersionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, le=2**31 - 1, strict=True)


class PromptObject(BaseModel):
    prompt_id: str
    version: int
    is_default: bool
    prompt: str
    variables: list[str] = Field(default_factory=list)


class ListPromptsResponse(BaseModel):
    """``data`` as Llama Stack's; ``has_more``/``last_id`` page through many prompts (``after``)."""

    data: list[PromptObject]
    has_more: bool = False
    last_id: str | None = None
