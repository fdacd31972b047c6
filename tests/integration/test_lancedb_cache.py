"""LanceDB caches across requests of a warm process: table handles and the session's index and
metadata caches stay alive, yet a row written by another process (the ingest function, another
Lambda container) is searchable within ``read_consistency_seconds``, and the caches stay within
``index_cache_mib`` + ``metadata_cache_mib``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import numpy as np
import pytest

from llamda.config import VectorsConfig
from llamda.errors import NotFoundError
from llamda.providers.vector_io.index import ChunkRow
from llamda.providers.vector_io.lancedb import MIB, LanceDBIndex

DIM = 4

# Another process: its own interpreter, connection and caches, writing one row to the store.
WRITER = """
import asyncio, json, sys
from llamda.config import VectorsConfig
from llamda.errors import NotFoundError
from llamda.providers.vector_io.index import ChunkRow
from llamda.providers.vector_io.lancedb import LanceDBIndex

config = VectorsConfig.model_validate(json.loads(sys.argv[1]))
row = ChunkRow("b", "file-b", "b.txt", 0, 1, "written elsewhere", [0.0, 1.0, 0.0, 0.0])
asyncio.run(LanceDBIndex("lancedb", None, config).upsert("vs_shared", [row], 4))
"""


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for the whole test, as a warm Lambda container keeps one (handles are
    per loop: a new loop would open a new connection and prove nothing about caching)."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _s3_config(endpoint: str, interval: float) -> VectorsConfig:
    bucket = f"lance-cache-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    options = {"endpoint": endpoint, "allow_http": "true", "region": "us-east-1",
               "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}  # fmt: skip
    return VectorsConfig(
        uri=f"s3://{bucket}/lancedb", storage_options=options, read_consistency_seconds=interval
    )


def _write_elsewhere(config: VectorsConfig) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    subprocess.run(
        [sys.executable, "-c", WRITER, json.dumps(config.model_dump(mode="json"))],
        check=True,
        env=env,
        timeout=120,
        capture_output=True,
    )


def _ids(hits: list[Any]) -> list[str]:
    return [h.row["chunk_id"] for h in hits]


@pytest.mark.parametrize("interval", [0.0, 1.0])
def test_a_write_by_another_process_is_searchable_within_the_interval(
    moto_endpoint: str, loop: asyncio.AbstractEventLoop, interval: float
) -> None:
    config = _s3_config(moto_endpoint, interval)
    reader = LanceDBIndex("lancedb", None, config)
    first = ChunkRow("a", "file-a", "a.txt", 0, 1, "written here", [1.0, 0.0, 0.0, 0.0])
    loop.run_until_complete(reader.create("vs_shared", DIM))
    loop.run_until_complete(reader.upsert("vs_shared", [first], DIM))
    query = [0.0, 1.0, 0.0, 0.0]
    # Warm: the reader's table handle and caches now hold the version with one row.
    assert _ids(loop.run_until_complete(reader.search_vector("vs_shared", query, 5))) == ["a"]

    _write_elsewhere(config)
    written = time.monotonic()
    if interval:
        time.sleep(max(0.0, interval - (time.monotonic() - written)) + 0.2)
    hits = loop.run_until_complete(reader.search_vector("vs_shared", query, 5))
    assert _ids(hits) == ["b", "a"]  # the other process's row, best match first
    assert hits[0].score == pytest.approx(1.0, abs=1e-6)
    assert loop.run_until_complete(reader.count("vs_shared")) == 2


def test_the_caches_stay_within_their_bound(loop: asyncio.AbstractEventLoop) -> None:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((8000, 64)).astype(np.float32)
    home = tempfile.mkdtemp()
    builder = LanceDBIndex("lancedb", None, VectorsConfig(uri=home, ann_index_min_rows=256))
    rows = [ChunkRow(str(i), "f", "f.txt", i, 1, "t", v.tolist()) for i, v in enumerate(vectors)]
    loop.run_until_complete(builder.create("vs_big", 64))
    loop.run_until_complete(builder.upsert("vs_big", rows, 64))
    loop.run_until_complete(builder.maintain("vs_big"))  # the IVF_HNSW_SQ index, a few MB

    def searched(**bounds: int) -> LanceDBIndex:
        index = LanceDBIndex("lancedb", None, VectorsConfig(uri=home, **bounds))
        for i in range(40):
            hits = loop.run_until_complete(index.search_vector("vs_big", vectors[i].tolist(), 5))
            assert hits[0].row["chunk_id"] == str(i)  # a tiny cache still answers right
        return index

    bound = 2 * MIB
    assert searched().cache_bytes() > bound  # the defaults keep the index: this test can fail
    assert 0 < searched(index_cache_mib=1, metadata_cache_mib=1).cache_bytes() <= bound


def test_a_store_dropped_by_another_process_is_a_404_then_forgotten(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """A warm process keeps table handles: when another process (another Lambda container)
    drops the store, the kept handle answers lance's "Not found" with paths in it. That is a
    404, the handle is forgotten, and a store re-created with the same id is read afresh."""
    config = VectorsConfig(uri=tempfile.mkdtemp(), read_consistency_seconds=0)
    index, other = LanceDBIndex("lancedb", None, config), LanceDBIndex("lancedb", None, config)
    query = [1.0, 0.0, 0.0, 0.0]
    old = ChunkRow("old", "file-a", "a.txt", 0, 1, "old words", query)
    new = ChunkRow("new", "file-a", "a.txt", 0, 1, "new words", query)
    run = loop.run_until_complete
    calls: list[tuple[str, Any]] = [
        ("search_vector", lambda: index.search_vector("vs_gone", query, 3)),
        ("search_keyword", lambda: index.search_keyword("vs_gone", "words", 3)),
        ("count", lambda: index.count("vs_gone")),
        ("file_rows", lambda: index.file_rows("vs_gone", "file-a")),
        ("upsert_file", lambda: index.upsert_file("vs_gone", "file-a", [old], DIM)),
        ("delete_file", lambda: index.delete_file("vs_gone", "file-a")),
    ]
    for name, call in calls:
        run(index.create("vs_gone", DIM))
        run(index.upsert_file("vs_gone", "file-a", [old], DIM))
        assert _ids(run(index.search_vector("vs_gone", query, 3))) == ["old"]  # handle kept
        run(other.drop("vs_gone"))
        with pytest.raises(NotFoundError) as caught:
            run(call())
        assert ".lance" not in caught.value.message, name  # no storage paths in the answer
        assert run(index.search_vector("vs_gone", query, 3)) == []  # forgotten: gone
        run(other.create("vs_gone", DIM))
        run(other.upsert_file("vs_gone", "file-a", [new], DIM))
        assert _ids(run(index.search_vector("vs_gone", query, 3))) == ["new"], name
        run(other.drop("vs_gone"))
