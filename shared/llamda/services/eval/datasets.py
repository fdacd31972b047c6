"""Datasets: rows read once from their source when registered, checked against the purpose and
kept as JSONL in Objects (``datasets/<snapshot>.jsonl`` under the tenant); metadata in Records
(kind ``datasets``, tenant-scoped: another tenant's dataset is a 404). Each change of the rows
(append-rows) writes a new snapshot, so a reader always sees a whole, unchanging set."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from llamda.api.datasets import Dataset, IterRowsResponse, ListDatasetsResponse
from llamda.config import EvalConfig, LocalObjects, S3Objects
from llamda.context import current_tenant
from llamda.errors import BadRequestError, ConflictError, NotFoundError
from llamda.services.eval import formats
from llamda.services.files import FilesService
from llamda.storage.keys import split_key
from llamda.storage.objects import Objects
from llamda.storage.records import Records, save

KIND = "datasets"
FILE_ID = re.compile(r"^file-[a-f0-9]{1,64}$")
# One iterrows page at most (a Lambda response is at most 6 MB): has_more says what is left.
MAX_PAGE_ROWS = 10_000
LIST_LIMIT = 1_000
DATASETIO_LOCAL, DATASETIO_S3 = "datasetio-localfs", "datasetio-s3"


def _not_found(dataset_id: str) -> NotFoundError:
    return NotFoundError(
        f"Dataset '{dataset_id}' not found", param="dataset_id", code="dataset_not_found"
    )


def _exists(dataset_id: str) -> ConflictError:
    return ConflictError(
        f"Dataset '{dataset_id}' already exists; unregister it first, or add rows with append-rows",
        param="dataset_id",
        code="dataset_exists",
    )


def _bad_uri(message: str) -> BadRequestError:
    return BadRequestError(message, param="source.uri", code="invalid_dataset_uri")


class DatasetsService:
    def __init__(
        self,
        config: EvalConfig,
        objects_config: LocalObjects | S3Objects,
        records: Records,
        objects: Objects,
        files: FilesService,
    ):
        self._config = config
        self._objects_config = objects_config
        self._records = records
        self._objects = objects
        self._files = files
        # Not "localfs"/"s3": those are the files API's provider ids (/v1/providers/{id}).
        local = isinstance(objects_config, LocalObjects)
        self.provider_id = DATASETIO_LOCAL if local else DATASETIO_S3
        # The last snapshot read (snapshots never change: its key names its content). Eval
        # jobs read a dataset chunk by chunk; this spares a re-read and re-parse per chunk.
        self._cached: tuple[str, list[dict[str, Any]]] | None = None

    # --- the interface eval jobs use ----------------------------------------------------------

    async def get(self, dataset_id: str) -> dict[str, Any]:
        """The dataset as the API answers it (404 when the caller has none by that id)."""
        return _answer(await self._record(dataset_id)).model_dump()

    async def rows(
        self,
        dataset_id: str,
        start_index: int = 0,
        limit: int | None = None,
        *,
        registration: str | None = None,
    ) -> list[dict[str, Any]]:
        """Rows ``start_index`` onwards (at most ``limit``; None: all) of the current snapshot.
        ``registration`` (from ``registration()``): 409 when the dataset was unregistered and
        registered again since (a job must not mix two datasets' rows; appends keep it)."""
        rows: list[dict[str, Any]] | None = None
        for _ in range(2):
            record = await self._record(dataset_id)  # 404 when the dataset is gone
            if registration is not None and record.get("registration") != registration:
                raise ConflictError(
                    f"Dataset '{dataset_id}' was unregistered and registered again while "
                    "this job ran: its rows are not the ones the job started with",
                    param="dataset_id",
                    code="dataset_replaced",
                )
            try:
                rows = await self._snapshot(record["object_key"])
                break
            except NotFoundError:
                # An append replaced the snapshot between reading the record and its rows:
                # the record, read again, names the new one.
                continue
        if rows is None:
            raise ConflictError(
                f"Dataset '{dataset_id}' has lost its rows in storage; register it again",
                param="dataset_id",
                code="dataset_rows_missing",
            )
        end = len(rows) if limit is None else start_index + limit
        # Copies: a caller adding columns (generated_answer) must not change the cached rows.
        return [dict(row) for row in rows[start_index:end]]

    async def count(self, dataset_id: str) -> int:
        return int((await self._record(dataset_id))["row_count"])

    async def registration(self, dataset_id: str) -> tuple[int, str | None]:
        """(row count, the registration's id) of the dataset now; the id changes only when
        the dataset is registered again (None for a dataset stored before ids existed)."""
        record = await self._record(dataset_id)
        return int(record["row_count"]), record.get("registration")

    # --- the API ------------------------------------------------------------------------------

    async def register(
        self,
        *,
        purpose: str,
        source: dict[str, Any],
        metadata: dict[str, Any] | None,
        dataset_id: str | None,
    ) -> Dataset:
        dataset_id = dataset_id or f"dataset-{uuid.uuid4()}"
        if await self._records.get(KIND, dataset_id) is not None:
            raise _exists(dataset_id)
        if source["type"] == "rows":
            rows = source["rows"]
            kept_source: dict[str, Any] = {"type": "rows", "rows": []}
        else:
            name, data = await self._read_uri(source["uri"])
            rows = formats.parse_rows(
                name, data, max_rows=self._config.max_rows, max_bytes=self._config.max_bytes
            )
            kept_source = {"type": "uri", "uri": source["uri"]}
        self._check_count(len(rows))
        formats.check_rows(purpose, rows)
        key, size = await self._write_snapshot(formats.to_jsonl(rows))
        record = {
            "id": dataset_id,
            "purpose": purpose,
            "source": kept_source,
            "metadata": metadata or {},
            "provider_id": self.provider_id,
            "object_key": key,
            "row_count": len(rows),
            "bytes": size,
            "created_at": int(time.time()),
            "registration": uuid.uuid4().hex,
        }
        try:
            await self._records.put(KIND, dataset_id, record, if_absent=True)
        except ConflictError:
            await self._objects.delete(key)
            raise _exists(dataset_id) from None
        return _answer(record)

    async def list(self) -> ListDatasetsResponse:
        out: list[Dataset] = []
        after: str | None = None
        while page := await self._records.list(KIND, after=after, limit=LIST_LIMIT):
            out.extend(_answer(r) for r in page)
            after = page[-1]["id"]
        return ListDatasetsResponse(data=out)

    async def unregister(self, dataset_id: str) -> None:
        record = await self._record(dataset_id)
        # Record first: once it is gone the dataset is gone for readers; then the rows.
        if not await self._records.delete(KIND, dataset_id):
            raise _not_found(dataset_id)
        await self._objects.delete(record["object_key"])

    async def iterrows(
        self, dataset_id: str, start_index: int | None, limit: int | None
    ) -> IterRowsResponse:
        """Llama Stack's paging: ``limit`` None or -1 means every row (here: up to a page of
        MAX_PAGE_ROWS, ``has_more`` telling whether rows are left)."""
        if limit is not None and (limit == 0 or limit < -1):
            # A page of nothing would say has_more forever: a pager would never get on.
            raise BadRequestError("limit must be -1 (all) or at least 1", param="limit")
        start = start_index or 0
        size = MAX_PAGE_ROWS if limit is None or limit == -1 else min(limit, MAX_PAGE_ROWS)
        total = await self.count(dataset_id)
        data = await self.rows(dataset_id, start, size) if start < total else []
        end = start + len(data)
        has_more = end < total
        return IterRowsResponse(
            data=data, has_more=has_more, next_start_index=end if has_more else None
        )

    async def append_rows(self, dataset_id: str, rows: list[dict[str, Any]]) -> None:
        """A new snapshot of the old rows and ``rows``; 409 when another change won the race."""
        record = await self._record(dataset_id)
        self._check_count(record["row_count"] + len(rows))
        formats.check_rows(record["purpose"], rows, start_index=record["row_count"])
        new_lines = formats.to_jsonl(rows, start_index=record["row_count"])
        old = await self._objects.get(record["object_key"])
        key, size = await self._write_snapshot([old, *new_lines])
        old_key = record["object_key"]
        record.update(object_key=key, row_count=record["row_count"] + len(rows), bytes=size)
        if not await save(self._records, KIND, dataset_id, record):
            await self._objects.delete(key)
            raise ConflictError(
                f"Dataset '{dataset_id}' changed while rows were appended; try again",
                param="dataset_id",
                code="dataset_changed",
            )
        await self._objects.delete(old_key)

    # --- internals ----------------------------------------------------------------------------

    async def _record(self, dataset_id: str) -> dict[str, Any]:
        record = await self._records.get(KIND, dataset_id)
        if record is None:
            raise _not_found(dataset_id)
        return record

    def _check_count(self, count: int) -> None:
        if count > self._config.max_rows:
            raise BadRequestError(
                f"a dataset holds at most {self._config.max_rows} rows (eval.max_rows); "
                f"this one would have {count}",
                param="rows",
                code="dataset_too_large",
            )

    async def _write_snapshot(self, pieces: list[bytes]) -> tuple[str, int]:
        size = sum(len(p) for p in pieces)
        if size > self._config.max_bytes:
            raise BadRequestError(
                f"the dataset's rows take {size} bytes as JSONL, more than "
                f"{self._config.max_bytes} (eval.max_bytes)",
                param="rows",
                code="dataset_too_large",
            )
        key = f"datasets/{uuid.uuid4().hex}.jsonl"
        await self._objects.put(key, b"".join(pieces), content_type="application/jsonl")
        return key, size

    async def _snapshot(self, key: str) -> list[dict[str, Any]]:
        cache_key = f"{current_tenant()}/{key}"
        if self._cached is not None and self._cached[0] == cache_key:
            return self._cached[1]
        rows = formats.from_jsonl(await self._objects.get(key))
        self._cached = (cache_key, rows)
        return rows

    async def _read_uri(self, uri: str) -> tuple[str, bytes]:
        """(a name whose extension tells the format, the bytes) of a source URI."""
        if FILE_ID.match(uri):
            try:
                meta = await self._files.get(uri)
            except NotFoundError as exc:  # name the field the client sent
                raise NotFoundError(exc.message, param="source.uri", code=exc.code) from None
            if meta.bytes > self._config.max_bytes:
                raise self._too_big()
            pieces, _ = await self._files.content_stream(uri)
            return meta.filename, await self._bounded(pieces)
        parts = urlsplit(uri)
        if parts.scheme == "s3":
            return parts.path, await self._read_s3(parts.netloc, parts.path.lstrip("/"))
        if parts.scheme in ("file", ""):
            if parts.netloc not in ("", "localhost"):
                raise _bad_uri("a file:// URI must name a local path")
            path = unquote(parts.path) if parts.scheme == "file" else uri
            return path, await self._read_local(path)
        raise _bad_uri(
            f"unsupported dataset URI scheme {parts.scheme!r}: use a File id (file-…), "
            "s3://<the stack's bucket>/…, inline rows, or (local) a path under eval.datasets_root"
        )

    def _too_big(self) -> BadRequestError:
        return BadRequestError(
            f"the dataset source is larger than {self._config.max_bytes} bytes (eval.max_bytes)",
            param="source.uri",
            code="dataset_too_large",
        )

    async def _bounded(self, pieces: Any) -> bytes:
        data = bytearray()
        async for piece in pieces:
            data += piece
            if len(data) > self._config.max_bytes:
                raise self._too_big()
        return bytes(data)

    async def _read_s3(self, bucket: str, key: str) -> bytes:
        """Only objects of the stack's bucket under the caller's own tenant prefix: another
        bucket, or another tenant's objects, are not the caller's to read."""
        config = self._objects_config
        if not isinstance(config, S3Objects):
            raise _bad_uri("s3:// dataset URIs need the S3 object store (storage.objects)")
        if bucket != config.bucket:
            raise _bad_uri(f"s3:// dataset URIs must be in the stack's bucket {config.bucket!r}")
        own = "/".join(p for p in (config.prefix, "tenants", current_tenant()) if p) + "/"
        if not key.startswith(own) or len(key) == len(own):
            raise _bad_uri(f"s3:// dataset URIs must be under s3://{config.bucket}/{own}")
        relative = key[len(own) :]
        try:
            split_key(relative)  # no empty, "." or ".." segments
            return await self._bounded(self._objects.chunks(relative))
        except NotFoundError:
            raise _bad_uri(f"no object at {key!r} in the stack's bucket") from None
        except BadRequestError:
            raise _bad_uri("the s3:// URI has an invalid key") from None

    async def _read_local(self, raw: str) -> bytes:
        """A path under eval.datasets_root, after symlinks and ``..`` are resolved."""
        root_setting = self._config.datasets_root
        if root_setting is None:
            # Also what a mistyped File id reaches: say what would work.
            raise _bad_uri(
                f"{raw[:100]!r} is not a File id (file-<hex>), and local dataset paths are "
                "disabled (eval.datasets_root is not set): upload the rows as a File and give "
                "its id, or send them inline"
            )
        if "\x00" in raw:
            raise _bad_uri("invalid path")
        limit = self._config.max_bytes

        def read() -> bytes:
            root = Path(root_setting).resolve()
            path = Path(raw)
            target = (path if path.is_absolute() else root / path).resolve()
            if not target.is_relative_to(root):
                raise _bad_uri("dataset paths must be inside eval.datasets_root")
            if not target.is_file():
                raise _bad_uri("no such dataset file under eval.datasets_root")
            with target.open("rb") as fh:
                return fh.read(limit + 1)

        data = await asyncio.to_thread(read)
        if len(data) > limit:
            raise self._too_big()
        return data


def _answer(record: dict[str, Any]) -> Dataset:
    return Dataset(
        identifier=record["id"],
        provider_resource_id=record["id"],
        provider_id=record["provider_id"],
        purpose=record["purpose"],
        source=record["source"],
        metadata=record.get("metadata") or {},
        row_count=record.get("row_count", 0),
    )
