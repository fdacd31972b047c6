"""``remote::pgvector``: PostgreSQL with the pgvector extension, through psycopg 3 (async pool).

One table per store and tenant, named from our ids only (``<prefix><store>_<hash of tenant and
store>``, sanitised, quoted as an identifier): user text never names anything. Each table has a
``vector(N)`` column with an HNSW index (the store's metric), a generated ``tsvector`` column
with a GIN index (keyword search: ``ts_rank_cd`` over any of the query's words) and the file's
attributes in a JSONB column. Filters compile to SQL whose keys and values are all bind
parameters. Hybrid is fused by the service (vector + keyword, its ranker). A file's chunks are
replaced in one transaction. Connection, pool and statement timeouts are bounded so a server
that is down answers a 503 naming the provider quickly, never a hang.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from llamda.context import current_tenant
from llamda.errors import BadRequestError, LlamdaError, NotFoundError, ServiceUnavailableError
from llamda.providers.vector_io.config import PgVectorConfig
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

if TYPE_CHECKING:
    from psycopg import AsyncConnection, sql
    from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

PROVIDER_TYPE = "remote::pgvector"
# Row keys → columns (``vector`` is the ``embedding`` column, read only on request).
_COLUMNS = ROW_KEYS
# Distance operator, index opclass and distance → score (higher is better) per metric.
_METRICS: dict[str, tuple[str, str, str]] = {
    "cosine": ("<=>", "vector_cosine_ops", "1 - ({d})"),
    "l2": ("<->", "vector_l2_ops", "1 / (1 + ({d}))"),
    "dot": ("<#>", "vector_ip_ops", "-({d})"),  # <#> is the negative inner product
}
_SQL_OPS = {"eq": "=", "ne": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_SAFE = re.compile(r"[^a-z0-9_]+")


def table_name(prefix: str, tenant: str, store_id: str) -> str:
    """A store's table: readable, unique per (tenant, store), at most 63 bytes, [a-z0-9_]."""
    digest = hashlib.sha256(f"{tenant}\0{store_id}".encode()).hexdigest()[:12]
    readable = _SAFE.sub("_", store_id.lower())[:30]
    return f"{prefix}{readable}_{digest}"


def compile_filter(node: Filter) -> tuple[sql.Composable, list[Any]]:
    """The filter tree as a SQL predicate on the ``attributes`` JSONB column, with every key and
    value a bind parameter. Semantics as ``index.matches``: a missing key never matches, numbers
    compare numerically with numbers only, strings with strings (code-point order: COLLATE "C"),
    booleans with booleans (eq / ne)."""
    from psycopg import sql

    if isinstance(node, CompoundFilter):
        parts = [compile_filter(child) for child in node.filters]
        glue = sql.SQL(" AND " if node.type == "and" else " OR ")
        params = [p for _, ps in parts for p in ps]
        return sql.SQL("({})").format(glue.join(q for q, _ in parts)), params
    key = check_key(node.key)
    if node.type in ("in", "nin"):
        op, glue_word = ("eq", " OR ") if node.type == "in" else ("ne", " AND ")
        values = node.value if isinstance(node.value, list) else [node.value]
        leaves = [compile_filter(ComparisonFilter(type=op, key=key, value=v)) for v in values]
        params = [p for _, ps in leaves for p in ps]
        return sql.SQL("({})").format(sql.SQL(glue_word).join(q for q, _ in leaves)), params
    op = sql.SQL(_SQL_OPS[node.type])
    value = node.value
    if isinstance(value, bool):
        query = (
            "(jsonb_typeof(attributes -> %s::text) = 'boolean' "
            "AND (attributes -> %s::text) {} %s::jsonb)"
        )
        return sql.SQL(query).format(op), [key, key, json.dumps(value)]
    if isinstance(value, int | float):
        query = (
            "(CASE WHEN jsonb_typeof(attributes -> %s::text) = 'number' "
            "THEN (attributes ->> %s::text)::double precision END {} %s::double precision)"
        )
        return sql.SQL(query).format(op), [key, key, float(value)]
    query = (
        "(jsonb_typeof(attributes -> %s::text) = 'string' "
        'AND (attributes ->> %s::text) COLLATE "C" {} %s::text)'
    )
    return sql.SQL(query).format(op), [key, key, str(value)]


def _text(value: str) -> str:
    """PostgreSQL text cannot hold NUL: a chunk's NULs become U+FFFD (LanceDB keeps them; a
    document with one must not fail on this backend alone)."""
    return value.replace("\x00", "\ufffd")


def _vector_text(vector: Sequence[float]) -> str:
    """pgvector's text form ("[1,2,3]"), sent as a parameter and cast to vector."""
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


class PgVectorIndex:
    """The ``VectorIndex`` over PostgreSQL + pgvector. One pool per event loop, opened lazily."""

    capabilities = Capabilities(keyword=True, hybrid=False, concurrent_writers=True)

    def __init__(self, provider_id: str, settings: PgVectorConfig, context: IndexContext):
        self.provider_id = provider_id
        self._config = settings
        self._context = context
        self.on_write: Callable[[str], Awaitable[None]] | None = None
        # One pool per event loop (a pool's tasks live on its loop); pools of closed loops are
        # dropped, and a new loop that reuses an old one's id() never gets its pool.
        self._pools: dict[int, tuple[asyncio.AbstractEventLoop, AsyncConnectionPool]] = {}
        self._password: str | None = None
        self._ready = False  # the extension and the stores table exist
        self._connect_kwargs: dict[str, Any] = {}
        # table → (dimension, metric) of stores known to exist (dropped ones are forgotten).
        self._stores: dict[str, tuple[int, str]] = {}

    # --- connections -----------------------------------------------------------------------

    def _unavailable(self, why: str) -> ServiceUnavailableError:
        return ServiceUnavailableError(
            f"vector_io provider {self.provider_id!r} ({PROVIDER_TYPE}) is unavailable: {why}",
            code="unavailable",
        )

    async def _secret(self) -> str | None:
        if self._config.password is not None:
            return self._config.password.get_secret_value()
        if self._config.password_parameter:
            if self._password is None:
                from llamda.providers.inference.remote_openai import read_secret

                self._password = await read_secret(self._config.password_parameter)
            return self._password
        return None

    async def _pool(self) -> AsyncConnectionPool:
        loop = asyncio.get_running_loop()
        known = self._pools.get(id(loop))
        if known is not None and known[0] is loop:
            return known[1]
        for key, (other, _) in list(self._pools.items()):
            if other.is_closed() or (other is not loop and key == id(loop)):
                del self._pools[key]
        try:
            from psycopg_pool import AsyncConnectionPool
        except ImportError:
            raise self._unavailable("pip install 'llamda[pgvector]'") from None
        config = self._config
        kwargs: dict[str, Any] = {
            "host": config.host,
            "port": config.port,
            "dbname": config.db,
            "user": config.user,
            "sslmode": config.sslmode,
            "connect_timeout": config.connect_timeout_seconds,
            # A statement never outlives the request that waits for it.
            "options": f"-c statement_timeout={int(config.statement_timeout_seconds * 1000)}",
            "application_name": "llamda",
            "autocommit": True,
        }
        password = await self._secret()
        if password is not None:
            kwargs["password"] = password
        self._connect_kwargs = kwargs
        pool = AsyncConnectionPool(
            kwargs=kwargs,
            min_size=1,
            max_size=config.pool_max_size,
            open=False,
            # A pooled connection the server dropped (a restart) is checked before use.
            check=AsyncConnectionPool.check_connection,
            timeout=config.pool_timeout_seconds,
            reconnect_timeout=60,
            name=f"llamda-{self.provider_id}",
        )
        await pool.open(wait=False)
        self._pools[id(loop)] = (loop, pool)
        return pool

    @asynccontextmanager
    async def _conn(self, *, ready: bool = True) -> AsyncIterator[AsyncConnection[Any]]:
        """A pooled connection (``ready``: the extension and the stores table exist). Failing
        to reach or use the server is a 503 naming this provider, never a 500 or a hang."""
        import psycopg
        from psycopg_pool import PoolTimeout

        pool = await self._pool()
        try:
            async with pool.connection() as conn:
                if ready and not self._ready:
                    await self._prepare(conn)
                yield conn
        except LlamdaError:
            raise
        except PoolTimeout:
            await self._discard(pool)
            raise self._unavailable(
                f"no connection to {self._config.host}:{self._config.port} within "
                f"{self._config.pool_timeout_seconds:g}s"
            ) from None
        except psycopg.errors.QueryCanceled:
            raise self._unavailable(
                f"a statement ran past {self._config.statement_timeout_seconds:g}s"
            ) from None
        except psycopg.errors.UndefinedTable:
            # Dropped by another process since we looked: forget what we knew.
            self._stores.clear()
            raise NotFoundError(
                "No vector store found", param="vector_store_id", code="vector_store_not_found"
            ) from None
        except UnicodeEncodeError:  # a lone surrogate from a JSON body: not UTF-8 text
            raise BadRequestError("the text is not valid Unicode (a lone surrogate)") from None
        except psycopg.DataError as exc:
            # e.g. "expected 1024 dimensions, not 3": the request's data does not fit the store.
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise BadRequestError(f"the vector store refused the data: {first}") from None
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            log.warning("pgvector %s: %s", self.provider_id, type(exc).__name__)
            await self._discard(pool)
            raise self._unavailable(
                f"lost the connection to {self._config.host}:{self._config.port}"
            ) from None

    async def _discard(self, pool: AsyncConnectionPool) -> None:
        """Forget a pool that failed: the next request opens a new one, which connects at once
        (a failing pool retries with growing backoff, so a server back after a long outage
        would wait for it)."""
        for key, (_, known) in list(self._pools.items()):
            if known is pool:
                del self._pools[key]
        try:
            await pool.close(timeout=1)
        except Exception:  # closing is best effort: the pool is already forgotten
            log.debug("closing a failed pool", exc_info=True)

    async def _prepare(self, conn: AsyncConnection[Any]) -> None:
        """The vector extension (created when missing and allowed) and the stores table."""
        import psycopg
        from psycopg import sql

        found = await (
            await conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
        ).fetchone()
        if found is None:
            try:
                await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except psycopg.errors.InsufficientPrivilege:
                raise self._unavailable(
                    f"the vector extension is not installed in database {self._config.db!r} "
                    f"and user {self._config.user!r} may not create it (a superuser runs: "
                    "CREATE EXTENSION vector)"
                ) from None
            except (psycopg.errors.FeatureNotSupported, psycopg.errors.UndefinedFile):
                raise self._unavailable("pgvector is not installed on the server") from None
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [self._meta_table()])
            await conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (table_name text PRIMARY KEY, "
                    "dimension int NOT NULL, metric text NOT NULL)"
                ).format(sql.Identifier(self._meta_table()))
            )
        self._ready = True

    def _table(self, store_id: str) -> str:
        return table_name(self._config.table_prefix, current_tenant(), store_id)

    def _meta_table(self) -> str:
        return f"{self._config.table_prefix}stores"

    async def _store(self, conn: AsyncConnection[Any], table: str) -> tuple[int, str] | None:
        """The store's (dimension, metric), or None when it has no table."""
        if table in self._stores:
            return self._stores[table]
        from psycopg import sql

        cursor = await conn.execute(
            sql.SQL("SELECT dimension, metric FROM {} WHERE table_name = %s").format(
                sql.Identifier(self._meta_table())
            ),
            [table],
        )
        row = await cursor.fetchone()
        if row is None:
            return None
        self._stores[table] = (int(row[0]), str(row[1]))
        return self._stores[table]

    # --- the protocol ----------------------------------------------------------------------

    async def create(self, store_id: str, dimension: int, *, metric: Metric = "cosine") -> None:
        from psycopg import sql

        table = self._table(store_id)
        language = sql.Literal(self._config.text_search_config)
        ident = sql.Identifier(table)
        async with self._conn() as conn, conn.transaction():
            # Concurrent creators of one table wait for each other (IF NOT EXISTS races).
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [table])
            await conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {t} ("
                    "chunk_id text PRIMARY KEY, file_id text NOT NULL, filename text, "
                    "chunk_index int, token_count int, text text NOT NULL, "
                    "embedding vector({n}) NOT NULL, attributes jsonb NOT NULL DEFAULT '{{}}', "
                    "metadata jsonb NOT NULL DEFAULT '{{}}', "
                    "chunk_metadata jsonb NOT NULL DEFAULT '{{}}', "
                    "created_at bigint, expires_at bigint, "
                    "tsv tsvector GENERATED ALWAYS AS (to_tsvector({lang}, text)) STORED)"
                ).format(t=ident, n=sql.Literal(int(dimension)), lang=language)
            )
            if self._config.hnsw_build_rows == 0:
                await conn.execute(self._hnsw_ddl(table, metric, concurrently=False))
            await conn.execute(
                sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING gin (tsv)").format(
                    sql.Identifier(f"{table}_tsv"), ident
                )
            )
            await conn.execute(
                sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (file_id)").format(
                    sql.Identifier(f"{table}_file"), ident
                )
            )
            await conn.execute(
                sql.SQL(
                    "INSERT INTO {} VALUES (%s, %s, %s) ON CONFLICT (table_name) DO NOTHING"
                ).format(sql.Identifier(self._meta_table())),
                [table, int(dimension), metric],
            )
        self._stores.pop(table, None)

    async def drop(self, store_id: str) -> None:
        from psycopg import sql

        table = self._table(store_id)
        async with self._conn() as conn, conn.transaction():
            await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
            await conn.execute(
                sql.SQL("DELETE FROM {} WHERE table_name = %s").format(
                    sql.Identifier(self._meta_table())
                ),
                [table],
            )
        self._stores.pop(table, None)

    async def _require(self, conn: AsyncConnection[Any], store_id: str) -> tuple[str, int, str]:
        table = self._table(store_id)
        known = await self._store(conn, table)
        if known is None:
            raise NotFoundError(
                f"No vector store found with id {store_id!r}",
                param="vector_store_id",
                code="vector_store_not_found",
            )
        return table, known[0], known[1]

    async def _write(
        self, store_id: str, rows: Sequence[ChunkRow], *, replace_file: str | None
    ) -> None:
        from psycopg import sql

        async with self._conn() as conn:
            table, _, _ = await self._require(conn, store_id)
            ident = sql.Identifier(table)
            insert = sql.SQL(
                "INSERT INTO {} (chunk_id, file_id, filename, chunk_index, token_count, text, "
                "embedding, attributes, metadata, chunk_metadata, created_at, expires_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s::vector, %s::jsonb, %s::jsonb, %s::jsonb, "
                "%s, %s) ON CONFLICT (chunk_id) DO UPDATE SET file_id = EXCLUDED.file_id, "
                "filename = EXCLUDED.filename, chunk_index = EXCLUDED.chunk_index, "
                "token_count = EXCLUDED.token_count, text = EXCLUDED.text, "
                "embedding = EXCLUDED.embedding, attributes = EXCLUDED.attributes, "
                "metadata = EXCLUDED.metadata, chunk_metadata = EXCLUDED.chunk_metadata, "
                "created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at"
            ).format(ident)
            params = [
                (
                    r.chunk_id, r.file_id, _text(r.filename), r.chunk_index, r.token_count,
                    _text(r.text),
                    _vector_text(r.vector), json.dumps(r.attributes), json.dumps(r.metadata),
                    json.dumps(r.chunk_metadata), r.created_at, r.expires_at,
                )
                for r in rows
            ]  # fmt: skip
            # Readers see the file's old chunks or its new ones, never a mix or none.
            async with conn.transaction():
                if replace_file is not None:
                    await conn.execute(
                        sql.SQL("DELETE FROM {} WHERE file_id = %s").format(ident), [replace_file]
                    )
                if params:
                    async with conn.cursor() as cursor:
                        await cursor.executemany(insert, params)
        if self.on_write is not None:
            await self.on_write(store_id)

    async def upsert_file(
        self, store_id: str, file_id: str, rows: Sequence[ChunkRow], dimension: int
    ) -> None:
        await self._write(store_id, rows, replace_file=file_id)

    async def upsert(self, store_id: str, rows: Sequence[ChunkRow], dimension: int) -> None:
        if rows:
            await self._write(store_id, rows, replace_file=None)

    async def _execute_if_exists(self, store_id: str, query: str, params: list[Any]) -> None:
        from psycopg import sql

        async with self._conn() as conn:
            table = self._table(store_id)
            if await self._store(conn, table) is None:
                return
            await conn.execute(sql.SQL(query).format(sql.Identifier(table)), params)

    async def delete_file(self, store_id: str, file_id: str) -> None:
        await self._execute_if_exists(store_id, "DELETE FROM {} WHERE file_id = %s", [file_id])

    async def delete_chunks(self, store_id: str, chunk_ids: Sequence[str]) -> None:
        if chunk_ids:
            await self._execute_if_exists(
                store_id, "DELETE FROM {} WHERE chunk_id = ANY(%s)", [list(chunk_ids)]
            )

    async def update_file_attributes(
        self, store_id: str, file_id: str, attributes: dict[str, Any]
    ) -> None:
        await self._execute_if_exists(
            store_id,
            "UPDATE {} SET attributes = %s::jsonb WHERE file_id = %s",
            [json.dumps(attributes), file_id],
        )

    def _select(self, keys: Sequence[str], vectors: bool = False) -> sql.Composable:
        from psycopg import sql

        wanted = [k for k in _COLUMNS if k in set(keys) | set(SEARCH_KEYS)]
        columns = [sql.Identifier(k) for k in wanted]
        if vectors:
            columns.append(sql.SQL("embedding::text AS vector"))
        return sql.SQL(", ").join(columns)

    @staticmethod
    def _row(record: dict[str, Any]) -> dict[str, Any]:
        if isinstance(record.get("vector"), str):
            record["vector"] = json.loads(record["vector"])
        return record

    async def _rows(
        self, store_id: str, where: sql.Composable, params: list[Any], limit: int, vectors: bool
    ) -> list[dict[str, Any]]:
        from psycopg import sql
        from psycopg.rows import dict_row

        async with self._conn() as conn:
            table = self._table(store_id)
            if await self._store(conn, table) is None:
                return []
            query = sql.SQL("SELECT {} FROM {} WHERE {} LIMIT %s").format(
                self._select(_COLUMNS, vectors), sql.Identifier(table), where
            )
            async with conn.cursor(row_factory=dict_row) as cursor:
                await cursor.execute(query, [*params, int(limit)])
                return [self._row(r) for r in await cursor.fetchall()]

    async def file_rows(
        self, store_id: str, file_id: str, *, vectors: bool = False, limit: int = 10_000
    ) -> list[dict[str, Any]]:
        from psycopg import sql

        return await self._rows(store_id, sql.SQL("file_id = %s"), [file_id], limit, vectors)

    async def all_rows(
        self,
        store_id: str,
        *,
        limit: int = 100_000,
        alive_at: int | None = None,
        vectors: bool = False,
    ) -> list[dict[str, Any]]:
        where, params = self._where(None, alive_at)
        return await self._rows(store_id, where, params, limit, vectors)

    @staticmethod
    def _where(filters: Filter | None, alive_at: int | None) -> tuple[sql.Composable, list[Any]]:
        from psycopg import sql

        parts: list[sql.Composable] = [sql.SQL("TRUE")]
        params: list[Any] = []
        if filters is not None:
            predicate, values = compile_filter(filters)
            parts.append(predicate)
            params.extend(values)
        if alive_at is not None:
            parts.append(sql.SQL("(expires_at IS NULL OR expires_at > %s)"))
            params.append(int(alive_at))
        return sql.SQL(" AND ").join(parts), params

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
        from psycopg import sql
        from psycopg.rows import dict_row

        where, params = self._where(filters, alive_at)
        async with self._conn() as conn:
            table = self._table(store_id)
            known = await self._store(conn, table)
            if known is None:
                return []
            operator, _, score = _METRICS[known[1]]
            distance = f"embedding {operator} %s::vector"
            query = sql.SQL(
                "SELECT {cols}, {score} AS _score FROM {t} WHERE {w} ORDER BY {d} LIMIT %s"
            )
            query = query.format(
                cols=self._select(keys, "vector" in keys),
                score=sql.SQL(score.format(d=distance)),
                t=sql.Identifier(table),
                w=where,
                d=sql.SQL(distance),
            )
            text = _vector_text(vector)
            ef = min(1000, max(self._config.ef_search, int(k)))
            async with conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
                # With a filter, the HNSW scan goes on until k rows pass (pgvector 0.8).
                await cursor.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(ef)])
                await cursor.execute(
                    "SELECT set_config('hnsw.iterative_scan', 'strict_order', true)"
                )
                await cursor.execute(query, [text, *params, text, int(k)])
                rows = await cursor.fetchall()
        return [Hit(self._row(r), max(0.0, float(r.pop("_score")))) for r in rows]

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
        """Rows holding any of the query's words, by ``ts_rank_cd`` (normalized to 0..1)."""
        from psycopg import sql
        from psycopg.rows import dict_row

        where, params = self._where(filters, alive_at)
        language = self._config.text_search_config
        # plainto_tsquery ANDs the words; a keyword search wants any of them (as BM25 does).
        tsquery = "CAST(replace(plainto_tsquery(%s::regconfig, %s)::text, ' & ', ' | ') AS tsquery)"
        async with self._conn() as conn:
            table = self._table(store_id)
            if await self._store(conn, table) is None:
                return []
            query = sql.SQL(
                "SELECT {cols}, ts_rank_cd(tsv, q, 32) AS _score FROM {t}, {q} AS q "
                "WHERE tsv @@ q AND {w} ORDER BY _score DESC, chunk_id LIMIT %s"
            ).format(
                cols=self._select(keys, "vector" in keys),
                t=sql.Identifier(table),
                q=sql.SQL(tsquery),
                w=where,
            )
            async with conn.cursor(row_factory=dict_row) as cursor:
                await cursor.execute(query, [language, _text(text), *params, int(k)])
                rows = await cursor.fetchall()
        return [Hit(self._row(r), float(r.pop("_score"))) for r in rows]

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
        raise NotImplementedError("the service fuses vector and keyword results (hybrid=False)")

    async def count(self, store_id: str) -> int:
        from psycopg import sql

        async with self._conn() as conn:
            table = self._table(store_id)
            if await self._store(conn, table) is None:
                return 0
            cursor = await conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            )
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    def _hnsw_ddl(self, table: str, metric: str, *, concurrently: bool) -> sql.Composable:
        from psycopg import sql

        return sql.SQL("CREATE INDEX {} IF NOT EXISTS {} ON {} USING hnsw (embedding {})").format(
            sql.SQL("CONCURRENTLY" if concurrently else ""),
            sql.Identifier(f"{table}_hnsw"),
            sql.Identifier(table),
            sql.SQL(_METRICS[metric][1]),
        )

    async def maintain(self, store_id: str) -> None:
        """The HNSW index when it is built late (``hnsw_build_rows``): once the table is that
        large, built concurrently (writers go on) on its own connection, without the statement
        timeout (a build takes minutes). Then ANALYZE; autovacuum does the rest. Failures are
        logged: search stays correct (exact) without the index."""
        try:
            if self._config.hnsw_build_rows > 0:
                await self._build_hnsw(store_id)
            await self._execute_if_exists(store_id, "ANALYZE {}", [])
        except Exception:
            log.warning("pgvector maintenance of %s failed", store_id, exc_info=True)

    async def _build_hnsw(self, store_id: str) -> None:
        import psycopg
        from psycopg import sql

        table = self._table(store_id)
        async with self._conn() as conn:
            known = await self._store(conn, table)
            if known is None:
                return
            exists = await (
                await conn.execute("SELECT to_regclass(%s)", [f"{table}_hnsw"])
            ).fetchone()
            if exists and exists[0] is not None:
                return
            count = await (
                await conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
            ).fetchone()
            if not count or count[0] < self._config.hnsw_build_rows:
                return
        kwargs = dict(self._connect_kwargs)
        kwargs["options"] = "-c statement_timeout=0"
        async with await psycopg.AsyncConnection.connect(**kwargs) as conn:
            await conn.execute(self._hnsw_ddl(table, known[1], concurrently=True))
        log.info("built the HNSW index of %s (%d rows)", store_id, count[0])

    async def health(self) -> None:
        async with self._conn(ready=False) as conn:
            await conn.execute("SELECT 1")

    async def close(self) -> None:
        pools, self._pools = self._pools, {}
        loop = asyncio.get_running_loop()
        for owner, pool in pools.values():
            if owner is loop:  # another loop's pool cannot be awaited from here
                await pool.close(timeout=2)
