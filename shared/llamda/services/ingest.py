"""Ingestion from S3 objects (the ingest Lambda) and from local paths (``llamda ingest``).

Convention: an object at ``ingest/<tenant>/<vector_store_id>/<path>`` becomes a File of that
tenant (filename: the last path segment) attached to that vector store. Keys without the tenant
(the old ``ingest/<vector_store_id>/<path>``) are refused with a reason that names the layout.
Optional user metadata on the object: ``x-amz-meta-attributes`` (a JSON object of file
attributes) and ``x-amz-meta-chunk-size`` / ``x-amz-meta-chunk-overlap`` (static chunking, in
tokens). Re-uploading a key replaces its chunks;
deleting it removes them. Events older than the last one applied to a key (S3's ``sequencer``)
are ignored, so out-of-order delivery cannot resurrect a deleted object. With a versioned bucket
the live version decides: removing a non-current version or a delete marker never deletes the
live document's chunks (a removed delete marker brings its version back).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import posixpath
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from pydantic import TypeAdapter, ValidationError

from llamda.api.vector_stores import (
    Attributes,
    StaticChunkingStrategy,
    VectorStoreFileObject,
)
from llamda.aws import clients, error_code
from llamda.context import set_tenant, valid_tenant
from llamda.errors import ConflictError, NotFoundError
from llamda.services.files import FilesService
from llamda.services.vector_stores import JOB_TYPE, VectorStoresService
from llamda.storage.records import Records

PREFIX = "ingest/"
SOURCES = "ingest_sources"
_ATTRIBUTES = TypeAdapter(Attributes)


class IngestError(Exception):
    """A message that can never succeed (bad key, unknown store, unreadable file)."""


@dataclass(frozen=True)
class S3Object:
    bucket: str
    key: str
    event: str  # "created" | "removed"
    etag: str = ""
    version_id: str = ""
    sequencer: str = ""
    size: int = 0

    @property
    def idempotency_key(self) -> dict[str, str]:
        return {
            "bucket": self.bucket,
            "key": self.key,
            "etag": self.etag,
            "version_id": self.version_id,
            "event": self.event,
        }


def s3_objects(body: str) -> list[S3Object]:
    """The objects of an S3 event notification (an SQS message body). The S3 test event has
    none. Keys arrive URL-encoded ('+' for spaces)."""
    try:
        message = json.loads(body)
    except json.JSONDecodeError as exc:
        raise IngestError(f"message body is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise IngestError("message body is not an S3 event")
    if message.get("Event") == "s3:TestEvent":
        return []
    records = message.get("Records")
    if not isinstance(records, list):
        raise IngestError("message body has no Records")
    found = []
    for record in records:
        try:
            name = record["eventName"]
            s3 = record["s3"]
            obj = s3["object"]
            found.append(
                S3Object(
                    bucket=s3["bucket"]["name"],
                    key=unquote_plus(obj["key"]),
                    event="removed" if name.startswith("ObjectRemoved") else "created",
                    etag=obj.get("eTag", ""),
                    version_id=obj.get("versionId") or "",
                    sequencer=obj.get("sequencer", ""),
                    size=int(obj.get("size", 0)),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise IngestError(f"malformed S3 event record: {exc!r}") from None
    return found


def attach_job(body: str) -> dict[str, Any] | None:
    """The job of a message queued by the Vector Stores API (``VectorStoresService._enqueue``),
    or None for anything else (S3 notifications)."""
    try:
        message = json.loads(body)
    except json.JSONDecodeError:
        return None
    if isinstance(message, dict) and message.get("type") == JOB_TYPE:
        for field in ("tenant", "vector_store_id", "file_id", "chunking_strategy"):
            if field not in message:
                raise IngestError(f"queued job without {field}")
        return message
    return None


LAYOUT = "ingest/<tenant>/<vector_store_id>/<path>"


def parse_key(key: str) -> tuple[str, str, str]:
    """(tenant, vector_store_id, filename) of ``ingest/<tenant>/<vector_store_id>/<path>``."""
    parts = key.split("/")
    if parts[0] + "/" != PREFIX or not all(parts[1:3]) or not parts[-1]:
        raise IngestError(f"{key!r} is not {LAYOUT}")
    if len(parts) < 4:
        raise IngestError(
            f"{key!r} is not {LAYOUT}: keys name the tenant first "
            f"(e.g. ingest/default/{parts[1]}/{parts[-1]} for the default tenant)"
        )
    if not valid_tenant(parts[1]):
        raise IngestError(f"{key!r}: {parts[1]!r} is not a valid tenant id ({LAYOUT})")
    return parts[1], parts[2], parts[-1]


def _newer(sequencer: str, than: str) -> bool:
    """S3 sequencers compare as hex strings of equal length (shorter ones zero-padded)."""
    if not sequencer or not than:
        return True
    width = max(len(sequencer), len(than))
    return sequencer.rjust(width, "0") >= than.rjust(width, "0")


def _after(sequencer: str, than: str) -> bool:
    """Strictly newer (no ordering known when either is missing: the later writer wins)."""
    if not sequencer or not than:
        return True
    width = max(len(sequencer), len(than))
    return sequencer.rjust(width, "0") > than.rjust(width, "0")


class IngestService:
    def __init__(
        self,
        files: FilesService,
        vector_stores: VectorStoresService,
        records: Records,
        s3_endpoint_url: str | None = None,
    ):
        self._files = files
        self._stores = vector_stores
        self._records = records
        self._endpoint = s3_endpoint_url

    async def handle(self, obj: S3Object) -> VectorStoreFileObject | None:
        """Apply one S3 event. Raises IngestError when it can never succeed and on a failed
        file (so the message is reported and retried, then dead-lettered).

        Version-exact (the bucket is versioned): a create ingests exactly its version; a
        removal makes the key's current version live again, whatever it is now — nothing when a
        delete marker is current, the restored version when a delete marker was removed, no
        change when a non-current version was deleted. The key's source record names the live
        File and changes only conditionally, newest S3 ``sequencer`` winning, so concurrent
        events for one key leave exactly one File's chunks."""
        tenant, store_id, filename = parse_key(obj.key)
        set_tenant(tenant)  # this task acts for the key's tenant: its store, files and records
        source_id = hashlib.sha256(f"{obj.bucket}/{obj.key}".encode()).hexdigest()[:40]
        source = await self._records.get(SOURCES, source_id)
        if source and not _newer(obj.sequencer, source.get("sequencer", "")):
            return None  # an older event than the one already applied
        if obj.event == "removed":
            # Unversioned bucket: the object is gone. Versioned: whatever is current now.
            target = await self._current_version(obj) if obj.version_id else None
        else:
            target = obj.version_id  # "" in an unversioned bucket: the object as it is
        live = source.get("version_id") if source and source.get("file_id") else None
        if target and target == live:  # already live (a non-current version was removed)
            await self._swap(source_id, source, obj, target, source.get("file_id"), store_id)
            return None
        result: VectorStoreFileObject | None = None
        file_id: str | None = None
        if target is not None:
            try:
                store = await self._stores.store_record(store_id)
            except NotFoundError:
                raise IngestError(f"{obj.key}: no vector store {store_id!r}") from None
            downloaded = await self._download(obj, target)
            if downloaded is None:  # deleted since: its removal event cleans up
                return None
            data, metadata = downloaded
            attributes, chunking = self._options(metadata, obj.key)
            file = await self._files.create(data, filename, "assistants", None)
            file_id = file.id
            result = await self._stores.ingest_file(
                store, file.id, attributes, chunking, source={"s3": f"s3://{obj.bucket}/{obj.key}"}
            )
        if not await self._swap(source_id, source, obj, target, file_id, store_id):
            return None  # a newer event won meanwhile
        if result is not None and result.status != "completed":
            error = result.last_error.message if result.last_error else result.status
            raise IngestError(f"{obj.key}: {error}")
        return result

    async def _swap(
        self,
        source_id: str,
        source: dict[str, Any] | None,
        obj: S3Object,
        version_id: str | None,
        file_id: str | None,
        store_id: str,
    ) -> bool:
        """Make ``file_id`` (None: nothing) the key's live File, conditionally on the source
        record read before, then remove the File it displaced. When a newer event won the
        record meanwhile, remove ours instead and return False. Removals keep the sequencer
        (a tombstone), so an older create delivered late is ignored."""
        record = {
            "id": source_id,
            "bucket": obj.bucket,
            "key": obj.key,
            "etag": obj.etag,
            "sequencer": obj.sequencer,
            "version_id": version_id,
            "vector_store_id": store_id,
            "file_id": file_id,
        }
        while True:
            try:
                if source is None:
                    await self._records.put(SOURCES, source_id, record, if_absent=True)
                else:
                    expected = int(source.get("version") or 0)
                    await self._records.put(
                        SOURCES, source_id, {**record, "version": expected + 1}, if_version=expected
                    )
                break
            except ConflictError:
                source = await self._records.get(SOURCES, source_id)
            if source is not None and not _after(obj.sequencer, source.get("sequencer", "")):
                # A newer event (or this one, delivered twice) owns the key: ours is not live.
                if file_id and file_id != source.get("file_id"):
                    await self._forget({"vector_store_id": store_id, "file_id": file_id})
                return False
        displaced = source.get("file_id") if source else None
        if source and displaced and displaced != file_id:
            await self._forget(source)
        return True

    async def _current_version(self, obj: S3Object) -> str | None:
        """The key's current version id now, or None when it has none (deleted, or a delete
        marker is current)."""
        s3 = await clients.client("s3", endpoint_url=self._endpoint)
        try:
            reply = await s3.head_object(Bucket=obj.bucket, Key=obj.key)
        except Exception as exc:
            if error_code(exc) in {"NoSuchKey", "404", "NoSuchVersion", "405"}:
                return None
            raise
        return reply.get("VersionId") or ""

    async def run_job(self, job: dict[str, Any]) -> VectorStoreFileObject | None:
        """A file attached through the API, queued for us: processed as its tenant. A file
        that cannot be read ends ``failed`` (final: the API shows why); only an unexpected error
        raises, so the message is retried."""
        set_tenant(job["tenant"])
        return await self._stores.run_job(job)

    async def _forget(self, source: dict[str, Any]) -> None:
        """Remove what an earlier version of a key produced: its chunks, record and File."""
        with contextlib.suppress(NotFoundError):
            await self._stores.delete_file(source["vector_store_id"], source["file_id"])
        with contextlib.suppress(NotFoundError):
            await self._files.delete(source["file_id"])

    async def _download(
        self, obj: S3Object, version_id: str
    ) -> tuple[bytes, dict[str, str]] | None:
        s3 = await clients.client("s3", endpoint_url=self._endpoint)
        extra = {"VersionId": version_id} if version_id else {}
        try:
            reply = await s3.get_object(Bucket=obj.bucket, Key=obj.key, **extra)
        except Exception as exc:
            if error_code(exc) in {"NoSuchKey", "404", "NoSuchVersion"}:
                return None
            raise
        async with reply["Body"] as body:
            return await body.read(), reply.get("Metadata", {})

    @staticmethod
    def _options(
        metadata: dict[str, str], key: str
    ) -> tuple[dict[str, Any], StaticChunkingStrategy | None]:
        try:
            attributes = _ATTRIBUTES.validate_json(metadata.get("attributes") or "{}")
            chunking = None
            if "chunk-size" in metadata:
                chunking = StaticChunkingStrategy.of(
                    int(metadata["chunk-size"]), int(metadata.get("chunk-overlap", "0"))
                )
        except (ValidationError, ValueError) as exc:
            raise IngestError(f"{key}: bad object metadata: {exc}") from None
        return attributes, chunking

    async def ingest_local(
        self,
        store_id: str,
        data: bytes,
        filename: str,
        attributes: dict[str, Any] | None = None,
        chunking: StaticChunkingStrategy | None = None,
    ) -> VectorStoreFileObject:
        """One local file into a store (the CLI against the local profile)."""
        store = await self._stores.store_record(store_id)
        file = await self._files.create(data, posixpath.basename(filename), "assistants", None)
        return await self._stores.ingest_file(store, file.id, attributes or {}, chunking)
