"""Llama Stack's vector-io: insert chunks (embedded here unless they carry vectors) into the
store's ``VectorIndex`` by chunk id, and query through the search part (same ranking)."""

from __future__ import annotations

import time

from llamda.api.vector_stores import (
    Chunk,
    ChunkMetadata,
    InsertChunksRequest,
    QueryChunksRequest,
    QueryChunksResponse,
    RankingOptions,
    content_text,
)
from llamda.errors import BadRequestError
from llamda.providers.vector_io.index import ROW_KEYS, ChunkRow
from llamda.services.vector_stores.common import STORES
from llamda.services.vector_stores.embedding import Embedder
from llamda.services.vector_stores.search import Search
from llamda.services.vector_stores.stores import Stores
from llamda.storage.records import Records, save


class VectorIO:
    def __init__(
        self,
        records: Records,
        stores: Stores,
        embedder: Embedder,
        search: Search,
    ):
        self._records = records
        self._stores = stores
        self._embedder = embedder
        self._search = search

    async def insert_chunks(self, request: InsertChunksRequest) -> None:
        store = await self._stores.record(request.vector_store_id)
        dimension = store["embedding_dimension"]
        missing = [c for c in request.chunks if c.embedding is None]
        computed = iter(
            await self._embedder.for_store(store, [content_text(c.content) for c in missing])
        )
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
        while request.ttl_seconds and not store.get("has_ttl"):
            store["has_ttl"] = True  # before the write: searches filter expired rows from now
            if not await save(self._records, STORES, store["id"], store):
                store = await self._stores.record(store["id"])  # changed: again; gone: 404
        await self._stores.index(store).upsert(store["id"], rows, dimension)
        if not await self._stores.still_there(store):
            await self._stores.check_exists(store["id"])  # deleted meanwhile: 404
        await self._stores.touch(store)

    async def query_chunks(self, request: QueryChunksRequest) -> QueryChunksResponse:
        store = await self._stores.searchable(request.vector_store_id)
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
        ranked = await self._search.ranked(
            store,
            [content_text(request.query)],
            mode=mode,
            k=k,
            filters=None,
            ranking=ranking,
            keys=(*ROW_KEYS, "vector"),
        )
        chunks = [
            Chunk(
                content=row["text"],
                chunk_id=row["chunk_id"],
                metadata=row["metadata"]
                or {"document_id": row["file_id"], "filename": row["filename"]},
                chunk_metadata=ChunkMetadata.model_validate(row["chunk_metadata"] or {}),
                embedding=[float(x) for x in row["vector"]],
                embedding_model=store["embedding_model"],
                embedding_dimension=store["embedding_dimension"],
            )
            for row, _ in ranked
        ]
        return QueryChunksResponse(chunks=chunks, scores=[round(s, 6) for _, s in ranked])
