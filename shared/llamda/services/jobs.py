"""The job runner: asynchronous work, run off the request path on one code path.

A job is a small JSON message ``{"kind", "tenant", "id", ...}``. Where ``jobs.queue_url`` is
set (AWS) it is sent to SQS and the jobs function runs it (lambda_jobs.py: Powertools batch,
partial failures, DLQ); otherwise it runs in this process as a background task. Either way
``JobRunner.run`` executes it: the tenant bound from the message, the handler registered for
its kind. Handlers are idempotent (a redelivered message must be harmless): they keep their
state in Records and check it before doing anything.

Kinds: ``response`` (background responses); batches and eval jobs run in chunks on it
(services/chunked.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from llamda.config import JobsConfig
from llamda.context import bind_deadline, current_tenant, tenant_scope
from llamda.errors import ServiceUnavailableError
from llamda.observability import logger

Job = dict[str, Any]
Handler = Callable[[Job], Awaitable[None]]


class JobRunner:
    def __init__(self, config: JobsConfig):
        self._config = config
        self._handlers: dict[str, Handler] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def register(self, kind: str, handler: Handler) -> None:
        self._handlers[kind] = handler

    @property
    def queued(self) -> bool:
        """Whether jobs go to a queue (another process runs them) rather than run here."""
        return bool(self._config.queue_url)

    async def submit(self, kind: str, job_id: str, **fields: Any) -> None:
        """Queue a job for the current tenant; 503 when the queue refuses it."""
        job = {"kind": kind, "tenant": current_tenant(), "id": job_id, **fields}
        job["queued_at"] = time.time_ns()
        if not self._config.queue_url and os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
            # A task left running when the invocation returns would be frozen, then lost.
            raise ServiceUnavailableError(
                "asynchronous jobs are not set up here (jobs.queue_url is unset)"
            )
        if not self._config.queue_url:
            task = asyncio.get_running_loop().create_task(self.run(job))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        from llamda.aws import clients

        sqs = await clients.client("sqs")
        try:
            await sqs.send_message(QueueUrl=self._config.queue_url, MessageBody=json.dumps(job))
        except Exception as exc:
            logger.error("could not queue a job", kind=kind, error=type(exc).__name__)
            raise ServiceUnavailableError("the job queue is unavailable; retry") from None

    async def run(
        self, job: Job, seconds_left: float | None = None, *, last_attempt: bool = True
    ) -> None:
        """Run one job as its tenant, within ``seconds_left`` (the Lambda invocation's time
        less a margin; None: the handler's own limits). ``last_attempt``: no redelivery will
        follow a failure, so the handler must record it (``job["last_attempt"]``)."""
        job = {**job, "last_attempt": last_attempt}
        handler = self._handlers.get(str(job.get("kind")))
        if handler is None:
            raise ValueError(f"no handler for job kind {job.get('kind')!r}")
        with tenant_scope(str(job["tenant"])):
            bind_deadline(seconds_left)
            try:
                await handler(job)
            except Exception:
                if self._config.queue_url:
                    raise  # the batch reports it: redelivered, then dead-lettered
                logger.exception("background job failed", kind=job["kind"], job_id=job["id"])

    async def close(self) -> None:
        """Stop the jobs running in this process (server shutdown); a stopped response stays
        as its last checkpoint left it."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
