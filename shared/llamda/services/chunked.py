"""Chunked jobs: many independent rows (batch requests, eval rows) worked through in chunks on
the job runner, checkpointed per chunk.

A job's state is one record (``status``, ``rows_total``, ``rows_done``, ``next_chunk``,
``version``) plus one object per finished chunk holding that chunk's results as JSON lines.
One job message carries ``{"chunk": n}``: the handler runs chunk after chunk while the
invocation has time, saving each chunk's results and then the record (conditionally on its
version, with ``running_until``: the invocation's deadline), and queues a message for the next
chunk when time runs short. So a crash or a Lambda timeout resumes at the first unfinished
chunk when the queue redelivers the message (finished rows are not redone), a duplicate
delivery while the first still runs does nothing, and a cancel (a conditional status
change) stops the job at its next chunk. When every chunk is done the job finalizes: the
owner's ``finish`` reads the chunk results in order and writes what the job produces.

Model calls inside a chunk take a slot of ``ModelSlots.slot(model)`` (one instance per stack):
bounded concurrency per model in this process (jobs.max_concurrency_per_model), whatever job
they belong to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from llamda.config import JobsConfig
from llamda.context import request_deadline
from llamda.errors import LlamdaError
from llamda.observability import logger
from llamda.services.jobs import Job, JobRunner
from llamda.storage.objects import JOB_LIFECYCLE, Objects
from llamda.storage.records import Record, Records, save

# States a job can be in; ``finalizing`` is a state of its own so an interrupted finish is
# finished by the next delivery.
ACTIVE = ("validating", "queued", "in_progress", "finalizing", "cancelling")
TERMINAL = ("completed", "failed", "cancelled", "expired")

Rows = list[dict[str, Any]]
# work(record, start, end) -> one result per row in [start, end)
Work = Callable[[Record, int, int], Awaitable[Rows]]
# finish(record, final_status): write the job's outputs (reading ``results``); may update
# fields of ``record`` (saved after it returns).
Finish = Callable[[Record, str], Awaitable[None]]
# cleanup(record): what a job that failed as a whole leaves behind (no finish runs for it).
Cleanup = Callable[[Record], Awaitable[None]]


class ModelSlots:
    """Bounded concurrency per model in this process, shared by every chunked job."""

    def __init__(self, limit: int):
        self._limit = limit
        self._slots: dict[str, asyncio.Semaphore] = {}

    @contextlib.asynccontextmanager
    async def slot(self, model: str) -> AsyncIterator[None]:
        """One of the ``limit`` concurrent calls to ``model``."""
        semaphore = self._slots.get(model)
        if semaphore is None:
            semaphore = self._slots[model] = asyncio.Semaphore(self._limit)
        async with semaphore:
            yield


class ChunkedJobs:
    """The chunk loop of one kind of job (``kind`` is also its Records kind)."""

    def __init__(
        self,
        kind: str,
        records: Records,
        objects: Objects,
        runner: JobRunner,
        config: JobsConfig,
        *,
        work: Work,
        finish: Finish,
        cleanup: Cleanup | None = None,
    ):
        self.kind = kind
        self._records = records
        self._objects = objects
        self._runner = runner
        self._config = config
        self._work = work
        self._finish = finish
        # Local runner only: deliveries of each job queued or running in this process. A job
        # active in Records with none here was stopped with a previous process (nothing
        # redelivers a local job): ``get`` resumes it.
        self._here: dict[str, int] = {}
        self._cleanup = cleanup
        runner.register(kind, self._handle)

    # -- the owner's side -------------------------------------------------------------------

    async def start(self, record: Record, *, expires_at: int | None = None) -> Record:
        """Store a new job record (``id``, ``rows_total`` and the owner's fields set; ``status``
        defaults to in_progress, ``deadline_at`` (epoch s) makes it ``expired`` after) and
        queue its first chunk; when the queue refuses it, nothing stays behind."""
        record.update(
            status=record.get("status", "in_progress")
            if record.get("rows_total")
            else "finalizing",
            rows_done=0,
            next_chunk=0,
            version=0,
            chunk_rows=record.get("chunk_rows") or self._config.chunk_rows,
        )
        await self._records.put(
            self.kind, record["id"], record, if_absent=True, expires_at=expires_at
        )
        try:
            await self._submit(record["id"], 0)
        except Exception:
            await self._records.delete(self.kind, record["id"])
            raise
        return record

    async def get(self, job_id: str) -> Record | None:
        return await self._records.get(self.kind, job_id)

    async def revive(self, record: Record) -> None:
        """Locally, resume an active job no delivery of this process is working on (the
        server that ran it stopped: nothing redelivers a local job) at its first unfinished
        chunk. The owner calls it when a client reads the job."""
        job_id = str(record["id"])
        if self._runner.queued or record["status"] not in ACTIVE or self._here.get(job_id):
            return
        logger.info("job resumed after a restart", kind=self.kind, job_id=job_id)
        try:
            await self._submit(job_id, int(record.get("next_chunk", 0)))
        except Exception:  # the record is still the answer; the next read tries again
            logger.exception("could not resume a job", kind=self.kind, job_id=job_id)

    async def _submit(self, job_id: str, chunk: int) -> None:
        if not self._runner.queued:
            self._here[job_id] = self._here.get(job_id, 0) + 1
        try:
            await self._runner.submit(self.kind, job_id, chunk=chunk)
        except Exception:
            self._delivered(job_id)
            raise

    def _delivered(self, job_id: str) -> None:
        if job_id in self._here:
            self._here[job_id] -= 1
            if self._here[job_id] <= 0:
                del self._here[job_id]

    async def cancel(self, job_id: str) -> Record | None:
        """Ask a running job to stop (it finishes as ``cancelled`` at its next chunk); the
        record as it stands (None when absent). A finished job is left as it is, and so is a
        finalizing one: its work is all done and its finish (which saves the record
        conditionally) must not be turned into a failure or a second finish."""
        for _ in range(5):
            record = await self._records.get(self.kind, job_id)
            if record is None or record["status"] not in ACTIVE:
                return record
            if record["status"] in ("cancelling", "finalizing"):
                return record
            record.update(status="cancelling", cancelling_at=int(time.time()))
            if await save(self._records, self.kind, job_id, record):
                return record
        return await self._records.get(self.kind, job_id)

    async def results(self, record: Record) -> AsyncIterator[dict[str, Any]]:
        """The results of the finished chunks, in row order."""
        for chunk in range(int(record.get("next_chunk", 0))):
            data = await self._objects.get(self._chunk_key(record["id"], chunk))
            for line in data.splitlines():
                if line:
                    yield json.loads(line)

    async def delete_results(self, record: Record) -> None:
        for chunk in range(int(record.get("next_chunk", 0))):
            await self._objects.delete(self._chunk_key(record["id"], chunk))

    # -- the runner's side ------------------------------------------------------------------

    def _chunk_key(self, job_id: str, chunk: int) -> str:
        return f"jobs/{self.kind}/{job_id}/chunk-{chunk:07d}.jsonl"

    async def _handle(self, job: Job) -> None:
        job_id = str(job["id"])
        try:
            await self._advance(job_id, int(job.get("chunk", 0)))
        except Exception as exc:
            if not job.get("last_attempt", True):
                raise  # redelivered by the queue
            logger.exception("job failed", kind=self.kind, job_id=job_id)
            await self._fail(job_id, exc)
        finally:
            self._delivered(job_id)  # after any continuation it queued counted itself

    async def _advance(self, job_id: str, chunk: int) -> None:
        while True:
            record = await self._records.get(self.kind, job_id)
            if record is None or record["status"] in TERMINAL:
                return
            if record["status"] == "cancelling":
                if await self._finalize(record, "cancelled"):
                    continue
                return
            due = int(record.get("next_chunk", 0))
            if due != chunk and record["status"] != "finalizing":
                if chunk > due or time.time() < float(record.get("running_until") or 0):
                    return  # not yet due, or a duplicate of a delivery still running
                # The queue redelivered a message whose invocation died after finishing some
                # chunks (without queueing a continuation): resume at the first unfinished one.
                logger.info("job resumed", kind=self.kind, job_id=job_id, chunk=due)
                chunk = due
            if record["status"] == "finalizing" or record["rows_done"] >= record["rows_total"]:
                if await self._finalize(record, "completed"):
                    continue  # a cancel landed meanwhile: no other delivery will end the job
                return
            if record.get("deadline_at") and time.time() > record["deadline_at"]:
                if await self._finalize(record, "expired"):
                    continue
                return
            if not self._time_for_a_chunk():
                await self._submit(job_id, chunk)
                return
            if record["status"] == "queued":  # its first chunk starts now
                record.update(
                    status="in_progress",
                    in_progress_at=int(time.time()),
                    running_until=self._lease(),
                )
                if not await save(self._records, self.kind, job_id, record):
                    continue
            size = int(record["chunk_rows"])
            start = chunk * size
            end = min(int(record["rows_total"]), start + size)
            try:
                results = await self._run_chunk(record, start, end)
            except TimeoutError:
                logger.info("chunk ran out of time; queued again", kind=self.kind, chunk=chunk)
                await self._submit(job_id, chunk)
                return
            body = "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in results)
            await self._objects.put(
                self._chunk_key(job_id, chunk), body.encode(), lifecycle=JOB_LIFECYCLE
            )
            failed = sum(1 for row in results if row.get("error"))
            if not await self._done(record, chunk, end, failed):
                continue  # changed meanwhile (not by a cancel): look again
            chunk += 1

    async def _done(self, record: Record, chunk: int, end: int, failed: int) -> bool:
        """Record ``chunk`` as finished (``rows_failed`` counts its results with an
        ``error``). A cancel that landed while it ran keeps it: its rows are finished work
        the job's outputs include."""
        for _ in range(5):
            record.update(
                next_chunk=chunk + 1,
                rows_done=end,
                rows_failed=int(record.get("rows_failed") or 0) + failed,
                running_until=self._lease(),
            )
            if await save(self._records, self.kind, record["id"], record):
                return True
            fresh = await self._records.get(self.kind, record["id"])
            if fresh is None or fresh["status"] != "cancelling":
                return False
            if int(fresh.get("next_chunk", 0)) != chunk:
                return False
            record.clear()
            record.update(fresh)
        return False

    async def _run_chunk(self, record: Record, start: int, end: int) -> Rows:
        deadline = request_deadline()
        if deadline is None:
            return await self._work(record, start, end)
        async with asyncio.timeout(deadline - time.monotonic()):
            return await self._work(record, start, end)

    def _lease(self) -> int:
        """Until when this delivery may still be running (epoch s; 0 without a deadline): its
        deadline plus the margin kept back from the invocation. A copy of its message arriving
        before then is a duplicate, after it a redelivery."""
        deadline = request_deadline()
        if deadline is None:
            return 0
        left = max(0.0, deadline - time.monotonic()) + self._config.lambda_margin_seconds
        return int(time.time() + left) + 1

    def _time_for_a_chunk(self) -> bool:
        deadline = request_deadline()
        return deadline is None or deadline - time.monotonic() > self._config.min_chunk_seconds

    async def _finalize(self, record: Record, status: str) -> bool:
        """Finish the job as ``status`` (or as the status an interrupted finish had chosen).
        True when a cancel landed before it could move to finalizing: the caller looks again
        (no other delivery would end the job). Any other change (another delivery moved it
        on) is left to whoever made it."""
        if record["status"] != "finalizing":
            record["final_status"] = status
            record["status"] = "finalizing"
            if not await save(self._records, self.kind, record["id"], record):
                fresh = await self._records.get(self.kind, record["id"])
                return fresh is not None and fresh["status"] == "cancelling"
        final = str(record.get("final_status") or status)
        await self._finish(record, final)
        record["status"] = final
        record.setdefault(f"{final}_at", int(time.time()))
        await save(self._records, self.kind, record["id"], record)
        return False

    async def _fail(self, job_id: str, exc: Exception) -> None:
        """Mark the job failed, saying why, and drop its chunk results (no finish will read
        them: left behind, they would stay in the bucket for good)."""
        if isinstance(exc, LlamdaError):  # its message is scrubbed of secrets, and the user's
            error = {"code": exc.code or exc.error_type, "message": exc.message[:1000]}
        else:  # ours: its text may hold anything; the type says enough
            error = {"code": "server_error", "message": f"the job failed ({type(exc).__name__})"}
        for attempt in range(3):
            record = await self._records.get(self.kind, job_id)
            if record is None or record["status"] in TERMINAL:
                return
            if attempt == 0:  # before the status: whoever sees "failed" sees no chunks left
                try:
                    await self.delete_results(record)
                except Exception:  # failed either way; only the objects stay behind
                    logger.exception("could not delete a failed job's chunks", job_id=job_id)
            record.update(status="failed", failed_at=int(time.time()))
            record.setdefault("error", error)
            if await save(self._records, self.kind, job_id, record):
                if self._cleanup is not None:
                    try:
                        await self._cleanup(record)
                    except Exception:  # the job's state is saved; leftovers are only cost
                        logger.exception("job cleanup failed", kind=self.kind, job_id=job_id)
                return
