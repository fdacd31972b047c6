"""The chunk loop of batches and eval jobs, on real SQLite records and a local object store:
checkpoints per chunk, resumes without redoing finished rows, stops on cancel, continues in a
new message when the invocation's time runs short."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from llamda.config import JobsConfig, LocalObjects, SqliteRecords
from llamda.context import tenant_scope
from llamda.services.chunked import ChunkedJobs
from llamda.services.jobs import JobRunner
from llamda.storage.objects import build_objects
from llamda.storage.records import build_records


class Harness:
    """A chunked job kind whose work squares each row index, counting every row it works."""

    def __init__(self, tmp: Path, **config: Any):
        self.config = JobsConfig(chunk_rows=3, **config)
        self.records = build_records(SqliteRecords(type="sqlite", path=str(tmp / "r.db")))
        self.objects = build_objects(LocalObjects(type="local", root=str(tmp / "o")))
        self.runner = JobRunner(self.config)
        self.worked: list[int] = []
        self.fail_at: set[int] = set()
        self.pause_at: int | None = None
        self.paused = asyncio.Event()
        self.resume = asyncio.Event()
        self.finished: list[tuple[str, list[dict[str, Any]]]] = []
        self.jobs = ChunkedJobs(
            "squares",
            self.records,
            self.objects,
            self.runner,
            self.config,
            work=self.work,
            finish=self.finish,
        )

    async def work(self, record: dict[str, Any], start: int, end: int) -> list[dict[str, Any]]:
        rows = []
        for index in range(start, end):
            if index in self.fail_at:
                self.fail_at.discard(index)
                raise RuntimeError("worker died")
            if index == self.pause_at:
                self.paused.set()
                await self.resume.wait()
            self.worked.append(index)
            rows.append({"row": index, "square": index * index})
        return rows

    async def finish(self, record: dict[str, Any], status: str) -> None:
        self.finished.append((status, [row async for row in self.jobs.results(record)]))
        record["summary"] = len(self.finished[-1][1])


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


async def _put(harness: Harness, job_id: str, rows: int) -> None:
    """A job record as ``start`` leaves it, without queueing its first message."""
    record = {"id": job_id, "rows_total": rows, "rows_done": 0, "next_chunk": 0}
    await harness.records.put(
        "squares", job_id, {**record, "chunk_rows": 3, "status": "in_progress"}
    )


async def _drain(runner: JobRunner) -> None:
    while runner._tasks:
        await asyncio.gather(*list(runner._tasks))


def test_a_job_runs_every_chunk_once_and_finishes_in_order(harness: Harness) -> None:
    async def main() -> None:
        with tenant_scope("t1"):
            await harness.jobs.start({"id": "job1", "rows_total": 8})
            await _drain(harness.runner)
            record = await harness.jobs.get("job1")
        assert record is not None
        assert record["status"] == "completed" and record["rows_done"] == 8
        assert record["summary"] == 8
        assert sorted(harness.worked) == list(range(8)) and len(harness.worked) == 8
        status, rows = harness.finished[0]
        assert status == "completed"
        assert [row["square"] for row in rows] == [i * i for i in range(8)]

    asyncio.run(main())


def test_a_crash_resumes_at_the_unfinished_chunk(harness: Harness) -> None:
    """A delivery that dies mid-job (not its last attempt) is redelivered: the chunks saved
    before the crash are not worked again."""
    harness.fail_at = {7}

    async def main() -> None:
        with tenant_scope("t1"):
            await _put(harness, "job2", 9)
            job = {"kind": "squares", "tenant": "t1", "id": "job2", "chunk": 0}
            await harness.runner.run(job, last_attempt=False)  # dies; the queue will redeliver
            mid = await harness.jobs.get("job2")
            assert mid is not None and mid["status"] == "in_progress"
            assert mid["rows_done"] == 6  # chunks 0 and 1 saved, chunk 2 died at row 7
            # The queue's redelivery of the same message:
            await harness.runner.run({**job, "chunk": 2}, last_attempt=False)
            done = await harness.jobs.get("job2")
        assert done is not None and done["status"] == "completed"
        assert harness.worked.count(0) == 1 and harness.worked.count(5) == 1
        assert harness.worked.count(6) == 2  # only the chunk that died is redone
        assert [row["row"] for row in harness.finished[0][1]] == list(range(9))

    asyncio.run(main())


def test_a_duplicate_message_does_nothing(harness: Harness) -> None:
    async def main() -> None:
        with tenant_scope("t1"):
            await harness.jobs.start({"id": "job3", "rows_total": 4})
            await _drain(harness.runner)
            before = list(harness.worked)
            await harness.runner.run({"kind": "squares", "tenant": "t1", "id": "job3", "chunk": 0})
        assert harness.worked == before and len(harness.finished) == 1

    asyncio.run(main())


def test_the_last_attempt_records_a_failure(harness: Harness) -> None:
    harness.fail_at = {1}

    async def main() -> None:
        with tenant_scope("t1"):
            await _put(harness, "job4", 3)
            await harness.runner.run({"kind": "squares", "tenant": "t1", "id": "job4", "chunk": 0})
            record = await harness.jobs.get("job4")
        assert record is not None and record["status"] == "failed"
        assert "RuntimeError" in record["error"]["message"]

    asyncio.run(main())


def test_cancel_stops_new_work_and_keeps_finished_rows(harness: Harness) -> None:
    async def main() -> None:
        harness.pause_at = 4  # chunk 0 done, chunk 1 under way
        with tenant_scope("t1"):
            await harness.jobs.start({"id": "job5", "rows_total": 30})
            await harness.paused.wait()
            cancelled = await harness.jobs.cancel("job5")
            assert cancelled is not None and cancelled["status"] == "cancelling"
            harness.resume.set()
            await _drain(harness.runner)
            record = await harness.jobs.get("job5")
        assert record is not None and record["status"] == "cancelled"
        assert record["rows_done"] < 30 and len(harness.worked) < 30
        status, rows = harness.finished[0]
        assert status == "cancelled" and len(rows) == record["rows_done"]

    asyncio.run(main())


def test_short_time_queues_the_next_chunk_instead(tmp_path: Path) -> None:
    harness = Harness(tmp_path, min_chunk_seconds=30)

    async def main() -> None:
        with tenant_scope("t1"):
            await _put(harness, "job6", 6)
            # 5 s left (< min_chunk_seconds): no work, the chunk is queued again.
            await harness.runner.run(
                {"kind": "squares", "tenant": "t1", "id": "job6", "chunk": 0}, seconds_left=5
            )
            assert harness.worked == []
            await _drain(harness.runner)  # the continuation ran here without a deadline
            record = await harness.jobs.get("job6")
        assert record is not None and record["status"] == "completed"
        assert sorted(harness.worked) == list(range(6))

    asyncio.run(main())


def test_the_redelivered_first_message_resumes_at_the_unfinished_chunk(tmp_path: Path) -> None:
    """The queue redelivers the message the dead invocation received ({"chunk": 0}), not one
    for the chunk it died in: the job resumes where it stopped, finished chunks not redone."""
    harness = Harness(tmp_path, min_chunk_seconds=0)
    harness.fail_at = {7}

    async def main() -> None:
        with tenant_scope("t1"):
            await _put(harness, "job7", 9)
            job = {"kind": "squares", "tenant": "t1", "id": "job7", "chunk": 0}
            # Dies in chunk 2; in Lambda (a deadline) it leaves a lease until its end.
            await harness.runner.run(job, seconds_left=60, last_attempt=False)
            await harness.runner.run(job, seconds_left=60, last_attempt=False)
            mid = await harness.jobs.get("job7")
            assert mid is not None and mid["rows_done"] == 6  # a duplicate: nothing done
            record = dict(mid)
            record["running_until"] = 0  # the dead invocation's time is over
            await harness.records.put("squares", "job7", record)
            await harness.runner.run(job, seconds_left=60, last_attempt=False)
            done = await harness.jobs.get("job7")
        assert done is not None and done["status"] == "completed"
        assert [harness.worked.count(i) for i in range(9)] == [1] * 6 + [2, 1, 1]
        assert [row["row"] for row in harness.finished[0][1]] == list(range(9))

    asyncio.run(main())


def test_a_cancel_between_the_last_chunk_and_finalizing_still_ends_the_job(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop reads the record (every row done), a cancel lands (another process), then the
    loop's conditional move to finalizing fails: the job must still end (here cancelled),
    never stay ``cancelling`` with no message left to move it on."""
    read = harness.records.get
    raced: list[bool] = []

    async def get_then_cancel(kind: str, key: str) -> Any:
        record = await read(kind, key)
        if (
            not raced
            and record is not None
            and record["status"] == "in_progress"
            and record["rows_done"] >= record["rows_total"]
        ):
            raced.append(True)
            await harness.jobs.cancel(key)  # lands after this read, before the loop's write
        return record

    async def main() -> None:
        with tenant_scope("t1"):
            await harness.jobs.start({"id": "job9", "rows_total": 6})
            monkeypatch.setattr(harness.records, "get", get_then_cancel)
            await _drain(harness.runner)
            record = await harness.jobs.get("job9")
        assert raced
        assert record is not None and record["status"] == "cancelled", record["status"]
        assert [status for status, _ in harness.finished] == ["cancelled"]

    asyncio.run(main())
