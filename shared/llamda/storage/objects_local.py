"""Objects in a local directory (the local profile)."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import BinaryIO

from llamda.context import current_tenant
from llamda.errors import NotFoundError
from llamda.storage.keys import safe_segment, split_key
from llamda.storage.objects import COPY_CHUNK, tenant_key


class LocalObjectStore:
    def __init__(self, root: str | Path):
        self._root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        path = (self._root / tenant_key(key)).resolve()
        # Defence in depth: tenant_key already refuses separators and dot segments.
        if not path.is_relative_to(self._root):
            raise NotFoundError(f"object {key!r} not found")
        return path

    async def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str | None = None,
        lifecycle: str | None = None,  # no lifecycle rules on a local directory
    ) -> None:
        await self.put_file(key, io.BytesIO(data), content_type=content_type)

    async def put_file(self, key: str, source: BinaryIO, *, content_type: str | None = None) -> int:
        path = self._path(key)

        def write() -> int:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Copy into a temporary file, then rename: a reader never sees half an object.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            size = 0
            try:
                with os.fdopen(fd, "wb") as fh:
                    while chunk := source.read(COPY_CHUNK):
                        fh.write(chunk)
                        size += len(chunk)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            return size

        return await asyncio.to_thread(write)

    async def put_parts(
        self, key: str, part_keys: Sequence[str], *, content_type: str | None = None
    ) -> int:
        paths = [self._path(k) for k in part_keys]
        path = self._path(key)

        def write() -> int:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as out:
                    for part, part_key in zip(paths, part_keys, strict=True):
                        try:
                            with part.open("rb") as src:
                                shutil.copyfileobj(src, out, COPY_CHUNK)
                        except (FileNotFoundError, IsADirectoryError):
                            raise NotFoundError(f"object {part_key!r} not found") from None
                    size = out.tell()
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            return size

        return await asyncio.to_thread(write)

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except (FileNotFoundError, IsADirectoryError):
            raise NotFoundError(f"object {key!r} not found") from None

    async def chunks(self, key: str) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            fh = await asyncio.to_thread(path.open, "rb")
        except (FileNotFoundError, IsADirectoryError):
            raise NotFoundError(f"object {key!r} not found") from None
        try:
            while chunk := await asyncio.to_thread(fh.read, COPY_CHUNK):
                yield chunk
        finally:
            fh.close()

    async def download_url(
        self, key: str, *, expires_in: int, disposition: str, content_type: str
    ) -> str | None:
        return None  # the local server streams the bytes itself

    async def delete(self, key: str) -> bool:
        path = self._path(key)
        try:
            await asyncio.to_thread(path.unlink)
            return True
        except FileNotFoundError:
            return False

    async def list(self, prefix: str = "") -> list[str]:
        tenant_root = self._root / "tenants" / safe_segment(current_tenant())
        base = tenant_root.joinpath(*split_key(prefix)) if prefix else tenant_root

        def walk() -> list[str]:
            if not base.is_dir():
                return []
            return sorted(
                p.relative_to(tenant_root).as_posix()
                for p in base.rglob("*")
                if p.is_file() and not p.name.startswith(".tmp-")
            )

        return await asyncio.to_thread(walk)

    async def close(self) -> None:
        return None
