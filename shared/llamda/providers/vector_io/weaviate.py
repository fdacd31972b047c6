"""``remote::weaviate``: Weaviate through ``weaviate-client`` v4's async client (REST for the
schema and health, gRPC for objects, search, deletes and counts).

One collection per store and tenant, named from our ids only (``<prefix><store>_<hash of tenant
and store>``, sanitised): user text never names anything. Our vectors are passed in (one
self-provided vector, no vectorizer) with the store's metric (cosine by default); the metric and
dimension are kept in the collection's description.

Objects: uuid = uuid5 of the chunk id (a chunk written again replaces itself); properties
``chunk_id``, ``file_id`` and ``write_id`` (exact, ``field`` tokenization), ``content`` (the
chunk text, ``word`` tokenization: native BM25), ``filename``, ``chunk_index``, ``token_count``,
``created_at``, ``expires_at`` (2**53 for "never": filters cannot test a missing int cheaply)
and the attributes twice: their JSON (``attrs``, read back as written) and, for filters, each
typed — ``s_<key>`` (text), ``n_<key>`` (number, as float) or ``b_<key>`` (boolean), the key
escaped into Weaviate's property alphabet (``prop_name``). Properties are added to the schema
before the first object that needs them (auto-schema is not relied on). Typed properties give
``index.matches``' semantics: a number never matches a string; a missing key never matches,
``ne`` / ``nin`` included (Weaviate's NotEqual matches objects without the property, so it is
paired with ``IsNull false``, which needs ``indexNullState``); a key no object ever had is no
property at all, so its leaf is false without asking the server. Strings are stored between two
``|`` so ``field`` tokenization (which trims whitespace) compares the exact value. Ordering a
string (gt/gte/lt/lte on a string value) is refused with a 400 naming the filter.

Search: vector = ``near_vector`` (cosine similarity ``1 - distance``); keyword = Weaviate's BM25
on ``content``, squashed to 0..1 (``s / (s + 1)``, as LanceDB); hybrid is fused by the service
(its rrf / weighted ranker over the vector and keyword lists, as for LanceDB and pgvector).

Not atomic: ``upsert_file`` writes the new chunks first (each replaces its old self), then deletes
the file's rows from earlier writes (``write_id`` differs). Readers see the old chunks, then for a
moment old and new together, then the new: never nothing. A file is written in batches of 500:
if one fails, the batches before it are in (beside the old chunks) and the call is an error; if
the delete fails, the stale chunks stay. Either way the next write or delete of the file clears
them.

Every server call is bounded (the client's init / query / insert timeouts, and
``asyncio.wait_for`` around each action, scaled by the calls it makes), so a server that is down
or hung is a 503 naming the provider, never a 500 or a hang. Listings and deletes keep under the
server's ``QUERY_MAXIMUM_RESULTS`` (``query_maximum_results``): past it a file's rows are read by
the uuid cursor, and deletes repeat until nothing matches. The API key (``api_key`` /
``api_key_parameter``) goes to the client only; messages never carry it, nor the server's raw
error text.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import json
import logging
import math
import re
import sys
import time
import uuid as uuid_lib
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from llamda.context import current_tenant, request_deadline
from llamda.errors import BadRequestError, LlamdaError, NotFoundError, ServiceUnavailableError
from llamda.providers.vector_io.config import WeaviateConfig
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
    from weaviate import WeaviateAsyncClient
    from weaviate.collections import CollectionAsync

log = logging.getLogger(__name__)
T = TypeVar("T")

PROVIDER_TYPE = "remote::weaviate"
_NO_EXPIRY = 2**53
_SAFE = re.compile(r"[^a-z0-9_]+")
_NAMESPACE = uuid_lib.UUID("6f1c3a8e-7f55-4c5e-9c64-3d1f1b2a9e10")  # our chunk-id → uuid space
_BASE_PROPS = (
    "chunk_id", "file_id", "write_id", "content", "filename", "chunk_index", "token_count",
    "created_at", "expires_at", "attrs", "meta", "cmeta",
)  # fmt: skip
_BATCH = 500  # objects per insert call
_PAGE = 1000  # rows per listing call (the server caps a query at QUERY_MAXIMUM_RESULTS)


def collection_name(prefix: str, tenant: str, store_id: str) -> str:
    """A store's collection: unique per (tenant, store), in Weaviate's class-name alphabet."""
    digest = hashlib.sha256(f"{tenant}\0{store_id}".encode()).hexdigest()[:12]
    readable = _SAFE.sub("_", store_id.lower())[:40]
    return f"{prefix}{readable}_{digest}"


def prop_name(kind: str, key: str) -> str:
    """The typed property of an attribute key (``kind``: s / n / b). Keys are
    ``[A-Za-z0-9_-]``; the name is ``[a-z0-9_]`` (case-fold safe): ``_`` → ``__``, ``-`` →
    ``_0``, an upper-case letter X → ``_x``. Injective: every ``_`` starts a two-char escape."""
    out = []
    for ch in check_key(key):
        if ch == "_":
            out.append("__")
        elif ch == "-":
            out.append("_0")
        elif ch.isupper():
            out.append("_" + ch.lower())
        else:
            out.append(ch)
    return f"{kind}_{''.join(out)}"


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "b"
    if isinstance(value, int | float):
        return "n"
    return "s"


def _typed(key: str, value: Any) -> tuple[str, Any]:
    """The typed property and stored value of an attribute (strings between ``|``: exact)."""
    kind = _kind(value)
    if kind == "n":
        return prop_name("n", key), float(value)
    if kind == "s":
        return prop_name("s", key), f"|{value}|"
    return prop_name("b", key), value


def _unsupported(node: Any, why: str) -> BadRequestError:
    return BadRequestError(
        f"filters: {node.type} on the {why} of {node.key!r} is not supported by the "
        f"{PROVIDER_TYPE} provider",
        param="filters",
        code="unsupported_filter",
    )


def compile_filter(node: Filter, known: set[str]) -> Any:
    """The filter tree as ``weaviate.classes.query.Filter`` objects over the typed properties
    (``known``: the collection's property names; a leaf on another is false). Returns a filter,
    or ``True`` / ``False`` when the tree is decided without the server."""
    if isinstance(node, CompoundFilter):
        return _glue(node.type, [compile_filter(child, known) for child in node.filters])
    key = check_key(node.key)
    if node.type in ("in", "nin"):
        values = node.value if isinstance(node.value, list) else [node.value]
        leaf = "eq" if node.type == "in" else "ne"
        kids = [_leaf(leaf, key, v, node, known) for v in values]
        return _glue("or" if node.type == "in" else "and", kids)
    return _leaf(node.type, key, node.value, node, known)


def _glue(kind: str, parts: list[Any]) -> Any:
    """``and`` / ``or`` of compiled parts, folding the constants True / False (the client is
    imported only when there is something to combine: a tree decided here needs none)."""
    absorbing, neutral = (False, True) if kind == "and" else (True, False)
    if any(p is absorbing for p in parts):
        return absorbing
    parts = [p for p in parts if p is not neutral]
    if len(parts) <= 1:
        return parts[0] if parts else neutral
    from weaviate.classes.query import Filter as W

    return W.all_of(parts) if kind == "and" else W.any_of(parts)


def _leaf(op: str, key: str, value: Any, node: Any, known: set[str]) -> Any:
    kind = _kind(value)
    if op in ("gt", "gte", "lt", "lte"):
        if kind == "b":
            raise BadRequestError("booleans compare with eq or ne only", param="filters")
        if kind == "s":
            raise _unsupported(node, "string value")
    name, stored = _typed(key, value)
    if name not in known:
        return False  # no object has this key with this type: it never matches
    from weaviate.classes.query import Filter as W

    prop = W.by_property(name)
    match op:
        case "eq":
            return prop.equal(stored)
        case "ne":  # Weaviate's NotEqual also matches objects without the property
            return W.all_of([prop.not_equal(stored), W.by_property(name).is_none(False)])
        case "gt":
            return prop.greater_than(stored)
        case "gte":
            return prop.greater_or_equal(stored)
        case "lt":
            return prop.less_than(stored)
        case "lte":
            return prop.less_or_equal(stored)
    raise BadRequestError(f"unknown filter operator {op!r}", param="filters")


def _typed_props(rows: Sequence[ChunkRow]) -> dict[str, str]:
    """Typed property name → its kind (s / n / b) of the rows' attributes."""
    out: dict[str, str] = {}
    for row in rows:
        for key, value in row.attributes.items():
            if value is None or isinstance(value, list | dict):
                continue  # not filterable (the API's attributes are scalars)
            out[_typed(key, value)[0]] = _kind(value)
    return out


def _properties(row: ChunkRow, write_id: str) -> dict[str, Any]:
    props: dict[str, Any] = {
        "chunk_id": row.chunk_id,
        "file_id": row.file_id,
        "write_id": write_id,
        "content": row.text,
        "filename": row.filename,
        "chunk_index": int(row.chunk_index),
        "token_count": int(row.token_count),
        "created_at": int(row.created_at),
        "expires_at": _NO_EXPIRY if row.expires_at is None else int(row.expires_at),
        "attrs": json.dumps(row.attributes, ensure_ascii=False),
        "meta": json.dumps(row.metadata, ensure_ascii=False),
        "cmeta": json.dumps(row.chunk_metadata, ensure_ascii=False),
    }
    for key, value in row.attributes.items():
        if value is None or isinstance(value, list | dict):
            continue
        name, stored = _typed(key, value)
        props[name] = stored
    return props


def _row(props: dict[str, Any], vector: Any = None) -> dict[str, Any]:
    expires = props.get("expires_at")
    row = {
        "chunk_id": props.get("chunk_id", ""),
        "file_id": props.get("file_id", ""),
        "filename": props.get("filename", ""),
        "chunk_index": int(props.get("chunk_index") or 0),
        "token_count": int(props.get("token_count") or 0),
        "text": props.get("content") or "",
        "attributes": json.loads(props.get("attrs") or "{}"),
        "metadata": json.loads(props.get("meta") or "{}"),
        "chunk_metadata": json.loads(props.get("cmeta") or "{}"),
        "created_at": int(props.get("created_at") or 0),
        "expires_at": None if expires is None or expires >= _NO_EXPIRY else int(expires),
    }
    if vector is not None:
        row["vector"] = [float(x) for x in vector]
    return row


class WeaviateIndex:
    """The ``VectorIndex`` over Weaviate."""

    capabilities = Capabilities(keyword=True, hybrid=False, concurrent_writers=True)

    def __init__(self, provider_id: str, settings: WeaviateConfig, context: IndexContext):
        self.provider_id = provider_id
        self._config = settings
        self._context = context
        self.on_write: Callable[[str], Awaitable[None]] | None = None
        # One client per event loop (its gRPC channel belongs to the loop that made it).
        self._clients: dict[int, tuple[asyncio.AbstractEventLoop, WeaviateAsyncClient]] = {}
        self._api_key: str | None = None
        # collection → (metric, property names) of collections known to exist.
        self._known: dict[str, tuple[str, set[str]]] = {}

    # --- the client ------------------------------------------------------------------------

    def _unavailable(self, why: str) -> ServiceUnavailableError:
        return ServiceUnavailableError(
            f"vector_io provider {self.provider_id!r} ({PROVIDER_TYPE}) is unavailable: {why}",
            code="unavailable",
        )

    def _where_to(self) -> str:
        return f"{self._config.http_host}:{self._config.http_port}"

    async def _secret(self) -> str | None:
        if self._config.api_key is not None:
            return self._config.api_key.get_secret_value()
        if self._config.api_key_parameter:
            if self._api_key is None:
                from llamda.providers.inference.remote_openai import read_secret

                self._api_key = await read_secret(self._config.api_key_parameter)
            return self._api_key
        return None

    async def _client(self) -> WeaviateAsyncClient:
        loop = asyncio.get_running_loop()
        known = self._clients.get(id(loop))
        if known is not None and known[0] is loop and known[1].is_connected():
            return known[1]
        self._clients.pop(id(loop), None)
        if "weaviate" not in sys.modules:
            # The first import takes seconds (grpc, protobuf stubs): off the event loop, and not
            # counted against the server's time to answer.
            try:
                await asyncio.to_thread(importlib.import_module, "weaviate.classes.init")
            except ImportError:
                raise self._unavailable("pip install 'llamda[weaviate]'") from None
        import weaviate

        config = self._config
        key = await self._secret()
        try:
            client = self._make_client(weaviate, key)
        except Exception as exc:  # the client refused our config: the operator's to fix
            name = type(exc).__name__
            log.warning("weaviate %s: the client refused the config (%s)", self.provider_id, name)
            raise self._unavailable("the client refused its config") from None
        try:
            await asyncio.wait_for(client.connect(), timeout=config.connect_timeout_seconds * 2 + 1)
        except BaseException:
            await _quietly_close(client)
            raise
        self._clients[id(loop)] = (loop, client)
        return client

    def _make_client(self, weaviate: Any, key: str | None) -> WeaviateAsyncClient:
        from weaviate.classes.init import AdditionalConfig, Auth, Timeout

        config = self._config
        return weaviate.use_async_with_custom(
            http_host=config.http_host,
            http_port=config.http_port,
            http_secure=config.http_secure,
            grpc_host=config.grpc_host or config.http_host,
            grpc_port=config.grpc_port,
            grpc_secure=config.http_secure if config.grpc_secure is None else config.grpc_secure,
            auth_credentials=Auth.api_key(key) if key else None,
            additional_config=AdditionalConfig(
                timeout=Timeout(
                    init=config.connect_timeout_seconds,
                    query=config.timeout_seconds,
                    insert=config.timeout_seconds,
                )
            ),
        )

    async def _forget_client(self) -> None:
        loop = asyncio.get_running_loop()
        known = self._clients.pop(id(loop), None)
        if known is not None:
            await _quietly_close(known[1])
        self._known.clear()  # the server may have lost or changed collections meanwhile

    async def _call(
        self, action: Callable[[WeaviateAsyncClient], Awaitable[T]], *, calls: int = 2
    ) -> T:
        """Run ``action`` with a connected client, bounded; failures map to our errors: the
        server unreachable or failing is a 503 naming this provider, a collection gone a 404,
        data the server refuses a 400 (without echoing the server's text). Each server call
        has the client's own timeout; ``calls`` (how many the action makes at most) bounds the
        whole, so a big file's batches are not cut short by one call's budget."""
        try:
            client = await self._client()
            bound = self._config.timeout_seconds * max(1, calls) + 2
            deadline = request_deadline()
            if deadline is not None:  # in Lambda: answer a 503 before the function is killed
                bound = min(bound, max(0.0, deadline - time.monotonic()))
            return await asyncio.wait_for(action(client), timeout=bound)
        except LlamdaError:
            raise
        except TimeoutError:
            await self._forget_client()
            raise self._unavailable(
                f"no answer from {self._where_to()} within {self._config.timeout_seconds:g}s"
            ) from None
        except Exception as exc:
            raise await self._translate(exc) from None

    async def _translate(self, exc: Exception) -> LlamdaError:
        from weaviate import exceptions as wx

        name = type(exc).__name__
        if isinstance(exc, wx.UnexpectedStatusCodeError):
            status = exc.status_code
            if status == 404:
                self._known.clear()
                return _not_found()
            if status in (401, 403) or status >= 500:
                log.warning("weaviate %s: HTTP %d", self.provider_id, status)
                return self._unavailable(f"the server answered {status}")
            log.info("weaviate %s refused a request: HTTP %d", self.provider_id, status)
            return BadRequestError(f"the vector store refused the data (HTTP {status})")
        if isinstance(exc, wx.WeaviateInvalidInputError):  # the client refused our input
            log.info("weaviate %s: the client refused an input", self.provider_id)
            return BadRequestError("the vector store refused the data")
        if isinstance(exc, wx.WeaviateQueryError | wx.WeaviateDeleteManyError):
            status = _grpc_status(exc)
            if status in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "UNAUTHENTICATED", "INTERNAL"):
                await self._forget_client()
                log.warning("weaviate %s: gRPC %s", self.provider_id, status)
                return self._unavailable(f"the server answered {status}")
            if status == "NOT_FOUND" or "not found" in str(exc).lower():
                self._known.clear()
                return _not_found()
            log.info("weaviate %s refused a query: gRPC %s", self.provider_id, status)
            return BadRequestError(f"the vector store refused the query ({status or name})")
        if isinstance(
            exc,
            wx.WeaviateConnectionError
            | wx.WeaviateStartUpError
            | wx.WeaviateGRPCUnavailableError
            | wx.WeaviateTimeoutError
            | wx.WeaviateClosedClientError
            | ConnectionError
            | OSError,
        ):
            log.warning("weaviate %s: %s", self.provider_id, name)
            await self._forget_client()
            return self._unavailable(f"cannot reach {self._where_to()}")
        if isinstance(exc, wx.WeaviateBaseError):
            status = _grpc_status(exc)
            if status in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "UNAUTHENTICATED"):
                await self._forget_client()
                return self._unavailable(f"the server answered {status}")
            log.warning("weaviate %s: %s", self.provider_id, name)
            return self._unavailable(f"the server failed ({name})")
        import httpx

        if isinstance(exc, httpx.TransportError):
            await self._forget_client()
            return self._unavailable(f"cannot reach {self._where_to()}")
        raise exc

    def _name(self, store_id: str) -> str:
        return collection_name(self._config.collection_prefix, current_tenant(), store_id)

    async def _lookup(
        self, client: WeaviateAsyncClient, name: str, *, refresh: bool = False
    ) -> tuple[str, set[str]] | None:
        """The collection's (metric, property names), or None when it does not exist."""
        if not refresh and name in self._known:
            return self._known[name]
        from weaviate import exceptions as wx

        try:
            config = await client.collections.get(name).config.get(simple=True)
        except wx.UnexpectedStatusCodeError as exc:
            if exc.status_code == 404:
                self._known.pop(name, None)
                return None
            raise
        except wx.WeaviateBaseError as exc:  # the client maps a missing schema to this too
            if "not found" in str(exc).lower() or "does not exist" in str(exc).lower():
                self._known.pop(name, None)
                return None
            raise
        metric = "cosine"
        description = config.description or ""
        match = re.search(r"metric=(cosine|l2|dot)", description)
        if match:
            metric = match.group(1)
        known = (metric, {p.name for p in config.properties})
        self._known[name] = known
        return known

    async def _require(
        self, client: WeaviateAsyncClient, store_id: str
    ) -> tuple[CollectionAsync[Any, Any], str, set[str]]:
        name = self._name(store_id)
        known = await self._lookup(client, name)
        if known is None:
            raise _not_found(store_id)
        return client.collections.get(name), known[0], known[1]

    async def _collection(
        self, client: WeaviateAsyncClient, store_id: str
    ) -> tuple[CollectionAsync[Any, Any], str, set[str]] | None:
        name = self._name(store_id)
        known = await self._lookup(client, name)
        return None if known is None else (client.collections.get(name), known[0], known[1])

    # --- the protocol ----------------------------------------------------------------------

    async def create(self, store_id: str, dimension: int, *, metric: Metric = "cosine") -> None:
        from weaviate import exceptions as wx
        from weaviate.classes.config import (
            Configure,
            DataType,
            Property,
            Tokenization,
            VectorDistances,
        )

        distances = {
            "cosine": VectorDistances.COSINE,
            "l2": VectorDistances.L2_SQUARED,
            "dot": VectorDistances.DOT,
        }
        name = self._name(store_id)

        def text(prop: str, *, exact: bool = False, search: bool = False) -> Property:
            return Property(
                name=prop,
                data_type=DataType.TEXT,
                tokenization=Tokenization.FIELD if exact else Tokenization.WORD,
                index_filterable=exact,
                index_searchable=search,
            )

        def integer(prop: str, *, filterable: bool = False) -> Property:
            return Property(name=prop, data_type=DataType.INT, index_filterable=filterable)

        properties = [
            text("chunk_id", exact=True),
            text("file_id", exact=True),
            text("write_id", exact=True),
            text("content", search=True),
            text("filename"),
            integer("chunk_index"),
            integer("token_count"),
            integer("created_at"),
            integer("expires_at", filterable=True),
            text("attrs"),
            text("meta"),
            text("cmeta"),
        ]

        async def create(client: WeaviateAsyncClient) -> None:
            if await self._lookup(client, name, refresh=True) is not None:
                return
            try:
                await client.collections.create(
                    name,
                    description=f"llamda vector store; metric={metric}; dimension={int(dimension)}",
                    properties=properties,
                    vector_config=Configure.Vectors.self_provided(
                        vector_index_config=Configure.VectorIndex.hnsw(
                            distance_metric=distances[metric]
                        )
                    ),
                    # ne / nin pair NotEqual with IsNull (a missing key never matches).
                    inverted_index_config=Configure.inverted_index(index_null_state=True),
                )
            except wx.UnexpectedStatusCodeError as exc:
                # Another process made it meanwhile ("already exists"): keep theirs.
                if exc.status_code != 422 or await self._lookup(client, name, True) is None:
                    raise
            self._known.pop(name, None)

        await self._call(create, calls=3)

    async def drop(self, store_id: str) -> None:
        name = self._name(store_id)

        async def drop(client: WeaviateAsyncClient) -> None:
            await client.collections.delete(name)
            self._known.pop(name, None)

        await self._call(drop)

    async def _add_props(
        self, client: WeaviateAsyncClient, collection: Any, wanted: dict[str, str]
    ) -> None:
        """Add the typed properties the rows need that the schema lacks (another writer may
        add one at the same time: "already exists" is fine)."""
        from weaviate import exceptions as wx
        from weaviate.classes.config import DataType, Property, Tokenization

        name = collection.name
        known = self._known.get(name)
        if known is None or not set(wanted) - known[1]:
            return
        known = await self._lookup(client, name, refresh=True)
        if known is None:
            raise _not_found()
        for prop, kind in wanted.items():
            if prop in known[1]:
                continue
            if kind == "s":
                spec = Property(
                    name=prop,
                    data_type=DataType.TEXT,
                    tokenization=Tokenization.FIELD,
                    index_filterable=True,
                    index_searchable=False,
                )
            elif kind == "n":
                spec = Property(
                    name=prop, data_type=DataType.NUMBER, index_filterable=True,
                    index_range_filters=True,
                )  # fmt: skip
            else:
                spec = Property(name=prop, data_type=DataType.BOOL, index_filterable=True)
            try:
                await collection.config.add_property(spec)
            except wx.UnexpectedStatusCodeError as exc:
                if exc.status_code != 422:
                    raise
                # Added by another writer, or the same name with another type (cannot be:
                # the name carries the type): re-read and go on.
            known[1].add(prop)
        self._known.pop(name, None)

    async def _write(
        self, store_id: str, rows: Sequence[ChunkRow], *, replace_file: str | None
    ) -> None:
        from weaviate import exceptions as wx
        from weaviate.classes.data import DataObject
        from weaviate.classes.query import Filter as W

        for row in rows:
            if not all(math.isfinite(x) for x in row.vector):
                raise BadRequestError("the vector holds NaN or infinity")
        write_id = uuid_lib.uuid4().hex

        async def write(client: WeaviateAsyncClient) -> None:
            collection, _, _ = await self._require(client, store_id)
            await self._add_props(client, collection, _typed_props(rows))
            objects = [
                DataObject(
                    properties=_properties(row, write_id),
                    uuid=uuid_lib.uuid5(_NAMESPACE, row.chunk_id),
                    vector=[float(x) for x in row.vector],
                )
                for row in rows
            ]
            for start in range(0, len(objects), _BATCH):
                try:
                    done = await collection.data.insert_many(objects[start : start + _BATCH])
                except wx.WeaviateInsertManyAllFailedError as exc:  # every object refused
                    raise self._refused(str(exc), store_id) from None
                if done.has_errors:
                    first = next(iter(done.errors.values()))
                    raise self._refused(str(getattr(first, "message", "")), store_id)
            if replace_file is not None:
                # The file's chunks this write did not rewrite. Not "every other write_id":
                # SQS delivers at least once, and two writes of one file overwrite the same
                # objects (ids from chunk ids), so each would delete the other's.
                kept = {row.chunk_id for row in rows}
                stale = W.all_of(
                    [
                        W.by_property("file_id").equal(replace_file),
                        W.by_property("write_id").not_equal(write_id),
                        *(W.by_property("chunk_id").not_equal(c) for c in sorted(kept)),
                    ]
                )
                await _delete_all(collection, stale, self._config.query_maximum_results)

        batches = math.ceil(len(rows) / _BATCH)
        await self._call(write, calls=batches + 2 * len(_typed_props(rows)) + 6)
        if self.on_write is not None:
            await self.on_write(store_id)

    def _refused(self, message: str, store_id: str) -> LlamdaError:
        """Objects the server refused: the collection gone (404) or the data (400). The
        server's text is logged briefly, never returned."""
        lowered = message.lower()
        log.info("weaviate %s refused objects: %.200s", self.provider_id, lowered)
        if "not found" in lowered or "could not find class" in lowered:
            self._known.clear()
            return _not_found(store_id)
        return BadRequestError(
            "the vector store refused the data"
            + (" (the vector's length does not match the store)" if "length" in lowered else "")
        )

    async def upsert_file(
        self, store_id: str, file_id: str, rows: Sequence[ChunkRow], dimension: int
    ) -> None:
        await self._write(store_id, rows, replace_file=file_id)

    async def upsert(self, store_id: str, rows: Sequence[ChunkRow], dimension: int) -> None:
        if rows:
            await self._write(store_id, rows, replace_file=None)

    async def _delete_where(self, store_id: str, where: Callable[[], Any]) -> None:
        async def delete(client: WeaviateAsyncClient) -> None:
            found = await self._collection(client, store_id)
            if found is not None:
                await _delete_all(found[0], where(), self._config.query_maximum_results)

        await self._call(delete, calls=4)

    async def delete_file(self, store_id: str, file_id: str) -> None:
        from weaviate.classes.query import Filter as W

        await self._delete_where(store_id, lambda: W.by_property("file_id").equal(file_id))

    async def delete_chunks(self, store_id: str, chunk_ids: Sequence[str]) -> None:
        from weaviate.classes.query import Filter as W

        ids = list(chunk_ids)
        for start in range(0, len(ids), 100):
            part = ids[start : start + 100]
            await self._delete_where(
                store_id,
                lambda part=part: (
                    W.any_of([W.by_property("chunk_id").equal(c) for c in part])
                    if len(part) > 1
                    else W.by_property("chunk_id").equal(part[0])
                ),
            )

    async def update_file_attributes(
        self, store_id: str, file_id: str, attributes: dict[str, Any]
    ) -> None:
        """Rewrites the file's objects with the new attributes (a batch write replaces an object
        whole, so the old typed properties go too)."""
        rows = await self.file_rows(store_id, file_id, vectors=True, limit=1_000_000)
        if not rows:
            return
        chunks = [
            ChunkRow(
                chunk_id=r["chunk_id"], file_id=r["file_id"], filename=r["filename"],
                chunk_index=r["chunk_index"], token_count=r["token_count"], text=r["text"],
                vector=r["vector"], attributes=dict(attributes), metadata=r["metadata"],
                chunk_metadata=r["chunk_metadata"], created_at=r["created_at"],
                expires_at=r["expires_at"],
            )
            for r in rows
        ]  # fmt: skip
        await self._write(store_id, chunks, replace_file=None)

    async def _list(
        self,
        store_id: str,
        limit: int,
        vectors: bool,
        where: Callable[[], Any] | None = None,
        keep: Callable[[dict[str, Any]], bool] | None = None,
    ) -> list[dict[str, Any]]:
        """Rows of the store: ``where`` (the server's filter, with ``keep`` the same test on a
        row) pages by offset while under the server's result cap; past it (a file of more
        rows than that), or without a filter, the uuid cursor walks the whole collection
        (Weaviate's cursor cannot take a filter: ``keep`` filters here)."""

        async def listing(client: WeaviateAsyncClient) -> list[dict[str, Any]]:
            found = await self._collection(client, store_id)
            if found is None:
                return []
            collection = found[0]
            props = list(_BASE_PROPS)
            out: list[dict[str, Any]] = []
            if where is not None:
                offset = 0
                while len(out) < limit and offset + _PAGE <= self._config.query_maximum_results:
                    page = await collection.query.fetch_objects(
                        filters=where(),
                        limit=min(_PAGE, limit - len(out)),
                        offset=offset,
                        return_properties=props,
                        include_vector=vectors,
                    )
                    out.extend(_read(o, vectors) for o in page.objects)
                    if len(page.objects) < _PAGE:
                        return out
                    offset += _PAGE
                if len(out) >= limit:
                    return out
                out = []  # over the cap: walk everything instead
            after = None
            while len(out) < limit:
                page = await collection.query.fetch_objects(
                    limit=_PAGE, after=after, return_properties=props, include_vector=vectors
                )
                rows = [_read(o, vectors) for o in page.objects]
                out.extend(r for r in rows if keep is None or keep(r))
                if len(page.objects) < _PAGE:
                    break
                after = page.objects[-1].uuid
            return out[:limit]

        return await self._call(listing, calls=math.ceil(min(limit, 10**6) / _PAGE) + 12)

    async def file_rows(
        self, store_id: str, file_id: str, *, vectors: bool = False, limit: int = 10_000
    ) -> list[dict[str, Any]]:
        from weaviate.classes.query import Filter as W

        return await self._list(
            store_id,
            limit,
            vectors,
            where=lambda: W.by_property("file_id").equal(file_id),
            keep=lambda row: row["file_id"] == file_id,
        )

    async def all_rows(
        self,
        store_id: str,
        *,
        limit: int = 100_000,
        alive_at: int | None = None,
        vectors: bool = False,
    ) -> list[dict[str, Any]]:
        rows = await self._list(store_id, limit, vectors)
        if alive_at is not None:
            rows = [r for r in rows if r["expires_at"] is None or r["expires_at"] > alive_at]
        return rows

    @staticmethod
    def _where(filters: Filter | None, alive_at: int | None, known: set[str]) -> Any:
        """The search filter: the tree (or True / False when decided) and the TTL."""
        from weaviate.classes.query import Filter as W

        parts: list[Any] = []
        if filters is not None:
            parts.append(compile_filter(filters, known))
        if alive_at is not None:
            parts.append(W.by_property("expires_at").greater_than(int(alive_at)))
        return _glue("and", parts)

    async def _search(
        self,
        store_id: str,
        filters: Filter | None,
        alive_at: int | None,
        run: Callable[[Any, Any, str], Awaitable[list[Hit]]],
    ) -> list[Hit]:
        async def search(client: WeaviateAsyncClient) -> list[Hit]:
            found = await self._collection(client, store_id)
            if found is None:
                return []
            collection, metric, known = found
            if filters is not None:
                names = {
                    _typed(leaf.key, v)[0]
                    for leaf in _leaves(filters)
                    for v in (leaf.value if isinstance(leaf.value, list) else [leaf.value])
                    if not (leaf.type in ("gt", "gte", "lt", "lte") and _kind(v) != "n")
                }
                if names - known:  # another writer may have added them: look again once
                    again = await self._lookup(client, collection.name, refresh=True)
                    if again is None:
                        raise _not_found(store_id)
                    known = again[1]
            where = self._where(filters, alive_at, known)
            if where is False:
                return []
            return await run(collection, None if where is True else where, metric)

        if filters is not None:  # a filter Weaviate cannot express: a 400 before any call
            compile_filter(filters, set())
        return await self._call(search, calls=3)

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
        from weaviate.classes.query import MetadataQuery

        query = [float(x) for x in vector]
        if not all(math.isfinite(x) for x in query):
            raise BadRequestError("the query vector holds NaN or infinity")
        with_vectors = "vector" in keys

        async def run(collection: Any, where: Any, metric: str) -> list[Hit]:
            got = await collection.query.near_vector(
                near_vector=query,
                limit=int(k),
                filters=where,
                return_properties=list(_BASE_PROPS),
                return_metadata=MetadataQuery(distance=True),
                include_vector=with_vectors,
            )
            hits = []
            for o in got.objects:
                d = float(o.metadata.distance or 0.0)
                if metric == "l2":
                    score = 1.0 / (1.0 + math.sqrt(max(d, 0.0)))
                elif metric == "dot":
                    score = -d
                else:
                    score = 1.0 - d
                hits.append(
                    Hit(_row(o.properties, _vector(o) if with_vectors else None), max(0.0, score))
                )
            return hits

        return await self._search(store_id, filters, alive_at, run)

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
        """Weaviate's BM25 over the chunk text, squashed to 0..1 (``s / (s + 1)``)."""
        from weaviate.classes.query import MetadataQuery

        with_vectors = "vector" in keys

        async def run(collection: Any, where: Any, metric: str) -> list[Hit]:
            got = await collection.query.bm25(
                query=text,
                query_properties=["content"],
                limit=int(k),
                filters=where,
                return_properties=list(_BASE_PROPS),
                return_metadata=MetadataQuery(score=True),
                include_vector=with_vectors,
            )
            hits = []
            for o in got.objects:
                s = max(0.0, float(o.metadata.score or 0.0))
                hits.append(
                    Hit(_row(o.properties, _vector(o) if with_vectors else None), s / (s + 1.0))
                )
            return hits

        return await self._search(store_id, filters, alive_at, run)

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
        async def count(client: WeaviateAsyncClient) -> int:
            found = await self._collection(client, store_id)
            if found is None:
                return 0
            got = await found[0].aggregate.over_all(total_count=True)
            return int(got.total_count or 0)

        return await self._call(count)

    async def maintain(self, store_id: str) -> None:
        """Nothing: Weaviate maintains its indexes itself."""

    async def health(self) -> None:
        async def ready(client: WeaviateAsyncClient) -> None:
            if not await client.is_ready():
                raise self._unavailable("the server is not ready")

        await self._call(ready)

    async def close(self) -> None:
        clients, self._clients = self._clients, {}
        self._known.clear()
        loop = asyncio.get_running_loop()
        for owner, client in clients.values():
            if owner is loop:  # another loop's channel cannot be closed from here
                await _quietly_close(client)


def _not_found(store_id: str | None = None) -> NotFoundError:
    suffix = f" with id {store_id!r}" if store_id else ""
    return NotFoundError(
        f"No vector store found{suffix}", param="vector_store_id", code="vector_store_not_found"
    )


def _leaves(node: Filter) -> list[Any]:
    if isinstance(node, CompoundFilter):
        return [leaf for child in node.filters for leaf in _leaves(child)]
    return [node]


def _read(obj: Any, vectors: bool) -> dict[str, Any]:
    """Our row of a returned object (its vector when asked for)."""
    return _row(obj.properties, _vector(obj) if vectors else None)


def _vector(obj: Any) -> list[float] | None:
    vectors = obj.vector or {}
    value = vectors.get("default") if isinstance(vectors, dict) else vectors
    if value is None and isinstance(vectors, dict) and vectors:
        value = next(iter(vectors.values()))
    return None if value is None else [float(x) for x in value]


def _grpc_status(exc: Exception) -> str | None:
    """The gRPC status name behind a client error, when there is one."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        code = getattr(current, "code", None)
        if callable(code):
            try:
                value = code()
                name = getattr(value, "name", None)
                if isinstance(name, str):
                    return name
            except Exception:  # not a grpc error's code()
                pass
        current = current.__cause__ or current.__context__
    text = str(exc)
    for status in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "UNAUTHENTICATED", "NOT_FOUND",
                   "INVALID_ARGUMENT", "INTERNAL"):  # fmt: skip
        if status in text:
            return status
    return None


async def _delete_all(collection: Any, where: Any, cap: int) -> None:
    """Delete what ``where`` matches (a batch delete removes at most the server's cap: loop)."""
    for _ in range(1000):
        done = await collection.data.delete_many(where=where)
        # ``matches`` may itself be capped: only fewer than the cap proves nothing is left.
        if int(done.matches or 0) < cap or int(done.successful or 0) == 0:
            return


async def _quietly_close(client: Any) -> None:
    try:
        await asyncio.wait_for(client.close(), timeout=2)
    except Exception:  # closing is best effort
        log.debug("closing a weaviate client", exc_info=True)
