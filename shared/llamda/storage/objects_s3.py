"""Objects in S3 (the aws profile): ``s3://<bucket>/<prefix>/tenants/<tenant>/<key>``."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Sequence
from typing import Any, BinaryIO

from llamda.aws import AioClients, clients, error_code
from llamda.context import current_tenant
from llamda.errors import NotFoundError
from llamda.storage.keys import safe_segment
from llamda.storage.objects import COPY_CHUNK, PART_BYTES, S3_MIN_PART, tenant_key

_MISSING = {"NoSuchKey", "404", "NotFound"}
# The object tag the bucket's lifecycle rules match (template.yaml: DataBucket).
LIFECYCLE_TAG = "llamda-lifecycle"


class S3ObjectStore:
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        region_name: str | None = None,
        endpoint_url: str | None = None,
        aio: AioClients = clients,
    ):
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._region = region_name
        self._endpoint = endpoint_url
        self._aio = aio

    async def _client(self) -> Any:
        return await self._aio.client("s3", region_name=self._region, endpoint_url=self._endpoint)

    def _key(self, key: str) -> str:
        full = tenant_key(key)
        return f"{self._prefix}/{full}" if self._prefix else full

    def _tenant_root(self) -> str:
        root = f"tenants/{safe_segment(current_tenant())}/"
        return f"{self._prefix}/{root}" if self._prefix else root

    async def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str | None = None,
        lifecycle: str | None = None,
    ) -> None:
        s3 = await self._client()
        extra = {"ContentType": content_type} if content_type else {}
        if lifecycle:
            extra["Tagging"] = f"{LIFECYCLE_TAG}={lifecycle}"
        await s3.put_object(Bucket=self._bucket, Key=self._key(key), Body=data, **extra)

    async def put_file(self, key: str, source: BinaryIO, *, content_type: str | None = None) -> int:
        """One PutObject when it fits in one part, else a multipart upload of ``PART_BYTES``
        parts, one in memory at a time (aborted on failure: S3 keeps nothing)."""
        first = await asyncio.to_thread(source.read, PART_BYTES)
        if len(first) < PART_BYTES:
            await self.put(key, first, content_type=content_type)
            return len(first)
        s3 = await self._client()
        full = self._key(key)
        extra = {"ContentType": content_type} if content_type else {}
        upload = await s3.create_multipart_upload(Bucket=self._bucket, Key=full, **extra)
        upload_id = upload["UploadId"]
        parts: list[dict[str, Any]] = []
        size, part = 0, first
        try:
            while part:
                reply = await s3.upload_part(
                    Bucket=self._bucket,
                    Key=full,
                    UploadId=upload_id,
                    PartNumber=len(parts) + 1,
                    Body=io.BytesIO(part),
                )
                parts.append({"PartNumber": len(parts) + 1, "ETag": reply["ETag"]})
                size += len(part)
                part = await asyncio.to_thread(source.read, PART_BYTES)
            await s3.complete_multipart_upload(
                Bucket=self._bucket,
                Key=full,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await s3.abort_multipart_upload(Bucket=self._bucket, Key=full, UploadId=upload_id)
            raise
        return size

    async def put_parts(
        self, key: str, part_keys: Sequence[str], *, content_type: str | None = None
    ) -> int:
        """A multipart upload of the parts: copied inside S3 (UploadPartCopy, no bytes through
        this process) when every part but the last has S3's 5 MiB minimum; else read in order
        and re-cut into ``PART_BYTES`` parts, one in memory at a time."""
        s3 = await self._client()
        sources = [self._key(k) for k in part_keys]
        sizes: list[int] = []
        for source, part_key in zip(sources, part_keys, strict=True):
            try:
                head = await s3.head_object(Bucket=self._bucket, Key=source)
            except Exception as exc:
                if error_code(exc) in _MISSING:
                    raise NotFoundError(f"object {part_key!r} not found") from None
                raise
            sizes.append(int(head["ContentLength"]))
        total = sum(sizes)
        if total < PART_BYTES:
            # Small: one PutObject of the joined parts (bounded by PART_BYTES).
            data = b"".join([await self._read(s3, source) for source in sources])
            await self.put(key, data, content_type=content_type)
            return total
        copy = all(size >= S3_MIN_PART for size in sizes[:-1])
        full = self._key(key)
        extra = {"ContentType": content_type} if content_type else {}
        upload = await s3.create_multipart_upload(Bucket=self._bucket, Key=full, **extra)
        target = {"Bucket": self._bucket, "Key": full, "UploadId": upload["UploadId"]}
        parts: list[dict[str, Any]] = []
        try:
            if copy:
                for source in sources:
                    reply = await s3.upload_part_copy(
                        **target,
                        PartNumber=len(parts) + 1,
                        CopySource={"Bucket": self._bucket, "Key": source},
                    )
                    etag = reply["CopyPartResult"]["ETag"]
                    parts.append({"PartNumber": len(parts) + 1, "ETag": etag})
            else:
                buffer = bytearray()
                for source in sources:
                    reply = await s3.get_object(Bucket=self._bucket, Key=source)
                    body = reply["Body"]
                    async with body:
                        async for chunk in body.iter_chunks(COPY_CHUNK):
                            buffer += chunk
                            if len(buffer) >= PART_BYTES:
                                await self._upload_part(s3, target, parts, bytes(buffer))
                                buffer.clear()
                if buffer or not parts:
                    await self._upload_part(s3, target, parts, bytes(buffer))
            await s3.complete_multipart_upload(**target, MultipartUpload={"Parts": parts})
        except BaseException:
            with contextlib.suppress(Exception):
                await s3.abort_multipart_upload(**target)
            raise
        return total

    @staticmethod
    async def _upload_part(
        s3: Any, target: dict[str, str], parts: list[dict[str, Any]], data: bytes
    ) -> None:
        number = len(parts) + 1
        reply = await s3.upload_part(**target, PartNumber=number, Body=io.BytesIO(data))
        parts.append({"PartNumber": number, "ETag": reply["ETag"]})

    async def _read(self, s3: Any, full_key: str) -> bytes:
        reply = await s3.get_object(Bucket=self._bucket, Key=full_key)
        async with reply["Body"] as body:
            return await body.read()

    async def get(self, key: str) -> bytes:
        s3 = await self._client()
        try:
            reply = await s3.get_object(Bucket=self._bucket, Key=self._key(key))
        except Exception as exc:
            if error_code(exc) in _MISSING:
                raise NotFoundError(f"object {key!r} not found") from None
            raise
        async with reply["Body"] as body:
            return await body.read()

    async def chunks(self, key: str) -> AsyncIterator[bytes]:
        s3 = await self._client()
        try:
            reply = await s3.get_object(Bucket=self._bucket, Key=self._key(key))
        except Exception as exc:
            if error_code(exc) in _MISSING:
                raise NotFoundError(f"object {key!r} not found") from None
            raise
        body = reply["Body"]
        async with body:
            async for chunk in body.iter_chunks(COPY_CHUNK):
                yield chunk

    async def download_url(
        self, key: str, *, expires_in: int, disposition: str, content_type: str
    ) -> str | None:
        """A presigned GetObject (signed locally, no request). S3 answers it with our
        Content-Disposition (attachment) and Content-Type, on S3's origin, not ours."""
        s3 = await self._client()
        return await s3.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self._bucket,
                "Key": self._key(key),
                "ResponseContentDisposition": disposition,
                "ResponseContentType": content_type,
            },
            ExpiresIn=expires_in,
        )

    async def delete(self, key: str) -> bool:
        s3 = await self._client()
        full = self._key(key)
        try:
            await s3.head_object(Bucket=self._bucket, Key=full)
        except Exception as exc:
            if error_code(exc) in _MISSING:
                return False
            raise
        await s3.delete_object(Bucket=self._bucket, Key=full)
        return True

    async def list(self, prefix: str = "") -> list[str]:
        s3 = await self._client()
        root = self._tenant_root()
        full_prefix = f"{self._key(prefix)}/" if prefix else root
        keys: list[str] = []
        paginator = s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self._bucket, Prefix=full_prefix):
            keys.extend(obj["Key"][len(root) :] for obj in page.get("Contents", []))
        return sorted(keys)

    async def close(self) -> None:
        await self._aio.close()
