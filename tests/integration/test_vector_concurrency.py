"""Many writers, one store, on S3: 200 small files ingested by 4 parallel `llamda ingest`
processes into one LanceDB table on moto S3 (records in moto DynamoDB). Lance commits appends
with a conditional PUT (If-None-Match), which this moto honours (checked first), so no commit
is lost and none is doubled: exactly one chunk per file, no duplicate chunk ids."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from tests.fakes.bedrock import FakeBedrockServer

pytestmark = pytest.mark.slow
BUCKET = "llamda-concurrency"
FILES, WORKERS = 200, 4

CONFIG = """
version: 1
apis: [inspect, models, inference, files, vector_io]
providers:
  inference:
    - {provider_id: fake-bedrock, provider_type: bedrock,
       config: {region_name: us-east-1, endpoint_url: "${env.FAKE_BEDROCK_URL}"}}
  vector_io:
    - {provider_id: lancedb, provider_type: lancedb}
models:
  - {model_id: "amazon.titan-embed-text-v2:0", provider_id: fake-bedrock, model_type: embedding,
     metadata: {embedding_dimension: 1024}}
storage:
  records: {type: dynamodb, table_name: concurrency-records, endpoint_url: "${env.MOTO}"}
  objects: {type: s3, bucket: llamda-concurrency, prefix: objects, endpoint_url: "${env.MOTO}"}
  vectors:
    uri: s3://llamda-concurrency/lancedb
    storage_options: {endpoint: "${env.MOTO}", allow_http: "true", region: us-east-1}
"""


def test_moto_honours_conditional_put(moto_endpoint: str) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="llamda-if-none-match")
    s3.put_object(Bucket="llamda-if-none-match", Key="k", Body=b"1", IfNoneMatch="*")
    with pytest.raises(s3.exceptions.ClientError) as err:
        s3.put_object(Bucket="llamda-if-none-match", Key="k", Body=b"2", IfNoneMatch="*")
    assert err.value.response["Error"]["Code"] == "PreconditionFailed"


def test_parallel_ingest_into_one_store_on_s3(
    tmp_path: Path, moto_endpoint: str, fake_bedrock: FakeBedrockServer
) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1").create_table(
        TableName="concurrency-records",
        AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in ("pk", "sk")],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    config = tmp_path / "run.yaml"
    config.write_text(CONFIG)
    env = {
        **os.environ,
        "MOTO": moto_endpoint,
        "FAKE_BEDROCK_URL": fake_bedrock.endpoint,
        "LLAMDA_HOME": str(tmp_path),
    }
    os.environ.update({"MOTO": moto_endpoint, "FAKE_BEDROCK_URL": fake_bedrock.endpoint})

    from llamda.api.vector_stores import CreateVectorStoreRequest
    from llamda.config import load_config
    from llamda.stack import Stack

    stack = Stack(load_config(str(config)))
    store = asyncio.run(stack.vector_stores.create(CreateVectorStoreRequest(name="shared"))).id

    dirs = []
    for worker in range(WORKERS):
        folder = tmp_path / f"worker{worker}"
        folder.mkdir()
        for i in range(worker, FILES, WORKERS):
            (folder / f"doc{i:03d}.txt").write_text(f"Document {i} is about herd number {i}.")
        dirs.append(folder)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llamda.cli",
                "ingest",
                str(folder),
                "--vector-store",
                store,
                "--config",
                str(config),
                "--concurrency",
                "4",
                "--quiet",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for folder in dirs
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out + err[-3000:]
        assert f"{FILES // WORKERS} ok, 0 failed" in out

    async def check() -> tuple[list[dict], object]:
        rows = await stack.vector_stores.indexes.get("lancedb").all_rows(store, limit=10_000)
        info = await stack.vector_stores.get(store)
        await stack.close()
        return rows, info

    rows, info = asyncio.run(check())
    assert len(rows) == FILES
    assert len({r["chunk_id"] for r in rows}) == FILES
    assert sorted(r["text"] for r in rows) == sorted(
        f"Document {i} is about herd number {i}." for i in range(FILES)
    )
    assert info.file_counts.completed == FILES and info.file_counts.total == FILES
