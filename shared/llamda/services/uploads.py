"""Uploads (OpenAI): a File too large for one request, sent in parts of at most 4 MiB (under
API Gateway's and Lambda's payload limits), then assembled in storage into a normal File.

Parts are objects under ``uploads/<upload_id>/<part_id>`` (tenant-scoped like every object);
Upload and part records are tenant-scoped Records, so another tenant's ids are unknown here.
Every rule (state, expiry, part size, part count, declared total) is checked in this class."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Callable
from typing import Any, BinaryIO

from llamda.api.files import FileObject
from llamda.api.uploads import MAX_PARTS, CreateUploadRequest, Upload, UploadPart
from llamda.errors import BadRequestError, NotFoundError, PayloadTooLargeError
from llamda.services.files import FilesService
from llamda.storage.objects import Objects
from llamda.storage.records import Records, save

KIND = "uploads"
PART_KIND = "upload_parts"
# Counters (Records.incr) of parts and bytes received per Upload: bounded even under
# concurrent parts, without a read-modify-write of the Upload record.
PART_COUNT = "upload_part_count"
RECEIVED = "upload_part_bytes"
# One part must fit one API Gateway + Lambda request (6 MB event, base64 body).
MAX_PART_BYTES = 4 * 1024 * 1024
EXPIRES_AFTER_SECONDS = 3600
# A completion claim older than this was lost (the longest function timeout is 900 s).
STALE_CLAIM_SECONDS = 900


def _new_id(prefix: str) -> str:
    return f"{prefix}_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(8)}"


class UploadsService:
    def __init__(
        self,
        records: Records,
        objects: Objects,
        files: FilesService,
        max_upload_bytes: int,
        clock: Callable[[], float] = time.time,
    ):
        self._records = records
        self._objects = objects
        self._files = files
        self._max_bytes = max_upload_bytes
        self._clock = clock

    async def create(self, request: CreateUploadRequest) -> Upload:
        if request.bytes > self._max_bytes:
            raise BadRequestError(
                f"bytes is larger than this server's upload limit ({self._max_bytes})",
                param="bytes",
                code="upload_too_large",
            )
        now = int(self._clock())
        record = {
            "id": _new_id("upload"),
            "bytes": request.bytes,
            "created_at": now,
            "expires_at": now + EXPIRES_AFTER_SECONDS,
            "filename": request.filename.replace("\x00", ""),
            "purpose": request.purpose,
            "mime_type": request.mime_type,
            "status": "pending",
        }
        await self._records.put(KIND, record["id"], record, if_absent=True)
        return _upload(record)

    async def _pending(self, upload_id: str, *, retry_stale: bool = False) -> dict[str, Any]:
        """The Upload's record while parts may still be added; 404 unknown, 400 otherwise.
        With ``retry_stale``, a completion that ended without a word (its function timed out
        or was killed) for longer than STALE_CLAIM_SECONDS counts as pending again."""
        record = await self._records.get(KIND, upload_id)
        if record is None:
            raise NotFoundError(
                f"No such Upload: {upload_id}", param="upload_id", code="upload_not_found"
            )
        stale = (
            retry_stale
            and record["status"] == "completing"
            and self._clock() - record.get("completing_at", 0) > STALE_CLAIM_SECONDS
        )
        if record["status"] != "pending" and not stale:
            raise BadRequestError(
                f"Upload {upload_id} is {record['status']}", param="upload_id", code="upload_closed"
            )
        if self._clock() >= record["expires_at"]:
            raise BadRequestError(
                f"Upload {upload_id} expired", param="upload_id", code="upload_expired"
            )
        return record

    async def add_part(self, upload_id: str, data: BinaryIO) -> UploadPart:
        record = await self._pending(upload_id)
        size = await asyncio.to_thread(_size, data)
        if size > MAX_PART_BYTES:
            raise PayloadTooLargeError(
                f"a part is at most {MAX_PART_BYTES} bytes (this one: {size})", param="data"
            )
        expires = int(record["expires_at"]) + EXPIRES_AFTER_SECONDS
        if await self._records.incr(PART_COUNT, upload_id, 1, expires_at=expires) > MAX_PARTS:
            await self._records.incr(PART_COUNT, upload_id, -1, expires_at=expires)
            raise BadRequestError(f"an Upload has at most {MAX_PARTS} parts", param="data")
        received = await self._records.incr(RECEIVED, upload_id, size, expires_at=expires)
        if received > record["bytes"]:
            # Refused parts do not count (the counters bound what is stored).
            await self._records.incr(PART_COUNT, upload_id, -1, expires_at=expires)
            await self._records.incr(RECEIVED, upload_id, -size, expires_at=expires)
            raise BadRequestError(
                f"parts add up to more than the Upload's {record['bytes']} bytes", param="data"
            )
        part = {
            "id": _new_id("part"),
            "upload_id": upload_id,
            "bytes": size,
            "created_at": int(self._clock()),
        }
        await self._objects.put_file(_part_key(upload_id, part["id"]), data)
        await self._records.put(PART_KIND, part["id"], part, if_absent=True)
        # A cancel or complete that ran meanwhile did not see this part: take it back.
        try:
            await self._pending(upload_id)
        except (BadRequestError, NotFoundError):
            await self._drop_parts(upload_id, [part["id"]])
            raise
        return UploadPart.model_validate(part)

    async def complete(self, upload_id: str, part_ids: list[str]) -> Upload:
        record = await self._pending(upload_id, retry_stale=True)
        if len(set(part_ids)) != len(part_ids):
            raise BadRequestError("part_ids has duplicates", param="part_ids")
        parts = await asyncio.gather(*(self._records.get(PART_KIND, p) for p in part_ids))
        for part_id, part in zip(part_ids, parts, strict=True):
            if part is None or part["upload_id"] != upload_id:
                raise BadRequestError(
                    f"No such part of Upload {upload_id}: {part_id}", param="part_ids"
                )
        total = sum(int(p["bytes"]) for p in parts if p)
        if total != record["bytes"]:
            raise BadRequestError(
                f"parts add up to {total} bytes, the Upload declared {record['bytes']}",
                param="part_ids",
                code="upload_size_mismatch",
            )
        # Claim the Upload (optimistic concurrency): one complete or cancel wins.
        record["status"] = "completing"
        record["completing_at"] = self._clock()
        if not await save(self._records, KIND, upload_id, record):
            raise BadRequestError(f"Upload {upload_id} changed meanwhile", param="upload_id")
        try:
            file = await self._files.create_from_parts(
                [_part_key(upload_id, p) for p in part_ids],
                record["filename"],
                record["purpose"],
                record["mime_type"],
            )
        except BaseException:
            record["status"] = "pending"
            await save(self._records, KIND, upload_id, record)
            raise
        record["status"] = "completed"
        record["file_id"] = file.id
        await save(self._records, KIND, upload_id, record)
        await self._drop_parts(upload_id)
        return _upload(record, file)

    async def cancel(self, upload_id: str) -> Upload:
        record = await self._pending(upload_id)
        record["status"] = "cancelled"
        if not await save(self._records, KIND, upload_id, record):
            raise BadRequestError(f"Upload {upload_id} changed meanwhile", param="upload_id")
        await self._drop_parts(upload_id)
        return _upload(record)

    async def _drop_parts(self, upload_id: str, part_ids: list[str] | None = None) -> None:
        """Delete parts' bytes and records (all of the Upload's when ``part_ids`` is None)."""
        if part_ids is None:
            keys = await self._objects.list(f"uploads/{upload_id}")
            part_ids = [key.rsplit("/", 1)[-1] for key in keys]
        for part_id in part_ids:
            await self._objects.delete(_part_key(upload_id, part_id))
            await self._records.delete(PART_KIND, part_id)


def _part_key(upload_id: str, part_id: str) -> str:
    return f"uploads/{upload_id}/{part_id}"


def _size(data: BinaryIO) -> int:
    """Size of a seekable upload (FastAPI's spooled file), leaving it at its start."""
    data.seek(0, os.SEEK_END)
    size = data.tell()
    data.seek(0)
    return size


def _upload(record: dict[str, Any], file: FileObject | None = None) -> Upload:
    return Upload.model_validate({**record, "file": file})
