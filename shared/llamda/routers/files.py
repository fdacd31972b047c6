"""POST/GET /v1/files, GET/DELETE /v1/files/{file_id}, GET /v1/files/{file_id}/content."""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, Form, Path, Query, UploadFile
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from llamda.api.errors import error_responses
from llamda.api.files import (
    DeleteFileResponse,
    FileObject,
    ListFilesResponse,
    Purpose,
    StoredPurpose,
)
from llamda.routers import get_stack
from llamda.routers.uploads import router as uploads_router
from llamda.stack import Stack

router = APIRouter(tags=["files"])
# Large Files in parts (the Uploads API) are served with the Files API (FilesFunction in AWS).
router.include_router(uploads_router)
StackDep = Annotated[Stack, Depends(get_stack)]
FileId = Annotated[str, Path(pattern=r"^file-[a-f0-9]{1,64}$", description="A file id.")]


@router.post(
    "/v1/files",
    summary="Upload a file",
    description="multipart/form-data with `file` and `purpose`.",
    response_model=FileObject,
    responses=error_responses(400, 413),
)
async def upload_file(
    stack: StackDep,
    file: Annotated[UploadFile, File(description="The file.")],
    purpose: Annotated[Purpose, Form(description="What the file is for.")],
) -> FileObject:
    # The parsed upload is a spooled temporary file (on disk past 1 MiB): copied, not read whole.
    return await stack.files.create_from(
        file.file, file.filename or "upload", purpose, file.content_type
    )


@router.get("/v1/files", summary="List files", response_model=ListFilesResponse)
async def list_files(
    stack: StackDep,
    limit: Annotated[int, Query(ge=1, le=10000)] = 10000,
    after: Annotated[str | None, Query(max_length=128)] = None,
    order: Annotated[Literal["asc", "desc"], Query()] = "desc",
    purpose: Annotated[StoredPurpose | None, Query()] = None,
) -> ListFilesResponse:
    return await stack.files.list(limit=limit, after=after, order=order, purpose=purpose)


@router.get(
    "/v1/files/{file_id}",
    summary="Get a file",
    response_model=FileObject,
    responses=error_responses(404),
)
async def get_file(file_id: FileId, stack: StackDep) -> FileObject:
    return await stack.files.get(file_id)


@router.delete(
    "/v1/files/{file_id}",
    summary="Delete a file",
    response_model=DeleteFileResponse,
    responses=error_responses(404),
)
async def delete_file(file_id: FileId, stack: StackDep) -> DeleteFileResponse:
    await stack.files.delete(file_id)
    return DeleteFileResponse(id=file_id)


@router.get(
    "/v1/files/{file_id}/content",
    summary="A file's content",
    response_class=Response,
    description="The bytes, or (a File over `server.content_redirect_bytes`) a 307 to a "
    "presigned S3 URL valid for 5 minutes.",
    responses={
        200: {"content": {"*/*": {}}},
        307: {"description": "Redirect"},
        **error_responses(404),
    },
)
async def file_content(file_id: FileId, stack: StackDep) -> Response:
    meta = await stack.files.get(file_id)
    disposition = _attachment(meta.filename, file_id)
    url = await stack.files.content_url(file_id, disposition)
    if url is not None:
        # Large Files (AWS): the client fetches the bytes from S3, not through Lambda.
        return RedirectResponse(url, status_code=307, headers={"cache-control": "no-store"})
    pieces, content_type = await stack.files.content_stream(file_id)
    # Uploaded bytes are never rendered by a browser on our origin (an uploaded .html would
    # otherwise run as a page of this server): download only, never sniffed, sandboxed.
    return StreamingResponse(
        pieces,
        media_type=content_type,
        headers={
            "content-disposition": disposition,
            "content-length": str(meta.bytes),
            "x-content-type-options": "nosniff",
            "content-security-policy": "default-src 'none'; sandbox",
        },
    )


def _attachment(filename: str, fallback: str) -> str:
    """RFC 6266 ``attachment`` with an ASCII-safe name and the UTF-8 original."""
    ascii_name = re.sub(r"[^A-Za-z0-9._ -]", "_", filename).strip(" .") or fallback
    utf8 = quote(filename[:200], safe="")
    return f"attachment; filename=\"{ascii_name[:200]}\"; filename*=UTF-8''{utf8}"
