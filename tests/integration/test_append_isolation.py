"""One client's bad write never fails another's: concurrent appends to one LanceDB table (a
real table in a temp dir) are coalesced into one commit, and when that commit fails each
request is retried alone. The bad rows here are a NaN vector, which LanceDB refuses at commit
time (the API refuses NaN at the edge; this is the storage layer's own guarantee)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pyarrow as pa

from llamda.config import VectorsConfig
from llamda.providers.vector_io.index import ChunkRow, IndexContext
from llamda.providers.vector_io.lancedb import LanceDBIndex, _AppendBatcher, _encode, _schema

DIMENSION = 4
CLIENTS, BAD = 8, 3


def _row(i: int, *, bad: bool = False) -> ChunkRow:
    return ChunkRow(
        chunk_id=f"c{i}",
        file_id=f"f{i}",
        filename=f"f{i}.txt",
        chunk_index=0,
        token_count=1,
        text=f"text {i}",
        vector=[float("nan")] * DIMENSION if bad else [0.1 * (i + 1), 0.2, 0.3, 0.4],
    )


def test_a_failed_combined_commit_fails_only_the_bad_append(tmp_path: Path) -> None:
    """Eight appends issued together go into one commit (they are all pending before the
    flush runs); the NaN one makes it fail; the other seven must still be written."""

    async def scenario() -> tuple[list[BaseException | None], list[str], int]:
        index = LanceDBIndex(
            "lancedb", None, IndexContext(VectorsConfig(uri=str(tmp_path / "lancedb")))
        )
        await index.create("store", DIMENSION)
        table = await index._table("store")
        assert table is not None
        commits: list[int] = []

        async def commit(data: pa.Table) -> None:
            commits.append(data.num_rows)
            await table.add(data)

        batcher = _AppendBatcher(commit)
        tables = [
            pa.Table.from_pylist([_encode(_row(i, bad=i == BAD))], schema=_schema(DIMENSION))
            for i in range(CLIENTS)
        ]
        results = await asyncio.gather(*(batcher.append(t) for t in tables), return_exceptions=True)
        ids = sorted(r["chunk_id"] for r in await table.query().select(["chunk_id"]).to_list())
        await index.close()
        return list(results), ids, commits[0]

    results, ids, first_commit = asyncio.run(scenario())
    assert first_commit == CLIENTS  # the eight were coalesced (else this test proves nothing)
    failed = [i for i, r in enumerate(results) if r is not None]
    assert failed == [BAD], results
    assert "NaN" in str(results[BAD])
    assert ids == sorted(f"c{i}" for i in range(CLIENTS) if i != BAD)


def test_concurrent_writes_through_the_index(tmp_path: Path) -> None:
    """The same through LanceDBIndex.upsert, the path every ingest and vector-io insert takes,
    over a few rounds (how writes coalesce depends on timing; the outcome must not)."""

    async def scenario() -> None:
        index = LanceDBIndex(
            "lancedb", None, IndexContext(VectorsConfig(uri=str(tmp_path / "lancedb")))
        )
        await index.create("store", DIMENSION)
        for round_ in range(3):
            rows = [_row(round_ * CLIENTS + i, bad=i == BAD) for i in range(CLIENTS)]
            results = await asyncio.gather(
                *(index.upsert("store", [row], DIMENSION) for row in rows),
                return_exceptions=True,
            )
            assert [i for i, r in enumerate(results) if r is not None] == [BAD], results
        stored = await index.all_rows("store")
        assert len(stored) == 3 * (CLIENTS - 1)
        await index.close()

    asyncio.run(scenario())
