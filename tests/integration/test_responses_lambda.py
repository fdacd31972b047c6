"""The Responses API in the Lambda handler (Mangum, API Gateway REST events), with its state in
DynamoDB on moto: a function-tool round trip across two fresh processes (two cold starts, as
two Lambda invocations in different containers), and a ``stream: true`` request answered with
a valid buffered event stream."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import records_table
from tests.e2e.harness import api_gateway_event, response_json, sqs_event
from tests.fakes.bedrock import FakeBedrockServer, Reply
from tests.integration.lambda_process import invoke_handler, lambda_env

MODEL = "meta.llama3-2-11b-instruct-v1:0"
CONFIG = """
version: 1
profile: aws
apis: [agents]
providers:
  inference:
    - {{provider_id: bedrock, provider_type: bedrock,
       config: {{region_name: us-east-1, endpoint_url: "{bedrock}"}}}}
  vector_io:
    - {{provider_id: lancedb, provider_type: lancedb}}
models:
  - {{model_id: agent, provider_id: bedrock, provider_model_id: "{model}"}}
storage:
  records: {{type: dynamodb, table_name: "{table}", region_name: us-east-1,
            endpoint_url: "{moto}"}}
  objects: {{type: local, root: "{home}/objects"}}
  vectors: {{uri: "{home}/lancedb"}}
server: {{auth: authorizer}}
jobs: {{queue_url: "{queue}", lambda_margin_seconds: 1}}
"""
HANDLER = "from llamda.lambda_runtime import http_handler\nlambda_handler = http_handler(apis=['agents'])\n"
JOBS = "from llamda.lambda_jobs import sqs_handler\nlambda_handler = sqs_handler()\n"
TOOL = {
    "type": "function",
    "name": "lookup",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
}


@pytest.fixture
def function(tmp_path: Path, moto_endpoint: str, fake_bedrock: FakeBedrockServer) -> Path:
    table = records_table(moto_endpoint)
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    queue = sqs.create_queue(QueueName=f"jobs-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    (tmp_path / "run.yaml").write_text(
        CONFIG.format(
            bedrock=fake_bedrock.endpoint,
            model=MODEL,
            table=table,
            moto=moto_endpoint,
            home=tmp_path,
            queue=queue,
        )
    )
    (tmp_path / "app.py").write_text(HANDLER)
    (tmp_path / "jobs.py").write_text(JOBS)
    (tmp_path / "queue").write_text(queue)
    (tmp_path / "moto").write_text(moto_endpoint)
    return tmp_path


def invoke(
    function: Path,
    events: list[dict[str, Any]],
    timeout_ms: int = 29000,
    handler: str = "app.lambda_handler",
) -> list[dict[str, Any]]:
    """A fresh process (a cold container) serving ``events`` through the real handler."""
    env = lambda_env(function / "run.yaml", (function / "moto").read_text(), "AgentsFunction")
    return invoke_handler(function, [str(function)], handler, events, env, timeout_ms)


def create(body: dict[str, Any], tenant: str = "acme") -> dict[str, Any]:
    return api_gateway_event("POST", "/v1/responses", body=body, tenant=tenant)


def test_a_round_trip_across_two_cold_starts(
    function: Path, fake_bedrock: FakeBedrockServer
) -> None:
    fake_bedrock.fake.script(MODEL, Reply(tool={"name": "lookup", "input": {"q": "llamas"}}))
    [first] = invoke(
        function, [create({"model": "agent", "input": "Find llamas", "tools": [TOOL]})]
    )
    assert first["statusCode"] == 200, first
    response = response_json(first)
    call = response["output"][0]
    assert call["type"] == "function_call" and json.loads(call["arguments"]) == {"q": "llamas"}
    answer = {
        "model": "agent",
        "previous_response_id": response["id"],
        "input": [
            {"type": "function_call_output", "call_id": call["call_id"], "output": "3 found"}
        ],
        "tools": [TOOL],
    }
    second, other_tenant, fetched = invoke(
        function,
        [
            create(answer),
            create(answer, tenant="globex"),
            api_gateway_event("GET", f"/v1/responses/{response['id']}", tenant="acme"),
        ],
    )
    assert response_json(second)["output"][0]["content"][0]["text"] == "You said: 3 found"
    # Another tenant cannot continue (or see) acme's response.
    assert other_tenant["statusCode"] == 404
    assert response_json(fetched)["id"] == response["id"]


def test_a_stream_is_a_valid_buffered_event_stream(function: Path) -> None:
    [result] = invoke(function, [create({"model": "agent", "input": "a b c", "stream": True})])
    assert result["statusCode"] == 200
    assert result["headers"]["content-type"].startswith("text/event-stream")
    body = result["body"]
    events = [
        json.loads(line[len("data: ") :]) for line in body.splitlines() if line.startswith("data: ")
    ]
    kinds = [event["type"] for event in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == "You said: a b c" == events[-1]["response"]["output"][0]["content"][0]["text"]


def test_a_hanging_model_ends_the_response_incomplete_before_the_function_times_out(
    function: Path, fake_bedrock: FakeBedrockServer
) -> None:
    fake_bedrock.fake.script(MODEL, Reply(text="too late", delay=8))
    [result] = invoke(function, [create({"model": "agent", "input": "hello"})], timeout_ms=4000)
    # Answered inside the 4 s invocation (the invoker reports a Lambda timeout otherwise).
    assert result.get("statusCode") == 200, result
    response = response_json(result)
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "deadline"}


def queued_jobs(function: Path) -> list[str]:
    """The job messages on the queue, as the SQS event source would deliver them."""
    sqs = boto3.client("sqs", endpoint_url=(function / "moto").read_text(), region_name="us-east-1")
    queue = (function / "queue").read_text()
    bodies: list[str] = []
    while True:
        reply = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = reply.get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])


def test_a_background_response_runs_in_the_jobs_function_and_continues_when_out_of_time(
    function: Path, fake_bedrock: FakeBedrockServer
) -> None:
    fake_bedrock.fake.reset()
    [created] = invoke(
        function, [create({"model": "agent", "input": "slowly please", "background": True})]
    )
    response = response_json(created)
    assert created["statusCode"] == 200 and response["status"] == "queued"
    bodies = queued_jobs(function)
    assert [json.loads(b)["id"] for b in bodies] == [response["id"]]
    assert json.loads(bodies[0])["tenant"] == "acme"
    # The first invocation has 6 s (5 s less the margin): the model takes 10 s, so the job
    # checkpoints and queues its continuation instead of failing.
    fake_bedrock.fake.script(MODEL, Reply(text="late", delay=10))
    [result] = invoke(function, [sqs_event(bodies)], timeout_ms=6000, handler="jobs.lambda_handler")
    assert result == {"batchItemFailures": []}
    assert len(fake_bedrock.fake.calls_for("converse-stream", MODEL)) == 1  # cut short
    [polled] = invoke(
        function, [api_gateway_event("GET", f"/v1/responses/{response['id']}", tenant="acme")]
    )
    assert response_json(polled)["status"] == "in_progress"
    continuation = queued_jobs(function)
    assert [json.loads(b)["attempt"] for b in continuation] == [1]
    [result] = invoke(function, [sqs_event(continuation)], handler="jobs.lambda_handler")
    assert result == {"batchItemFailures": []}
    [polled, other] = invoke(
        function,
        [
            api_gateway_event("GET", f"/v1/responses/{response['id']}", tenant="acme"),
            api_gateway_event("GET", f"/v1/responses/{response['id']}", tenant="globex"),
        ],
    )
    done = response_json(polled)
    assert done["status"] == "completed" and done["background"] is True
    assert done["output"][0]["content"][0]["text"] == "You said: slowly please"
    assert other["statusCode"] == 404
    # A redelivered message does nothing to a finished response.
    [again] = invoke(function, [sqs_event(bodies)], handler="jobs.lambda_handler")
    assert again == {"batchItemFailures": []} and queued_jobs(function) == []
