"""The ingest Lambda: S3 event notifications, and files attached through the Vector Stores API
(queued by the vector function), arrive through SQS in batches.

Powertools batch processing reports each failed message in ``batchItemFailures`` (only those
are redelivered, then dead-lettered), and Powertools idempotency (DynamoDB) makes a redelivered
event a no-op: the key is (bucket, key, etag, version, event kind).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import asdict
from typing import Any

from llamda.observability import logger

IDEMPOTENCY_TTL_SECONDS = 7 * 24 * 3600


def sqs_handler() -> Any:
    from aws_lambda_powertools.utilities.batch import (
        BatchProcessor,
        EventType,
        process_partial_response,
    )
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    from llamda.config import cached_config
    from llamda.services.ingest import IngestService, S3Object, attach_job, s3_objects
    from llamda.stack import Stack

    stack = Stack(cached_config())
    service = IngestService(stack.files, stack.vector_stores, stack.records)
    # One loop for the container's life: AWS clients and LanceDB connections are bound to it.
    loop = asyncio.new_event_loop()
    persistence = DynamoDBPersistenceLayer(table_name=os.environ["LLAMDA_IDEMPOTENCY_TABLE"])
    config = IdempotencyConfig(
        event_key_jmespath="[bucket, key, etag, version_id, event]",
        expires_after_seconds=IDEMPOTENCY_TTL_SECONDS,
        raise_on_no_idempotency_key=True,
    )

    @idempotent_function(data_keyword_argument="obj", persistence_store=persistence, config=config)
    def apply(obj: dict[str, Any]) -> dict[str, Any]:
        result = loop.run_until_complete(service.handle(S3Object(**obj)))
        outcome = {"key": obj["key"], "status": result.status if result else "applied"}
        logger.info("ingested", **outcome)
        return outcome

    job_config = IdempotencyConfig(
        event_key_jmespath="[tenant, vector_store_id, file_id, batch_id, queued_at]",
        expires_after_seconds=IDEMPOTENCY_TTL_SECONDS,
        raise_on_no_idempotency_key=True,
    )

    @idempotent_function(
        data_keyword_argument="job", persistence_store=persistence, config=job_config
    )
    def run_job(job: dict[str, Any]) -> dict[str, Any]:
        result = loop.run_until_complete(service.run_job(job))
        outcome = {"file_id": job["file_id"], "status": result.status if result else "skipped"}
        logger.info("processed queued file", **outcome)
        return outcome

    def record_handler(record: SQSRecord) -> None:
        job = attach_job(record.body)
        if job is not None:
            run_job(job=job)
            return
        for obj in s3_objects(record.body):
            apply(obj=asdict(obj))

    # A batch where every message failed still answers with batchItemFailures (not an error).
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

    @logger.inject_lambda_context
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        config.register_lambda_context(context)
        job_config.register_lambda_context(context)
        response = process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
        # The batch's upkeep (index builds) after it, never within an API request, in the time
        # left: running out would lose the batch's response (and redeliver it all). A failure or
        # timeout here is left to the next run or the scheduled function.
        try:
            loop.run_until_complete(maintain_within(stack, context))
        except Exception:
            logger.exception("maintenance after the batch failed")
        return response

    return handler


MAINTENANCE_MARGIN_SECONDS = 15.0


async def maintain_within(stack: Any, context: Any) -> int | None:
    """The maintenance step, stopped ``MAINTENANCE_MARGIN_SECONDS`` before the invocation's
    deadline (None when there is no time for it or it was stopped)."""
    seconds = context.get_remaining_time_in_millis() / 1000 - MAINTENANCE_MARGIN_SECONDS
    if seconds <= 1:
        return None
    try:
        return await asyncio.wait_for(stack.vector_stores.maintain(), seconds)
    except TimeoutError:
        logger.warning("maintenance stopped before the function's deadline")
        return None


def maintenance_handler() -> Any:
    """The scheduled maintenance function (e.g. EventBridge ``rate(15 minutes)``): the upkeep
    of every store written to since the last run (see services/vector_stores/maintenance.py).
    Returns the Lambda handler."""
    from llamda.config import cached_config
    from llamda.stack import Stack

    stack = Stack(cached_config())
    loop = asyncio.new_event_loop()

    @logger.inject_lambda_context
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        stores = loop.run_until_complete(maintain_within(stack, context))
        logger.info("maintenance done", stores=stores)
        return {"stores": stores}

    return handler
