"""POST /v1/uploads, /v1/uploads/{upload_id}/parts, /complete, /cancel (OpenAI Uploads)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Path, UploadFile

from llamda.api.errors import error_responses
from llamda.api.uploads import CompleteUploadRequest, CreateUploadRequest, Upload, UploadPart
from llamda.routers import get_stack
from llamda.stack import Stack

router = APIRouter(tags=["files"])
StackDep = Annotated[Stack, Depends(get_stack)]
UploadId = Annotated[str, Path(pattern=r"^upload_[a-f0-9]{1,64}$", description="An upload id.")]


@router.post(
    "/v1/uploads",
    summary="Start an upload (a large File in parts)",
    response_model=Upload,
    responses=error_responses(400),
)
async def create_upload(body: CreateUploadRequest, stack: StackDep) -> Upload:
    return await stack.uploads.create(body)


@router.post(
    "/v1/uploads/{upload_id}/parts",
    summary="Add a part (at most 4 MiB) to an upload",
    description="multipart/form-data with `data`.",
    response_model=UploadPart,
    responses=error_responses(400, 404, 413),
)
async def add_upload_part(
    upload_id: UploadId,
    stack: StackDep,
    data: Annotated[UploadFile, File(description="The part's bytes.")],
) -> UploadPart:
    return await stack.uploads.add_part(upload_id, data.file)


@router.post(
    "/v1/uploads/{upload_id}/complete",
    summary="Complete an upload: its parts, in order, become a File",
    response_model=Upload,
    responses=error_responses(400, 404),
)
async def complete_upload(
    upload_id: UploadId, body: CompleteUploadRequest, stack: StackDep
) -> Upload:
    return await stack.uploads.complete(upload_id, body.part_ids)


@router.post(
    "/v1/uploads/{upload_id}/cancel",
    summary="Cancel an upload (its parts are deleted)",
    response_model=Upload,
    responses=error_responses(400, 404),
)
async def cancel_upload(upload_id: UploadId, stack: StackDep) -> Upload:
    return await stack.uploads.cancel(upload_id)
