"""/v1/admin/keys: API key management for the admin role (a Llamda addition)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from llamda.api.errors import error_responses
from llamda.api.keys import ApiKey, CreatedKey, CreateKeyRequest, ListKeysResponse
from llamda.context import current_principal
from llamda.errors import PermissionDeniedError
from llamda.routers import get_stack
from llamda.stack import Stack

router = APIRouter(tags=["admin"])
StackDep = Annotated[Stack, Depends(get_stack)]
KeyId = Annotated[str, Path(pattern=r"^key_[0-9a-f]{16}$", description="The key's id.")]


async def require_admin() -> None:
    principal = current_principal()
    if principal is None or not principal.is_admin:
        raise PermissionDeniedError(
            "admin role required (with server.auth on, use an admin key; "
            "locally `llamda keys` manages keys directly)",
            code="admin_required",
        )


Admin = Depends(require_admin)
ERRORS = error_responses(400, 401, 403, 404)


@router.post(
    "/v1/admin/keys",
    summary="Create an API key",
    description="The secret is in the reply once; only its hash is stored.",
    response_model=CreatedKey,
    responses=ERRORS,
    dependencies=[Admin],
)
async def create_key(body: CreateKeyRequest, stack: StackDep) -> CreatedKey:
    key, secret = await stack.keys.create(body)
    return CreatedKey(**key.model_dump(), key=secret)


@router.get(
    "/v1/admin/keys",
    summary="List API keys",
    response_model=ListKeysResponse,
    responses=ERRORS,
    dependencies=[Admin],
)
async def list_keys(
    stack: StackDep, tenant: Annotated[str | None, Query(max_length=64)] = None
) -> ListKeysResponse:
    return ListKeysResponse(data=await stack.keys.list(tenant))


@router.get(
    "/v1/admin/keys/{key_id}",
    summary="Get an API key",
    response_model=ApiKey,
    responses=ERRORS,
    dependencies=[Admin],
)
async def get_key(key_id: KeyId, stack: StackDep) -> ApiKey:
    return await stack.keys.get(key_id)


@router.delete(
    "/v1/admin/keys/{key_id}",
    summary="Revoke an API key",
    description="The key stops working within 30 seconds in every process.",
    response_model=ApiKey,
    responses=ERRORS,
    dependencies=[Admin],
)
async def revoke_key(key_id: KeyId, stack: StackDep) -> ApiKey:
    return await stack.keys.revoke(key_id)
