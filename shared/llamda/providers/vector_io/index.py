"""The ``VectorIndex`` protocol: what the Vector Stores service asks of a vector backend.

One index per vector store (per tenant: a backend keys its data by ``current_tenant()``).
Rows are chunks (``ChunkRow`` in, plain dicts out, see ``ROW_KEYS``); the service owns store
records, ids, embeddings and ranking, a backend owns storing and retrieving rows. Filters arrive
as the API's filter tree (``Filter``, already validated: keys match ``KEY_PATTERN``, values are
bounded scalars) and each backend compiles it for itself, quoting or parameterizing every value
and re-checking every key (``check_key``) so nothing reaches a query language unescaped.
``matches`` evaluates a tree on one row's attributes, with the same semantics every compiler
must keep (the unit tests hold them to it).

Semantics every backend keeps:
- a missing key never matches (not even ``ne`` / ``nin``); numbers compare numerically and never
  match a non-number; strings compare as strings (ordered comparisons lexicographically);
  booleans compare with eq / ne only and match only booleans.
- scores: vector search returns cosine similarity (1 best), keyword search a 0..1 squashed score.
- a backend that cannot be reached raises ``ServiceUnavailableError`` naming its provider id
  (``unavailable``): a 503, never a 500; nothing stored is lost when it comes back.
- ``upsert_file`` replaces what that file had in one step as seen by readers where the backend
  allows (LanceDB: one commit).

Providers are registered by type in ``providers/registry.py`` (``api="vector_io"``); the class
named there is built with ``(provider_id, settings, context)`` (``build_index``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from llamda.api.vector_stores import ComparisonFilter, CompoundFilter, Filter
from llamda.errors import BadRequestError

if TYPE_CHECKING:
    from llamda.config import ProviderEntry, VectorsConfig
    from llamda.storage.objects import Objects

__all__ = [
    "KEY_PATTERN",
    "ROW_KEYS",
    "SEARCH_KEYS",
    "Capabilities",
    "ChunkRow",
    "ComparisonFilter",
    "CompoundFilter",
    "Filter",
    "Hit",
    "IndexContext",
    "Metric",
    "VectorIndex",
    "build_index",
    "check_key",
    "matches",
]

Metric = Literal["cosine", "l2", "dot"]

# What a row read back holds. attributes / metadata / chunk_metadata are dicts; "vector" only
# when asked for (``vectors=True`` / ``with_vectors=True``).
ROW_KEYS = (
    "chunk_id", "file_id", "filename", "chunk_index", "token_count", "text",
    "attributes", "metadata", "chunk_metadata", "created_at", "expires_at",
)  # fmt: skip
# What a search needs at least (a backend may return more keys).
SEARCH_KEYS = ("chunk_id", "file_id", "filename", "text", "attributes")

# Attribute keys a filter may name (the API refuses others; backends check again).
KEY_PATTERN = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")


@dataclass
class ChunkRow:
    """One chunk as written: its vector, text, file and the file's attributes (filterable)."""

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
    expires_at: int | None = None  # vector-io rows with a TTL (unix seconds)

    def as_dict(self, *, vectors: bool = True) -> dict[str, Any]:
        row = {k: getattr(self, k) for k in ROW_KEYS}
        if vectors:
            row["vector"] = list(self.vector)
        return row


@dataclass
class Hit:
    """A search result: the row (at least ``SEARCH_KEYS``) and its score (higher is better)."""

    row: dict[str, Any]
    score: float


@dataclass(frozen=True)
class Capabilities:
    """What a backend does natively. keyword False: the service ranks keyword queries itself
    (BM25 over ``rows``); hybrid False: the service fuses vector and keyword results."""

    keyword: bool = False
    hybrid: bool = False
    concurrent_writers: bool = False  # False: one writer process only (not for the aws profile)


@dataclass
class IndexContext:
    """What the stack hands a provider besides its own config."""

    vectors: VectorsConfig  # storage.vectors (LanceDB's uri and tuning, ingest limits...)
    objects: Objects | None = None  # the stack's object store (tenant-scoped keys)
    profile: str = "local"


@runtime_checkable
class VectorIndex(Protocol):
    """A vector backend. Every method is tenant-scoped by ``current_tenant()``."""

    provider_id: str
    capabilities: Capabilities
    # Called after each write with the store id (the maintenance step notes the store).
    on_write: Callable[[str], Awaitable[None]] | None

    async def create(self, store_id: str, dimension: int, *, metric: Metric = "cosine") -> None:
        """Make the store's index (idempotent: an existing one is kept)."""
        ...

    async def drop(self, store_id: str) -> None:
        """Remove the store's index and rows (idempotent)."""
        ...

    async def upsert_file(
        self, store_id: str, file_id: str, rows: Sequence[ChunkRow], dimension: int
    ) -> None:
        """Write a file's chunks, replacing every row that file had. 404 (NotFoundError) when
        the store's index does not exist (never re-create a deleted store here)."""
        ...

    async def upsert(self, store_id: str, rows: Sequence[ChunkRow], dimension: int) -> None:
        """Write rows by chunk id (existing ids replaced), as vector-io insert does."""
        ...

    async def delete_file(self, store_id: str, file_id: str) -> None:
        """Remove a file's rows (none: no-op)."""
        ...

    async def delete_chunks(self, store_id: str, chunk_ids: Sequence[str]) -> None:
        """Remove rows by chunk id (unknown ids: ignored)."""
        ...

    async def update_file_attributes(
        self, store_id: str, file_id: str, attributes: dict[str, Any]
    ) -> None:
        """Set the attributes (what filters see) of every row of a file."""
        ...

    async def file_rows(
        self, store_id: str, file_id: str, *, vectors: bool = False, limit: int = 10_000
    ) -> list[dict[str, Any]]:
        """A file's rows (``ROW_KEYS``, plus ``vector`` on request), any order."""
        ...

    async def all_rows(
        self,
        store_id: str,
        *,
        limit: int = 100_000,
        alive_at: int | None = None,
        vectors: bool = False,
    ) -> list[dict[str, Any]]:
        """Every (live) row of the store, vectors on request (a keyword fallback ranks these)."""
        ...

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
        """Best ``k`` rows by cosine similarity, best first. ``alive_at``: leave out rows whose
        ``expires_at`` is at or before it. ``keys``: the row keys the caller needs (at least)."""
        ...

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
        """Best ``k`` rows by full-text relevance (0..1). Only when ``capabilities.keyword``."""
        ...

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
        """Native hybrid retrieval (0..1). Only when ``capabilities.hybrid``."""
        ...

    async def count(self, store_id: str) -> int:
        """Rows in the store (0 when it has no index)."""
        ...

    async def maintain(self, store_id: str) -> None:
        """Index upkeep outside requests (ANN builds, compaction); failures are logged."""
        ...

    async def health(self) -> None:
        """A cheap probe: returns when the backend answers, raises otherwise."""
        ...

    async def close(self) -> None: ...


def build_index(entry: ProviderEntry, context: IndexContext) -> VectorIndex:
    """The provider object of a ``providers.vector_io`` entry (its class imported now)."""
    from llamda.providers.registry import get_spec, load_implementation

    spec = get_spec("vector_io", entry.provider_type)
    if spec is None:  # the config loader refuses unknown types; this is a programming error
        raise ValueError(f"unknown vector_io provider type {entry.provider_type!r}")
    cls = load_implementation(spec)
    return cls(entry.provider_id, entry.settings, context)  # type: ignore[no-any-return]


# --- the filter tree -----------------------------------------------------------------------------


def check_key(key: str) -> str:
    """An attribute key safe to put in a query (the API checked it already: defense in depth)."""
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        raise BadRequestError(f"filter key {key!r} is not a plain name", param="filters")
    return key


def leaves(node: Filter) -> list[ComparisonFilter]:
    """The comparison leaves of a tree (``in`` / ``nin`` expand to eq / ne later)."""
    if isinstance(node, CompoundFilter):
        return [leaf for child in node.filters for leaf in leaves(child)]
    return [node]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compare(op: str, have: Any, want: Any) -> bool:
    """One comparison with the common semantics (see the module docstring)."""
    if have is None:
        return False
    if isinstance(want, bool):
        if op not in ("eq", "ne"):
            raise BadRequestError("booleans compare with eq or ne only", param="filters")
        if not isinstance(have, bool):
            return False
    elif _is_number(want):
        if not _is_number(have) or (isinstance(have, float) and math.isnan(have)):
            return False
        have, want = float(have), float(want)
    elif not isinstance(have, str):
        return False
    match op:
        case "eq":
            return bool(have == want)
        case "ne":
            return bool(have != want)
        case "gt":
            return bool(have > want)
        case "gte":
            return bool(have >= want)
        case "lt":
            return bool(have < want)
        case "lte":
            return bool(have <= want)
    raise BadRequestError(f"unknown filter operator {op!r}", param="filters")


def matches(node: Filter, attributes: dict[str, Any]) -> bool:
    """Whether a row with these attributes passes the filter tree."""
    if isinstance(node, CompoundFilter):
        results = (matches(child, attributes) for child in node.filters)
        return all(results) if node.type == "and" else any(results)
    check_key(node.key)
    have = attributes.get(node.key)
    if node.type in ("in", "nin"):
        values = node.value if isinstance(node.value, list) else [node.value]
        if node.type == "in":
            return any(_compare("eq", have, v) for v in values)
        return all(_compare("ne", have, v) for v in values)
    return _compare(node.type, have, node.value)
