"""POST/GET /v1/batches, GET /v1/batches/{batch_id}, POST /v1/batches/{batch_id}/cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query

from llamda.api.batches import Batch, CreateBatchRequest, ListBatchesResponse
from llamda.api.errors import error_responses
from llamda.routers import get_stack
from llamda.stack import Stack

router = APIRouter(tags=["batches"])
StackDep = Annotated[Stack, Depends(get_stack)]
BatchId = Annotated[str, Path(pattern=r"^batch_[a-f0-9]{1,64}$", description="A batch id.")]


@router.post(
    "/v1/batches",
    summary="Create a batch",
    description="Runs every request line of an uploaded JSONL File (purpose `batch`) "
    "asynchronously. A retry with the same `Idempotency-Key` returns the same batch; the same "
    "key with another body is a 409.",
    response_model=Batch,
    responses=error_responses(400, 404, 409, 503),
)
async def create_batch(
    body: CreateBatchRequest,
    stack: StackDep,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)
    ] = None,
) -> Batch:
    return await stack.batches.create(body, idempotency_key)


@router.get(
    "/v1/batches", summary="List batches (newest first)", response_model=ListBatchesResponse
)
async def list_batches(
    stack: StackDep,
    after: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> ListBatchesResponse:
    return await stack.batches.list(after=after, limit=limit)


@router.get(
    "/v1/batches/{batch_id}",
    summary="Get a batch",
    response_model=Batch,
    responses=error_responses(404),
)
async def get_batch(batch_id: BatchId, stack: StackDep) -> Batch:
    return await stack.batches.get(batch_id)


@router.post(
    "/v1/batches/{batch_id}/cancel",
    summary="Cancel a batch",
    description="The batch is `cancelling` until its current chunk ends, then `cancelled`; "
    "its output file holds the requests that finished.",
    response_model=Batch,
    responses=error_responses(404, 409),
)
async def cancel_batch(batch_id: BatchId, stack: StackDep) -> Batch:
    return await stack.batches.cancel(batch_id)
