"""Build the SAM artifacts once per session (x86_64, so they import on this machine)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from tests.e2e.harness import (
    BUILD_DIR,
    ROOT,
    Artifact,
    build_image_from_dockerfile,
    load_artifacts,
    load_image_artifacts,
    receive,
)

pytestmark = pytest.mark.e2e
STAMP = BUILD_DIR / ".source-hash"


def _source_hash(*extra: Path) -> str:
    digest = hashlib.sha256()
    files = [
        *extra,
        ROOT / "template.yaml",
        *sorted((ROOT / "shared").rglob("*")),
        *sorted((ROOT / "functions").rglob("*")),
    ]
    for path in files:
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="session")
def built() -> Path:
    """`scripts/build x86_64 --zip-only`, skipped when the sources have not changed since."""
    want = _source_hash()
    arch = (
        (BUILD_DIR / ".architecture").read_text().strip()
        if (BUILD_DIR / ".architecture").exists()
        else ""
    )
    if not (STAMP.exists() and STAMP.read_text() == want and arch == "x86_64"):
        subprocess.run(
            [str(ROOT / "scripts" / "build"), "x86_64", "--zip-only"], check=True, cwd=ROOT
        )
        STAMP.write_text(want)
    return BUILD_DIR


@pytest.fixture(scope="session")
def aws_resources(moto_endpoint: str, built: Path) -> dict[str, str]:
    """The stack's table and bucket, created in moto from the built template's own definitions."""
    template = yaml.safe_load((built / "template.yaml").read_text())["Resources"]
    table = template["RecordsTable"]["Properties"]
    ddb = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1")
    ddb.create_table(
        TableName="llamda-records",
        AttributeDefinitions=table["AttributeDefinitions"],
        KeySchema=table["KeySchema"],
        BillingMode=table["BillingMode"],
    )
    idem = template["IdempotencyTable"]["Properties"]
    ddb.create_table(
        TableName="llamda-idempotency",
        AttributeDefinitions=idem["AttributeDefinitions"],
        KeySchema=idem["KeySchema"],
        BillingMode=idem["BillingMode"],
    )
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="llamda-data")
    s3.create_bucket(Bucket="llamda-ingest")
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    queue = sqs.create_queue(QueueName="llamda-ingest-queue")["QueueUrl"]
    # The jobs queue as the template defines it: visibility timeout, redrive to its DLQ.
    jobs = template["JobsQueue"]["Properties"]
    dlq = sqs.create_queue(QueueName="llamda-jobs-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]
    redrive = {
        "deadLetterTargetArn": dlq_arn["QueueArn"],
        "maxReceiveCount": str(jobs["RedrivePolicy"]["maxReceiveCount"]),
    }
    jobs_queue = sqs.create_queue(
        QueueName="llamda-jobs",
        Attributes={
            "VisibilityTimeout": str(jobs["VisibilityTimeout"]),
            "RedrivePolicy": json.dumps(redrive),
        },
    )["QueueUrl"]
    return {
        "RecordsTable": "llamda-records",
        "DataBucket": "llamda-data",
        "IngestBucket": "llamda-ingest",
        "IdempotencyTable": "llamda-idempotency",
        "IngestQueue": queue,
        "JobsQueue": jobs_queue,
        "JobsDeadLetterQueue": dlq,
    }


@pytest.fixture(scope="session")
def image_dir() -> Path:
    """The LanceDB image's task root, built from functions/Dockerfile (no Docker engine here);
    rebuilt only when the Dockerfile, its lock or the sources change."""
    target = ROOT / ".aws-sam" / "image-x86_64"
    stamp = target / ".source-hash"
    want = _source_hash(ROOT / "functions" / "Dockerfile", ROOT / "requirements" / "image.lock")
    if not (stamp.exists() and stamp.read_text() == want):
        build_image_from_dockerfile(ROOT / "functions" / "Dockerfile", target)
        stamp.write_text(want)
    return target


@pytest.fixture(scope="session")
def artifacts(built: Path, aws_resources: dict[str, str]) -> dict[str, Artifact]:
    return load_artifacts(built, aws_resources)


@pytest.fixture(scope="session")
def image_artifacts(image_dir: Path, aws_resources: dict[str, str]) -> dict[str, Artifact]:
    return load_image_artifacts(image_dir, aws_resources)


@pytest.fixture(scope="session")
def aws_env(moto_endpoint: str) -> Iterator[dict[str, str]]:
    yield {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": moto_endpoint,
    }


@pytest.fixture
def sqs(moto_endpoint: str, aws_resources: dict[str, str]) -> Any:
    client = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    # Each test starts on an empty queue (PurgeQueue is allowed once a minute: drain it).
    while messages := receive(client, aws_resources["JobsQueue"]):
        for message in messages:
            client.delete_message(
                QueueUrl=aws_resources["JobsQueue"], ReceiptHandle=message["ReceiptHandle"]
            )
    return client
