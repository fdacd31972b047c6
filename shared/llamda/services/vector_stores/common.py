"""What the parts of the Vector Stores service share: record kinds, ids, record constructors."""

from __future__ import annotations

import secrets
import time
from typing import Any

from llamda.api.vector_stores import (
    ChunkingStrategyParam,
    FileCounts,
    ListResponse,
    resolved_chunking,
)
from llamda.storage.records import Records

STORES = "vector_stores"
DAY = 86_400
JOB_TYPE = "llamda.attach"  # an ingest queue message for one attached file


def files_kind(store_id: str) -> str:
    return f"vector_store_files:{store_id}"


def batches_kind(store_id: str) -> str:
    return f"vector_store_file_batches:{store_id}"


def new_id(prefix: str) -> str:
    return f"{prefix}{time.time_ns() // 1_000_000:012x}{secrets.token_hex(8)}"


def new_file_record(
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


def new_store_record(
    store_id: str,
    name: str | None,
    model: str,
    dimension: int,
    *,
    metadata: dict[str, Any] | None = None,
    expires_after: dict[str, Any] | None = None,
    request_dimensions: int | None = None,
    provider_id: str | None = None,
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
        # The vector_io provider holding its chunks (absent on older records: the LanceDB one).
        "provider_id": provider_id,
    }


def tally(statuses: list[str]) -> FileCounts:
    counts = FileCounts(total=len(statuses))
    for status in statuses:
        setattr(counts, status, getattr(counts, status) + 1)
    return counts


async def all_records(records: Records, kind: str) -> list[dict[str, Any]]:
    """Every record of ``kind``, page by page."""
    out: list[dict[str, Any]] = []
    while page := await records.list(kind, after=out[-1]["id"] if out else None):
        out.extend(page)
    return out


def list_response[T: Any](data: list[T], has_more: bool) -> ListResponse[T]:
    return ListResponse[T](
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=has_more,
    )
