"""The OpenAI error shape, for the OpenAPI document."""

from __future__ import annotations

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    """``responses=`` for a route: each listed status documented as an ErrorResponse."""
    return {status: {"model": ErrorResponse} for status in statuses}
