"""The jobs Lambda: asynchronous jobs (background responses, batches, eval jobs)
arrive through SQS. Powertools batch processing reports each failed message in
``batchItemFailures`` (only those are redelivered, then dead-lettered). A job that runs out of
the invocation's time checkpoints and queues its own continuation (services/jobs.py), so the
SQS visibility timeout only has to cover one invocation."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from llamda.observability import logger


def sqs_handler() -> Any:
    from aws_lambda_powertools.utilities.batch import (
        BatchProcessor,
        EventType,
        process_partial_response,
    )
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    from llamda.config import cached_config
    from llamda.stack import Stack

    config = cached_config()
    stack = Stack(config)
    jobs = stack.job_runner()  # every kind's handler, built at init
    # One loop for the container's life: aiobotocore clients are bound to it.
    loop = asyncio.new_event_loop()
    current: dict[str, Any] = {}

    def record_handler(record: SQSRecord) -> None:
        job = json.loads(record.body)
        if not isinstance(job, dict) or "kind" not in job or "tenant" not in job:
            logger.error("not a job message", message_id=record.message_id)
            return  # nothing to retry: a malformed message would only be dead-lettered later
        context = current["context"]
        seconds = context.get_remaining_time_in_millis() / 1000 - config.jobs.lambda_margin_seconds
        received = int(record.attributes.approximate_receive_count or 1)
        last = received >= config.jobs.max_receive_count
        loop.run_until_complete(jobs.run(job, seconds_left=max(1.0, seconds), last_attempt=last))
        logger.info("job done", kind=job["kind"], job_id=job.get("id"))

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

    @logger.inject_lambda_context
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        current["context"] = context
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )

    return handler
