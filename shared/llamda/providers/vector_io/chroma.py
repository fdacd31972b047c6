"""``remote::chromadb``: a Chroma server over HTTP (``url``) or the embedded ``PersistentClient``
(``path``), through the ``chromadb`` client. The embedded client is local only: the container
image ships the HTTP-only ``chromadb-client``, and the aws profile refuses ``path`` at load.

The client is the synchronous one, called in a worker thread (a few of its own): the HTTP and
embedded clients then share one code path and no handle is tied to an event loop; every call is
bounded (the HTTP session's timeout, and ``asyncio.wait_for`` around the thread) so a server that
is down or hung answers a 503 naming the provider, never a hang. One collection per store and
tenant (cosine space by default), named from our ids only. Our vectors are passed in (no Chroma
embedding function).

Rows: id = chunk id, document = text, metadata = our fields (``_file``, ``_expires``...) and the
attributes twice: their JSON (``_attrs``, read back as they were written) and, for filters, each
attribute typed — ``t.<key>`` (1 string, 2 number, 3 boolean) and the value under ``s.<key>``,
``n.<key>`` (as a float) or ``b.<key>``. Typed keys give the filter semantics of
``index.matches``: a number never matches a string, and ``ne`` / ``nin`` also require the type
marker, so a missing key never matches (Chroma's own ``$ne`` matches rows without the key).
Chroma orders numbers only: ``gt``/``gte``/``lt``/``lte`` on a string value cannot be mapped and
are refused with a 400 naming the filter. Keyword search is the service's fallback (BM25 over
``all_rows``); hybrid is fused by the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from llamda.context import current_tenant
from llamda.errors import (
    BadRequestError,
    ConfigError,
    LlamdaError,
    NotFoundError,
    ServiceUnavailableError,
)
from llamda.providers.vector_io.config import ChromaConfig
from llamda.providers.vector_io.index import (
    SEARCH_KEYS,
    Capabilities,
    ChunkRow,
    CompoundFilter,
    Filter,
    Hit,
    IndexContext,
    Metric,
    check_key,
)

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

log = logging.getLogger(__name__)
T = TypeVar("T")

PROVIDER_TYPE = "remote::chromadb"
_SPACES = {"cosine": "cosine", "l2": "l2", "dot": "ip"}
_TYPE_CODES = {str: 1, float: 2, bool: 3}
_NO_EXPIRY = 2**53  # "never expires" as a number Chroma can compare (it has no IS NULL)
_SAFE = re.compile(r"[^a-z0-9_]+")
_OPS = {"eq": "$eq", "ne": "$ne", "gt": "$gt", "gte": "$gte", "lt": "$lt", "lte": "$lte"}
_NEVER: dict[str, Any] = {"_never": {"$eq": 1}}  # a clause no row satisfies


def _import_chromadb() -> None:
    try:
        import chromadb  # noqa: F401
    except ImportError:
        raise ServiceUnavailableError(
            "the remote::chromadb provider needs chromadb: pip install 'llamda[chromadb]'",
            code="unavailable",
        ) from None


def collection_name(prefix: str, tenant: str, store_id: str) -> str:
    """A store's collection: unique per (tenant, store), in Chroma's allowed alphabet."""
    digest = hashlib.sha256(f"{tenant}\0{store_id}".encode()).hexdigest()[:12]
    readable = _SAFE.sub("_", store_id.lower())[:40]
    return f"{prefix}{readable}_{digest}"


def _kind(value: Any) -> type:
    if isinstance(value, bool):
        return bool
    if isinstance(value, int | float):
        return float
    return str


def _typed(key: str, value: Any) -> tuple[str, Any]:
    """The typed metadata key and value an attribute is filtered by."""
    kind = _kind(value)
    if kind is float:
        return f"n.{key}", float(value)
    return (f"b.{key}" if kind is bool else f"s.{key}"), value


def _glue(op: str, clauses: list[dict[str, Any]]) -> dict[str, Any]:
    """Chroma's $and / $or need two clauses or more."""
    return clauses[0] if len(clauses) == 1 else {op: clauses}


def compile_filter(node: Filter) -> dict[str, Any]:
    """The filter tree as a Chroma ``where`` over the typed attribute keys. What Chroma cannot
    express (ordering strings) is a 400 naming the filter."""
    if isinstance(node, CompoundFilter):
        op = "$and" if node.type == "and" else "$or"
        return _glue(op, [compile_filter(child) for child in node.filters])
    key = check_key(node.key)
    if node.type in ("in", "nin"):
        values = node.value if isinstance(node.value, list) else [node.value]
        groups: dict[type, list[Any]] = {}
        for value in values:
            groups.setdefault(_kind(value), []).append(value)
        if node.type == "in":  # any value equal, each type under its own key
            clauses = []
            for group in groups.values():
                typed_key, _ = _typed(key, group[0])
                clauses.append({typed_key: {"$in": [_typed(key, v)[1] for v in group]}})
            return _glue("$or", clauses)
        if len(groups) > 1:
            # nin = "differs from every value"; a value of another type never compares, so a
            # list of mixed types matches no row (as index.matches has it).
            return dict(_NEVER)
        typed_key, _ = _typed(key, values[0])
        marker = {f"t.{key}": {"$eq": _TYPE_CODES[_kind(values[0])]}}
        return {"$and": [marker, {typed_key: {"$nin": [_typed(key, v)[1] for v in values]}}]}
    value = node.value
    typed_key, typed_value = _typed(key, value)
    if node.type in ("gt", "gte", "lt", "lte") and _kind(value) is str:
        raise BadRequestError(
            f"filters: {node.type} on the string value of {key!r} is not supported by the "
            f"{PROVIDER_TYPE} provider (Chroma orders numbers only)",
            param="filters",
            code="unsupported_filter",
        )
    clause = {typed_key: {_OPS[node.type]: typed_value}}
    if node.type == "ne":  # Chroma's $ne also matches rows without the key
        return {"$and": [{f"t.{key}": {"$eq": _TYPE_CODES[_kind(value)]}}, clause]}
    return clause


def _metadata(row: ChunkRow) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "_file": row.file_id,
        "_filename": row.filename,
        "_index": row.chunk_index,
        "_tokens": row.token_count,
        "_created": row.created_at,
        "_expires": _NO_EXPIRY if row.expires_at is None else row.expires_at,
        "_attrs": json.dumps(row.attributes, ensure_ascii=False),
        "_meta": json.dumps(row.metadata, ensure_ascii=False),
        "_cmeta": json.dumps(row.chunk_metadata, ensure_ascii=False),
    }
    for key, value in row.attributes.items():
        if value is None or isinstance(value, list | dict):
            continue  # not filterable (the API's attributes are scalars)
        typed_key, typed_value = _typed(key, value)
        meta[typed_key] = typed_value
        meta[f"t.{key}"] = _TYPE_CODES[_kind(value)]
    return meta


def _row(chunk_id: str, document: str | None, meta: dict[str, Any] | None) -> dict[str, Any]:
    meta = meta or {}
    expires = meta.get("_expires")
    return {
        "chunk_id": chunk_id,
        "file_id": meta.get("_file", ""),
        "filename": meta.get("_filename", ""),
        "chunk_index": int(meta.get("_index", 0)),
        "token_count": int(meta.get("_tokens", 0)),
        "text": document or "",
        "attributes": json.loads(meta.get("_attrs") or "{}"),
        "metadata": json.loads(meta.get("_meta") or "{}"),
        "chunk_metadata": json.loads(meta.get("_cmeta") or "{}"),
        "created_at": int(meta.get("_created", 0)),
        "expires_at": None if expires is None or expires >= _NO_EXPIRY else int(expires),
    }


class ChromaIndex:
    """The ``VectorIndex`` over Chroma."""

    capabilities = Capabilities(keyword=False, hybrid=False, concurrent_writers=True)

    def __init__(self, provider_id: str, settings: ChromaConfig, context: IndexContext):
        self.provider_id = provider_id
        self._config = settings
        self._context = context
        self.on_write: Callable[[str], Awaitable[None]] | None = None
        self._client: ClientAPI | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._collections: dict[str, Collection] = {}
        if settings.path is not None and context.profile == "aws":
            # The image ships the HTTP-only chromadb-client (no embedded server), and a Lambda
            # function's disk is neither shared nor kept: refused at load, not on each request.
            raise ConfigError(
                f"vector_io provider {provider_id!r} ({PROVIDER_TYPE}): `path` is Chroma's "
                "embedded PersistentClient, local only; in the aws profile set `url` to a Chroma "
                "server (template: ChromaUrl)"
            )

    # --- the client ------------------------------------------------------------------------

    def _unavailable(self, why: str) -> ServiceUnavailableError:
        return ServiceUnavailableError(
            f"vector_io provider {self.provider_id!r} ({PROVIDER_TYPE}) is unavailable: {why}",
            code="unavailable",
        )

    def _where_to(self) -> str:
        if self._config.url is not None:
            parts = urlsplit(self._config.url)
            return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 8000)}"
        return "its local path"

    def _connect(self) -> ClientAPI:
        """The client (built on first use, in the worker thread: it calls the server)."""
        if self._client is not None:
            return self._client
        import chromadb
        from chromadb.config import Settings

        settings = Settings(anonymized_telemetry=False)
        config = self._config
        if config.url is not None:
            parts = urlsplit(config.url)
            client = chromadb.HttpClient(
                host=parts.hostname or "localhost",
                port=parts.port or (443 if parts.scheme == "https" else 8000),
                ssl=parts.scheme == "https",
                headers=dict(config.headers) or None,
                settings=settings,
                tenant=config.tenant,
                database=config.database,
            )
            # The client's HTTP session has no timeout: bound every call (a hung server must
            # not hold a request).
            import httpx

            session = getattr(getattr(client, "_server", None), "_session", None)
            if isinstance(session, httpx.Client):
                timeout = config.timeout_seconds
                session.timeout = httpx.Timeout(timeout, connect=min(timeout, 3.0))
        else:
            from chromadb.config import is_thin_client

            if is_thin_client:
                raise self._unavailable(
                    "`path` is Chroma's embedded PersistentClient, which the installed HTTP-only "
                    "chromadb-client lacks: install `chromadb` (llamda[chromadb]) or set `url`"
                )
            client = chromadb.PersistentClient(
                path=str(config.path),
                settings=settings,
                tenant=config.tenant,
                database=config.database,
            )
        self._client = client
        return client

    async def _call(self, action: Callable[[], T]) -> T:
        """Run a client call in a worker thread, bounded; transport failures are a 503."""
        if self._client is None:
            # The first import takes seconds on a busy machine: not the server's time to answer.
            await asyncio.to_thread(_import_chromadb)
        try:
            loop = asyncio.get_running_loop()
            return await asyncio.wait_for(
                loop.run_in_executor(self._threads(), action),
                timeout=self._config.timeout_seconds + 1,
            )
        except LlamdaError:
            raise
        except TimeoutError:
            raise self._unavailable(
                f"no answer from {self._where_to()} within {self._config.timeout_seconds:g}s"
            ) from None
        except Exception as exc:
            import httpx
            from chromadb.errors import ChromaError
            from chromadb.errors import NotFoundError as ChromaNotFound

            if isinstance(exc, ChromaNotFound):
                # Dropped by another process since we looked: forget the handles.
                self._collections.clear()
                raise NotFoundError(
                    "No vector store found", param="vector_store_id", code="vector_store_not_found"
                ) from None
            if isinstance(exc, ChromaError):
                code = exc.code()
                if code in (401, 403) or code >= 500:
                    log.warning("chroma %s: %s (%d)", self.provider_id, exc.name(), code)
                    raise self._unavailable(f"the server answered {code}") from None
                first = (str(exc).splitlines() or [exc.name()])[0][:300]
                raise BadRequestError(f"the vector store refused the data: {first}") from None
            if isinstance(exc, httpx.TransportError | ConnectionError | OSError):
                log.warning("chroma %s: %s", self.provider_id, type(exc).__name__)
                self._collections.clear()  # handles may be stale after a restart
                raise self._unavailable(f"cannot reach {self._where_to()}") from None
            if isinstance(exc, ValueError) and "Could not connect" in str(exc):
                self._client = None  # the client could not be built: try again next time
                raise self._unavailable(f"cannot reach {self._where_to()}") from None
            raise

    def _threads(self) -> ThreadPoolExecutor:
        """Chroma's own few threads: calls to a hung server (building the client has no
        timeout) can only tie these up, never the loop's default executor the rest of the
        server uses (document workers, other providers)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="chroma")
        return self._executor

    def _name(self, store_id: str) -> str:
        return collection_name(self._config.collection_prefix, current_tenant(), store_id)

    def _collection(self, store_id: str) -> Collection | None:
        """The store's collection (in the worker thread), or None when it has none."""
        from chromadb.errors import NotFoundError as ChromaNotFound

        name = self._name(store_id)
        collection = self._collections.get(name)
        if collection is None:
            try:
                collection = self._connect().get_collection(name)
            except ChromaNotFound:
                return None
            except ValueError as exc:  # older clients: "Collection ... does not exist"
                if "does not exist" in str(exc):
                    return None
                raise
            self._collections[name] = collection
        return collection

    def _require(self, store_id: str) -> Collection:
        collection = self._collection(store_id)
        if collection is None:
            raise NotFoundError(
                f"No vector store found with id {store_id!r}",
                param="vector_store_id",
                code="vector_store_not_found",
            )
        return collection

    # --- the protocol ----------------------------------------------------------------------

    async def create(self, store_id: str, dimension: int, *, metric: Metric = "cosine") -> None:
        name = self._name(store_id)

        def create() -> None:
            self._collections[name] = self._connect().get_or_create_collection(
                name,
                configuration={"hnsw": {"space": _SPACES[metric]}},
                metadata={"dimension": int(dimension), "metric": metric},
                embedding_function=None,
            )

        await self._call(create)

    async def drop(self, store_id: str) -> None:
        from chromadb.errors import NotFoundError as ChromaNotFound

        name = self._name(store_id)

        def drop() -> None:
            self._collections.pop(name, None)
            with contextlib.suppress(ChromaNotFound, ValueError):
                self._connect().delete_collection(name)

        await self._call(drop)

    async def _write(
        self, store_id: str, rows: Sequence[ChunkRow], dimension: int, replace: str | None
    ) -> None:
        def write() -> None:
            collection = self._require(store_id)
            if rows:
                if any(len(r.vector) != dimension for r in rows):
                    raise BadRequestError(f"vectors must have {dimension} dimensions")
                # The server takes at most this many rows per call (5,461 for a local one).
                size = max(1, self._connect().get_max_batch_size())
                for lo in range(0, len(rows), size):
                    batch = rows[lo : lo + size]
                    collection.upsert(
                        ids=[r.chunk_id for r in batch],
                        embeddings=[list(map(float, r.vector)) for r in batch],
                        documents=[r.text for r in batch],
                        metadatas=[_metadata(r) for r in batch],  # type: ignore[misc]
                    )
            if replace is not None:
                # Chroma has no transactions: the new chunks are written first, then the
                # file's other chunks removed, so a reader never sees the file missing.
                stale = collection.get(where={"_file": {"$eq": replace}}, include=[])["ids"]
                gone = sorted(set(stale) - {r.chunk_id for r in rows})
                if gone:
                    collection.delete(ids=gone)

        await self._call(write)
        if self.on_write is not None:
            await self.on_write(store_id)

    async def upsert_file(
        self, store_id: str, file_id: str, rows: Sequence[ChunkRow], dimension: int
    ) -> None:
        await self._write(store_id, rows, dimension, replace=file_id)

    async def upsert(self, store_id: str, rows: Sequence[ChunkRow], dimension: int) -> None:
        if rows:
            await self._write(store_id, rows, dimension, replace=None)

    async def delete_file(self, store_id: str, file_id: str) -> None:
        def delete() -> None:
            collection = self._collection(store_id)
            if collection is not None:
                collection.delete(where={"_file": {"$eq": file_id}})

        await self._call(delete)

    async def delete_chunks(self, store_id: str, chunk_ids: Sequence[str]) -> None:
        def delete() -> None:
            collection = self._collection(store_id)
            if collection is not None and chunk_ids:
                collection.delete(ids=list(chunk_ids))

        await self._call(delete)

    async def update_file_attributes(
        self, store_id: str, file_id: str, attributes: dict[str, Any]
    ) -> None:
        def update() -> None:
            collection = self._collection(store_id)
            if collection is None:
                return
            got = collection.get(where={"_file": {"$eq": file_id}}, include=["metadatas"])
            if not got["ids"]:
                return
            metadatas = []
            for meta in got["metadatas"] or []:
                # Old typed keys are dropped (a key the file no longer has must stop matching).
                kept = {k: v for k, v in (meta or {}).items() if k.startswith("_")}
                row = ChunkRow("", "", "", 0, 0, "", [], attributes=attributes)
                fresh = _metadata(row)
                kept["_attrs"] = fresh["_attrs"]
                kept.update({k: v for k, v in fresh.items() if not k.startswith("_")})
                metadatas.append(kept)
            # Chroma merges metadata on update; removed keys are set to None to delete them.
            for meta, old in zip(metadatas, got["metadatas"] or [], strict=True):
                for key in old or {}:
                    meta.setdefault(key, None)
            collection.update(ids=got["ids"], metadatas=metadatas)  # type: ignore[arg-type]

        await self._call(update)

    async def _get(
        self, store_id: str, where: dict[str, Any] | None, limit: int, vectors: bool
    ) -> list[dict[str, Any]]:
        def get() -> list[dict[str, Any]]:
            collection = self._collection(store_id)
            if collection is None:
                return []
            include: list[Any] = ["documents", "metadatas"]
            if vectors:
                include.append("embeddings")
            got = collection.get(where=where, limit=int(limit), include=include)
            rows = [
                _row(cid, doc, meta)
                for cid, doc, meta in zip(
                    got["ids"], got["documents"] or [], got["metadatas"] or [], strict=True
                )
            ]
            if vectors:
                embeddings = got["embeddings"]  # a numpy array: no truth value
                for row, vector in zip(rows, [] if embeddings is None else embeddings, strict=True):
                    row["vector"] = [float(x) for x in vector]
            return rows

        return await self._call(get)

    async def file_rows(
        self, store_id: str, file_id: str, *, vectors: bool = False, limit: int = 10_000
    ) -> list[dict[str, Any]]:
        return await self._get(store_id, {"_file": {"$eq": file_id}}, limit, vectors)

    async def all_rows(
        self,
        store_id: str,
        *,
        limit: int = 100_000,
        alive_at: int | None = None,
        vectors: bool = False,
    ) -> list[dict[str, Any]]:
        return await self._get(store_id, self._where(None, alive_at), limit, vectors)

    @staticmethod
    def _where(filters: Filter | None, alive_at: int | None) -> dict[str, Any] | None:
        clauses = []
        if filters is not None:
            clauses.append(compile_filter(filters))
        if alive_at is not None:
            clauses.append({"_expires": {"$gt": int(alive_at)}})
        return _glue("$and", clauses) if clauses else None

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
        where = self._where(filters, alive_at)  # a filter Chroma cannot express: 400 first
        include: list[Any] = ["documents", "metadatas", "distances"]
        if "vector" in keys:
            include.append("embeddings")

        def query() -> list[Hit]:
            collection = self._collection(store_id)
            if collection is None:
                return []
            metric = (collection.metadata or {}).get("metric", "cosine")
            got = collection.query(
                query_embeddings=[list(map(float, vector))],
                n_results=int(k),
                where=where,
                include=include,
            )
            hits = []
            ids, docs = got["ids"][0], (got["documents"] or [[]])[0]
            metas, distances = (got["metadatas"] or [[]])[0], (got["distances"] or [[]])[0]
            embeddings = got.get("embeddings")  # numpy arrays: no truth value
            for i, (cid, doc, meta, distance) in enumerate(
                zip(ids, docs, metas, distances, strict=True)
            ):
                d = float(distance)
                score = 1.0 / (1.0 + d) if metric == "l2" else 1.0 - d
                row = _row(cid, doc, meta)
                if embeddings is not None and "vector" in keys:
                    row["vector"] = [float(x) for x in embeddings[0][i]]
                hits.append(Hit(row, max(0.0, score)))
            return hits

        return await self._call(query)

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
        raise NotImplementedError("keyword search is the service's BM25 (keyword=False)")

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
        def count() -> int:
            collection = self._collection(store_id)
            return 0 if collection is None else int(collection.count())

        return await self._call(count)

    async def maintain(self, store_id: str) -> None:
        """Nothing: Chroma maintains its indexes itself."""

    async def health(self) -> None:
        await self._call(lambda: self._connect().heartbeat())

    async def close(self) -> None:
        self._collections.clear()
        self._client = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
