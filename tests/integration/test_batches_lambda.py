"""Batches in AWS shape, on moto (DynamoDB records, S3 objects, SQS JobsQueue): the Batches
function's handler creates and reads batches (API Gateway events), the jobs function's handler
(lambda_jobs.sqs_handler) runs them from the messages moto's SQS delivers, each invocation a
fresh process. Killed mid-job, the redelivered message resumes without re-running finished
lines; progress is visible between invocations; a cancel stops new work."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from llamda.config import load_config
from llamda.context import tenant_scope
from llamda.stack import Stack
from llamda.storage.records import save
from tests.conftest import records_table
from tests.e2e.harness import api_gateway_event, response_json, sqs_event_from_messages
from tests.fakes.openai_upstream import OpenAIUpstream
from tests.integration.lambda_process import invoke_handler, lambda_env, start_handler

CONFIG = """
version: 1
profile: aws
apis: [files, batches]
providers:
  inference:
    - {{provider_id: up, provider_type: vllm, config: {{url: "{upstream}", api_key: up-key}}}}
models:
  - {{model_id: chat, provider_id: up, provider_model_id: up-chat}}
  - {{model_id: slow, provider_id: up, provider_model_id: up-slow}}
storage:
  records: {{type: dynamodb, table_name: "{table}", region_name: us-east-1,
            endpoint_url: "{moto}"}}
  objects: {{type: s3, bucket: "{bucket}", prefix: objects, region_name: us-east-1,
            endpoint_url: "{moto}"}}
  vectors: {{uri: "{home}/lancedb"}}
server: {{auth: authorizer}}
routing: {{max_retries: 0}}
jobs: {{queue_url: "{queue}", lambda_margin_seconds: 1, chunk_rows: 2, min_chunk_seconds: 0}}
"""
BATCHES = "from llamda.lambda_runtime import http_handler\nlambda_handler = http_handler(apis=['batches'])\n"
JOBS = "from llamda.lambda_jobs import sqs_handler\nlambda_handler = sqs_handler()\n"


class Function:
    """The deployed pieces: config, queue, and the two handlers run as Lambda runs them."""

    def __init__(self, home: Path, moto: str, queue: str, arn: str):
        self.home, self.moto, self.queue, self.arn = home, moto, queue, arn
        self.sqs = boto3.client("sqs", endpoint_url=moto, region_name="us-east-1")

    def start(
        self, events: list[dict[str, Any]], handler: str, timeout_ms: int = 29000
    ) -> tuple[subprocess.Popen[bytes], Path]:
        """A fresh process (a cold container) serving ``events`` through the real handler."""
        env = lambda_env(self.home / "run.yaml", self.moto, "fn")
        return start_handler(self.home, [str(self.home)], handler, events, env, timeout_ms)

    def invoke(
        self, events: list[dict[str, Any]], handler: str = "batches.lambda_handler", **kw: Any
    ) -> list[dict[str, Any]]:
        env = lambda_env(self.home / "run.yaml", self.moto, "fn")
        return invoke_handler(self.home, [str(self.home)], handler, events, env, **kw)

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        [result] = self.invoke([api_gateway_event(method, path, body=body, tenant="acme")])
        assert result["statusCode"] == 200, result
        return response_json(result)

    def receive(self) -> list[dict[str, Any]]:
        """Messages as Lambda's SQS event source receives them (every attribute)."""
        reply = self.sqs.receive_message(
            QueueUrl=self.queue,
            MaxNumberOfMessages=1,
            WaitTimeSeconds=1,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return reply.get("Messages", [])

    def event(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        return sqs_event_from_messages(messages, self.arn)

    def done(self, messages: list[dict[str, Any]]) -> None:
        """What the event source does after a successful invocation: delete the messages."""
        for message in messages:
            self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])

    def stack_call(self, work: Any) -> Any:
        """Run ``work(stack)`` as tenant acme on a stack of this config (test set-up and
        introspection: the uploaded File, a record's fields)."""

        async def main() -> Any:
            stack = Stack(load_config(self.home / "run.yaml"))
            try:
                with tenant_scope("acme"):
                    return await work(stack)
            finally:
                await stack.close()

        return asyncio.run(main())


@pytest.fixture(scope="module")
def upstream() -> Iterator[OpenAIUpstream]:
    with OpenAIUpstream() as fake:
        fake.gate_models.add("up-slow")
        yield fake


@pytest.fixture(scope="module")
def function(
    tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str, upstream: OpenAIUpstream
) -> Iterator[Function]:
    home = tmp_path_factory.mktemp("batches-lambda")
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    queue = sqs.create_queue(QueueName=f"jobs-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    bucket = f"data-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    (home / "run.yaml").write_text(
        CONFIG.format(
            upstream=upstream.url,
            table=records_table(moto_endpoint),
            moto=moto_endpoint,
            bucket=bucket,
            home=home,
            queue=queue,
        )
    )
    (home / "batches.py").write_text(BATCHES)
    (home / "jobs.py").write_text(JOBS)
    saved = os.environ.get("AWS_ENDPOINT_URL")
    os.environ["AWS_ENDPOINT_URL"] = moto_endpoint
    yield Function(home, moto_endpoint, queue, arn)
    if saved is None:
        os.environ.pop("AWS_ENDPOINT_URL", None)
    else:
        os.environ["AWS_ENDPOINT_URL"] = saved


def create_batch(function: Function, prefix: str) -> dict[str, Any]:
    """Six chat lines, chunks of two; the middle chunk's model is the gated (slow) one."""
    lines = [
        json.dumps(
            {
                "custom_id": f"{prefix}{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": "slow" if i in (2, 3) else "chat",
                    "messages": [{"role": "user", "content": f"{prefix}{i}"}],
                },
            }
        )
        for i in range(6)
    ]

    async def upload(stack: Stack) -> str:
        file = await stack.files.create("\n".join(lines).encode(), "in.jsonl", "batch", None)
        return file.id

    file_id = function.stack_call(upload)
    batch = function.api(
        "POST",
        "/v1/batches",
        {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"},
    )
    assert batch["status"] == "in_progress"
    return batch


def calls(upstream: OpenAIUpstream, prefix: str) -> dict[str, int]:
    """How often the upstream was asked for each line of a batch."""
    counted: dict[str, int] = {}
    for request in list(upstream.requests):
        messages = (request["body"] or {}).get("messages") or []
        said = messages[0]["content"] if messages else ""
        if said.startswith(prefix):
            counted[said] = counted.get(said, 0) + 1
    return counted


def wait_for(condition: Any, what: str) -> None:
    """Poll ``condition`` (an ordering point, not a timing assertion: the bound is generous)."""
    for _ in range(3000):
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"never saw {what}")


def output_lines(function: Function, file_id: str) -> list[dict[str, Any]]:
    async def read(stack: Stack) -> bytes:
        return (await stack.files.content(file_id))[0]

    return [json.loads(x) for x in function.stack_call(read).splitlines() if x]


def test_a_killed_jobs_invocation_resumes_without_rerunning_finished_lines(
    function: Function, upstream: OpenAIUpstream
) -> None:
    upstream.gate.clear()
    batch = create_batch(function, "k")
    [message] = function.receive()
    # The first invocation finishes chunk 0, then waits on the slow model in chunk 1: killed.
    proc, _ = function.start([function.event([message])], "jobs.lambda_handler", timeout_ms=14000)
    both = {"k0": 1, "k1": 1, "k2": 1, "k3": 1}
    wait_for(lambda: calls(upstream, "k") == both, "both lines of chunk 1 at the upstream")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    # Progress as a client sees it between invocations: chunk 0 done.
    seen = function.api("GET", f"/v1/batches/{batch['id']}")
    assert seen["status"] == "in_progress"
    assert seen["request_counts"] == {"total": 6, "completed": 2, "failed": 0}

    # The dead invocation's time runs out (its lease); then SQS redelivers the same message.
    async def lease(stack: Stack) -> float:
        return float((await stack.records.get("batches", batch["id"]))["running_until"])

    until = function.stack_call(lease)
    assert until > time.time()
    time.sleep(max(0.0, until - time.time()) + 0.1)
    function.sqs.change_message_visibility(
        QueueUrl=function.queue, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )
    [again] = function.receive()
    assert again["MessageId"] == message["MessageId"]
    assert again["Attributes"]["ApproximateReceiveCount"] == "2"
    upstream.gate.set()
    [result] = function.invoke([function.event([again])], handler="jobs.lambda_handler")
    assert result == {"batchItemFailures": []}
    function.done([again])
    done = function.api("GET", f"/v1/batches/{batch['id']}")
    assert done["status"] == "completed"
    assert done["request_counts"] == {"total": 6, "completed": 6, "failed": 0}
    # Chunk 0 and chunk 2 ran once; only the chunk that was killed ran again.
    assert calls(upstream, "k") == {"k0": 1, "k1": 1, "k2": 2, "k3": 2, "k4": 1, "k5": 1}
    out = output_lines(function, done["output_file_id"])
    assert [o["custom_id"] for o in out] == [f"k{i}" for i in range(6)]
    assert function.receive() == []  # nothing left queued


def test_cancel_stops_new_work_in_the_jobs_function(
    function: Function, upstream: OpenAIUpstream
) -> None:
    upstream.gate.clear()
    batch = create_batch(function, "c")
    [message] = function.receive()
    proc, out = function.start([function.event([message])], "jobs.lambda_handler")
    try:
        both = {"c0": 1, "c1": 1, "c2": 1, "c3": 1}
        wait_for(lambda: calls(upstream, "c") == both, "both lines of chunk 1 at the upstream")
        cancelling = function.api("POST", f"/v1/batches/{batch['id']}/cancel")
        assert cancelling["status"] == "cancelling" and cancelling["cancelling_at"]
    finally:
        upstream.gate.set()
    assert proc.wait(timeout=60) == 0
    assert json.loads(out.read_text())["results"] == [{"batchItemFailures": []}]
    function.done([message])
    done = function.api("GET", f"/v1/batches/{batch['id']}")
    assert done["status"] == "cancelled" and done["cancelled_at"]
    # The chunk that was running when the cancel came is kept; the next one never started.
    assert done["request_counts"] == {"total": 6, "completed": 4, "failed": 0}
    assert calls(upstream, "c") == {"c0": 1, "c1": 1, "c2": 1, "c3": 1}
    out_lines = output_lines(function, done["output_file_id"])
    assert [o["custom_id"] for o in out_lines] == ["c0", "c1", "c2", "c3"]
    assert function.receive() == []


def test_a_batch_past_its_window_expires_and_reports_its_unstarted_requests(
    function: Function, upstream: OpenAIUpstream
) -> None:
    batch = create_batch(function, "x")
    [message] = function.receive()

    async def window_over(stack: Stack) -> None:
        # Its 24 hours are up before the queue delivered it (a backlog, a long outage).
        record = await stack.records.get("batches", batch["id"])
        record["deadline_at"] = int(time.time()) - 1
        assert await save(stack.records, "batches", batch["id"], record)

    function.stack_call(window_over)
    [result] = function.invoke([function.event([message])], handler="jobs.lambda_handler")
    assert result == {"batchItemFailures": []}
    function.done([message])
    done = function.api("GET", f"/v1/batches/{batch['id']}")
    assert done["status"] == "expired" and done["expired_at"]
    assert done["request_counts"] == {"total": 6, "completed": 0, "failed": 6}
    assert done["output_file_id"] is None
    errors = output_lines(function, done["error_file_id"])
    assert [(e["custom_id"], e["error"]["code"]) for e in errors] == [
        (f"x{i}", "batch_expired") for i in range(6)
    ]
    assert calls(upstream, "x") == {}
