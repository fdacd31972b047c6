"""Records: small JSON documents by (tenant, kind, key). SQLite locally, DynamoDB in AWS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from llamda.config import DynamoDBRecords, SqliteRecords

Record = dict[str, Any]
# Where a record's expiry is kept inside its JSON document (reads hide expired records).
EXPIRES = "_expires_at"


def expired(record: Record, now: float) -> bool:
    deadline = record.get(EXPIRES)
    return isinstance(deadline, int) and deadline < now


@runtime_checkable
class Records(Protocol):
    """Tenant-scoped document store; the tenant comes from the request context."""

    async def put(
        self,
        kind: str,
        key: str,
        value: Record,
        *,
        if_absent: bool = False,
        if_version: int | None = None,
        expires_at: int | None = None,
    ) -> None:
        """Store ``value``; with ``if_absent`` raise ConflictError when the key exists. With
        ``if_version`` (optimistic concurrency) replace the record only while it exists and its
        ``version`` field (missing: 0) is ``if_version``, else raise ConflictError; the caller
        puts the next version in ``value`` (see ``save``). With ``expires_at`` (epoch seconds)
        the record is gone for ``get`` and ``list`` after that time, and storage deletes it
        (DynamoDB TTL; locally ``purge_expired``)."""

    async def get(self, kind: str, key: str) -> Record | None: ...

    async def delete(self, kind: str, key: str) -> bool:
        """Delete; True when something was deleted."""

    async def list(
        self, kind: str, *, after: str | None = None, limit: int = 1000, descending: bool = False
    ) -> list[Record]:
        """Values in key order, starting after ``after`` (before it when ``descending``)."""

    async def incr(self, kind: str, key: str, amount: int, *, expires_at: int) -> int:
        """Atomically add ``amount`` to a counter (created at 0) and return its new value.
        Counters are separate from documents; storage may drop them after ``expires_at``
        (epoch seconds)."""

    async def purge_expired(self) -> int:
        """Delete records past their ``expires_at`` now (where storage does not do it itself);
        returns how many."""

    async def close(self) -> None: ...


def build_records(config: SqliteRecords | DynamoDBRecords) -> Records:
    """The Records implementation for a config; imports only what that one needs."""
    if isinstance(config, SqliteRecords):
        from llamda.storage.records_sqlite import SqliteRecordStore

        return SqliteRecordStore(config.path)
    from llamda.storage.records_dynamodb import DynamoDBRecordStore

    return DynamoDBRecordStore(config.table_name, config.region_name, config.endpoint_url)


async def save(records: Records, kind: str, key: str, record: Record) -> bool:
    """Write back a record read earlier, unless it was changed or deleted since (then False and
    nothing is written: a stale copy never overwrites, a deleted record never comes back).
    On success ``record["version"]`` is the new version."""
    from llamda.errors import ConflictError

    expected = int(record.get("version") or 0)
    try:
        await records.put(
            kind,
            key,
            {**record, "version": expected + 1},
            if_version=expected,
            expires_at=record.get(EXPIRES),
        )
    except ConflictError:
        return False
    record["version"] = expected + 1
    return True


async def list_page(
    records: Records,
    kind: str,
    *,
    limit: int,
    after: str | None,
    descending: bool,
    keep: Callable[[Record], bool] | None = None,
) -> tuple[list[Record], bool]:
    """One page of ``limit`` records (those ``keep`` accepts) and whether more follow."""
    found: list[Record] = []
    cursor = after
    while len(found) <= limit:
        page = await records.list(kind, after=cursor, limit=max(limit, 100), descending=descending)
        if not page:
            break
        found.extend(r for r in page if keep is None or keep(r))
        cursor = page[-1]["id"]
    return found[:limit], len(found) > limit
