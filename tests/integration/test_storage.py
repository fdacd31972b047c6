"""Records and Objects, each implementation against the real thing: a SQLite file, a local
directory, and DynamoDB/S3 served by a moto server through real aioboto3 clients."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest

from llamda.context import set_tenant
from llamda.errors import BadRequestError, ConflictError, NotFoundError
from llamda.storage.objects import Objects
from llamda.storage.objects_local import LocalObjectStore
from llamda.storage.objects_s3 import S3ObjectStore
from llamda.storage.records import Records
from llamda.storage.records_dynamodb import DynamoDBRecordStore
from llamda.storage.records_sqlite import SqliteRecordStore
from tests.conftest import records_table


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def as_tenant(tenant: str, fn: Callable, *args, **kwargs):  # type: ignore[no-untyped-def]
    """Run ``fn`` in its own task with the tenant bound, as a request would."""

    async def task():  # type: ignore[no-untyped-def]
        set_tenant(tenant)
        return await fn(*args, **kwargs)

    return await asyncio.create_task(task())


@pytest.fixture(params=["sqlite", "dynamodb"])
def records_factory(request, tmp_path: Path) -> Callable[[], Records]:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return lambda: SqliteRecordStore(tmp_path / "records.sqlite3")
    endpoint = request.getfixturevalue("moto_endpoint")
    table = records_table(endpoint)
    return lambda: DynamoDBRecordStore(table, "us-east-1", endpoint)


@pytest.fixture(params=["local", "s3"])
def objects_factory(request, tmp_path: Path) -> Callable[[], Objects]:  # type: ignore[no-untyped-def]
    if request.param == "local":
        return lambda: LocalObjectStore(tmp_path / "objects")
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = f"objects-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    return lambda: S3ObjectStore(bucket, "prefix", "us-east-1", endpoint)


def test_records_roundtrip_conflict_list_delete(records_factory) -> None:  # type: ignore[no-untyped-def]
    async def scenario() -> None:
        store = records_factory()
        doc = {"model_id": "a/b:1", "n": 1.25, "nested": {"x": [1, 2]}}
        await store.put("models", "a/b:1", doc, if_absent=True)
        with pytest.raises(ConflictError):
            await store.put("models", "a/b:1", doc, if_absent=True)
        await store.put("models", "a/b:1", {**doc, "n": 2})  # plain put overwrites
        assert (await store.get("models", "a/b:1"))["n"] == 2
        assert await store.get("models", "missing") is None
        assert await store.get("shields", "a/b:1") is None  # kinds are separate
        for i in range(25):
            await store.put("models", f"m{i:02d}", {"i": i})
        page = await store.list("models", limit=10)
        assert [r.get("i") for r in page][1:] == list(range(9))
        after = await store.list("models", after="m19")
        assert [r["i"] for r in after] == list(range(20, 25))
        newest = await store.list("models", limit=3, descending=True)
        assert [r["i"] for r in newest] == [24, 23, 22]
        before = await store.list("models", after="m03", limit=3, descending=True)
        assert [r["i"] for r in before] == [2, 1, 0]
        assert await store.delete("models", "a/b:1") is True
        assert await store.delete("models", "a/b:1") is False
        await store.close()

    run(scenario())


def test_records_are_isolated_by_tenant(records_factory) -> None:  # type: ignore[no-untyped-def]
    async def scenario() -> None:
        store = records_factory()
        await as_tenant("acme", store.put, "models", "shared-name", {"owner": "acme"})
        await as_tenant("globex", store.put, "models", "shared-name", {"owner": "globex"})
        assert (await as_tenant("acme", store.get, "models", "shared-name"))["owner"] == "acme"
        assert [r["owner"] for r in await as_tenant("globex", store.list, "models")] == ["globex"]
        assert await as_tenant("initech", store.get, "models", "shared-name") is None
        assert await as_tenant("initech", store.delete, "models", "shared-name") is False
        assert await as_tenant("acme", store.get, "models", "shared-name") is not None
        await store.close()

    run(scenario())


def test_records_persist_across_store_instances(records_factory) -> None:  # type: ignore[no-untyped-def]
    run(records_factory().put("models", "kept", {"v": 1}))
    assert run(records_factory().get("models", "kept")) == {"v": 1}


def test_objects_roundtrip_list_delete(objects_factory) -> None:  # type: ignore[no-untyped-def]
    async def scenario() -> None:
        store = objects_factory()
        await store.put("files/file-1", b"hello", content_type="text/plain")
        await store.put("files/file-2", b"\x00\x01binary")
        await store.put("filesystem/other", b"x")
        assert await store.get("files/file-1") == b"hello"
        assert await store.list("files") == ["files/file-1", "files/file-2"]
        with pytest.raises(NotFoundError):
            await store.get("files/missing")
        assert await store.delete("files/file-1") is True
        assert await store.delete("files/file-1") is False
        assert await store.list("files") == ["files/file-2"]
        await store.close()

    run(scenario())


def test_objects_are_isolated_by_tenant(objects_factory) -> None:  # type: ignore[no-untyped-def]
    async def scenario() -> None:
        store = objects_factory()
        await as_tenant("acme", store.put, "files/report", b"acme data")
        with pytest.raises(NotFoundError):
            await as_tenant("globex", store.get, "files/report")
        assert await as_tenant("globex", store.list, "files") == []
        assert await as_tenant("globex", store.delete, "files/report") is False
        assert await as_tenant("acme", store.get, "files/report") == b"acme data"
        await store.close()

    run(scenario())


@pytest.mark.parametrize(
    "key",
    [
        "../escape",
        "files/../../etc/passwd",
        "/etc/passwd",
        "files//x",
        "files/..",
        "a\\b",
        "x\x00y",
        "",
    ],
)
def test_object_keys_cannot_escape_their_prefix(objects_factory, key: str) -> None:  # type: ignore[no-untyped-def]
    store = objects_factory()
    with pytest.raises(BadRequestError):
        run(store.put(key, b"x"))
    with pytest.raises(BadRequestError):
        run(store.get(key))


def test_counters_are_atomic_per_tenant_and_apart_from_documents(records_factory) -> None:  # type: ignore[no-untyped-def]
    """Rate-limit counters: increments from many tasks and two store objects (as two processes
    would have) lose nothing; tenants do not share. moto does not serialize concurrent
    UpdateItem calls (DynamoDB does: ADD is atomic), so there the adds run one at a time."""

    async def scenario() -> None:
        first, second = records_factory(), records_factory()
        try:
            adds = [
                as_tenant("t1", store.incr, "rate_counters", "k:r:1", 1, expires_at=2**31 - 1)
                for store in (first, second)
                for _ in range(20)
            ]
            if isinstance(first, SqliteRecordStore):
                values = await asyncio.gather(*adds)
            else:
                values = [await add for add in adds]
            assert sorted(values) == list(range(1, 41))  # each add saw a distinct total
            other = await as_tenant("t2", first.incr, "rate_counters", "k:r:1", 0, expires_at=1)
            assert other == 0
            assert (
                await as_tenant("t1", first.incr, "rate_counters", "k:r:1", 5, expires_at=1) == 45
            )
            # Counters are not documents: the same key in the same kind reads as absent.
            assert await as_tenant("t1", first.get, "rate_counters", "k:r:1") is None
        finally:
            await first.close()
            await second.close()

    run(scenario())


def test_records_conditional_put_by_version(records_factory) -> None:  # type: ignore[no-untyped-def]
    """``if_version``: a stale copy never overwrites a newer one, a deleted record never comes
    back, and of concurrent writers of one version exactly one wins."""
    from llamda.storage.records import save

    async def scenario() -> None:
        store = records_factory()
        with pytest.raises(ConflictError):  # absent: nothing to update, nothing created
            await store.put("vector_stores", "vs1", {"id": "vs1", "version": 1}, if_version=0)
        assert await store.get("vector_stores", "vs1") is None
        await store.put("vector_stores", "vs1", {"id": "vs1", "name": "a"})  # no version: 0
        first = await store.get("vector_stores", "vs1")
        stale = await store.get("vector_stores", "vs1")
        first["name"] = "b"
        assert await save(store, "vector_stores", "vs1", first) is True
        assert first["version"] == 1
        stale["name"] = "stale"
        assert await save(store, "vector_stores", "vs1", stale) is False
        assert (await store.get("vector_stores", "vs1"))["name"] == "b"
        copies = [await store.get("vector_stores", "vs1") for _ in range(6)]
        for i, copy in enumerate(copies):
            copy["name"] = f"w{i}"
        wins = await asyncio.gather(*(save(store, "vector_stores", "vs1", c) for c in copies))
        assert sum(wins) == 1
        winner = copies[wins.index(True)]["name"]
        assert (await store.get("vector_stores", "vs1")) == {
            "id": "vs1",
            "name": winner,
            "version": 2,
        }
        latest = await store.get("vector_stores", "vs1")
        assert await store.delete("vector_stores", "vs1") is True
        assert await save(store, "vector_stores", "vs1", latest) is False  # no resurrection
        assert await store.get("vector_stores", "vs1") is None
        await store.close()

    run(scenario())


def test_put_parts_joins_in_order_and_a_missing_part_leaves_nothing(objects_factory) -> None:  # type: ignore[no-untyped-def]
    async def scenario() -> None:
        store = objects_factory()
        set_tenant("t1")
        await store.put("parts/a", b"alpha-")
        await store.put("parts/b", b"beta")
        assert await store.put_parts("joined", ["parts/b", "parts/a"]) == 10
        assert await store.get("joined") == b"betaalpha-"
        assert await store.get("parts/a") == b"alpha-"  # the parts stay: the caller deletes
        with pytest.raises(NotFoundError):
            await store.put_parts("broken", ["parts/a", "parts/missing"])
        with pytest.raises(NotFoundError):
            await store.get("broken")
        assert await store.put_parts("empty", []) == 0
        assert await store.get("empty") == b""
        # Another tenant's parts are not found (keys are tenant-scoped).
        set_tenant("t2")
        with pytest.raises(NotFoundError):
            await store.put_parts("stolen", ["parts/a"])
        await store.close()

    run(scenario())


def test_chunks_stream_an_object_and_a_missing_one_is_not_found(objects_factory) -> None:  # type: ignore[no-untyped-def]
    async def scenario() -> None:
        store = objects_factory()
        set_tenant("t1")
        data = bytes(range(256)) * 9000  # > COPY_CHUNK: several pieces
        await store.put("blob", data)
        pieces = [piece async for piece in store.chunks("blob")]
        assert b"".join(pieces) == data and len(pieces) > 1
        with pytest.raises(NotFoundError):
            await anext(store.chunks("missing"))
        await store.close()

    run(scenario())


def test_records_expire(records_factory, moto_endpoint: str) -> None:  # type: ignore[no-untyped-def]
    """A record past its ``expires_at`` is gone for readers at once (DynamoDB's TTL deletes
    lag by up to days); ``save`` keeps the expiry; locally ``purge_expired`` deletes it."""
    import time

    from llamda.storage.records import save

    async def scenario() -> None:
        store = records_factory()
        past, future = int(time.time()) - 5, int(time.time()) + 3600
        await store.put("responses", "r-old", {"id": "r-old"}, expires_at=past)
        await store.put("responses", "r-new", {"id": "r-new"}, expires_at=future)
        await store.put("responses", "r-kept", {"id": "r-kept"})
        assert await store.get("responses", "r-old") is None
        assert [r["id"] for r in await store.list("responses")] == ["r-kept", "r-new"]
        record = await store.get("responses", "r-new")
        record["n"] = 1
        assert await save(store, "responses", "r-new", record)
        assert (await store.get("responses", "r-new"))["_expires_at"] == future
        purged = await store.purge_expired()
        # SQLite deletes the expired record now; DynamoDB's TTL does it in its own time.
        assert purged == (1 if isinstance(store, SqliteRecordStore) else 0)
        assert await store.purge_expired() == 0 or not isinstance(store, SqliteRecordStore)
        await store.close()

    run(scenario())
