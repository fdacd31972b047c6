"""/v1/vector_stores (OpenAI: stores, files, file batches, search) and Llama Stack's
/v1/vector-io/insert and /v1/vector-io/query."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from llamda.api.errors import error_responses
from llamda.api.vector_stores import (
    CreateFileBatchRequest,
    CreateVectorStoreFileRequest,
    CreateVectorStoreRequest,
    DeletedResponse,
    FileBatchObject,
    InsertChunksRequest,
    ListResponse,
    QueryChunksRequest,
    QueryChunksResponse,
    SearchRequest,
    SearchResponse,
    UpdateVectorStoreFileRequest,
    UpdateVectorStoreRequest,
    VectorStoreFileContent,
    VectorStoreFileObject,
    VectorStoreObject,
)
from llamda.routers import get_stack
from llamda.services.vector_stores import VectorStoresService
from llamda.stack import Stack

router = APIRouter(tags=["vector_stores"])


async def get_vector_stores(stack: Annotated[Stack, Depends(get_stack)]) -> VectorStoresService:
    return stack.vector_stores


Service = Annotated[VectorStoresService, Depends(get_vector_stores)]
_ID = r"^[A-Za-z0-9_.-]{1,128}$"
StoreId = Annotated[str, Path(pattern=_ID, description="A vector store id.")]
FileId = Annotated[str, Path(pattern=_ID, description="A file id.")]
BatchId = Annotated[str, Path(pattern=_ID, description="A file batch id.")]
Limit = Annotated[int, Query(ge=1, le=100)]
Order = Annotated[Literal["asc", "desc"], Query()]
After = Annotated[str | None, Query(max_length=128)]
Status = Annotated[Literal["in_progress", "completed", "failed", "cancelled"] | None, Query()]
NOT_FOUND = error_responses(400, 404)
BASE = "/v1/vector_stores"


@router.post(BASE, response_model=VectorStoreObject, responses=error_responses(400, 404))
async def create_vector_store(body: CreateVectorStoreRequest, svc: Service) -> VectorStoreObject:
    return await svc.create(body)


@router.get(BASE, response_model=ListResponse[VectorStoreObject])
async def list_vector_stores(
    svc: Service, limit: Limit = 20, order: Order = "desc", after: After = None
) -> ListResponse[VectorStoreObject]:
    return await svc.list(limit=limit, after=after, order=order)


@router.get(BASE + "/{vector_store_id}", response_model=VectorStoreObject, responses=NOT_FOUND)
async def get_vector_store(vector_store_id: StoreId, svc: Service) -> VectorStoreObject:
    return await svc.get(vector_store_id)


@router.post(
    BASE + "/{vector_store_id}",
    response_model=VectorStoreObject,
    responses=error_responses(400, 404, 409),  # 409: changed concurrently, retry
)
async def update_vector_store(
    vector_store_id: StoreId, body: UpdateVectorStoreRequest, svc: Service
) -> VectorStoreObject:
    return await svc.update(vector_store_id, body)


@router.delete(BASE + "/{vector_store_id}", response_model=DeletedResponse, responses=NOT_FOUND)
async def delete_vector_store(vector_store_id: StoreId, svc: Service) -> DeletedResponse:
    await svc.delete(vector_store_id)
    return DeletedResponse(id=vector_store_id, object="vector_store.deleted")


@router.post(BASE + "/{vector_store_id}/search", response_model=SearchResponse, responses=NOT_FOUND)
async def search_vector_store(
    vector_store_id: StoreId, body: SearchRequest, svc: Service
) -> SearchResponse:
    return await svc.search(vector_store_id, body)


# --- files ---------------------------------------------------------------------------------------


@router.post(
    BASE + "/{vector_store_id}/files", response_model=VectorStoreFileObject, responses=NOT_FOUND
)
async def attach_file(
    vector_store_id: StoreId, body: CreateVectorStoreFileRequest, svc: Service
) -> VectorStoreFileObject:
    return await svc.attach(vector_store_id, body.file_id, body.attributes, body.chunking_strategy)


@router.get(
    BASE + "/{vector_store_id}/files",
    response_model=ListResponse[VectorStoreFileObject],
    responses=NOT_FOUND,
)
async def list_store_files(
    vector_store_id: StoreId,
    svc: Service,
    limit: Limit = 20,
    order: Order = "desc",
    after: After = None,
    filter: Status = None,
) -> ListResponse[VectorStoreFileObject]:
    return await svc.list_files(
        vector_store_id, limit=limit, after=after, order=order, status=filter
    )


@router.get(
    BASE + "/{vector_store_id}/files/{file_id}",
    response_model=VectorStoreFileObject,
    responses=NOT_FOUND,
)
async def get_store_file(
    vector_store_id: StoreId, file_id: FileId, svc: Service
) -> VectorStoreFileObject:
    return await svc.get_file(vector_store_id, file_id)


@router.post(
    BASE + "/{vector_store_id}/files/{file_id}",
    response_model=VectorStoreFileObject,
    responses=error_responses(400, 404, 409),  # 409: changed concurrently, retry
)
async def update_store_file(
    vector_store_id: StoreId, file_id: FileId, body: UpdateVectorStoreFileRequest, svc: Service
) -> VectorStoreFileObject:
    return await svc.update_file(vector_store_id, file_id, body.attributes)


@router.delete(
    BASE + "/{vector_store_id}/files/{file_id}",
    response_model=DeletedResponse,
    responses=NOT_FOUND,
)
async def delete_store_file(
    vector_store_id: StoreId, file_id: FileId, svc: Service
) -> DeletedResponse:
    await svc.delete_file(vector_store_id, file_id)
    return DeletedResponse(id=file_id, object="vector_store.file.deleted")


@router.get(
    BASE + "/{vector_store_id}/files/{file_id}/content",
    response_model=VectorStoreFileContent,
    responses=NOT_FOUND,
)
async def store_file_content(
    vector_store_id: StoreId,
    file_id: FileId,
    svc: Service,
    include_embeddings: Annotated[bool, Query(description="Each chunk's embedding.")] = False,
    include_metadata: Annotated[bool, Query(description="Each chunk's metadata dict.")] = False,
) -> VectorStoreFileContent:
    return await svc.file_content(
        vector_store_id,
        file_id,
        include_embeddings=include_embeddings,
        include_metadata=include_metadata,
    )


# --- file batches --------------------------------------------------------------------------------


@router.post(
    BASE + "/{vector_store_id}/file_batches", response_model=FileBatchObject, responses=NOT_FOUND
)
async def create_file_batch(
    vector_store_id: StoreId, body: CreateFileBatchRequest, svc: Service
) -> FileBatchObject:
    return await svc.create_batch(
        vector_store_id, body.file_ids, body.attributes, body.chunking_strategy
    )


@router.get(
    BASE + "/{vector_store_id}/file_batches/{batch_id}",
    response_model=FileBatchObject,
    responses=NOT_FOUND,
)
async def get_file_batch(
    vector_store_id: StoreId, batch_id: BatchId, svc: Service
) -> FileBatchObject:
    return await svc.get_batch(vector_store_id, batch_id)


@router.post(
    BASE + "/{vector_store_id}/file_batches/{batch_id}/cancel",
    response_model=FileBatchObject,
    responses=NOT_FOUND,
)
async def cancel_file_batch(
    vector_store_id: StoreId, batch_id: BatchId, svc: Service
) -> FileBatchObject:
    return await svc.cancel_batch(vector_store_id, batch_id)


@router.get(
    BASE + "/{vector_store_id}/file_batches/{batch_id}/files",
    response_model=ListResponse[VectorStoreFileObject],
    responses=NOT_FOUND,
)
async def list_batch_files(
    vector_store_id: StoreId,
    batch_id: BatchId,
    svc: Service,
    limit: Limit = 20,
    order: Order = "desc",
    after: After = None,
    filter: Status = None,
) -> ListResponse[VectorStoreFileObject]:
    return await svc.list_files(
        vector_store_id, limit=limit, after=after, order=order, status=filter, batch_id=batch_id
    )


# --- Llama Stack vector-io -----------------------------------------------------------------------


@router.post(
    "/v1/vector-io/insert",
    tags=["vector_io"],
    status_code=200,
    response_class=Response,
    responses={200: {"description": "Inserted."}, **NOT_FOUND},
)
async def insert_chunks(body: InsertChunksRequest, svc: Service) -> Response:
    await svc.insert_chunks(body)
    return Response(status_code=200)


@router.post(
    "/v1/vector-io/query",
    tags=["vector_io"],
    response_model=QueryChunksResponse,
    responses=NOT_FOUND,
)
async def query_chunks(body: QueryChunksRequest, svc: Service) -> QueryChunksResponse:
    return await svc.query_chunks(body)
