"""Ingestion: one path from a File to searchable chunks, used by the API (files, file batches),
the S3 ingest Lambda and the CLI: file bytes → text → token chunks (in a worker process, within
the per-file limits of ``storage.vectors.ingest``) → embeddings → one write to the store's
``VectorIndex`` (replacing what the file had). A file
that cannot be read ends ``failed`` with ``last_error``; nothing of it is written. With an
ingest queue configured, attached files are queued for the ingest function."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from pydantic import TypeAdapter

from llamda.api.vector_stores import (
    ChunkingStrategyParam,
    ContextualChunkingStrategy,
    ResolvedChunking,
    VectorStoreFileObject,
    resolved_chunking,
    token_window,
)
from llamda.config import VectorsConfig
from llamda.errors import ConflictError, LlamdaError, NotFoundError, ServiceUnavailableError
from llamda.providers.vector_io.index import ChunkRow
from llamda.services.document_worker import document_chunks_isolated
from llamda.services.documents import TOKENIZER_NAME, DocumentError, DocumentLimits
from llamda.services.files import FilesService
from llamda.services.vector_stores.common import (
    JOB_TYPE,
    batches_kind,
    files_kind,
    new_file_record,
)
from llamda.services.vector_stores.embedding import Embedder
from llamda.services.vector_stores.llm import StoreLLM
from llamda.services.vector_stores.stores import Stores
from llamda.storage.records import Records, save

log = logging.getLogger(__name__)

# An ingestion claimed longer ago than this is taken for abandoned (its process died).
CLAIM_SECONDS = 900
_RESOLVED: TypeAdapter[Any] = TypeAdapter(ResolvedChunking)
# Contextual chunking sends the whole document with each chunk: it is read as windows of
# this many tokens without overlap, joined (llm.MAX_DOCUMENT_CHARS bounds what is sent).
_DOCUMENT_WINDOW = 4096


class Ingestion:
    def __init__(
        self,
        config: VectorsConfig,
        records: Records,
        files: FilesService,
        stores: Stores,
        embedder: Embedder,
        llm: StoreLLM,
    ):
        self._config = config
        self._records = records
        self._files = files
        self._stores = stores
        self._embedder = embedder
        self._llm = llm
        limits = config.ingest
        self._limits = DocumentLimits(
            max_decoded_bytes=limits.max_decoded_bytes,
            max_pages=limits.max_pages,
            max_tokens=limits.max_tokens,
        )
        self._workers: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    def _worker_slots(self) -> asyncio.Semaphore:
        """Document worker processes at once in this process, across requests (one semaphore
        per event loop: a CLI or a test may run several loops in turn)."""
        loop = asyncio.get_running_loop()
        if self._workers is None or self._workers[0] is not loop:
            self._workers = (loop, asyncio.Semaphore(self._config.ingest_concurrency))
        return self._workers[1]

    async def existing(self, file_ids: list[str]) -> list[str]:
        """The ids once each, in order, after checking every file exists (404 before any work
        starts or anything is recorded)."""
        file_ids = list(dict.fromkeys(file_ids))
        for file_id in file_ids:
            await self._files.get(file_id)
        return file_ids

    async def check_chunking(self, chunking: ChunkingStrategyParam | None) -> None:
        """Before any work: a contextual strategy's model exists and is an LLM."""
        if isinstance(chunking, ContextualChunkingStrategy):
            assert chunking.contextual.model_id is not None
            await self._llm.check_llm(
                chunking.contextual.model_id, "chunking_strategy.contextual.model_id"
            )

    async def ingest_many(
        self,
        store: dict[str, Any],
        file_ids: list[str],
        attributes: dict[str, Any],
        chunking: ChunkingStrategyParam | None,
        batch_id: str | None,
    ) -> list[VectorStoreFileObject]:
        """Process (or queue) files. An id of no File of the caller's ends ``failed`` with
        ``last_error`` at once, and the others proceed (as OpenAI and Llama Stack do)."""
        store_id = store["id"]
        file_ids = list(dict.fromkeys(file_ids))
        unknown: dict[str, VectorStoreFileObject] = {}
        for file_id in file_ids:
            try:
                await self._files.get(file_id)
            except NotFoundError:
                unknown[file_id] = await self._mark_missing(store_id, file_id, chunking, attributes)
        known = [f for f in file_ids if f not in unknown]
        if self._config.ingest_queue_url:
            queued = await self._enqueue(store_id, known, attributes, chunking, batch_id)
            return [*unknown.values(), *queued]
        limit = asyncio.Semaphore(self._config.ingest_concurrency)

        async def one(file_id: str) -> VectorStoreFileObject:
            async with limit:
                if batch_id and await self._batch_cancelled(store_id, batch_id):
                    return await self._mark_cancelled(store_id, file_id, chunking, attributes)
                return await self.ingest_file(store, file_id, attributes, chunking)

        return [*unknown.values(), *await asyncio.gather(*(one(f) for f in known))]

    async def _mark_missing(
        self,
        store_id: str,
        file_id: str,
        chunking: ChunkingStrategyParam | None,
        attributes: dict[str, Any],
    ) -> VectorStoreFileObject:
        record = new_file_record(store_id, file_id, "failed", attributes, chunking)
        record["last_error"] = {"code": "invalid_file", "message": f"No file {file_id!r} found"}
        await self._records.put(files_kind(store_id), file_id, record)
        return VectorStoreFileObject.model_validate(record)

    async def ingest_file(
        self,
        store: dict[str, Any],
        file_id: str,
        attributes: dict[str, Any],
        chunking: ChunkingStrategyParam | None,
        *,
        source: dict[str, Any] | None = None,
    ) -> VectorStoreFileObject:
        """Parse, chunk, embed and write one file; its record ends completed or failed."""
        store_id = store["id"]
        kind = files_kind(store_id)
        strategy = resolved_chunking(chunking)
        record = new_file_record(
            store_id, file_id, "in_progress", attributes, strategy, source=source, started=True
        )
        current = await self._claim(kind, file_id, record)
        if current is not record:  # another request is ingesting this file into this store
            return VectorStoreFileObject.model_validate(current)
        try:
            meta = await self._files.get(file_id)
            data, content_type = await self._files.content(file_id)
            max_tokens, overlap = token_window(strategy)
            async with self._worker_slots():  # parsing never runs on the event loop
                pieces = await document_chunks_isolated(
                    data,
                    meta.filename,
                    content_type,
                    max_tokens,
                    overlap,
                    self._limits,
                    self._config.ingest.max_seconds,
                )
            texts = [p.text for p in pieces]
            if isinstance(strategy, ContextualChunkingStrategy) and pieces:
                async with self._worker_slots():
                    whole = await document_chunks_isolated(
                        data,
                        meta.filename,
                        content_type,
                        _DOCUMENT_WINDOW,
                        0,
                        self._limits,
                        self._config.ingest.max_seconds,
                    )
                document = "\n".join(p.text for p in whole)
                texts = await self._llm.contextualize(strategy.contextual, document, texts)
            del data  # the bytes may be large; the embeddings take a while
            vectors = await self._embedder.for_store(store, texts)
            now = int(time.time())
            rows = [
                ChunkRow(
                    chunk_id=f"{file_id}#{p.index}",
                    file_id=file_id,
                    filename=meta.filename,
                    chunk_index=p.index,
                    token_count=p.token_count,
                    text=text,
                    vector=v,
                    attributes=attributes,
                    chunk_metadata={
                        "chunk_id": f"{file_id}#{p.index}",
                        "document_id": file_id,
                        "source": meta.filename,
                        "chunk_tokenizer": TOKENIZER_NAME,
                        "content_token_count": p.token_count,
                        "created_timestamp": now,
                    },
                    created_at=now,
                )
                for p, text, v in zip(pieces, texts, vectors, strict=True)
            ]
            await self._stores.index(store).upsert_file(
                store_id, file_id, rows, store["embedding_dimension"]
            )
            record["status"] = "completed"
            record["usage_bytes"] = sum(
                len(r.text.encode()) + 4 * store["embedding_dimension"] for r in rows
            )
            record["chunk_count"] = len(rows)
        except DocumentError as exc:
            record["status"] = "failed"
            record["last_error"] = {"code": exc.code, "message": exc.message}
        except LlamdaError as exc:
            record["status"] = "failed"
            code = "rate_limit_exceeded" if exc.status_code == 429 else "server_error"
            record["last_error"] = {"code": code, "message": exc.message}
        except Exception as exc:
            record["status"] = "failed"
            record["last_error"] = {"code": "server_error", "message": f"{type(exc).__name__}"}
            await self._finish(store, record)
            raise
        await self._finish(store, record)
        return VectorStoreFileObject.model_validate(record)

    async def _claim(self, kind: str, file_id: str, record: dict[str, Any]) -> dict[str, Any]:
        """Make ``record`` the file's record, so one ingestion per (store, file) runs at a time:
        returns ``record`` when this ingestion may run, else the record of the one running.
        A finished, queued or abandoned record is taken over (re-attaching re-ingests)."""
        # Versions start unique, so a record deleted and re-created meanwhile is never taken for
        # the one claimed here (``save`` at the end is conditional on it).
        record["version"] = time.time_ns()
        record["claimed_at"] = int(time.time())
        for _ in range(3):
            try:
                await self._records.put(kind, file_id, record, if_absent=True)
                return record
            except ConflictError:
                current = await self._records.get(kind, file_id)
            if current is None:
                continue  # deleted meanwhile: try creating it again
            running = current["status"] == "in_progress" and current.get("started")
            if running and time.time() - current.get("claimed_at", 0) < CLAIM_SECONDS:
                return current
            try:
                await self._records.put(
                    kind, file_id, record, if_version=int(current.get("version") or 0)
                )
                return record
            except ConflictError:
                continue  # someone else took it or changed it: look again
        current = await self._records.get(kind, file_id)
        if current is None:
            raise ConflictError("the file is being attached and detached concurrently; retry")
        return current

    async def _finish(self, store: dict[str, Any], record: dict[str, Any]) -> None:
        """Save the file's outcome, unless the file's record (store file delete, File delete)
        or the store was deleted meanwhile: the delete wins, and what this ingestion wrote is
        removed again (``record`` then ends ``cancelled``)."""
        store_id, file_id = store["id"], record["id"]
        kind = files_kind(store_id)
        saved = await save(self._records, kind, file_id, record)
        if saved and await self._stores.still_there(store):
            await self._stores.touch(store)
            return
        if saved:  # the store was deleted meanwhile (its table dropped again): no orphan
            await self._records.delete(kind, file_id)
        else:
            if await self._records.get(kind, file_id) is None:
                # Only when no newer attach holds the record: its write replaces our chunks.
                await self._stores.index(store).delete_file(store_id, file_id)
            await self._stores.still_there(store)  # drops what a write re-created
        log.info("ingestion of %s into %s ended: deleted meanwhile", file_id, store_id)
        record["status"] = "cancelled"

    async def _batch_cancelled(self, store_id: str, batch_id: str) -> bool:
        record = await self._records.get(batches_kind(store_id), batch_id)
        return record is not None and record["status"] == "cancelled"

    async def _mark_cancelled(
        self,
        store_id: str,
        file_id: str,
        chunking: ChunkingStrategyParam | None,
        attributes: dict[str, Any],
    ) -> VectorStoreFileObject:
        record = new_file_record(store_id, file_id, "cancelled", attributes, chunking)
        await self._records.put(files_kind(store_id), file_id, record)
        return VectorStoreFileObject.model_validate(record)

    async def _enqueue(
        self,
        store_id: str,
        file_ids: list[str],
        attributes: dict[str, Any],
        chunking: ChunkingStrategyParam | None,
        batch_id: str | None,
    ) -> list[VectorStoreFileObject]:
        """Record each file in_progress, then queue one job per file for the ingest function."""
        from llamda.aws import clients
        from llamda.context import current_tenant

        strategy = resolved_chunking(chunking).model_dump()
        records = []
        for file_id in file_ids:
            record = new_file_record(store_id, file_id, "in_progress", attributes, chunking)
            await self._records.put(files_kind(store_id), file_id, record)
            records.append(record)
        jobs = [
            {
                "type": JOB_TYPE,
                "tenant": current_tenant(),
                "vector_store_id": store_id,
                "file_id": file_id,
                "batch_id": batch_id,
                "attributes": attributes,
                "chunking_strategy": strategy,
                "queued_at": time.time_ns(),
            }
            for file_id in file_ids
        ]
        sqs = await clients.client("sqs")
        try:
            for start in range(0, len(jobs), 10):
                entries = [
                    {"Id": str(i), "MessageBody": json.dumps(job)}
                    for i, job in enumerate(jobs[start : start + 10])
                ]
                reply = await sqs.send_message_batch(
                    QueueUrl=self._config.ingest_queue_url, Entries=entries
                )
                if reply.get("Failed"):
                    raise RuntimeError(f"SQS refused {len(reply['Failed'])} messages")
        except Exception as exc:
            log.error("could not queue files for ingestion: %s", exc)
            for record in records:
                if record["status"] == "in_progress":
                    record["status"] = "failed"
                    record["last_error"] = {"code": "server_error", "message": "not queued"}
                    await self._records.put(files_kind(store_id), record["id"], record)
            raise ServiceUnavailableError("the ingest queue is unavailable; retry") from None
        return [VectorStoreFileObject.model_validate(r) for r in records]

    async def run_job(self, job: dict[str, Any]) -> VectorStoreFileObject | None:
        """The ingest function's side of ``_enqueue``: process one queued file unless it was
        deleted, already processed (a redelivery) or cancelled with its batch meanwhile."""
        store_id, file_id = job["vector_store_id"], job["file_id"]
        try:
            store = await self._stores.record(store_id)
        except NotFoundError:
            return None
        record = await self._records.get(files_kind(store_id), file_id)
        if record is None or record["status"] != "in_progress":
            return None
        chunking = _RESOLVED.validate_python(job["chunking_strategy"])
        return await self.ingest_file(store, file_id, job.get("attributes") or {}, chunking)
