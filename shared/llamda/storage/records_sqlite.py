"""Records in one SQLite file (the local profile). Calls run in a worker thread."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from pathlib import Path

from llamda.context import current_tenant
from llamda.errors import ConflictError
from llamda.storage.keys import check_kind
from llamda.storage.records import EXPIRES, Record, expired

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    tenant TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (tenant, kind, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (
    tenant TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, kind, key)
) WITHOUT ROWID;
"""


class SqliteRecordStore:
    def __init__(self, path: str | Path):
        self._path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            # Safe with WAL (only a power loss can lose the last commits): no fsync per write.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.executescript(_SCHEMA)
            self._conn = conn
        return self._conn

    async def _run(self, fn, *args):  # type: ignore[no-untyped-def]
        def locked():  # type: ignore[no-untyped-def]
            with self._lock:
                return fn(self._connect(), *args)

        return await asyncio.to_thread(locked)

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
        if expires_at is not None:
            value = {**value, EXPIRES: int(expires_at)}
        tenant, data = current_tenant(), json.dumps(value)
        verb = "INSERT" if if_absent else "INSERT OR REPLACE"

        def op(conn: sqlite3.Connection) -> None:
            if if_version is not None:
                # One statement: the check and the write cannot be split by another writer.
                cur = conn.execute(
                    "UPDATE records SET value = ? WHERE tenant = ? AND kind = ? AND key = ? "
                    "AND COALESCE(json_extract(value, '$.version'), 0) = ?",
                    (data, tenant, check_kind(kind), key, if_version),
                )
                if cur.rowcount == 0:
                    raise ConflictError(f"{key!r} changed or was deleted meanwhile")
                return
            try:
                conn.execute(
                    f"{verb} INTO records (tenant, kind, key, value) VALUES (?, ?, ?, ?)",
                    (tenant, check_kind(kind), key, data),
                )
            except sqlite3.IntegrityError:
                raise ConflictError(f"{key!r} already exists") from None

        await self._run(op)

    async def get(self, kind: str, key: str) -> Record | None:
        tenant = current_tenant()

        def op(conn: sqlite3.Connection) -> Record | None:
            row = conn.execute(
                "SELECT value FROM records WHERE tenant = ? AND kind = ? AND key = ?",
                (tenant, check_kind(kind), key),
            ).fetchone()
            record = json.loads(row[0]) if row else None
            return None if record is None or expired(record, time.time()) else record

        return await self._run(op)

    async def delete(self, kind: str, key: str) -> bool:
        tenant = current_tenant()

        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM records WHERE tenant = ? AND kind = ? AND key = ?",
                (tenant, check_kind(kind), key),
            )
            return cur.rowcount > 0

        return await self._run(op)

    async def list(
        self, kind: str, *, after: str | None = None, limit: int = 1000, descending: bool = False
    ) -> list[Record]:
        tenant = current_tenant()
        # The cursor bound and the order are fixed strings, never user input.
        bound, order = ("<", "DESC") if descending else (">", "ASC")
        cursor = after if after is not None else ("\U0010ffff" if descending else "")

        def op(conn: sqlite3.Connection) -> list[Record]:
            rows = conn.execute(
                f"SELECT value FROM records WHERE tenant = ? AND kind = ? AND key {bound} ? "
                f"ORDER BY key {order} LIMIT ?",
                (tenant, check_kind(kind), cursor, limit),
            ).fetchall()
            now = time.time()
            return [r for r in (json.loads(row[0]) for row in rows) if not expired(r, now)]

        return await self._run(op)

    async def purge_expired(self) -> int:
        def op(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                f"DELETE FROM records WHERE json_extract(value, '$.{EXPIRES}') < ?",
                (int(time.time()),),
            )
            return cur.rowcount

        return await self._run(op)

    async def incr(self, kind: str, key: str, amount: int, *, expires_at: int) -> int:
        tenant = current_tenant()

        def op(conn: sqlite3.Connection) -> int:
            # One statement: atomic across every process sharing the file (SQLite's own lock).
            row = conn.execute(
                "INSERT INTO counters (tenant, kind, key, value, expires_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant, kind, key) "
                "DO UPDATE SET value = value + excluded.value RETURNING value",
                (tenant, check_kind(kind), key, amount, expires_at),
            ).fetchone()
            if amount and row[0] == amount:  # a new window: drop the expired ones
                conn.execute("DELETE FROM counters WHERE expires_at < ?", (int(time.time()),))
            return int(row[0])

        return await self._run(op)

    async def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
