"""Shields (GET/POST /v1/shields, GET/DELETE /v1/shields/{id}), POST /v1/safety/run-shield
(Llama Stack) and POST /v1/moderations (OpenAI)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from llamda.api.errors import error_responses
from llamda.api.safety import (
    DeleteShieldResponse,
    ListShieldsResponse,
    ModerationRequest,
    ModerationResponse,
    RegisterShieldRequest,
    RunShieldRequest,
    RunShieldResponse,
    Shield,
)
from llamda.routers import get_stack
from llamda.stack import Stack

router = APIRouter(tags=["safety"])
StackDep = Annotated[Stack, Depends(get_stack)]
ShieldId = Annotated[str, Path(description="The shield id; may contain '/'.")]


@router.get("/v1/shields", summary="List shields", response_model=ListShieldsResponse)
async def list_shields(stack: StackDep) -> ListShieldsResponse:
    return ListShieldsResponse(data=await stack.shields.list())


@router.post(
    "/v1/shields",
    summary="Register a shield",
    response_model=Shield,
    responses=error_responses(400, 409, 413),
)
async def register_shield(body: RegisterShieldRequest, stack: StackDep) -> Shield:
    return await stack.shields.register(body)


@router.get(
    "/v1/shields/{identifier:path}",
    summary="Get a shield",
    response_model=Shield,
    responses=error_responses(404),
)
async def get_shield(identifier: ShieldId, stack: StackDep) -> Shield:
    return await stack.shields.get(identifier)


@router.delete(
    "/v1/shields/{identifier:path}",
    summary="Unregister a shield",
    response_model=DeleteShieldResponse,
    responses=error_responses(404, 409),
)
async def unregister_shield(identifier: ShieldId, stack: StackDep) -> DeleteShieldResponse:
    await stack.shields.unregister(identifier)
    return DeleteShieldResponse(id=identifier)


@router.post(
    "/v1/safety/run-shield",
    summary="Run a shield on messages",
    description="Llama Stack's shape: a violation (level, user message, metadata) or none.",
    response_model=RunShieldResponse,
    responses=error_responses(400, 404, 429, 503),
)
async def run_shield(body: RunShieldRequest, stack: StackDep) -> RunShieldResponse:
    return await stack.safety.run_shield(body)


@router.post(
    "/v1/moderations",
    summary="Classify text (OpenAI moderations; model = a shield id)",
    response_model=ModerationResponse,
    responses=error_responses(400, 404, 429, 503),
)
async def moderations(body: ModerationRequest, stack: StackDep) -> ModerationResponse:
    return await stack.safety.moderate(body)
