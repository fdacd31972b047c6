"""Inspect API shapes (Llama Stack 0.7): health, version, routes, providers."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class HealthInfo(BaseModel):
    status: Literal["OK", "Error", "Not Implemented"]


class VersionInfo(BaseModel):
    version: str


class RouteInfo(BaseModel):
    route: str
    method: str
    provider_types: list[str] = Field(description="Provider types behind this route's API.")


class ListRoutesResponse(BaseModel):
    data: list[RouteInfo]


class ProviderInfo(BaseModel):
    api: str
    provider_id: str
    provider_type: str
    config: dict[str, Any] = Field(description="The provider's config; secrets are masked.")
    health: dict[str, Any]


class ListProvidersResponse(BaseModel):
    data: list[ProviderInfo]
