"""``inline::faiss``: FAISS in process, each store saved through the stack's object store.

Per store: an ``IndexIDMap2`` over ``IndexFlatIP`` of L2-normalized vectors (exact cosine
search; flat rather than HNSW because the store is rewritten on every write and filters need an
id allow-list, which a flat scan honours exactly), and the rows beside it (text, file,
attributes, metadata, each vector's norm so the original embedding is given back). Both are one
object, ``<prefix>/<provider id>/<store>.faiss`` under the tenant's keys (the object store is
tenant-scoped), written whole after every change: a reader or a restart sees the state before
or after a write, never half of one. Stores load lazily, on first use, and stay in memory.

Filters are evaluated on the rows (``matches``) into an id allow-list that FAISS applies while
it scans (``IDSelectorBatch`` through ``SearchParameters``). No full-text index: keyword search
is the service's BM25 over ``all_rows``, hybrid is fused by the service.

One writer: an asyncio lock per store serializes this process's writes; another process writing
the same objects would lose updates, so the aws profile refuses this provider. Each write
re-saves the whole store (O(rows)): meant for local stores of up to ~100k chunks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llamda.context import current_tenant
from llamda.errors import LlamdaError, NotFoundError, ServiceUnavailableError
from llamda.providers.vector_io.index import (
    ROW_KEYS,
    SEARCH_KEYS,
    Capabilities,
    ChunkRow,
    Filter,
    Hit,
    IndexContext,
    Metric,
    matches,
)
from llamda.storage.keys import safe_segment

if TYPE_CHECKING:
    import numpy as np

    from llamda.providers.vector_io.config import FaissConfig
    from llamda.storage.objects import Objects

log = logging.getLogger(__name__)

_MAGIC = b"LLFAISS1"


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise ServiceUnavailableError(
            "inline::faiss needs faiss-cpu: pip install 'llamda[faiss]'", code="unavailable"
        ) from None
    # One query at a time gains little from OpenMP, and its spinning threads collapse when the
    # cores are busy (measured: 100k x 384 flat on 2 busy cores, 100 ms p50 with 2 threads,
    # 17 ms with 1). The setting is per calling thread, so it is made in each worker thread;
    # concurrent requests still use every core, each on its own thread.
    faiss.omp_set_num_threads(1)
    return faiss


@dataclass
class _Store:
    """One store in memory: the FAISS index and the rows by FAISS id."""

    dimension: int
    index: Any  # faiss.IndexIDMap2
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    next_id: int = 0

    def ids_of(self, predicate: Callable[[dict[str, Any]], bool]) -> list[int]:
        return [i for i, row in self.rows.items() if predicate(row)]


def _new_index(dimension: int) -> Any:
    faiss = _faiss()
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))


def _dump(store: _Store) -> bytes:
    """The store as one blob: magic, the rows' JSON length and JSON, the serialized index."""
    faiss = _faiss()
    meta = json.dumps(
        {
            "dimension": store.dimension,
            "next_id": store.next_id,
            "rows": [[i, row] for i, row in store.rows.items()],
        },
        ensure_ascii=False,
    ).encode()
    return (
        _MAGIC + struct.pack(">Q", len(meta)) + meta + faiss.serialize_index(store.index).tobytes()
    )


def _load(blob: bytes) -> _Store:
    import numpy as np

    faiss = _faiss()
    if not blob.startswith(_MAGIC):
        raise ValueError("not a saved faiss store")
    (size,) = struct.unpack(">Q", blob[len(_MAGIC) : len(_MAGIC) + 8])
    start = len(_MAGIC) + 8
    meta = json.loads(blob[start : start + size])
    index = faiss.deserialize_index(np.frombuffer(blob[start + size :], dtype=np.uint8))
    rows = {int(i): row for i, row in meta["rows"]}
    return _Store(meta["dimension"], index, rows, meta["next_id"])


def _normalized(vectors: Sequence[Sequence[float]], dimension: int) -> tuple[Any, Any]:
    """float32 unit vectors and their norms (a zero vector stays zero)."""
    import numpy as np

    array = np.asarray(vectors, dtype=np.float32).reshape(-1, dimension)
    norms = np.linalg.norm(array, axis=1)
    safe = np.where(norms > 0, norms, 1.0).astype(np.float32)
    return array / safe[:, None], norms


class FaissIndex:
    """The FAISS backend (see the module docstring)."""

    capabilities = Capabilities(keyword=False, hybrid=False, concurrent_writers=False)

    def __init__(self, provider_id: str, settings: FaissConfig | None, context: IndexContext):
        from llamda.providers.vector_io.config import FaissConfig

        self.provider_id = provider_id
        self._settings = settings or FaissConfig()
        if context.objects is None:
            raise ValueError("inline::faiss needs the stack's object store")
        self._objects: Objects = context.objects
        self._stores: dict[tuple[str, str], _Store] = {}
        self._locks: dict[tuple[str, str, int], asyncio.Lock] = {}
        self.on_write: Callable[[str], Awaitable[None]] | None = None

    # --- storage --------------------------------------------------------------------------

    def _object_key(self, store_id: str) -> str:
        prefix = self._settings.prefix.strip("/")
        return f"{prefix}/{safe_segment(self.provider_id)}/{safe_segment(store_id)}.faiss"

    def _unavailable(self, exc: BaseException) -> ServiceUnavailableError:
        # The exception's type only: its text may hold a path or an endpoint.
        log.warning("faiss provider %s: object store failed", self.provider_id, exc_info=exc)
        return ServiceUnavailableError(
            f"vector_io provider {self.provider_id!r} is unavailable: its object store did not "
            f"answer ({type(exc).__name__}); retry later",
            code="unavailable",
        )

    def _lock(self, store_id: str) -> asyncio.Lock:
        key = (current_tenant(), store_id, id(asyncio.get_running_loop()))
        return self._locks.setdefault(key, asyncio.Lock())

    async def _store(self, store_id: str) -> _Store | None:
        """The store, loaded on first use (None: it has no index)."""
        key = (current_tenant(), store_id)
        store = self._stores.get(key)
        if store is not None:
            return store
        try:
            blob = await self._objects.get(self._object_key(store_id))
        except NotFoundError:
            return None
        except LlamdaError:
            raise
        except Exception as exc:
            raise self._unavailable(exc) from None
        store = await asyncio.to_thread(_load, blob)
        return self._stores.setdefault(key, store)

    async def _save(self, store_id: str, store: _Store) -> None:
        """Write the store whole; on failure forget the in-memory copy (the next use reloads
        what was last saved, so memory never runs ahead of storage) and answer 503."""
        key = (current_tenant(), store_id)
        try:
            blob = await asyncio.to_thread(_dump, store)
            await self._objects.put(self._object_key(store_id), blob)
        except LlamdaError:
            self._stores.pop(key, None)
            raise
        except Exception as exc:
            self._stores.pop(key, None)
            raise self._unavailable(exc) from None
        self._stores[key] = store

    async def _existing(self, store_id: str) -> _Store:
        store = await self._store(store_id)
        if store is None:  # never re-create a store's index here: the store was deleted
            raise NotFoundError(
                f"No vector store found with id {store_id!r}",
                param="vector_store_id",
                code="vector_store_not_found",
            )
        return store

    # --- the protocol ---------------------------------------------------------------------

    async def create(self, store_id: str, dimension: int, *, metric: Metric = "cosine") -> None:
        async with self._lock(store_id):
            if await self._store(store_id) is None:
                await self._save(store_id, _Store(dimension, _new_index(dimension)))

    async def drop(self, store_id: str) -> None:
        async with self._lock(store_id):
            self._stores.pop((current_tenant(), store_id), None)
            try:
                await self._objects.delete(self._object_key(store_id))
            except NotFoundError:
                pass
            except LlamdaError:
                raise
            except Exception as exc:
                raise self._unavailable(exc) from None

    async def _write(
        self,
        store_id: str,
        rows: Sequence[ChunkRow],
        dimension: int,
        remove: Callable[[dict[str, Any]], bool],
    ) -> None:
        """Remove the rows ``remove`` picks and those with the new chunk ids, add ``rows``,
        save; on a copy, so a failed save leaves the loaded store untouched."""
        async with self._lock(store_id):
            current = await self._existing(store_id)
            if rows and any(len(r.vector) != current.dimension for r in rows):
                from llamda.errors import BadRequestError

                raise BadRequestError(
                    f"vectors must have {current.dimension} dimensions", param="embedding"
                )
            chunk_ids = {r.chunk_id for r in rows}

            def prepare() -> _Store:
                store = _copy(current)
                gone = store.ids_of(lambda row: row["chunk_id"] in chunk_ids or remove(row))
                _remove_add(store, gone, rows)
                return store

            # Scans, copies and index changes are O(rows): off the event loop.
            await self._save(store_id, await asyncio.to_thread(prepare))
        if self.on_write is not None:
            await self.on_write(store_id)

    async def upsert_file(
        self, store_id: str, file_id: str, rows: Sequence[ChunkRow], dimension: int
    ) -> None:
        await self._write(store_id, rows, dimension, lambda row: row["file_id"] == file_id)

    async def upsert(self, store_id: str, rows: Sequence[ChunkRow], dimension: int) -> None:
        if rows:
            await self._write(store_id, rows, dimension, lambda row: False)

    async def _change(self, store_id: str, change: Callable[[_Store], bool]) -> None:
        """Apply ``change`` to a copy of the store and save it when it changed anything."""
        async with self._lock(store_id):
            current = await self._store(store_id)
            if current is None:
                return

            def prepare() -> _Store | None:
                store = _copy(current)
                return store if change(store) else None

            store = await asyncio.to_thread(prepare)
            if store is not None:
                await self._save(store_id, store)

    async def delete_file(self, store_id: str, file_id: str) -> None:
        def change(store: _Store) -> bool:
            gone = store.ids_of(lambda row: row["file_id"] == file_id)
            _remove_add(store, gone, [])
            return bool(gone)

        await self._change(store_id, change)

    async def delete_chunks(self, store_id: str, chunk_ids: Sequence[str]) -> None:
        wanted = set(chunk_ids)

        def change(store: _Store) -> bool:
            gone = store.ids_of(lambda row: row["chunk_id"] in wanted)
            _remove_add(store, gone, [])
            return bool(gone)

        await self._change(store_id, change)

    async def update_file_attributes(
        self, store_id: str, file_id: str, attributes: dict[str, Any]
    ) -> None:
        def change(store: _Store) -> bool:
            ids = store.ids_of(lambda row: row["file_id"] == file_id)
            for i in ids:
                store.rows[i] = {**store.rows[i], "attributes": dict(attributes)}
            return bool(ids)

        await self._change(store_id, change)

    def _out(self, store: _Store, i: int, *, vectors: bool) -> dict[str, Any]:
        row = {k: v for k, v in store.rows[i].items() if k != "_norm"}
        if vectors:
            unit = store.index.reconstruct(i)
            row["vector"] = [float(x) * store.rows[i]["_norm"] for x in unit]
        return row

    async def file_rows(
        self, store_id: str, file_id: str, *, vectors: bool = False, limit: int = 10_000
    ) -> list[dict[str, Any]]:
        store = await self._store(store_id)
        if store is None:
            return []

        def read() -> list[dict[str, Any]]:
            ids = store.ids_of(lambda row: row["file_id"] == file_id)[:limit]
            return [self._out(store, i, vectors=vectors) for i in ids]

        return await asyncio.to_thread(read)

    async def all_rows(
        self,
        store_id: str,
        *,
        limit: int = 100_000,
        alive_at: int | None = None,
        vectors: bool = False,
    ) -> list[dict[str, Any]]:
        store = await self._store(store_id)
        if store is None:
            return []

        def read() -> list[dict[str, Any]]:
            ids = store.ids_of(lambda row: _alive(row, alive_at))[:limit]
            return [self._out(store, i, vectors=vectors) for i in ids]

        return await asyncio.to_thread(read)

    async def search_vector(
        self,
        store_id: str,
        vector: Sequence[float],
        k: int,
        *,
        filters: Filter | None = None,
        alive_at: int | None = None,
        keys: Sequence[str] = SEARCH_KEYS,
    ) -> list[Hit]:
        """Exact cosine search; filters and liveness become an id allow-list."""
        store = await self._store(store_id)
        if store is None or not store.rows:
            return []
        query, _ = _normalized([vector], store.dimension)
        filtered = filters is not None or alive_at is not None

        def run() -> list[tuple[float, int]]:
            # The allow-list is a scan of every row: in the worker thread, not the event loop.
            allowed: list[int] | None = None
            if filtered:
                allowed = store.ids_of(
                    lambda row: (
                        _alive(row, alive_at)
                        and (filters is None or matches(filters, row.get("attributes") or {}))
                    )
                )
                if not allowed:
                    return []
            return _search(store.index, query, min(k, len(store.rows)), allowed)

        found = await asyncio.to_thread(run)
        vectors = "vector" in keys
        return [
            Hit(self._out(store, int(i), vectors=vectors), max(0.0, min(1.0, float(score))))
            for score, i in found
            if int(i) in store.rows
        ]

    async def search_keyword(self, *args: Any, **kwargs: Any) -> list[Hit]:
        raise NotImplementedError("inline::faiss has no full-text index: the service ranks")

    async def search_hybrid(self, *args: Any, **kwargs: Any) -> list[Hit]:
        raise NotImplementedError("inline::faiss hybrid is fused by the service")

    async def count(self, store_id: str) -> int:
        store = await self._store(store_id)
        return 0 if store is None else len(store.rows)

    async def maintain(self, store_id: str) -> None:
        """Nothing to do: a flat index needs no upkeep."""

    async def health(self) -> None:
        """One read of an object that never exists: absent is healthy."""
        try:
            await self._objects.get(f"{self._settings.prefix.strip('/')}/health-probe")
        except NotFoundError:
            return

    async def close(self) -> None:
        self._stores.clear()
        self._locks.clear()


def _alive(row: dict[str, Any], alive_at: int | None) -> bool:
    expires = row.get("expires_at")
    return alive_at is None or expires is None or expires > alive_at


def _copy(store: _Store) -> _Store:
    faiss = _faiss()
    return _Store(store.dimension, faiss.clone_index(store.index), dict(store.rows), store.next_id)


def _remove_add(store: _Store, gone: list[int], rows: Sequence[ChunkRow]) -> None:
    import numpy as np

    if gone:
        store.index.remove_ids(np.asarray(gone, dtype=np.int64))
        for i in gone:
            store.rows.pop(i, None)
    if not rows:
        return
    units, norms = _normalized([r.vector for r in rows], store.dimension)
    ids = np.arange(store.next_id, store.next_id + len(rows), dtype=np.int64)
    store.index.add_with_ids(units, ids)
    store.next_id += len(rows)
    for i, row, norm in zip(ids.tolist(), rows, norms.tolist(), strict=True):
        entry = row.as_dict(vectors=False)
        entry["_norm"] = float(norm)
        store.rows[i] = entry


def _search(
    index: Any, query: np.ndarray, k: int, allowed: list[int] | None
) -> list[tuple[float, int]]:
    import numpy as np

    faiss = _faiss()
    params = None
    if allowed is not None:
        selector = faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))
        params = faiss.SearchParameters(sel=selector)
        k = min(k, len(allowed))
    scores, ids = index.search(query, k, params=params)
    return [(float(s), int(i)) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0]


__all__ = ["ROW_KEYS", "FaissIndex"]
