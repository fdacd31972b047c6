"""The Vector Stores service the routers, the ingest function and the CLI use: one object
composed of its parts (stores, files and batches, ingestion, search, vector-io), which share
one Records, the vector backends (``Indexes``: each store's ``VectorIndex``) and one embedder."""

from __future__ import annotations

from typing import Any

from llamda.api.vector_stores import (
    ChunkingStrategyParam,
    CreateVectorStoreRequest,
    FileBatchObject,
    InsertChunksRequest,
    ListResponse,
    QueryChunksRequest,
    QueryChunksResponse,
    SearchRequest,
    SearchResponse,
    UpdateVectorStoreRequest,
    VectorStoreFileContent,
    VectorStoreFileObject,
    VectorStoreObject,
)
from llamda.config import RunConfig
from llamda.services.files import FilesService
from llamda.services.inference import InferenceService
from llamda.services.models import ModelsService
from llamda.services.vector_stores.embedding import Embedder
from llamda.services.vector_stores.files import StoreFiles
from llamda.services.vector_stores.indexes import Indexes
from llamda.services.vector_stores.ingestion import Ingestion
from llamda.services.vector_stores.llm import StoreLLM
from llamda.services.vector_stores.maintenance import Maintenance
from llamda.services.vector_stores.search import Search
from llamda.services.vector_stores.stores import Stores
from llamda.services.vector_stores.vector_io import VectorIO
from llamda.storage.objects import Objects
from llamda.storage.records import Records


class VectorStoresService:
    def __init__(
        self,
        config: RunConfig,
        records: Records,
        files: FilesService,
        models: ModelsService,
        inference: InferenceService,
        objects: Objects | None = None,
    ):
        self.indexes = Indexes(config, objects)
        self.embedder = Embedder(inference)
        # Chunk contexts and query rewrites: through ``inference.chat``, the guarded path.
        self.llm = StoreLLM(inference, models, config.storage.vectors.query_rewrite_model)
        self.stores = Stores(config, records, models, self.embedder, self.indexes)
        self.ingestion = Ingestion(
            config.storage.vectors,
            records,
            files,
            self.stores,
            self.embedder,
            self.llm,
        )
        self.files = StoreFiles(records, self.stores, self.ingestion)
        self.searcher = Search(self.stores, self.embedder, self.llm)
        self.vector_io = VectorIO(records, self.stores, self.embedder, self.searcher)
        self.maintenance = Maintenance(records, self.stores)
        self.indexes.set_on_write(self.maintenance.note)

    async def maintain(self) -> int:
        """The maintenance step, outside requests: expired stores deleted, then index builds
        and optimize for every store written to since the last run, of every tenant. The
        number of stores seen."""
        return await self.maintenance.run()

    # --- stores ------------------------------------------------------------------------------

    async def create(self, request: CreateVectorStoreRequest) -> VectorStoreObject:
        # The chunking is checked before anything is written: a refused create leaves nothing.
        # An unknown file id does not refuse it: that file ends ``failed``, the others proceed.
        await self.ingestion.check_chunking(request.chunking_strategy)
        record = await self.stores.create(request)
        if request.file_ids:
            await self.ingestion.ingest_many(
                record, request.file_ids, {}, request.chunking_strategy, batch_id=None
            )
        return await self.stores.get(record["id"])

    async def store_record(self, store_id: str) -> dict[str, Any]:
        """The store's record (404 when unknown); ``ingest_file`` takes it."""
        return await self.stores.record(store_id)

    async def get(self, store_id: str) -> VectorStoreObject:
        return await self.stores.get(store_id)

    async def list(
        self, *, limit: int, after: str | None, order: str
    ) -> ListResponse[VectorStoreObject]:
        return await self.stores.list(limit=limit, after=after, order=order)

    async def update(self, store_id: str, request: UpdateVectorStoreRequest) -> VectorStoreObject:
        return await self.stores.update(store_id, request)

    async def delete(self, store_id: str) -> None:
        await self.stores.delete(store_id)

    # --- files and batches -------------------------------------------------------------------

    async def attach(
        self,
        store_id: str,
        file_id: str,
        attributes: dict[str, Any],
        chunking: ChunkingStrategyParam | None,
    ) -> VectorStoreFileObject:
        return await self.files.attach(store_id, file_id, attributes, chunking)

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
        return await self.ingestion.ingest_file(store, file_id, attributes, chunking, source=source)

    async def run_job(self, job: dict[str, Any]) -> VectorStoreFileObject | None:
        """One file queued for the ingest function (see ``Ingestion.run_job``)."""
        return await self.ingestion.run_job(job)

    async def get_file(self, store_id: str, file_id: str) -> VectorStoreFileObject:
        return await self.files.get_file(store_id, file_id)

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
        return await self.files.list_files(
            store_id, limit=limit, after=after, order=order, status=status, batch_id=batch_id
        )

    async def update_file(
        self, store_id: str, file_id: str, attributes: dict[str, Any]
    ) -> VectorStoreFileObject:
        return await self.files.update_file(store_id, file_id, attributes)

    async def delete_file(self, store_id: str, file_id: str) -> None:
        await self.files.delete_file(store_id, file_id)

    async def file_content(
        self,
        store_id: str,
        file_id: str,
        *,
        include_embeddings: bool = False,
        include_metadata: bool = False,
    ) -> VectorStoreFileContent:
        return await self.files.file_content(
            store_id,
            file_id,
            include_embeddings=include_embeddings,
            include_metadata=include_metadata,
        )

    async def create_batch(
        self,
        store_id: str,
        file_ids: list[str],
        attributes: dict[str, Any],
        chunking: ChunkingStrategyParam | None,
    ) -> FileBatchObject:
        return await self.files.create_batch(store_id, file_ids, attributes, chunking)

    async def get_batch(self, store_id: str, batch_id: str) -> FileBatchObject:
        return await self.files.get_batch(store_id, batch_id)

    async def cancel_batch(self, store_id: str, batch_id: str) -> FileBatchObject:
        return await self.files.cancel_batch(store_id, batch_id)

    # --- search and vector-io ----------------------------------------------------------------

    async def search(self, store_id: str, request: SearchRequest) -> SearchResponse:
        return await self.searcher.search(store_id, request)

    async def insert_chunks(self, request: InsertChunksRequest) -> None:
        await self.vector_io.insert_chunks(request)

    async def query_chunks(self, request: QueryChunksRequest) -> QueryChunksResponse:
        return await self.vector_io.query_chunks(request)

    async def close(self) -> None:
        await self.indexes.close()
