"""The maintenance step in the Lambda handlers, called in-process as the Lambda runtime calls
them: the ingest function builds the ANN index after its batch (the S3 event crossing
``ann_index_min_rows``); the scheduled ``maintenance_handler`` does the upkeep of stores that
API requests wrote to. Records and LanceDB local, S3 and the idempotency table on moto."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from scripts.lambda_invoke import LambdaContext
from tests.configs import vector_config
from tests.e2e.harness import s3_notification, sqs_event
from tests.fakes.bedrock import FakeBedrockServer


def document() -> bytes:
    """Over 256 chunks of 100 tokens (the chunk size is set in the object's metadata)."""
    return " ".join(f"Note {i} is about zq{i}a and zq{i}b." for i in range(2600)).encode()


@pytest.fixture
def lambda_env(
    tmp_path: Path, moto_endpoint: str, fake_bedrock: FakeBedrockServer, monkeypatch
) -> Path:  # type: ignore[no-untyped-def]
    config = tmp_path / "run.yaml"
    config.write_text(
        vector_config(tmp_path, fake_bedrock.endpoint, vectors="ann_index_min_rows: 256")
    )
    table = f"idempotency-{uuid.uuid4().hex[:8]}"
    boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1").create_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    monkeypatch.setenv("LLAMDA_CONFIG", str(config))
    monkeypatch.setenv("LLAMDA_IDEMPOTENCY_TABLE", table)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    from llamda.config import cached_config

    if hasattr(cached_config, "cache_clear"):
        cached_config.cache_clear()
    return config


def indices(home: Path, store_id: str) -> list[str]:
    from llamda.providers.vector_io.lancedb import import_lancedb

    db = import_lancedb().connect(str(home / "lancedb" / "tenants" / "default"))
    return [index.name for index in db.open_table(store_id).list_indices()]


def create_store(config: Path) -> str:
    from llamda.api.vector_stores import CreateVectorStoreRequest
    from llamda.config import load_config
    from llamda.stack import Stack

    async def create() -> str:
        stack = Stack(load_config(config))
        try:
            return (await stack.vector_stores.create(CreateVectorStoreRequest(name="s3"))).id
        finally:
            await stack.close()

    return asyncio.run(create())


def test_the_ingest_function_builds_the_index_after_its_batch(
    lambda_env: Path, moto_endpoint: str
) -> None:
    from llamda.lambda_ingest import sqs_handler

    store_id = create_store(lambda_env)
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    bucket = f"ingest-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    key = f"ingest/default/{store_id}/notes.txt"
    put = s3.put_object(Bucket=bucket, Key=key, Body=document(), Metadata={"chunk-size": "100"})
    message = s3_notification(
        "ObjectCreated:Put",
        bucket,
        key,
        etag=put["ETag"].strip('"'),
        version_id=put["VersionId"],
        sequencer="0A",
    )
    handler = sqs_handler()
    result: Any = handler(
        sqs_event([json.dumps(message)]), LambdaContext("IngestFunction", 120_000)
    )
    assert result == {"batchItemFailures": []}
    assert "vector_idx" in indices(lambda_env.parent, store_id)


def test_the_scheduled_function_maintains_what_requests_wrote(lambda_env: Path) -> None:
    from llamda.api.vector_stores import InsertChunksRequest
    from llamda.config import load_config
    from llamda.lambda_ingest import maintenance_handler
    from llamda.stack import Stack

    store_id = create_store(lambda_env)

    async def insert() -> None:  # what POST /v1/vector-io/insert does in the vector function
        stack = Stack(load_config(lambda_env))
        chunks = [
            {"chunk_id": f"c{i}", "content": f"Row {i} about zq{i}a.", "metadata": {}}
            for i in range(300)
        ]
        await stack.vector_stores.insert_chunks(
            InsertChunksRequest(vector_store_id=store_id, chunks=chunks)
        )
        await stack.close()

    asyncio.run(insert())
    assert "vector_idx" not in indices(lambda_env.parent, store_id)
    handler = maintenance_handler()
    assert handler({}, LambdaContext("MaintenanceFunction", 120_000)) == {"stores": 1}
    assert "vector_idx" in indices(lambda_env.parent, store_id)
