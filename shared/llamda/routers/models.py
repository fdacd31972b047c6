"""GET/POST /v1/models, GET/DELETE /v1/models/{model_id} (ids may contain '/')."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from llamda.api.errors import error_responses
from llamda.api.models import DeleteModelResponse, ListModelsResponse, Model, RegisterModelRequest
from llamda.routers import get_stack
from llamda.stack import Stack

router = APIRouter(tags=["models"])
StackDep = Annotated[Stack, Depends(get_stack)]
ModelId = Annotated[str, Path(description="The model id; may contain '/'.")]


@router.get(
    "/v1/models",
    summary="List models",
    description="OpenAI's list shape; each model also carries Llama Stack's resource fields.",
    response_model=ListModelsResponse,
)
async def list_models(stack: StackDep) -> ListModelsResponse:
    return ListModelsResponse(data=await stack.models.list())


@router.post(
    "/v1/models",
    summary="Register a model",
    description="Registers a model with a configured inference provider (Llamda addition; "
    "Llama Stack 0.7 dropped this route).",
    response_model=Model,
    responses=error_responses(400, 409, 413),
)
async def register_model(body: RegisterModelRequest, stack: StackDep) -> Model:
    return await stack.models.register(body)


@router.get(
    "/v1/models/{model_id:path}",
    summary="Get a model",
    response_model=Model,
    responses=error_responses(404),
)
async def get_model(model_id: ModelId, stack: StackDep) -> Model:
    return await stack.models.get(model_id)


@router.delete(
    "/v1/models/{model_id:path}",
    summary="Unregister a model",
    response_model=DeleteModelResponse,
    responses=error_responses(404, 409),
)
async def unregister_model(model_id: ModelId, stack: StackDep) -> DeleteModelResponse:
    await stack.models.unregister(model_id)
    return DeleteModelResponse(id=model_id)
