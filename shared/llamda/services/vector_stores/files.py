"""A store's files and file batches: attach, read, list, update, delete, batch, cancel. Chunks
are read and changed through the store's ``VectorIndex`` (``Stores.index``)."""

from __future__ import annotations

import time
from typing import Any

from llamda.api.vector_stores import (
    ChunkContent,
    ChunkingStrategyParam,
    FileBatchObject,
    ListResponse,
    VectorStoreFileContent,
    VectorStoreFileObject,
)
from llamda.errors import ConflictError, NotFoundError
from llamda.services.vector_stores.common import (
    STORES,
    all_records,
    batches_kind,
    files_kind,
    list_response,
    new_id,
    tally,
)
from llamda.services.vector_stores.ingestion import Ingestion
from llamda.services.vector_stores.stores import Stores
from llamda.storage.records import Records, list_page, save


class StoreFiles:
    def __init__(self, records: Records, stores: Stores, ingestion: Ingestion):
        self._records = records
        self._stores = stores
        self._ingestion = ingestion

    # --- files -------------------------------------------------------------------------------

    async def attach(
        self,
        store_id: str,
        file_id: str,
        attributes: dict[str, Any],
        chunking: ChunkingStrategyParam | None,
    ) -> VectorStoreFileObject:
        store = await self._stores.record(store_id)
        await self._ingestion.check_chunking(chunking)
        file_ids = await self._ingestion.existing([file_id])  # one file: unknown is a 404
        (result,) = await self._ingestion.ingest_many(store, file_ids, attributes, chunking, None)
        return result

    async def _child(self, kind: str, store_id: str, key: str, what: str) -> dict[str, Any]:
        """A record of the store (404 for an unknown store, then for an unknown ``key``)."""
        await self._stores.record(store_id)
        record = await self._records.get(kind, key)
        if record is None:
            raise NotFoundError(
                f"No {what} {key!r} in vector store {store_id!r}",
                param="file_id" if what == "file" else "batch_id",
                code="file_not_found" if what == "file" else "not_found",
            )
        return record

    async def _file_record(self, store_id: str, file_id: str) -> dict[str, Any]:
        return await self._child(files_kind(store_id), store_id, file_id, "file")

    async def get_file(self, store_id: str, file_id: str) -> VectorStoreFileObject:
        return VectorStoreFileObject.model_validate(await self._file_record(store_id, file_id))

    async def list_files(
        self,
        store_id: str,
        *,
        limit: int,
        after: str | None,
        order: str,
        status: str | None,
        batch_id: str | None = None,
    ) -> ListResponse[VectorStoreFileObject]:
        await self._stores.record(store_id)
        in_batch: set[str] | None = None
        if batch_id is not None:
            in_batch = set((await self._batch_record(store_id, batch_id))["file_ids"])

        def keep(r: dict[str, Any]) -> bool:
            return (status is None or r["status"] == status) and (
                in_batch is None or r["id"] in in_batch
            )

        page, has_more = await list_page(
            self._records,
            files_kind(store_id),
            limit=limit,
            after=after,
            descending=order == "desc",
            keep=keep,
        )
        return list_response([VectorStoreFileObject.model_validate(r) for r in page], has_more)

    async def update_file(
        self, store_id: str, file_id: str, attributes: dict[str, Any]
    ) -> VectorStoreFileObject:
        for _ in range(5):  # a concurrent writer changed the record: apply ours to the newer one
            record = await self._file_record(store_id, file_id)  # 404 once deleted
            store = await self._stores.record(store_id)
            await self._stores.index(store).update_file_attributes(store_id, file_id, attributes)
            record["attributes"] = attributes
            if await save(self._records, files_kind(store_id), file_id, record):
                return VectorStoreFileObject.model_validate(record)
        raise ConflictError("the file is being changed concurrently; retry")

    async def delete_file(self, store_id: str, file_id: str) -> None:
        await self._file_record(store_id, file_id)
        await self.forget(await self._stores.record(store_id), file_id)

    async def forget(self, store: dict[str, Any], file_id: str) -> None:
        """Detach a file: its record first (an ingestion still running sees it gone when it
        saves its outcome, and removes what it wrote), then its chunks."""
        store_id = store["id"]
        await self._records.delete(files_kind(store_id), file_id)
        await self._stores.index(store).delete_file(store_id, file_id)

    async def forget_everywhere(self, file_id: str) -> None:
        """A File was deleted: detach it from every store of the caller's it is attached to."""
        for store in await all_records(self._records, STORES):
            if await self._records.get(files_kind(store["id"]), file_id) is not None:
                await self.forget(store, file_id)

    async def file_content(
        self,
        store_id: str,
        file_id: str,
        *,
        include_embeddings: bool = False,
        include_metadata: bool = False,
    ) -> VectorStoreFileContent:
        """The file's chunks in order, each with its chunk metadata (as Llama Stack serves
        them); its embedding and metadata dict on request."""
        await self._file_record(store_id, file_id)
        store = await self._stores.record(store_id)
        rows = await self._stores.index(store).file_rows(
            store_id, file_id, vectors=include_embeddings
        )
        rows.sort(key=lambda r: r["chunk_index"])
        return VectorStoreFileContent(
            data=[
                ChunkContent(
                    text=r["text"],
                    chunk_metadata=r["chunk_metadata"] or {},
                    embedding=[float(x) for x in r["vector"]] if include_embeddings else None,
                    metadata=_metadata(r) if include_metadata else None,
                )
                for r in rows
            ]
        )

    # --- file batches ------------------------------------------------------------------------

    async def create_batch(
        self,
        store_id: str,
        file_ids: list[str],
        attributes: dict[str, Any],
        chunking: ChunkingStrategyParam | None,
    ) -> FileBatchObject:
        store = await self._stores.record(store_id)
        await self._ingestion.check_chunking(chunking)
        batch_id = new_id("vsfb_")
        record = {
            "id": batch_id,
            "created_at": int(time.time()),
            "vector_store_id": store_id,
            "status": "in_progress",
            # Unknown ids stay in the batch: they end failed, the others proceed.
            "file_ids": list(dict.fromkeys(file_ids)),
        }
        await self._records.put(batches_kind(store_id), batch_id, record)
        await self._ingestion.ingest_many(store, record["file_ids"], attributes, chunking, batch_id)
        return await self.get_batch(store_id, batch_id)

    async def _batch_record(self, store_id: str, batch_id: str) -> dict[str, Any]:
        return await self._child(batches_kind(store_id), store_id, batch_id, "file batch")

    async def get_batch(self, store_id: str, batch_id: str) -> FileBatchObject:
        record = await self._batch_record(store_id, batch_id)
        kind = files_kind(store_id)
        statuses = []
        for file_id in record["file_ids"]:
            file = await self._records.get(kind, file_id)
            statuses.append(file["status"] if file else "cancelled")
        counts = tally(statuses)
        if record["status"] == "in_progress" and counts.in_progress == 0:
            record["status"] = "completed"  # every file has finished
            await save(self._records, batches_kind(store_id), batch_id, record)
        return FileBatchObject(
            **{k: record[k] for k in ("id", "created_at", "vector_store_id", "status")},
            file_counts=counts,
        )

    async def cancel_batch(self, store_id: str, batch_id: str) -> FileBatchObject:
        """Files not yet started are cancelled; finished ones stay. A finished batch is
        returned as it is."""
        record = await self._batch_record(store_id, batch_id)
        if record["status"] == "in_progress":
            record["status"] = "cancelled"
            if not await save(self._records, batches_kind(store_id), batch_id, record):
                return await self.cancel_batch(store_id, batch_id)  # changed meanwhile: again
            kind = files_kind(store_id)
            for file_id in record["file_ids"]:  # queued files not started yet
                file = await self._records.get(kind, file_id)
                if file and file["status"] == "in_progress" and not file.get("started"):
                    file["status"] = "cancelled"
                    await save(self._records, kind, file_id, file)  # lost: it has started
        return await self.get_batch(store_id, batch_id)


def _metadata(row: dict[str, Any]) -> dict[str, Any]:
    """A chunk's metadata dict: what vector-io stored, else its document, file and attributes."""
    stored = row["metadata"] or {}
    if stored:
        return dict(stored)
    return {"document_id": row["file_id"], "filename": row["filename"], **(row["attributes"] or {})}
