"""Objects: blobs by key, under ``tenants/<tenant>/``. A local directory or S3."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import BinaryIO, Protocol, runtime_checkable

from llamda.config import LocalObjects, S3Objects
from llamda.context import current_tenant
from llamda.storage.keys import safe_segment, split_key

# How much of an object is in memory at once while it is copied in (S3: one multipart part,
# at least S3's 5 MiB minimum part size).
COPY_CHUNK = 1024 * 1024
PART_BYTES = 8 * 1024 * 1024
# S3's smallest multipart part (all but the last): parts this large are copied server-side.
S3_MIN_PART = 5 * 1024 * 1024


def tenant_key(key: str) -> str:
    """The full key for the current tenant; the relative key is checked segment by segment."""
    return "/".join(["tenants", safe_segment(current_tenant()), *split_key(key)])


# Objects that only live as long as a job (chunk spills, eval results): S3 tags them
# ``llamda-lifecycle=job`` and the bucket's lifecycle rule (template.yaml: JobDays) expires
# them, so a job whose record expired leaves nothing behind.
JOB_LIFECYCLE = "job"


@runtime_checkable
class Objects(Protocol):
    async def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str | None = None,
        lifecycle: str | None = None,
    ) -> None:
        """Store ``data``. ``lifecycle`` (e.g. JOB_LIFECYCLE) names the expiry rule that
        removes the object; None keeps it until deleted. Local storage has no rule."""

    async def put_file(self, key: str, source: BinaryIO, *, content_type: str | None = None) -> int:
        """Store what ``source`` reads until its end, in bounded memory; its size in bytes.
        Readers see the whole object or none of it; a failed copy leaves nothing behind."""

    async def put_parts(
        self, key: str, part_keys: Sequence[str], *, content_type: str | None = None
    ) -> int:
        """Store the concatenation of the objects ``part_keys`` (in order) as ``key``, streamed
        in bounded memory; its size in bytes. The parts stay (the caller deletes them);
        NotFoundError when one is missing. All-or-nothing, like ``put_file``."""

    async def get(self, key: str) -> bytes:
        """The object's bytes; NotFoundError when absent."""

    def chunks(self, key: str) -> AsyncIterator[bytes]:
        """The object's bytes in pieces of at most COPY_CHUNK, read as they are consumed;
        NotFoundError (on the first one) when absent."""
        ...

    async def download_url(
        self, key: str, *, expires_in: int, disposition: str, content_type: str
    ) -> str | None:
        """A short-lived URL that GETs the object without credentials (answered with this
        Content-Disposition and Content-Type), or None when this store has none (local).
        Existence is not checked."""

    async def delete(self, key: str) -> bool:
        """Delete; True when something was deleted."""

    async def list(self, prefix: str = "") -> list[str]:
        """Relative keys (as given to ``put``) under the "directory" ``prefix``, sorted."""

    async def close(self) -> None: ...


def build_objects(config: LocalObjects | S3Objects) -> Objects:
    if isinstance(config, LocalObjects):
        from llamda.storage.objects_local import LocalObjectStore

        return LocalObjectStore(config.root)
    from llamda.storage.objects_s3 import S3ObjectStore

    return S3ObjectStore(config.bucket, config.prefix, config.region_name, config.endpoint_url)
