"""The prompts routes (agents API, Llama Stack's shape): ``/v1/prompts``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel

from llamda.api.errors import error_responses
from llamda.api.prompts import (
    CreatePromptRequest,
    ListPromptsResponse,
    PromptObject,
    SetDefaultVersionRequest,
    UpdatePromptRequest,
)
from llamda.routers import get_stack
from llamda.stack import Stack

router = APIRouter(tags=["agents"])
StackDep = Annotated[Stack, Depends(get_stack)]
# Any id shape reaches the service, which answers 404 for one that is not ours.
PromptId = Annotated[str, Path(max_length=128, description="A prompt id (pmpt_…).")]


class PromptVersions(BaseModel):
    """Every version of one prompt, oldest first."""

    data: list[PromptObject]


@router.post(
    "/v1/prompts",
    summary="Create a prompt",
    response_model=PromptObject,
    responses=error_responses(400),
)
async def create_prompt(body: CreatePromptRequest, stack: StackDep) -> PromptObject:
    return await stack.prompts.create(body.prompt, body.variables)


@router.get(
    "/v1/prompts",
    summary="List prompts (the default version of each)",
    response_model=ListPromptsResponse,
)
async def list_prompts(
    stack: StackDep,
    after: Annotated[str | None, Query(max_length=128, description="A prompt id.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
) -> ListPromptsResponse:
    return await stack.prompts.list(after=after, limit=limit)


@router.get(
    "/v1/prompts/{prompt_id}",
    summary="Get a prompt (its default version unless `version` is given)",
    response_model=PromptObject,
    responses=error_responses(404),
)
async def get_prompt(
    prompt_id: PromptId,
    stack: StackDep,
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> PromptObject:
    return await stack.prompts.get(prompt_id, version)


@router.put(
    "/v1/prompts/{prompt_id}",
    summary="Update a prompt (makes a new version)",
    description="`version` must be the latest version (409 otherwise).",
    response_model=PromptObject,
    responses=error_responses(400, 404, 409),
)
async def update_prompt(
    prompt_id: PromptId, body: UpdatePromptRequest, stack: StackDep
) -> PromptObject:
    return await stack.prompts.update(
        prompt_id, body.prompt, body.version, body.variables, body.set_as_default
    )


@router.delete(
    "/v1/prompts/{prompt_id}",
    summary="Delete a prompt and all its versions",
    status_code=204,
    response_class=Response,
    responses=error_responses(404),
)
async def delete_prompt(prompt_id: PromptId, stack: StackDep) -> Response:
    await stack.prompts.delete(prompt_id)
    return Response(status_code=204)


@router.get(
    "/v1/prompts/{prompt_id}/versions",
    summary="List a prompt's versions",
    response_model=PromptVersions,
    responses=error_responses(404),
)
async def list_versions(prompt_id: PromptId, stack: StackDep) -> PromptVersions:
    return PromptVersions(data=await stack.prompts.versions(prompt_id))


@router.put(
    "/v1/prompts/{prompt_id}/set-default-version",
    summary="Set a prompt's default version",
    response_model=PromptObject,
    responses=error_responses(400, 404),
)
async def set_default_version(
    prompt_id: PromptId, body: SetDefaultVersionRequest, stack: StackDep
) -> PromptObject:
    return await stack.prompts.set_default_version(prompt_id, body.version)
