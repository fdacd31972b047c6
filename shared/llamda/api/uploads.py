"""Uploads API shapes (OpenAI): a large File sent in parts."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from llamda.api.files import FileObject, Purpose

# Parts per Upload (OpenAI's own bound is larger; 1000 x 4 MiB parts is past our size bound).
MAX_PARTS = 1000
# A media type (RFC 6838 names, optional parameters): it becomes the File's Content-Type header,
# so nothing else (no CR/LF, no non-ASCII) gets in.
_TOKEN = r"[A-Za-z0-9!#$&^_.+-]+"
MIME_PATTERN = rf'^{_TOKEN}/{_TOKEN}( *; *{_TOKEN}=({_TOKEN}|"[ !#-~]*"))*$'
PartId = Annotated[str, StringConstraints(pattern=r"^part_[a-f0-9]{1,64}$")]


class CreateUploadRequest(BaseModel):
    # OpenAI's optional ``expires_after`` (the File's expiry) is accepted and not applied.
    model_config = ConfigDict(extra="ignore")

    filename: str = Field(min_length=1, max_length=255)
    purpose: Purpose
    bytes: int = Field(
        ge=0, strict=True, description="The File's exact size; parts must add up to it."
    )
    mime_type: str = Field(max_length=255, pattern=MIME_PATTERN, examples=["text/plain"])


class CompleteUploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    part_ids: list[PartId] = Field(max_length=MAX_PARTS, description="Part ids, in file order.")
    md5: str | None = Field(None, max_length=64, description="Accepted; not checked.")


class Upload(BaseModel):
    id: str
    object: Literal["upload"] = "upload"
    bytes: int
    created_at: int
    expires_at: int
    filename: str
    purpose: Purpose
    status: Literal["pending", "completed", "cancelled", "expired"]
    file: FileObject | None = None


class UploadPart(BaseModel):
    id: str
    object: Literal["upload.part"] = "upload.part"
    created_at: int
    upload_id: str
