"""LanceDB: one table per vector store, per tenant (``<uri>/tenants/<tenant>/<store>``).

Rows are chunks: vector, text, file id, chunk metadata and the file's attributes (a lance.json
column, so filters run inside LanceDB as a prefilter). A file's chunks are written in one
commit (``write``): a reader never sees half a file. Lance commits appends with a conditional
PUT, so concurrent appends are safe on S3; deletes and updates can conflict with concurrent
writers and are retried with jittered backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import random
import sys
import time
import types
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from llamda.config import VectorsConfig
from llamda.context import current_tenant
from llamda.errors import NotFoundError, ServiceUnavailableError
from llamda.storage.keys import safe_segment

if TYPE_CHECKING:
    import pyarrow as pa
    from lancedb import AsyncConnection, AsyncTable

log = logging.getLogger(__name__)

Mode = Literal["vector", "keyword"]
COLUMNS = (
    "chunk_id", "file_id", "filename", "chunk_index", "token_count", "text",
    "attributes", "metadata", "chunk_metadata", "created_at", "expires_at",
)  # fmt: skip


# What a search returns by default (each extra column costs ~0.5 ms on a 10-row result).
SEARCH_COLUMNS = ("chunk_id", "file_id", "filename", "text", "attributes")


@dataclass
class ChunkRow:
    chunk_id: str
    file_id: str
    filename: str
    chunk_index: int
    token_count: int
    text: str
    vector: list[float]
    attributes: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    chunk_metadata: dict[str, Any] = field(default_factory=dict)
    created_at: int = 0
    expires_at: int | None = None

    def as_row(self) -> dict[str, Any]:
        row = self.__dict__.copy()
        for key in ("attributes", "metadata", "chunk_metadata"):
            row[key] = json.dumps(row[key], ensure_ascii=False)
        return row


@dataclass
class Hit:
    row: dict[str, Any]
    score: float


def _schema(dimension: int) -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("chunk_id", pa.string(), nullable=False),
            pa.field("file_id", pa.string()),
            pa.field("filename", pa.string()),
            pa.field("chunk_index", pa.int32()),
            pa.field("token_count", pa.int32()),
            pa.field("text", pa.string()),
            pa.field("vector", pa.list_(pa.float32(), dimension)),
            pa.field("attributes", pa.json_()),
            pa.field("metadata", pa.json_()),
            pa.field("chunk_metadata", pa.json_()),
            pa.field("created_at", pa.int64()),
            pa.field("expires_at", pa.int64()),
        ]
    )


def import_lancedb() -> Any:
    """``import lancedb``, about 1 s faster on a cold start. lancedb imports lance_namespace,
    which imports the package of a generated REST client whose ``__init__`` loads every API
    class (~1 s of pydantic models here) that only REST-namespace connections use. We connect
    to directories and s3:// URIs, so that ``__init__`` is skipped: the package is registered
    with its real path and its submodules (the models lance_namespace needs) import on demand.
    LLAMDA_LANCEDB_FULL_IMPORT=1 turns this off."""
    name = "lance_namespace_urllib3_client"
    full = os.environ.get("LLAMDA_LANCEDB_FULL_IMPORT", "") in {"1", "true"}
    if not full and "lancedb" not in sys.modules and name not in sys.modules:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            package = types.ModuleType(name)
            package.__path__ = list(spec.submodule_search_locations)
            package.__spec__ = spec
            package.__file__ = spec.origin
            sys.modules[name] = package
    import lancedb

    return lancedb


def _is_conflict(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(
        word in text
        for word in ("conflict", "retryable", "precondition", "too many concurrent writers")
    )


class _AppendBatcher:
    """Coalesces concurrent appends to one table into one commit: while a commit is in flight,
    new rows wait and go together in the next. Fewer commits, fewer conflicts between writers.
    When a combined commit fails, each request is retried alone: one client's bad rows fail
    only that client's write."""

    def __init__(self, commit: Any):
        self._commit = commit  # async (pa.Table) -> None
        self._pending: list[tuple[pa.Table, asyncio.Future[None]]] = []
        self._flushing = False

    async def append(self, data: pa.Table) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((data, future))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        await future

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                if len(batch) > 1:
                    try:
                        await self._commit(_concat([data for data, _ in batch]))
                    except Exception as exc:
                        log.info("combined append of %d failed (%s); each alone", len(batch), exc)
                    else:
                        for _, future in batch:
                            _settle(future, None)
                        continue
                for data, future in batch:
                    try:
                        await self._commit(data)
                    except Exception as exc:
                        _settle(future, exc)
                    else:
                        _settle(future, None)
        finally:
            self._flushing = False


def _concat(tables: list[pa.Table]) -> pa.Table:
    import pyarrow as pa

    return pa.concat_tables(tables)


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    """Resolve a waiting append (its caller may have gone: a cancelled future stays so)."""
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def quote(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


class LanceDBIndex:
    """The vector store backend. Connections open on first use, one per tenant and event loop."""

    def __init__(self, config: VectorsConfig):
        self._config = config
        self._connections: dict[tuple[str, int], AsyncConnection] = {}
        self._tables: dict[tuple[str, int, str], AsyncTable] = {}
        self._indexed: set[tuple[str, str]] = set()
        self._batchers: dict[tuple[str, int, str], _AppendBatcher] = {}
        # Called after each write with the store id (the maintenance step notes the store).
        self.on_write: Callable[[str], Awaitable[None]] | None = None

    def _location(self) -> str:
        return f"{self._config.uri.rstrip('/')}/tenants/{safe_segment(current_tenant())}"

    def _key(self, store_id: str) -> tuple[str, int, str]:
        """Handles are per tenant location, event loop and store."""
        return (self._location(), id(asyncio.get_running_loop()), store_id)

    async def _db(self) -> AsyncConnection:
        try:
            lancedb = import_lancedb()
        except ImportError:
            raise ServiceUnavailableError(
                "vector stores need LanceDB: pip install 'llamda[vectors]'", code="unavailable"
            ) from None

        key = (self._location(), id(asyncio.get_running_loop()))
        if key not in self._connections:
            from datetime import timedelta

            options = {k: v for k, v in self._config.storage_options.items() if v}
            self._connections[key] = await lancedb.connect_async(
                key[0],
                storage_options=options or None,
                # Other processes (Lambda containers, the ingest function) write too: a cached
                # table handle checks for newer versions this often (0: on every read).
                read_consistency_interval=timedelta(seconds=self._config.read_consistency_seconds),
            )
        return self._connections[key]

    async def _table(self, store_id: str) -> AsyncTable | None:
        key = self._key(store_id)
        table = self._tables.get(key)
        if table is None:
            db = await self._db()
            try:
                table = await db.open_table(safe_segment(store_id))
            except ValueError:  # lancedb: "Table ... was not found"
                return None
            # Concurrent first calls may each open one: every caller uses the same handle.
            table = self._tables.setdefault(key, table)
        return table

    async def create(self, store_id: str, dimension: int) -> None:
        """The table and its full-text index, built once while the table is empty (many
        writers creating it later would conflict)."""
        db = await self._db()
        table = await db.create_table(
            safe_segment(store_id), schema=_schema(dimension), exist_ok=True
        )
        await self._ensure_fts(store_id, table)

    async def drop(self, store_id: str) -> None:
        db = await self._db()
        for key in [k for k in self._tables if k[2] == store_id]:
            self._tables.pop(key, None)
            self._batchers.pop(key, None)
        with contextlib.suppress(ValueError, FileNotFoundError):
            await db.drop_table(safe_segment(store_id))

    async def _retry(self, what: str, action: Any) -> Any:
        for attempt in range(self._config.write_retries + 1):
            try:
                return await action()
            except Exception as exc:
                if not _is_conflict(exc) or attempt == self._config.write_retries:
                    raise
                delay = min(2.0, 0.05 * 2**attempt) * (0.5 + random.random())
                log.info(
                    "lancedb %s conflict (attempt %d), retrying in %.2fs", what, attempt, delay
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def write(
        self, store_id: str, rows: list[ChunkRow], dimension: int, *, replace: str | None = None
    ) -> None:
        """Write rows in one commit. New chunk ids are appended (conflict-free on S3); when rows
        with these ids exist, or ``replace`` (a filter) matches rows, one merge_insert upserts by
        chunk id and deletes the rows of ``replace`` that were not rewritten."""
        if not rows:
            return
        import pyarrow as pa

        table = await self._table(store_id)
        if table is None:  # never re-create a table here: its store was deleted
            raise NotFoundError(
                f"No vector store found with id {store_id!r}",
                param="vector_store_id",
                code="vector_store_not_found",
            )
        data = pa.Table.from_pylist([r.as_row() for r in rows], schema=_schema(dimension))
        ids = ", ".join(quote(r.chunk_id) for r in rows)
        existing = f"chunk_id IN ({ids})" + (f" OR ({replace})" if replace else "")
        if await table.count_rows(existing) == 0:
            key = self._key(store_id)
            if key not in self._batchers:
                self._batchers[key] = _AppendBatcher(
                    lambda rows: self._retry("add", lambda: self._add(store_id, rows))
                )
            await self._batchers[key].append(data)
        else:

            async def upsert() -> None:
                merge = table.merge_insert("chunk_id").when_matched_update_all()
                merge = merge.when_not_matched_insert_all()
                if replace:
                    merge = merge.when_not_matched_by_source_delete(replace)
                await merge.execute(data)

            await self._retry("merge_insert", upsert)
        if self.on_write is not None:  # index upkeep happens later, in the maintenance step
            await self.on_write(store_id)

    async def _add(self, store_id: str, rows: pa.Table) -> None:
        table = await self._table(store_id)
        assert table is not None
        await table.add(rows)

    async def delete(self, store_id: str, where: str) -> None:
        table = await self._table(store_id)
        if table is not None:
            await self._retry("delete", lambda: table.delete(where))

    async def update(self, store_id: str, where: str, values: dict[str, Any]) -> None:
        table = await self._table(store_id)
        if table is not None:
            await self._retry("update", lambda: table.update(values, where=where))

    async def rows(
        self, store_id: str, where: str, limit: int = 10_000, *, vectors: bool = False
    ) -> list[dict[str, Any]]:
        table = await self._table(store_id)
        if table is None:
            return []
        columns = [*COLUMNS, "vector"] if vectors else [*COLUMNS]
        query = table.query().where(where).select(columns).limit(limit)
        return await query.to_list()

    async def search(
        self,
        store_id: str,
        *,
        mode: Mode,
        k: int,
        where: str | None,
        vector: list[float] | None = None,
        text: str | None = None,
        columns: tuple[str, ...] = SEARCH_COLUMNS,
        expiring: bool = False,
    ) -> list[Hit]:
        """Best ``k`` rows; score is cosine similarity (vector) or squashed BM25 (keyword).
        ``expiring``: the table has rows with a TTL (vector-io insert), so expired ones are
        filtered out (a prefilter costs a few ms, so only then)."""
        table = await self._table(store_id)
        if table is None:
            return []
        if expiring:
            live = f"(expires_at IS NULL OR expires_at > {int(time.time())})"
            where = f"({where}) AND {live}" if where else live
        if mode == "vector":
            assert vector is not None
            query = table.query().nearest_to(vector).distance_type("cosine")
            if where:
                query = query.where(where)
            query = query.select([*columns, "_distance"]).limit(k)
            # refine: exact distances for the candidates (the IVF_HNSW_SQ index reports
            # quantized, doubled cosine distances, so scores would change once it exists).
            query = query.nprobes(8).ef(max(64, k * 2)).refine_factor(1)
            rows = await query.to_list()
            return [Hit(r, max(0.0, 1.0 - float(r.pop("_distance")))) for r in rows]
        assert text is not None
        await self._ensure_fts(store_id, table)
        query = table.query().nearest_to_text(text, columns=["text"])
        if where:
            query = query.where(where)
        rows = await query.select([*columns, "_score"]).limit(k).to_list()
        return [Hit(r, (s := float(r.pop("_score", 0.0))) / (s + 1.0)) for r in rows]

    async def _ensure_fts(self, store_id: str, table: AsyncTable) -> None:
        key = (self._location(), store_id)
        if key in self._indexed:
            return
        names = {i.name for i in await table.list_indices()}
        if "text_idx" not in names:
            from lancedb.index import FTS

            await self._retry("fts index", lambda: table.create_index("text", config=FTS()))
        self._indexed.add(key)

    async def maintain(self, store_id: str) -> None:
        """Build the ANN index once the table is large enough; later, fold rows written since
        into the indexes (``optimize``) once they are a tenth of the table. Rows not yet indexed
        are still searched (flat), so this is about speed. Slow (a build takes tens of seconds):
        only the maintenance step calls it, never a request. A failure (say, another writer
        optimizing at the same time) is logged, not raised."""
        table = await self._table(store_id)
        if table is None:
            return
        try:
            rows = await table.count_rows()
            indices = {i.name: i for i in await table.list_indices()}
            if "vector_idx" not in indices:
                if rows >= self._config.ann_index_min_rows:
                    from lancedb.index import IvfHnswSq

                    partitions = max(1, min(256, rows // 1500))
                    config = IvfHnswSq(distance_type="cosine", num_partitions=partitions)
                    await table.create_index("vector", config=config)
                    log.info(
                        "built ANN index on %s (%d rows, %d partitions)", store_id, rows, partitions
                    )
                return
            unindexed = max(getattr(i, "num_unindexed_rows", 0) or 0 for i in indices.values())
            if unindexed >= max(1000, rows // 10):
                await self._retry("optimize", lambda: table.optimize())
                log.info("optimized %s (%d rows were not indexed)", store_id, unindexed)
        except Exception:
            log.warning(
                "index maintenance on %s failed; search stays correct", store_id, exc_info=True
            )

    async def close(self) -> None:
        self._batchers.clear()
        self._tables.clear()
        self._connections.clear()
