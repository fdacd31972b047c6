"""``Objects.put_file``: a stream copied in bounded memory (S3: a multipart upload), whole or
not at all — a source failing midway leaves no object, no temporary file and no open upload."""

from __future__ import annotations

import asyncio
import io
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest

from llamda.storage.objects import PART_BYTES, Objects
from llamda.storage.objects_local import LocalObjectStore
from llamda.storage.objects_s3 import S3ObjectStore


class Broken(io.RawIOBase):
    """Reads ``good`` bytes, then fails (a client that hangs up, a disk error)."""

    def __init__(self, good: int):
        self.left = good

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            raise OSError("the source broke")
        n = min(size if size > 0 else self.left, self.left)
        self.left -= n
        return b"z" * n


@pytest.fixture(params=["local", "s3"])
def store_and_leftovers(
    request: pytest.FixtureRequest, tmp_path: Path
) -> tuple[Callable[[], Objects], Callable[[], list[str]]]:
    """A store factory, and what it holds besides finished objects (temporary files or
    unfinished multipart uploads)."""
    if request.param == "local":
        root = tmp_path / "objects"
        return lambda: LocalObjectStore(root), lambda: [
            p.name for p in root.rglob(".tmp-*") if p.is_file()
        ]
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = f"streams-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    return lambda: S3ObjectStore(bucket, "p", "us-east-1", endpoint), lambda: [
        u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    ]


def test_put_file_stores_a_stream_whole(store_and_leftovers) -> None:  # type: ignore[no-untyped-def]
    factory, leftovers = store_and_leftovers
    data = os.urandom(2 * PART_BYTES + 12345)  # two full parts and a short one

    async def scenario() -> None:
        store = factory()
        assert await store.put_file("files/big", io.BytesIO(data), content_type="x/y") == len(data)
        assert await store.put_file("files/small", io.BytesIO(b"tiny")) == 4
        assert await store.get("files/big") == data
        assert await store.get("files/small") == b"tiny"
        await store.close()

    asyncio.run(scenario())
    assert leftovers() == []


def test_put_file_that_fails_midway_leaves_nothing(store_and_leftovers) -> None:  # type: ignore[no-untyped-def]
    factory, leftovers = store_and_leftovers

    async def scenario() -> None:
        store = factory()
        with pytest.raises(OSError, match="the source broke"):
            await store.put_file("files/broken", Broken(PART_BYTES + 1000))
        assert await store.list("files") == []
        await store.close()

    asyncio.run(scenario())
    assert leftovers() == []
