"""Vector stores: metadata in Records, chunks in LanceDB, embeddings from the Inference service.

One ingestion path (``ingest_file``) serves the API (files, file batches), the S3 ingest Lambda
and the CLI: file bytes → text → token chunks → embeddings → one LanceDB commit. A file that
cannot be read ends ``failed`` with ``last_error``; nothing of it is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable
from typing import Any

from llamda.api.inference import EmbeddingsRequest
from llamda.api.vector_stores import (
    Chunk,
    ChunkingStrategyParam,
    ChunkMetadata,
    ComparisonFilter,
    CompoundFilter,
    CreateVectorStoreRequest,
    FileBatchObject,
    FileContent,
    FileCounts,
    Filter,
    InsertChunksRequest,
    ListResponse,
    QueryChunksRequest,
    QueryChunksResponse,
    RankingOptions,
    SearchRequest,
    SearchResponse,
    SearchResult,
    StaticChunkingStrategy,
    UpdateVectorStoreRequest,
    VectorStoreFileContent,
    VectorStoreFileObject,
    VectorStoreObject,
    content_text,
    resolved_chunking,
)
from llamda.config import RunConfig
from llamda.errors import (
    BadRequestError,
    ConflictError,
    LlamdaError,
    NotFoundError,
    ServiceUnavailableError,
)
from llamda.services.documents import TOKENIZER_NAME, DocumentError, chunk_text, to_text
from llamda.services.files import FilesService
from llamda.services.inference import InferenceService
from llamda.services.models import ModelsService
from llamda.storage.records import Records, list_page
from llamda.storage.vectors_lancedb import (
    COLUMNS,
    SEARCH_COLUMNS,
    ChunkRow,
    Hit,
    LanceDBIndex,
    quote,
)

STORES = "vector_stores"
EMBED_BATCH = 64
RRF_K = 60.0
DAY = 86_400
JOB_TYPE = "llamda.attach"  # an ingest queue message for one attached file
log = logging.getLogger(__name__)


def _files_kind(store_id: str) -> str:
    return f"vector_store_files:{store_id}"


def _batches_kind(store_id: str) -> str:
    return f"vector_store_file_batches:{store_id}"


def _new_id(prefix: str) -> str:
    return f"{prefix}{time.time_ns() // 1_000_000:012x}{secrets.token_hex(8)}"


def _new_file_record(
    store_id: str,
    file_id: str,
    status: str,
    attributes: dict[str, Any],
    chunking: ChunkingStrategyParam | None,
    **extra: Any,
) -> dict[str, Any]:
    """A vector store file's record as first written (ingest, queue or cancel)."""
    return {
        "id": file_id,
        "created_at": int(time.time()),
        "vector_store_id": store_id,
        "status": status,
        "last_error": None,
        "usage_bytes": 0,
        "chunking_strategy": resolved_chunking(chunking).model_dump(),
        "attributes": attributes,
        **extra,
    }


def _new_store_record(
    store_id: str,
    name: str | None,
    model: str,
    dimension: int,
    *,
    metadata: dict[str, Any] | None = None,
    expires_after: dict[str, Any] | None = None,
    request_dimensions: int | None = None,
) -> dict[str, Any]:
    """A vector store's record as created (API or run config)."""
    now = int(time.time())
    return {
        "id": store_id,
        "created_at": now,
        "last_active_at": now,
        "name": name,
        "metadata": metadata or {},
        "expires_after": expires_after,
        "embedding_model": model,
        "embedding_dimension": dimension,
        # Ask the model for this size only when the caller chose one.
        "request_dimensions": request_dimensions,
    }


def _tally(statuses: list[str]) -> FileCounts:
    counts = FileCounts(total=len(statuses))
    for status in statuses:
        setattr(counts, status, getattr(counts, status) + 1)
    return counts


def compile_filter(node: Filter) -> str:
    """An OpenAI attribute filter as a LanceDB (DataFusion SQL) predicate on the json column.
    Numbers compare numerically (a non-number never matches), strings as strings."""
    if isinstance(node, CompoundFilter):
        glue = " AND " if node.type == "and" else " OR "
        return "(" + glue.join(compile_filter(f) for f in node.filters) + ")"
    if node.type in ("in", "nin"):
        op, glue = ("eq", " OR ") if node.type == "in" else ("ne", " AND ")
        values = node.value if isinstance(node.value, list) else [node.value]
        parts = [compile_filter(ComparisonFilter(type=op, key=node.key, value=v)) for v in values]
        return "(" + glue.join(parts) + ")"
    sql_op = {"eq": "=", "ne": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[node.type]
    value, key = node.value, node.key
    if isinstance(value, bool):
        if node.type not in ("eq", "ne"):
            raise BadRequestError("booleans compare with eq or ne only", param="filters")
        return f"json_extract(attributes, '$.{key}') {sql_op} '{str(value).lower()}'"
    if isinstance(value, int | float):
        return f"TRY_CAST(json_extract(attributes, '$.{key}') AS DOUBLE) {sql_op} {float(value)!r}"
    return f"json_get_string(attributes, '{key}') {sql_op} {quote(str(value))}"


def _fuse(
    vector: list[Hit], keyword: list[Hit], ranking: RankingOptions
) -> list[tuple[dict[str, Any], float]]:
    """Hybrid: reciprocal rank fusion (default, scaled to 0..1) or a weighted sum of scores."""
    rows: dict[str, dict[str, Any]] = {}
    scores: dict[str, float] = {}
    if ranking.ranker == "weighted":
        alpha = 0.5 if ranking.alpha is None else ranking.alpha
        for hits, weight in ((vector, alpha), (keyword, 1.0 - alpha)):
            for hit in hits:
                cid = hit.row["chunk_id"]
                rows[cid] = hit.row
                scores[cid] = scores.get(cid, 0.0) + weight * hit.score
    else:
        k = ranking.impact_factor or RRF_K
        for hits in (vector, keyword):
            for rank, hit in enumerate(hits):
                cid = hit.row["chunk_id"]
                rows[cid] = hit.row
                scores[cid] = scores.get(cid, 0.0) + (1.0 / (k + rank + 1)) / (2.0 / (k + 1))
    return [(rows[c], s) for c, s in scores.items()]


class VectorStoresService:
    def __init__(
        self,
        config: RunConfig,
        records: Records,
        files: FilesService,
        models: ModelsService,
        inference: InferenceService,
    ):
        self._config = config.storage.vectors
        self._run_config = config
        self._records = records
        self._files = files
        self._models = models
        self._inference = inference
        self.index = LanceDBIndex(config.storage.vectors)

    # --- stores ------------------------------------------------------------------------------

    async def create(self, request: CreateVectorStoreRequest) -> VectorStoreObject:
        model_id = request.embedding_model or await self._default_embedding_model()
        model = await self._models.get(model_id)
        if model.model_type != "embedding":
            raise BadRequestError(
                f"{model_id!r} is not an embedding model", param="embedding_model"
            )
        dimension = request.embedding_dimension or model.metadata.get("embedding_dimension")
        if not isinstance(dimension, int) or dimension <= 0:
            dimension = len((await self._embed(model_id, None, ["dimension probe"]))[0])
        record = _new_store_record(
            _new_id("vs_"),
            request.name,
            model_id,
            dimension,
            metadata=request.metadata,
            expires_after=request.expires_after.model_dump() if request.expires_after else None,
            request_dimensions=request.embedding_dimension,
        )
        await self.index.create(record["id"], dimension)
        await self._records.put(STORES, record["id"], record, if_absent=True)
        if request.file_ids:
            file_ids = await self._existing(request.file_ids)
            await self._ingest_many(record, file_ids, {}, request.chunking_strategy, batch_id=None)
        return await self.get(record["id"])

    async def _default_embedding_model(self) -> str:
        if self._config.default_embedding_model:
            return self._config.default_embedding_model
        for model in await self._models.list():
            if model.model_type == "embedding":
                return model.id
        raise BadRequestError(
            "no embedding model is configured; pass embedding_model", param="embedding_model"
        )

    async def store_record(self, store_id: str) -> dict[str, Any]:
        """The store's record (404 when unknown); ``ingest_file`` takes it."""
        record = await self._records.get(STORES, store_id)
        if record is None:
            record = await self._declared(store_id)
        if record is None:
            raise NotFoundError(
                f"No vector store found with id {store_id!r}",
                param="vector_store_id",
                code="vector_store_not_found",
            )
        return record

    async def _declared(self, store_id: str) -> dict[str, Any] | None:
        """A store declared in the run config (``vector_stores:``) exists from its first use."""
        for resource in self._run_config.vector_stores:
            if resource.vector_store_id == store_id:
                record = _new_store_record(
                    store_id,
                    resource.name or store_id,
                    resource.embedding_model,
                    resource.embedding_dimension,
                )
                await self.index.create(store_id, resource.embedding_dimension)
                with contextlib.suppress(ConflictError):  # another request made it first
                    await self._records.put(STORES, store_id, record, if_absent=True)
                return await self._records.get(STORES, store_id)
        return None

    @staticmethod
    def _expires_at(record: dict[str, Any]) -> int | None:
        if not record.get("expires_after"):
            return None
        return record["last_active_at"] + record["expires_after"]["days"] * DAY

    async def get(self, store_id: str) -> VectorStoreObject:
        record = await self.store_record(store_id)
        files = await self._all_files(store_id)
        counts = _tally([f["status"] for f in files])
        expires_at = self._expires_at(record)
        return VectorStoreObject(
            **{k: v for k, v in record.items() if k in VectorStoreObject.model_fields},
            usage_bytes=sum(f.get("usage_bytes", 0) for f in files),
            file_counts=counts,
            expires_at=expires_at,
            status="in_progress"
            if counts.in_progress
            else ("expired" if expires_at and expires_at < time.time() else "completed"),
        )

    async def list(
        self, *, limit: int, after: str | None, order: str
    ) -> ListResponse[VectorStoreObject]:
        page, has_more = await list_page(
            self._records, STORES, limit=limit, after=after, descending=order == "desc"
        )
        data = [await self.get(r["id"]) for r in page]
        return _list(data, has_more)

    async def update(self, store_id: str, request: UpdateVectorStoreRequest) -> VectorStoreObject:
        record = await self.store_record(store_id)
        fields = request.model_dump(exclude_unset=True)
        if "metadata" in fields and fields["metadata"] is None:
            fields["metadata"] = {}  # null clears, as an empty object does
        record.update(fields)
        record["last_active_at"] = int(time.time())
        await self._records.put(STORES, store_id, record)
        return await self.get(store_id)

    async def delete(self, store_id: str) -> None:
        await self.store_record(store_id)
        # The record first: once gone, the store is gone for readers; then its rows and files.
        await self._records.delete(STORES, store_id)
        await self.index.drop(store_id)
        for kind in (_files_kind(store_id), _batches_kind(store_id)):
            for item in await self._all(kind):
                await self._records.delete(kind, item["id"])

    async def _all(self, kind: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while page := await self._records.list(kind, after=out[-1]["id"] if out else None):
            out.extend(page)
        return out

    async def _all_files(self, store_id: str) -> list[dict[str, Any]]:
        return await self._all(_files_kind(store_id))

    async def _touch(self, record: dict[str, Any]) -> None:
        now = int(time.time())
        if now - record.get("last_active_at", 0) >= 60:
            record["last_active_at"] = now
            await self._records.put(STORES, record["id"], record)

    # --- files -------------------------------------------------------------------------------

    async def attach(
        self,
        store_id: str,
        file_id: str,
        attributes: dict[str, Any],
        chunking: ChunkingStrategyParam | None,
    ) -> VectorStoreFileObject:
        store = await self.store_record(store_id)
        file_ids = await self._existing([file_id])
        (result,) = await self._ingest_many(store, file_ids, attributes, chunking, None)
        return result

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
        kind = _files_kind(store_id)
        strategy = resolved_chunking(chunking)
        record = _new_file_record(
            store_id, file_id, "in_progress", attributes, strategy, source=source, started=True
        )
        await self._records.put(kind, file_id, record)
        try:
            meta = await self._files.get(file_id)
            data, content_type = await self._files.content(file_id)
            text = to_text(data, meta.filename, content_type)
            static = strategy.static
            pieces = chunk_text(text, static.max_chunk_size_tokens, static.chunk_overlap_tokens)
            vectors = await self._embed_for(store, [p.text for p in pieces])
            now = int(time.time())
            rows = [
                ChunkRow(
                    chunk_id=f"{file_id}#{p.index}",
                    file_id=file_id,
                    filename=meta.filename,
                    chunk_index=p.index,
                    token_count=p.token_count,
                    text=p.text,
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
                for p, v in zip(pieces, vectors, strict=True)
            ]
            await self.index.write(
                store_id, rows, store["embedding_dimension"], replace=f"file_id = {quote(file_id)}"
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
            await self._records.put(kind, file_id, record)
            raise
        await self._records.put(kind, file_id, record)
        await self._touch(store)
        return VectorStoreFileObject.model_validate(record)

    async def _existing(self, file_ids: list[str]) -> list[str]:
        """The ids once each, in order, after checking every file exists (404 before any work
        starts or anything is recorded)."""
        file_ids = list(dict.fromkeys(file_ids))
        for file_id in file_ids:
            await self._files.get(file_id)
        return file_ids

    async def _ingest_many(
        self,
        store: dict[str, Any],
        file_ids: list[str],
        attributes: dict[str, Any],
        chunking: ChunkingStrategyParam | None,
        batch_id: str | None,
    ) -> list[VectorStoreFileObject]:
        """Process (or queue) files the caller has checked with ``_existing``."""
        store_id = store["id"]
        if self._config.ingest_queue_url:
            return await self._enqueue(store_id, file_ids, attributes, chunking, batch_id)
        limit = asyncio.Semaphore(self._config.ingest_concurrency)

        async def one(file_id: str) -> VectorStoreFileObject:
            async with limit:
                if batch_id and await self._batch_cancelled(store_id, batch_id):
                    return await self._mark_cancelled(store_id, file_id, chunking, attributes)
                return await self.ingest_file(store, file_id, attributes, chunking)

        return list(await asyncio.gather(*(one(f) for f in file_ids)))

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
            record = _new_file_record(store_id, file_id, "in_progress", attributes, chunking)
            await self._records.put(_files_kind(store_id), file_id, record)
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
                    await self._records.put(_files_kind(store_id), record["id"], record)
            raise ServiceUnavailableError("the ingest queue is unavailable; retry") from None
        return [VectorStoreFileObject.model_validate(r) for r in records]

    async def run_job(self, job: dict[str, Any]) -> VectorStoreFileObject | None:
        """The ingest function's side of ``_enqueue``: process one queued file unless it was
        deleted, already processed (a redelivery) or cancelled with its batch meanwhile."""
        store_id, file_id = job["vector_store_id"], job["file_id"]
        try:
            store = await self.store_record(store_id)
        except NotFoundError:
            return None
        record = await self._records.get(_files_kind(store_id), file_id)
        if record is None or record["status"] != "in_progress":
            return None
        chunking = StaticChunkingStrategy.model_validate(job["chunking_strategy"])
        return await self.ingest_file(store, file_id, job.get("attributes") or {}, chunking)

    async def _child(self, kind: str, store_id: str, key: str, what: str) -> dict[str, Any]:
        """A record of the store (404 for an unknown store, then for an unknown ``key``)."""
        await self.store_record(store_id)
        record = await self._records.get(kind, key)
        if record is None:
            raise NotFoundError(
                f"No {what} {key!r} in vector store {store_id!r}",
                param="file_id" if what == "file" else "batch_id",
                code="file_not_found" if what == "file" else "not_found",
            )
        return record

    async def _file_record(self, store_id: str, file_id: str) -> dict[str, Any]:
        return await self._child(_files_kind(store_id), store_id, file_id, "file")

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
        await self.store_record(store_id)
        in_batch: set[str] | None = None
        if batch_id is not None:
            in_batch = set((await self._batch_record(store_id, batch_id))["file_ids"])

        def keep(r: dict[str, Any]) -> bool:
            return (status is None or r["status"] == status) and (
                in_batch is None or r["id"] in in_batch
            )

        page, has_more = await list_page(
            self._records,
            _files_kind(store_id),
            limit=limit,
            after=after,
            descending=order == "desc",
            keep=keep,
        )
        return _list([VectorStoreFileObject.model_validate(r) for r in page], has_more)

    async def update_file(
        self, store_id: str, file_id: str, attributes: dict[str, Any]
    ) -> VectorStoreFileObject:
        record = await self._file_record(store_id, file_id)
        await self.index.update(
            store_id,
            f"file_id = {quote(file_id)}",
            {"attributes": json.dumps(attributes, ensure_ascii=False)},
        )
        record["attributes"] = attributes
        await self._records.put(_files_kind(store_id), file_id, record)
        return VectorStoreFileObject.model_validate(record)

    async def delete_file(self, store_id: str, file_id: str) -> None:
        await self._file_record(store_id, file_id)
        await self.index.delete(store_id, f"file_id = {quote(file_id)}")
        await self._records.delete(_files_kind(store_id), file_id)

    async def file_content(self, store_id: str, file_id: str) -> VectorStoreFileContent:
        await self._file_record(store_id, file_id)
        rows = await self.index.rows(store_id, f"file_id = {quote(file_id)}")
        rows.sort(key=lambda r: r["chunk_index"])
        return VectorStoreFileContent(data=[FileContent(text=r["text"]) for r in rows])

    # --- file batches ------------------------------------------------------------------------

    async def create_batch(
        self,
        store_id: str,
        file_ids: list[str],
        attributes: dict[str, Any],
        chunking: ChunkingStrategyParam | None,
    ) -> FileBatchObject:
        store = await self.store_record(store_id)
        batch_id = _new_id("vsfb_")
        record = {
            "id": batch_id,
            "created_at": int(time.time()),
            "vector_store_id": store_id,
            "status": "in_progress",
            "file_ids": await self._existing(file_ids),
        }
        await self._records.put(_batches_kind(store_id), batch_id, record)
        await self._ingest_many(store, record["file_ids"], attributes, chunking, batch_id)
        return await self.get_batch(store_id, batch_id)

    async def _batch_record(self, store_id: str, batch_id: str) -> dict[str, Any]:
        return await self._child(_batches_kind(store_id), store_id, batch_id, "file batch")

    async def _batch_cancelled(self, store_id: str, batch_id: str) -> bool:
        record = await self._records.get(_batches_kind(store_id), batch_id)
        return record is not None and record["status"] == "cancelled"

    async def _mark_cancelled(
        self,
        store_id: str,
        file_id: str,
        chunking: ChunkingStrategyParam | None,
        attributes: dict[str, Any],
    ) -> VectorStoreFileObject:
        record = _new_file_record(store_id, file_id, "cancelled", attributes, chunking)
        await self._records.put(_files_kind(store_id), file_id, record)
        return VectorStoreFileObject.model_validate(record)

    async def get_batch(self, store_id: str, batch_id: str) -> FileBatchObject:
        record = await self._batch_record(store_id, batch_id)
        kind = _files_kind(store_id)
        statuses = []
        for file_id in record["file_ids"]:
            file = await self._records.get(kind, file_id)
            statuses.append(file["status"] if file else "cancelled")
        counts = _tally(statuses)
        if record["status"] == "in_progress" and counts.in_progress == 0:
            record["status"] = "completed"  # every file has finished
            await self._records.put(_batches_kind(store_id), batch_id, record)
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
            await self._records.put(_batches_kind(store_id), batch_id, record)
            kind = _files_kind(store_id)
            for file_id in record["file_ids"]:  # queued files not started yet
                file = await self._records.get(kind, file_id)
                if file and file["status"] == "in_progress" and not file.get("started"):
                    file["status"] = "cancelled"
                    await self._records.put(kind, file_id, file)
        return await self.get_batch(store_id, batch_id)

    # --- search ------------------------------------------------------------------------------

    async def _embed(
        self, model: str, dimensions: int | None, texts: list[str]
    ) -> list[list[float]]:
        out: list[list[float]] = []
        for start in range(0, len(texts), EMBED_BATCH):
            request = EmbeddingsRequest(
                model=model, input=texts[start : start + EMBED_BATCH], dimensions=dimensions
            )
            served = await self._inference.embeddings(request)
            data = sorted(served.value.data, key=lambda e: e.index)
            out.extend(e.embedding for e in data)  # type: ignore[misc]
        return out

    async def _embed_for(self, store: dict[str, Any], texts: list[str]) -> list[list[float]]:
        vectors = await self._embed(
            store["embedding_model"], store.get("request_dimensions"), texts
        )
        for vector in vectors:
            if len(vector) != store["embedding_dimension"]:
                raise BadRequestError(
                    f"{store['embedding_model']} returned {len(vector)} dimensions; the store "
                    f"has {store['embedding_dimension']}",
                    param="embedding_dimension",
                )
        return vectors

    async def _ranked(
        self,
        store: dict[str, Any],
        queries: list[str],
        *,
        mode: str,
        k: int,
        where: str | None,
        ranking: RankingOptions,
        columns: tuple[str, ...] = SEARCH_COLUMNS,
    ) -> list[tuple[dict[str, Any], float]]:
        """Best chunks for any of the queries, best score first."""
        vectors = await self._embed_for(store, queries) if mode != "keyword" else []
        best: dict[str, tuple[dict[str, Any], float]] = {}
        wide = k * 3 if mode == "hybrid" else k

        def search(**kw: Any) -> Awaitable[list[Hit]]:
            return self.index.search(
                store["id"],
                k=wide,
                where=where,
                columns=columns,
                expiring=bool(store.get("has_ttl")),
                **kw,
            )

        for i, query in enumerate(queries):
            vector_hits = await search(mode="vector", vector=vectors[i]) if vectors else []
            keyword_hits = await search(mode="keyword", text=query) if mode != "vector" else []
            if mode == "hybrid":
                scored = _fuse(vector_hits, keyword_hits, ranking)
            else:
                scored = [(h.row, h.score) for h in vector_hits or keyword_hits]
            for row, score in scored:
                current = best.get(row["chunk_id"])
                if current is None or score > current[1]:
                    best[row["chunk_id"]] = (row, score)
        ranked = sorted(best.values(), key=lambda item: item[1], reverse=True)
        return [item for item in ranked if item[1] >= ranking.score_threshold][:k]

    async def _searchable(self, store_id: str) -> dict[str, Any]:
        store = await self.store_record(store_id)
        expires_at = self._expires_at(store)
        if expires_at is not None and expires_at < time.time():
            raise BadRequestError(f"vector store {store_id!r} has expired", code="expired")
        await self._touch(store)
        return store

    async def search(self, store_id: str, request: SearchRequest) -> SearchResponse:
        store = await self._searchable(store_id)
        ranked = await self._ranked(
            store,
            request.queries,
            mode=request.search_mode,
            k=request.max_num_results,
            where=compile_filter(request.filters) if request.filters else None,
            ranking=request.ranking_options or RankingOptions(),
        )
        return SearchResponse(
            search_query=request.queries,
            data=[
                SearchResult(
                    file_id=row["file_id"] or "",
                    filename=row["filename"] or "",
                    score=round(score, 6),
                    attributes=json.loads(row["attributes"] or "{}"),
                    content=[FileContent(text=row["text"])],
                )
                for row, score in ranked
            ],
        )

    # --- Llama Stack vector-io ---------------------------------------------------------------

    async def insert_chunks(self, request: InsertChunksRequest) -> None:
        store = await self.store_record(request.vector_store_id)
        dimension = store["embedding_dimension"]
        missing = [c for c in request.chunks if c.embedding is None]
        computed = iter(await self._embed_for(store, [content_text(c.content) for c in missing]))
        now = int(time.time())
        rows = []
        for index, chunk in enumerate(request.chunks):
            vector = chunk.embedding if chunk.embedding is not None else next(computed)
            if len(vector) != dimension:
                raise BadRequestError(
                    f"chunks[{index}].embedding has {len(vector)} dimensions; the store has "
                    f"{dimension}",
                    param=f"chunks[{index}].embedding",
                )
            meta = chunk.chunk_metadata
            document_id = meta.document_id or str(chunk.metadata.get("document_id") or "")
            rows.append(
                ChunkRow(
                    chunk_id=chunk.chunk_id,
                    file_id=document_id,
                    filename=str(chunk.metadata.get("filename") or meta.source or document_id),
                    chunk_index=index,
                    token_count=meta.content_token_count or 0,
                    text=content_text(chunk.content),
                    vector=vector,
                    attributes={
                        k: v
                        for k, v in chunk.metadata.items()
                        if isinstance(v, str | int | float | bool)
                    },
                    metadata=chunk.metadata,
                    chunk_metadata=meta.model_dump(exclude_none=True),
                    created_at=now,
                    expires_at=now + request.ttl_seconds if request.ttl_seconds else None,
                )
            )
        if request.ttl_seconds and not store.get("has_ttl"):
            store["has_ttl"] = True  # before the write: searches filter expired rows from now
            await self._records.put(STORES, store["id"], store)
        await self.index.write(store["id"], rows, dimension)
        await self._touch(store)

    async def query_chunks(self, request: QueryChunksRequest) -> QueryChunksResponse:
        store = await self._searchable(request.vector_store_id)
        params = request.params or {}
        try:
            k = int(params.get("max_chunks", 10))
            threshold = float(params.get("score_threshold", 0.0))
        except (TypeError, ValueError):
            raise BadRequestError(
                "params.max_chunks and params.score_threshold must be numbers", param="params"
            ) from None
        mode = params.get("mode", "vector")
        if mode not in ("vector", "keyword", "hybrid") or not 1 <= k <= 1000:
            raise BadRequestError(
                "params.mode must be vector, keyword or hybrid; max_chunks 1-1000", param="params"
            )
        reranker = params.get("reranker_params") or {}
        ranking = RankingOptions(
            ranker="weighted" if params.get("reranker_type") == "weighted" else "rrf",
            score_threshold=max(0.0, min(1.0, threshold)),
            alpha=reranker.get("alpha"),
            impact_factor=reranker.get("impact_factor"),
        )
        ranked = await self._ranked(
            store,
            [content_text(request.query)],
            mode=mode,
            k=k,
            where=None,
            ranking=ranking,
            columns=(*COLUMNS, "vector"),
        )
        chunks = [
            Chunk(
                content=row["text"],
                chunk_id=row["chunk_id"],
                metadata=json.loads(row["metadata"] or "{}")
                or {"document_id": row["file_id"], "filename": row["filename"]},
                chunk_metadata=ChunkMetadata.model_validate(
                    json.loads(row["chunk_metadata"] or "{}")
                ),
                embedding=[float(x) for x in row["vector"]],
                embedding_model=store["embedding_model"],
                embedding_dimension=store["embedding_dimension"],
            )
            for row, _ in ranked
        ]
        return QueryChunksResponse(chunks=chunks, scores=[round(s, 6) for _, s in ranked])

    async def close(self) -> None:
        await self.index.close()


def _list[T: Any](data: list[T], has_more: bool) -> ListResponse[T]:
    return ListResponse[T](
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=has_more,
    )
