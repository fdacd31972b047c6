"""The Responses API in the Lambda handler (Mangum, API Gateway REST events), with its state in
DynamoDB on moto: a function-tool round trip across two fresh processes (two cold starts, as
two Lambda invocations in different containers), and a ``stream: true`` request answered with
a valid buffered event stream."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import ROOT
from tests.e2e.harness import api_gateway_event, response_json
from tests.fakes.bedrock import FakeBedrockServer, Reply

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
"""
HANDLER = "from llamda.lambda_runtime import http_handler\nlambda_handler = http_handler(apis=['agents'])\n"
TOOL = {
    "type": "function",
    "name": "lookup",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
}


@pytest.fixture
def function(tmp_path: Path, moto_endpoint: str, fake_bedrock: FakeBedrockServer) -> Path:
    table = f"records-{uuid.uuid4().hex[:8]}"
    boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1").create_table(
        TableName=table,
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    (tmp_path / "run.yaml").write_text(
        CONFIG.format(
            bedrock=fake_bedrock.endpoint,
            model=MODEL,
            table=table,
            moto=moto_endpoint,
            home=tmp_path,
        )
    )
    (tmp_path / "app.py").write_text(HANDLER)
    return tmp_path


def invoke(
    function: Path, events: list[dict[str, Any]], timeout_ms: int = 29000
) -> list[dict[str, Any]]:
    """A fresh process (a cold container) serving ``events`` through the real handler."""
    out = function / f"result-{uuid.uuid4().hex[:6]}.json"
    request = {
        "paths": [str(function)],
        "handler": "app.lambda_handler",
        "events": events,
        "timeout_ms": timeout_ms,
    }
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": f"{ROOT / 'shared'}:{ROOT}",
        "LLAMDA_CONFIG": str(function / "run.yaml"),
        "AWS_LAMBDA_FUNCTION_NAME": "AgentsFunction",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "lambda_invoke.py"), str(out)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())["results"]


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
