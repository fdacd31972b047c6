"""API keys (a Llamda addition): what an admin creates, lists and revokes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["admin", "member"]


class CreateKeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant: str = Field(min_length=1, max_length=64, description="The tenant the key acts for.")
    role: Role = Field("member", description="admin manages keys; member uses the APIs.")
    rpm: int | None = Field(None, ge=1, le=10_000_000, description="Requests per minute.")
    tpm: int | None = Field(None, ge=1, le=10**12, description="Tokens per minute.")
    name: str | None = Field(None, max_length=128, description="A label for humans.")


class ApiKey(BaseModel):
    """A key as listed: never the secret, never its hash."""

    id: str
    object: Literal["api_key"] = "api_key"
    tenant: str
    role: Role
    rpm: int | None = None
    tpm: int | None = None
    name: str | None = None
    hint: str = Field(description="The key's first and last characters, to recognise it.")
    created_at: int
    last_used_at: int | None = None
    revoked_at: int | None = None


class CreatedKey(ApiKey):
    key: str = Field(description="The secret. Shown once: store it now.")


class ListKeysResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[ApiKey]
