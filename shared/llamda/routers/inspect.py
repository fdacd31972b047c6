"""GET /v1/health, /v1/version, /v1/inspect/routes, /v1/providers(/{provider_id})."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request

from llamda.api.errors import error_responses
from llamda.api.inspect import (
    HealthInfo,
    ListProvidersResponse,
    ListRoutesResponse,
    ProviderInfo,
    VersionInfo,
)
from llamda.routers import get_stack
from llamda.stack import Stack

router = APIRouter(tags=["inspect"])
StackDep = Annotated[Stack, Depends(get_stack)]


@router.get("/v1/health", summary="Health of the service", response_model=HealthInfo)
async def health(stack: StackDep) -> HealthInfo:
    return stack.inspect.health()


@router.get("/v1/version", summary="Version of the service", response_model=VersionInfo)
async def version(stack: StackDep) -> VersionInfo:
    return stack.inspect.version()


@router.get(
    "/v1/inspect/routes",
    summary="Routes this deployment serves",
    description="Each route with its method and the provider types behind its API.",
    response_model=ListRoutesResponse,
    responses=error_responses(400),
)
async def list_routes(
    request: Request,
    stack: StackDep,
    api_filter: Annotated[Literal["v1", "v1alpha", "v1beta", "deprecated"] | None, Query()] = None,
) -> ListRoutesResponse:
    # The OpenAPI document is the public, cached description of what is mounted.
    mounted = [
        (path, method.upper(), (operation.get("tags") or [""])[0])
        for path, item in request.app.openapi()["paths"].items()
        for method, operation in item.items()
    ]
    return ListRoutesResponse(data=stack.inspect.routes(mounted, api_filter))


@router.get(
    "/v1/providers",
    summary="Providers of the served APIs",
    description="Every provider behind a served API (files and agents included), with its "
    "health; secrets in configs are masked.",
    response_model=ListProvidersResponse,
)
async def list_providers(stack: StackDep) -> ListProvidersResponse:
    return ListProvidersResponse(data=await stack.inspect.providers())


@router.get(
    "/v1/providers/{provider_id}",
    summary="One configured provider",
    response_model=ProviderInfo,
    responses=error_responses(404),
)
async def get_provider(provider_id: str, stack: StackDep) -> ProviderInfo:
    return await stack.inspect.provider(provider_id)
