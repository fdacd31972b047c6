"""Datasets (Llama Stack 0.7): ``/v1beta/datasets`` and ``/v1beta/datasetio/...``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from llamda.api.datasets import (
    DATASET_ID,
    AppendRowsRequest,
    Dataset,
    IterRowsResponse,
    ListDatasetsResponse,
    RegisterDatasetRequest,
)
from llamda.api.errors import error_responses
from llamda.routers import get_stack
from llamda.stack import Stack

router = APIRouter(tags=["datasetio"])
StackDep = Annotated[Stack, Depends(get_stack)]
DatasetId = Annotated[str, Path(pattern=DATASET_ID, description="A dataset id.")]


@router.post(
    "/v1beta/datasets",
    summary="Register a dataset",
    description="Rows from `source` (inline `rows`, or a `uri`: a File id, `s3://` in the "
    "stack's bucket under your tenant, or a path under `eval.datasets_root`; JSONL, CSV or "
    "Parquet) are read and checked against `purpose` now, and kept as a snapshot.",
    response_model=Dataset,
    responses=error_responses(400, 404, 409),
)
async def register_dataset(body: RegisterDatasetRequest, stack: StackDep) -> Dataset:
    return await stack.datasets.register(
        purpose=body.purpose,
        source=body.source.model_dump(),
        metadata=body.metadata,
        dataset_id=body.dataset_id,
    )


@router.get("/v1beta/datasets", summary="List datasets", response_model=ListDatasetsResponse)
async def list_datasets(stack: StackDep) -> ListDatasetsResponse:
    return await stack.datasets.list()


@router.get(
    "/v1beta/datasets/{dataset_id}",
    summary="Get a dataset",
    response_model=Dataset,
    responses=error_responses(404),
)
async def get_dataset(dataset_id: DatasetId, stack: StackDep) -> Dataset:
    return Dataset.model_validate(await stack.datasets.get(dataset_id))


@router.delete(
    "/v1beta/datasets/{dataset_id}",
    summary="Unregister a dataset (its rows are deleted)",
    status_code=204,
    response_class=Response,
    responses=error_responses(404),
)
async def unregister_dataset(dataset_id: DatasetId, stack: StackDep) -> Response:
    await stack.datasets.unregister(dataset_id)
    return Response(status_code=204)


@router.get(
    "/v1beta/datasetio/iterrows/{dataset_id}",
    summary="A page of a dataset's rows",
    description="`limit` unset or -1: every row (at most 10000 per page; `has_more` and "
    "`next_start_index` tell where to go on).",
    response_model=IterRowsResponse,
    responses=error_responses(400, 404),
)
async def iterrows(
    dataset_id: DatasetId,
    stack: StackDep,
    start_index: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
    limit: Annotated[int | None, Query(ge=-1, le=2**31 - 1)] = None,
) -> IterRowsResponse:
    return await stack.datasets.iterrows(dataset_id, start_index, limit)


@router.post(
    "/v1beta/datasetio/append-rows/{dataset_id}",
    summary="Append rows to a dataset",
    description="The rows are checked against the dataset's purpose (400 naming the first bad "
    "row and column); the dataset then reads as a new snapshot.",
    status_code=204,
    response_class=Response,
    responses=error_responses(400, 404, 409),
)
async def append_rows(dataset_id: DatasetId, body: AppendRowsRequest, stack: StackDep) -> Response:
    await stack.datasets.append_rows(dataset_id, body.rows)
    return Response(status_code=204)
