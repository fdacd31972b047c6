"""Files: bytes in Objects (S3 or a local dir) under ``files/<id>``, metadata in Records.
The filename is metadata only; storage keys are built from our ids, never from user input.
Ids sort by creation time, so listing pages in created order."""

from __future__ import annotations

import io
import mimetypes
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, BinaryIO

from llamda.api.files import FileObject, ListFilesResponse
from llamda.errors import BadRequestError, NotFoundError
from llamda.storage.objects import Objects
from llamda.storage.records import Records, list_page

KIND = "files"
MAX_FILENAME = 255
# How long a File's presigned content URL works: long enough to start a download.
CONTENT_URL_SECONDS = 300


def new_file_id() -> str:
    return f"file-{time.time_ns() // 1_000_000:012x}{secrets.token_hex(8)}"


def _new_record(filename: str, purpose: str, content_type: str | None) -> dict[str, Any]:
    name = (filename or "upload").replace("\x00", "")[-MAX_FILENAME:]
    return {
        "id": new_file_id(),
        "bytes": 0,
        "created_at": int(time.time()),
        "filename": name,
        "purpose": purpose,
        "content_type": content_type or mimetypes.guess_type(name)[0] or "application/octet-stream",
    }


class FilesService:
    def __init__(
        self,
        records: Records,
        objects: Objects,
        on_delete: Callable[[str], Awaitable[None]] | None = None,
        redirect_bytes: int = 0,
    ):
        self._records = records
        self._objects = objects
        self.redirect_bytes = redirect_bytes
        # Removes a deleted File from every vector store (wired by the stack).
        self.on_delete = on_delete

    async def create(
        self, data: bytes, filename: str, purpose: str, content_type: str | None
    ) -> FileObject:
        return await self.create_from(io.BytesIO(data), filename, purpose, content_type)

    async def create_from(
        self, source: BinaryIO, filename: str, purpose: str, content_type: str | None
    ) -> FileObject:
        """A File of what ``source`` reads until its end, copied to storage in bounded memory
        (an upload is not held in memory; its size limit is the body limit's, counted as the
        request arrives)."""
        record = _new_record(filename, purpose, content_type)
        # Bytes first, then the record: a reader never sees a file without content.
        record["bytes"] = await self._objects.put_file(
            f"files/{record['id']}", source, content_type=record["content_type"]
        )
        await self._records.put(KIND, record["id"], record, if_absent=True)
        return FileObject.model_validate(record)

    async def create_from_parts(
        self, part_keys: Sequence[str], filename: str, purpose: str, content_type: str | None
    ) -> FileObject:
        """A File of the objects ``part_keys`` joined in order (an Upload's parts), assembled
        in storage in bounded memory; the parts are left for the caller to delete."""
        record = _new_record(filename, purpose, content_type)
        record["bytes"] = await self._objects.put_parts(
            f"files/{record['id']}", part_keys, content_type=record["content_type"]
        )
        await self._records.put(KIND, record["id"], record, if_absent=True)
        return FileObject.model_validate(record)

    async def _record(self, file_id: str) -> dict[str, Any]:
        record = await self._records.get(KIND, file_id)
        if record is None:
            raise NotFoundError(
                f"No such File object: {file_id}", param="file_id", code="file_not_found"
            )
        return record

    async def get(self, file_id: str) -> FileObject:
        return FileObject.model_validate(await self._record(file_id))

    async def content(self, file_id: str) -> tuple[bytes, str]:
        record = await self._record(file_id)
        return await self._objects.get(f"files/{file_id}"), record["content_type"]

    async def content_stream(self, file_id: str) -> tuple[AsyncIterator[bytes], str]:
        """The File's bytes as they are read (a large File is never whole in memory) and its
        content type; its first piece is read here, so a missing File is a 404 up front."""
        record = await self._record(file_id)
        pieces = self._objects.chunks(f"files/{file_id}")
        first = await anext(pieces, b"")

        async def stream() -> AsyncIterator[bytes]:
            yield first
            async for piece in pieces:
                yield piece

        return stream(), record["content_type"]

    async def content_url(self, file_id: str, disposition: str) -> str | None:
        """A presigned URL for a File larger than ``redirect_bytes`` (its bytes then never pass
        through this process), or None: answer the bytes. 404 for an unknown File."""
        record = await self._record(file_id)
        if not self.redirect_bytes or record["bytes"] <= self.redirect_bytes:
            return None
        return await self._objects.download_url(
            f"files/{file_id}",
            expires_in=CONTENT_URL_SECONDS,
            disposition=disposition,
            content_type=record["content_type"],
        )

    async def delete(self, file_id: str) -> None:
        await self._record(file_id)
        # Record first: once it is gone the file is gone for readers; then the bytes.
        await self._records.delete(KIND, file_id)
        await self._objects.delete(f"files/{file_id}")
        # Last: an attach that started before this has recorded itself by now (it reads the
        # bytes after), so it is found here or fails reading them.
        if self.on_delete is not None:
            await self.on_delete(file_id)

    async def list(
        self, *, limit: int, after: str | None, order: str, purpose: str | None
    ) -> ListFilesResponse:
        if after is not None and not after.startswith("file-"):
            raise BadRequestError("after must be a file id", param="after")
        page, has_more = await list_page(
            self._records,
            KIND,
            limit=limit,
            after=after,
            descending=order == "desc",
            keep=None if purpose is None else lambda r: r["purpose"] == purpose,
        )
        data = [FileObject.model_validate(r) for r in page]
        return ListFilesResponse(
            data=data,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
            has_more=has_more,
        )
