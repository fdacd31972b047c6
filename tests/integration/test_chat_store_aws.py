"""Stored chat completions on DynamoDB and S3 (a moto server, real aioboto3 clients), as in AWS:
a completion too big for a DynamoDB item is kept in S3 and read back whole, updated and deleted
there; filtered lists read a bounded number of completions; tenants stay apart."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import boto3
import pytest

from llamda.api.inference import ChatCompletion, ChatCompletionRequest
from llamda.api.models import Model
from llamda.config import InferenceStoreConfig
from llamda.context import tenant_scope
from llamda.errors import NotFoundError
from llamda.services.agents.items import ItemStore
from llamda.services.chat_store import KIND, ChatStore
from llamda.services.inference import Served
from llamda.storage.objects_s3 import S3ObjectStore
from llamda.storage.records_dynamodb import DynamoDBRecordStore
from tests.conftest import records_table

MODEL = Model(
    id="m",
    created=0,
    owned_by="p",
    identifier="m",
    provider_id="p",
    provider_resource_id="m",
    model_type="llm",
    source="run_config",
)


@pytest.fixture
def aws(moto_endpoint: str) -> Iterator[tuple[DynamoDBRecordStore, S3ObjectStore, str]]:
    table, bucket = records_table(moto_endpoint), f"objects-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=bucket)
    yield (
        DynamoDBRecordStore(table, "us-east-1", moto_endpoint),
        S3ObjectStore(bucket, "objects", "us-east-1", moto_endpoint),
        bucket,
    )


def _served(text: str) -> Served[ChatCompletion]:
    completion = ChatCompletion.model_validate(
        {
            "id": "chatcmpl-upstream",
            "created": 1,
            "model": "m",
            "choices": [{"message": {"role": "assistant", "content": text}}],
        }
    )
    return Served(completion, MODEL, "m", 1)


def _request(content: str, **extra: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": content}], **extra}
    )


def test_chat_store_on_dynamodb_and_s3(
    aws: tuple[DynamoDBRecordStore, S3ObjectStore, str], moto_endpoint: str
) -> None:
    records, objects, bucket = aws
    store = ChatStore(ItemStore(records, objects), InferenceStoreConfig(enabled=False))
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)

    async def run() -> None:
        with tenant_scope("alice"):
            assert (await store.chat(_request("hi"), _served("a"))).value.id == "chatcmpl-upstream"
            big = "word " * 70_000  # ~350 KB: over a DynamoDB item
            stored = await store.chat(_request(big, store=True), _served("big"))
            completion_id = stored.value.id
            spilled = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
            assert [o["Key"] for o in spilled] == [
                f"objects/tenants/alice/agents/chat_completions/{completion_id[9:]}.json"
            ]
            got = await store.get(completion_id)
            assert (
                got.input_messages[0]["content"] == big and got.choices[0].message.content == "big"
            )
            updated = await store.update(completion_id, {"k": "v"})
            assert updated.metadata == {"k": "v"}
            assert (await store.get(completion_id)).input_messages[0]["content"] == big

            small = [
                (
                    await store.chat(
                        _request(f"n{i}", store=True, metadata={"i": str(i)}), _served("s")
                    )
                ).value.id
                for i in range(5)
            ]
            listed = await store.list(after=None, limit=10, order="asc", model=None, metadata={})
            assert [c.id for c in listed.data] == [completion_id, *small]
            one = await store.list(
                after=None, limit=10, order="desc", model="m", metadata={"i": "0"}
            )
            assert [c.id for c in one.data] == small[:1] and not one.has_more
            # A filter that matches little reads a bounded number of completions.
            store.max_scanned = 3
            cut = await store.list(
                after=None, limit=10, order="asc", model=None, metadata={"i": "4"}
            )
            assert cut.data == [] and cut.has_more and cut.last_id == small[1]
            rest = await store.list(
                after=cut.last_id, limit=10, order="asc", model=None, metadata={"i": "4"}
            )
            assert [c.id for c in rest.data] == small[4:]
            store.max_scanned = 1000

        with tenant_scope("bob"):
            with pytest.raises(NotFoundError):
                await store.get(completion_id)
            with pytest.raises(NotFoundError):
                await store.delete(completion_id)
            empty = await store.list(after=None, limit=10, order="asc", model=None, metadata={})
            assert empty.data == []

        with tenant_scope("alice"):
            await store.delete(completion_id)
            assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
            with pytest.raises(NotFoundError):
                await store.update(completion_id, {"k": "back"})
            with pytest.raises(NotFoundError):
                await store.get(completion_id)
            # Records expire with inference_store.ttl_days (DynamoDB TTL).
            record = await records.get(KIND, small[0][9:])
            assert record is not None
            assert time.time() + 29 * 86400 < record["_expires_at"] <= time.time() + 30 * 86400 + 1

    asyncio.run(run())
