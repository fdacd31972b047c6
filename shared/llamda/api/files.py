"""Files API shapes (OpenAI)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

Purpose = Literal["assistants", "batch", "fine-tune", "vision", "user_data", "evals"]
# Files we write (a batch's output and error files); never accepted on upload.
StoredPurpose = Literal[Purpose, "batch_output"]


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: StoredPurpose
    status: Literal["uploaded", "processed", "error"] = "processed"
    expires_at: int | None = None


class ListFilesResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class DeleteFileResponse(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True
