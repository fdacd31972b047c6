"""The job runner's failure rules for background responses, in-process over real storage and a
real SQS queue (moto): a job that crashes is retried while the queue will deliver it again,
and its last delivery records the failure, so no response stays ``in_progress`` forever."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import boto3
import pytest

from llamda.api.responses import CreateResponseRequest
from llamda.config import load_config
from llamda.context import tenant_scope
from llamda.services.agents.stored import items_kind
from llamda.stack import Stack
from tests.fakes.bedrock import FakeBedrockServer

CONFIG = """
version: 1
apis: [models, inference, agents]
providers:
  inference:
    - {{provider_id: fake-bedrock, provider_type: remote::bedrock,
       config: {{region_name: us-east-1, endpoint_url: "{bedrock}"}}}}
models:
  - {{model_id: agent, provider_id: fake-bedrock, provider_model_id: meta.llama3-8b}}
storage:
  records: {{type: sqlite, path: "{home}/records.sqlite3"}}
  objects: {{type: local, root: "{home}/objects"}}
  vectors: {{uri: "{home}/lancedb"}}
jobs: {{queue_url: "{queue}"}}
"""


def test_a_crashing_job_is_retried_then_recorded_as_failed(
    tmp_path: Path, moto_endpoint: str, fake_bedrock: FakeBedrockServer, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    queue = sqs.create_queue(QueueName=f"jobs-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    (tmp_path / "run.yaml").write_text(
        CONFIG.format(bedrock=fake_bedrock.endpoint, home=tmp_path, queue=queue)
    )

    async def scenario() -> None:
        stack = Stack(load_config(tmp_path / "run.yaml"))
        try:
            with tenant_scope("acme"):
                request = CreateResponseRequest.model_validate(
                    {"model": "agent", "input": "hi", "background": True}
                )
                queued = await stack.responses.create(request)
                # The stored request is damaged: running it raises (not an API error).
                await stack.agent_items.put(
                    items_kind(queued["id"]), "request", {"input": 42}, expires_at=None
                )
            [message] = sqs.receive_message(QueueUrl=queue)["Messages"]
            job = json.loads(message["Body"])
            with pytest.raises(Exception):  # noqa: B017 — redelivered: the queue retries it
                await stack.jobs.run(job, 10, last_attempt=False)
            with tenant_scope("acme"):
                assert (await stack.responses.get(queued["id"]))["status"] == "queued"
            await stack.jobs.run(job, 10, last_attempt=True)  # its last delivery
            with tenant_scope("acme"):
                failed = await stack.responses.get(queued["id"])
            assert failed["status"] == "failed"
            assert failed["error"] == {"code": "server_error", "message": "the response failed"}
        finally:
            await stack.close()

    asyncio.run(scenario())
