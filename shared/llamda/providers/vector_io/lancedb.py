"""``inline::lancedb`` / ``remote::lancedb``: one LanceDB table per vector store, per tenant
(``<uri>/tenants/<tenant>/<store>``), behind the ``VectorIndex`` protocol.

Rows are chunks: vector, text, file id, chunk metadata and the file's attributes (a lance.json
column, so filters run inside LanceDB as a prefilter: ``compile_filter`` turns the API's filter
tree into DataFusion SQL, every value a quoted literal, every key checked). A file's chunks are
written in one commit: a reader never sees half a file. Lance commits appends with a
conditional PUT, so concurrent appends are safe on S3; deletes and updates can conflict with
concurrent writers and are retried with jittered backoff. Keyword search is LanceDB's BM25
full-text index; hybrid is fused by the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import json
import logging
import os
import random
import sys
import threading
import types
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llamda.context import current_tenant
from llamda.errors import BadRequestError, NotFoundError, ServiceUnavailableError
from llamda.providers.vector_io.index import (
    ROW_KEYS,
    SEARCH_KEYS,
    Capabilities,
    ChunkRow,
    ComparisonFilter,
    CompoundFilter,
    Filter,
    Hit,
    IndexContext,
    Metric,
    check_key,
)
from llamda.storage.keys import safe_segment

if TYPE_CHECKING:
    import pyarrow as pa
    from lancedb import AsyncConnection, AsyncTable

    from llamda.config import VectorsConfig

log = logging.getLogger(__name__)

COLUMNS = ROW_KEYS
MIB = 1024 * 1024
_JSON_COLUMNS = ("attributes", "metadata", "chunk_metadata")


def _encode(row: ChunkRow) -> dict[str, Any]:
    out = row.as_dict()
    for key in _JSON_COLUMNS:
        out[key] = json.dumps(out[key], ensure_ascii=False)
    return out


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the protocol returns it: JSON columns as dicts, the vector as a list."""
    for key in _JSON_COLUMNS:
        if key in row:
            value = row[key]
            row[key] = json.loads(value) if isinstance(value, str) and value else (value or {})
    if "vector" in row and row["vector"] is not None:
        row["vector"] = [float(x) for x in row["vector"]]
    return row


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
    Those still number ~140 pydantic models that lance_namespace re-exports and we never
    validate with: the models defined during the import defer building their validators to
    their first use (pydantic's ``defer_build``), ~0.1-0.25 s less here.
    LLAMDA_LANCEDB_FULL_IMPORT=1 turns both off."""
    if "lancedb" in sys.modules:
        return sys.modules["lancedb"]
    name = "lance_namespace_urllib3_client"
    full = os.environ.get("LLAMDA_LANCEDB_FULL_IMPORT", "") in {"1", "true"}
    if full:
        import lancedb

        return lancedb
    # One importer at a time: the deferral below is process-wide while it lasts.
    with _IMPORT_LOCK:
        if name not in sys.modules:
            spec = importlib.util.find_spec(name)
            if spec is not None and spec.submodule_search_locations:
                package = types.ModuleType(name)
                package.__path__ = list(spec.submodule_search_locations)
                package.__spec__ = spec
                package.__file__ = spec.origin
                sys.modules[name] = package
        with _deferred_model_builds():
            import lancedb

    return lancedb


_IMPORT_LOCK = threading.Lock()


@contextlib.contextmanager
def _deferred_model_builds() -> Iterator[None]:
    """pydantic models subclassing ``BaseModel`` directly and defined inside this block build
    their validators on first use instead of at class creation (same behaviour, later cost).
    Only the import of lancedb runs inside it; our own models are defined before."""
    from pydantic import BaseModel

    config = BaseModel.model_config
    had, before = "defer_build" in config, config.get("defer_build")
    config["defer_build"] = True
    try:
        yield
    finally:
        if had:
            config["defer_build"] = before
        else:
            config.pop("defer_build", None)


def _is_conflict(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(
        word in text
        for word in ("conflict", "retryable", "precondition", "too many concurrent writers")
    )


def _is_missing(exc: Exception) -> bool:
    """A kept table handle whose table another process dropped: lance answers "Not found"
    (the ``_versions`` directory is gone) or the OS a FileNotFoundError."""
    text = str(exc).lower()
    return isinstance(exc, FileNotFoundError) or (
        isinstance(exc, RuntimeError | OSError) and "not found" in text and ".lance" in text
    )


def _gone_is_404[**P, R](
    method: Callable[P, Awaitable[R]],
) -> Callable[P, Awaitable[R]]:
    """A store dropped by another process (another Lambda container) while this one kept its
    handle: a 404 (not a 500 carrying lance's paths), and the stale handle is forgotten, so
    the next call opens afresh (a store re-created with the same id is read, not the old)."""

    @functools.wraps(method)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except NotFoundError:
            raise
        except Exception as exc:
            if not _is_missing(exc):
                raise
            index, store_id = args[0], args[1]
            assert isinstance(index, LanceDBIndex) and isinstance(store_id, str)
            log.info("lancedb: the table of %s is gone (dropped elsewhere)", store_id)
            index._forget(store_id)
            raise NotFoundError(
                f"No vector store found with id {store_id!r}",
                param="vector_store_id",
                code="vector_store_not_found",
            ) from None

    return guarded


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


def compile_filter(node: Filter) -> str:
    """The API's filter tree as a LanceDB (DataFusion SQL) predicate on the json column.
    Numbers compare numerically (a non-number never matches), strings only with strings; values are
    quoted literals or ``repr`` of a finite float, keys are checked plain names."""
    if isinstance(node, CompoundFilter):
        glue = " AND " if node.type == "and" else " OR "
        return "(" + glue.join(compile_filter(f) for f in node.filters) + ")"
    if node.type in ("in", "nin"):
        op, glue = ("eq", " OR ") if node.type == "in" else ("ne", " AND ")
        values = node.value if isinstance(node.value, list) else [node.value]
        parts = [compile_filter(ComparisonFilter(type=op, key=node.key, value=v)) for v in values]
        return "(" + glue.join(parts) + ")"
    sql_op = {"eq": "=", "ne": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[node.type]
    value, key = node.value, check_key(node.key)
    if isinstance(value, bool):
        if node.type not in ("eq", "ne"):
            raise BadRequestError("booleans compare with eq or ne only", param="filters")
        # ne true is eq false: only booleans match (a missing key or a string never does).
        wanted = value if node.type == "eq" else not value
        return f"json_extract(attributes, '$.{key}') = '{str(wanted).lower()}'"
    if isinstance(value, int | float):
        return f"TRY_CAST(json_extract(attributes, '$.{key}') AS DOUBLE) {sql_op} {float(value)!r}"
    # json_get_string also reads a number as its text: only JSON strings ('"...') compare.
    return (
        f"(json_get_string(attributes, '{key}') {sql_op} {quote(str(value))} "
        f"AND starts_with(json_extract(attributes, '$.{key}'), '\"'))"
    )


def _where(filters: Filter | None, alive_at: int | None) -> str | None:
    """The prefilter of a search: the filter tree and, for stores with TTL rows, liveness (a
    prefilter costs a few ms, so only then)."""
    where = compile_filter(filters) if filters is not None else None
    if alive_at is not None:
        live = f"(expires_at IS NULL OR expires_at > {int(alive_at)})"
        where = f"({where}) AND {live}" if where else live
    return where


class LanceDBIndex:
    """The LanceDB backend. Connections open on first use, one per tenant and event loop."""

    capabilities = Capabilities(keyword=True, hybrid=False, concurrent_writers=True)

    def __init__(
        self,
        provider_id: str = "lancedb",
        settings: Any = None,
        context: IndexContext | VectorsConfig | None = None,
    ):
        self.provider_id = provider_id
        vectors = context.vectors if isinstance(context, IndexContext) else context
        if vectors is None:
            raise ValueError("LanceDBIndex needs storage.vectors")
        self._config = vectors
        self._connections: dict[tuple[str, int], AsyncConnection] = {}
        self._tables: dict[tuple[str, int, str], AsyncTable] = {}
        self._indexed: set[tuple[str, str]] = set()
        self._batchers: dict[tuple[str, int, str], _AppendBatcher] = {}
        self._session: Any = None  # lancedb.Session, made with the first connection
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
                session=self.session(),
            )
        return self._connections[key]

    def session(self) -> Any:
        """The LanceDB session (index and metadata caches) of every connection this index
        opens (a process has one index per provider), bounded by ``index_cache_mib`` and
        ``metadata_cache_mib`` (lance's defaults, 6 GiB and 1 GiB per connection, would outgrow
        a Lambda)."""
        if self._session is None:
            lancedb = import_lancedb()
            self._session = lancedb.Session(
                index_cache_size_bytes=self._config.index_cache_mib * MIB,
                metadata_cache_size_bytes=self._config.metadata_cache_mib * MIB,
            )
        return self._session

    def cache_bytes(self) -> int:
        """Bytes the caches hold now (0 before the first connection)."""
        return 0 if self._session is None else int(self._session.size_bytes)

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

    def _forget(self, store_id: str) -> None:
        """Drop this tenant's kept handle (and append batcher) of a store."""
        key = self._key(store_id)
        self._tables.pop(key, None)
        self._batchers.pop(key, None)

    async def create(self, store_id: str, dimension: int, *, metric: Metric = "cosine") -> None:
        """The table and its full-text index, built once while the table is empty (many
        writers creating it later would conflict). Search is cosine whatever ``metric``."""
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

    @_gone_is_404
    async def upsert_file(
        self, store_id: str, file_id: str, rows: Sequence[ChunkRow], dimension: int
    ) -> None:
        if rows:
            await self.write(store_id, rows, dimension, replace=f"file_id = {quote(file_id)}")
        else:
            await self.delete_file(store_id, file_id)

    @_gone_is_404
    async def upsert(self, store_id: str, rows: Sequence[ChunkRow], dimension: int) -> None:
        await self.write(store_id, rows, dimension)

    @_gone_is_404
    async def write(
        self,
        store_id: str,
        rows: Sequence[ChunkRow],
        dimension: int,
        *,
        replace: str | None = None,
    ) -> None:
        """Write rows in one commit. New chunk ids are appended (conflict-free on S3); when rows
        with these ids exist, or ``replace`` (a predicate) matches rows, one merge_insert
        upserts by chunk id and deletes the rows of ``replace`` that were not rewritten."""
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
        data = pa.Table.from_pylist([_encode(r) for r in rows], schema=_schema(dimension))
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

    async def _delete(self, store_id: str, where: str) -> None:
        table = await self._table(store_id)
        if table is not None:
            await self._retry("delete", lambda: table.delete(where))

    @_gone_is_404
    async def delete_file(self, store_id: str, file_id: str) -> None:
        await self._delete(store_id, f"file_id = {quote(file_id)}")

    @_gone_is_404
    async def delete_chunks(self, store_id: str, chunk_ids: Sequence[str]) -> None:
        if chunk_ids:
            await self._delete(store_id, f"chunk_id IN ({', '.join(quote(c) for c in chunk_ids)})")

    @_gone_is_404
    async def update_file_attributes(
        self, store_id: str, file_id: str, attributes: dict[str, Any]
    ) -> None:
        table = await self._table(store_id)
        if table is not None:
            values = {"attributes": json.dumps(attributes, ensure_ascii=False)}
            where = f"file_id = {quote(file_id)}"
            await self._retry("update", lambda: table.update(values, where=where))

    async def _rows(
        self, store_id: str, where: str | None, limit: int, *, vectors: bool = False
    ) -> list[dict[str, Any]]:
        table = await self._table(store_id)
        if table is None:
            return []
        columns = [*COLUMNS, "vector"] if vectors else [*COLUMNS]
        query = table.query()
        if where:
            query = query.where(where)
        return [_decode(r) for r in await query.select(columns).limit(limit).to_list()]

    @_gone_is_404
    async def file_rows(
        self, store_id: str, file_id: str, *, vectors: bool = False, limit: int = 10_000
    ) -> list[dict[str, Any]]:
        return await self._rows(store_id, f"file_id = {quote(file_id)}", limit, vectors=vectors)

    @_gone_is_404
    async def all_rows(
        self,
        store_id: str,
        *,
        limit: int = 100_000,
        alive_at: int | None = None,
        vectors: bool = False,
    ) -> list[dict[str, Any]]:
        return await self._rows(store_id, _where(None, alive_at), limit, vectors=vectors)

    @_gone_is_404
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
        """Best ``k`` rows by cosine similarity (exact distances for the candidates)."""
        where = _where(filters, alive_at)
        table = await self._table(store_id)
        if table is None:
            return []
        query = table.query().nearest_to(list(vector)).distance_type("cosine")
        if where:
            query = query.where(where)
        columns = _columns(keys)
        # The IVF_HNSW_SQ index reports quantized (and doubled) cosine distances: scores are
        # recomputed exactly here from the candidates' vectors, read in the same take as the
        # other columns. (LanceDB's refine_factor does the same in a second take of the
        # vector column, ~2 ms more per query on local disk and a round trip more on S3.)
        fetch = (
            [*columns, "_distance"] if "vector" in columns else [*columns, "vector", "_distance"]
        )
        query = query.select(fetch).limit(k).nprobes(8).ef(max(64, k * 2))
        return _exact_hits(await query.to_arrow(), vector, keep_vector="vector" in columns)

    @_gone_is_404
    async def search_keyword(
        self,
        store_id: str,
        text: str,
        k: int,
        *,
        filters: Filter | None = None,
        alive_at: int | None = None,
        keys: Sequence[str] = SEARCH_KEYS,
    ) -> list[Hit]:
        """Best ``k`` rows by BM25, squashed to 0..1 (s / (s + 1))."""
        where = _where(filters, alive_at)
        table = await self._table(store_id)
        if table is None:
            return []
        await self._ensure_fts(store_id, table)
        query = table.query().nearest_to_text(text, columns=["text"])
        if where:
            query = query.where(where)
        rows = await query.select([*_columns(keys), "_score"]).limit(k).to_list()
        return [Hit(_decode(r), (s := float(r.pop("_score", 0.0))) / (s + 1.0)) for r in rows]

    @_gone_is_404
    async def search_hybrid(
        self,
        store_id: str,
        vector: Sequence[float],
        text: str,
        k: int,
        *,
        filters: Filter | None = None,
        alive_at: int | None = None,
        keys: Sequence[str] = SEARCH_KEYS,
        alpha: float | None = None,
    ) -> list[Hit]:
        raise NotImplementedError("LanceDB hybrid is fused by the service")

    @_gone_is_404
    async def count(self, store_id: str) -> int:
        table = await self._table(store_id)
        return 0 if table is None else int(await table.count_rows())

    async def _ensure_fts(self, store_id: str, table: AsyncTable) -> None:
        key = (self._location(), store_id)
        if key in self._indexed:
            return
        names = {i.name for i in await table.list_indices()}
        if "text_idx" not in names:
            from lancedb.index import FTS

            await self._retry("fts index", lambda: table.create_index("text", config=FTS()))
        self._indexed.add(key)

    @_gone_is_404
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

    async def health(self) -> None:
        """A local directory: writable (or creatable). S3: not probed here (the control
        function has no access to the bucket; a request must not buy an S3 call)."""
        if "://" not in self._config.uri:
            await asyncio.to_thread(_writable, self._config.uri)

    async def close(self) -> None:
        self._batchers.clear()
        self._tables.clear()
        self._connections.clear()


def _exact_hits(result: pa.Table, vector: Sequence[float], *, keep_vector: bool) -> list[Hit]:
    """Hits best first, scored by exact cosine similarity (clamped at 0) between ``vector``
    and each row's stored vector (a zero vector scores 0)."""
    import numpy as np

    if result.num_rows == 0:
        return []
    column = result.column("vector").combine_chunks()
    dim = column.type.list_size  # fixed-size lists: null rows keep their slots in ``values``
    flat = column.values.slice(column.offset * dim, len(column) * dim)
    stored = flat.to_numpy(zero_copy_only=False).reshape(len(column), dim)
    query = np.asarray(vector, dtype=np.float32)
    norms = np.linalg.norm(stored, axis=1) * float(np.linalg.norm(query))
    dots = stored @ query
    scores = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
    if column.null_count:  # a row without a vector (never written so): it scores 0
        scores[column.is_null().to_numpy(zero_copy_only=False)] = 0.0
    names = [n for n in result.column_names if n != "_distance" and (keep_vector or n != "vector")]
    rows = result.select(names).to_pylist()
    order = sorted(range(len(rows)), key=lambda i: -float(scores[i]))  # stable: ties keep ANN order
    return [Hit(_decode(rows[i]), max(0.0, min(1.0, float(scores[i])))) for i in order]


def _columns(keys: Sequence[str]) -> list[str]:
    """Columns to read for these row keys (unknown keys ignored: a caller cannot name one)."""
    wanted = [k for k in keys if k in COLUMNS or k == "vector"]
    return wanted or list(SEARCH_KEYS)


def _writable(location: str) -> None:
    """A local directory the server can write (or create): its nearest existing ancestor."""
    path = Path(location).resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    if not (path.is_dir() and os.access(path, os.W_OK | os.X_OK)):
        raise PermissionError("not a writable directory")
