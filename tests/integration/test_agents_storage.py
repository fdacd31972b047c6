"""Conversations and Prompts on DynamoDB and S3 (a moto server, real aioboto3 clients), as in
AWS: item order and paging both ways, a spilled item, context, expiry, versions, deletes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import boto3
import pytest

from llamda.api.responses import MessageItem
from llamda.config import AgentsConfig
from llamda.context import tenant_scope
from llamda.errors import BadRequestError, ConflictError, NotFoundError
from llamda.services.agents.conversations import ConversationsService, items_kind
from llamda.services.agents.items import INLINE_BYTES, ItemStore
from llamda.services.agents.prompts import PromptsService
from llamda.storage.objects_s3 import S3ObjectStore
from llamda.storage.records_dynamodb import DynamoDBRecordStore
from tests.conftest import records_table


@pytest.fixture
def aws(moto_endpoint: str) -> Iterator[tuple[DynamoDBRecordStore, S3ObjectStore]]:
    table, bucket = records_table(moto_endpoint), f"objects-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=bucket)
    yield (
        DynamoDBRecordStore(table, "us-east-1", moto_endpoint),
        S3ObjectStore(bucket, "prefix", "us-east-1", moto_endpoint),
    )


def user(text: str) -> MessageItem:
    return MessageItem(role="user", content=text)


def test_conversations_on_dynamodb_and_s3(aws: tuple[DynamoDBRecordStore, S3ObjectStore]) -> None:
    records, objects = aws
    service = ConversationsService(records, ItemStore(records, objects), AgentsConfig())

    async def run() -> None:
        with tenant_scope("alice"):
            big = "z" * (INLINE_BYTES + 1)
            conv = await service.create([user(f"m{i}") for i in range(5)] + [user(big)], {"a": "b"})
            newest = await service.list_items(
                conv.id, after=None, limit=4, order="desc", include=[]
            )
            assert newest.has_more and newest.data[0]["content"][0]["text"] == big
            rest = await service.list_items(
                conv.id, after=newest.last_id, limit=4, order="desc", include=[]
            )
            assert [i["content"][0]["text"] for i in rest.data] == ["m1", "m0"]
            assert not rest.has_more
            context = await service.context(conv.id, limit=6)
            assert [i["content"][0]["text"] for i in context[:5]] == [f"m{i}" for i in range(5)]
            with pytest.raises(BadRequestError):
                await service.context(conv.id, limit=5)
            assert (await service.update(conv.id, {"c": "d"})).metadata == {"c": "d"}
            await service.delete(conv.id)
            assert await records.list(items_kind(conv.id)) == []
            with pytest.raises(NotFoundError):
                await service.get(conv.id)
        with tenant_scope("bob"), pytest.raises(NotFoundError):
            await service.get(conv.id)

    asyncio.run(run())


def test_conversations_expire_on_dynamodb(aws: tuple[DynamoDBRecordStore, S3ObjectStore]) -> None:
    records, objects = aws
    short = AgentsConfig(store_days=0.00001)  # under a second, rounded up to the next one
    service = ConversationsService(records, ItemStore(records, objects), short)

    async def run() -> None:
        with tenant_scope("alice"):
            conv = await service.create([user("old")], None)
            deadline = time.time() + 3
            while time.time() < deadline:
                try:
                    await service.get(conv.id)
                except NotFoundError:
                    break
                await asyncio.sleep(0.1)
            with pytest.raises(NotFoundError):
                await service.context(conv.id, limit=10)
            assert await records.list(items_kind(conv.id)) == []  # the items expired too

    asyncio.run(run())


def test_prompts_on_dynamodb(aws: tuple[DynamoDBRecordStore, S3ObjectStore]) -> None:
    records, _ = aws
    prompts = PromptsService(records)

    async def run() -> None:
        with tenant_scope("alice"):
            made = await prompts.create("Hi {{name}}", ["name"])
            await prompts.update(made.prompt_id, "Yo {{name}}", 1, ["name"], set_as_default=True)
            with pytest.raises(ConflictError):
                await prompts.update(made.prompt_id, "late", 1, [], set_as_default=True)
            assert [v.version for v in await prompts.versions(made.prompt_id)] == [1, 2]
            assert await prompts.render(made.prompt_id, None, {"name": "Ann"}) == "Yo Ann"
            await prompts.set_default_version(made.prompt_id, 1)
            assert await prompts.render(made.prompt_id, None, {"name": "Ann"}) == "Hi Ann"
            listed = await prompts.list(after=None, limit=10)
            assert [p.prompt_id for p in listed.data] == [made.prompt_id]
            await prompts.delete(made.prompt_id)
            with pytest.raises(NotFoundError):
                await prompts.render(made.prompt_id, 1, {"name": "Ann"})

    asyncio.run(run())
