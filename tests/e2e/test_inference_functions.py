"""The built inference functions: the buffered one invoked with API Gateway events, the
streaming one started the way the Lambda Web Adapter starts it (run.sh → uvicorn) and read
with the openai SDK. Bedrock is the wire-level fake, reached by the artifact's own aioboto3."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import openai
import pytest

from tests.conftest import free_port, wait_until_serving
from tests.e2e.harness import (
    Artifact,
    api_gateway_event,
    base_python,
    headers_of,
    lambda_env,
    response_json,
)
from tests.fakes.bedrock import FakeBedrockServer, Reply

pytestmark = pytest.mark.e2e
MODEL = "us.meta.llama3-3-70b-instruct-v1:0"  # the template default, derived for us-east-1


@pytest.fixture
def env(aws_env: dict[str, str], fake_bedrock: FakeBedrockServer) -> dict[str, str]:
    fake_bedrock.fake.reset()
    return {**aws_env, "BEDROCK_ENDPOINT_URL": fake_bedrock.endpoint}


def test_buffered_function_chat_stream_embeddings(
    artifacts: dict[str, Artifact], env: dict[str, str], fake_bedrock: FakeBedrockServer
) -> None:
    fn = artifacts["InferenceFunction"]
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hello lambda"}]}
    events = [
        api_gateway_event("POST", "/v1/chat/completions", body=chat),
        api_gateway_event(
            "POST",
            "/v1/chat/completions",
            body={**chat, "stream": True, "stream_options": {"include_usage": True}},
        ),
        api_gateway_event(
            "POST",
            "/v1/embeddings",
            body={"model": "amazon.titan-embed-text-v2:0", "input": ["a", "b c"]},
        ),
        api_gateway_event("POST", "/v1/chat/completions", body={**chat, "model": "no-such-model"}),
        api_gateway_event("POST", "/v1/completions", body={"model": MODEL, "prompt": "x"}),
    ]
    report = fn.invoke(events, lambda_env(fn, env))
    plain, streamed, embedded, unknown, completion = report["results"]
    emf = [json.loads(line) for line in report["stdout"].splitlines() if '"_aws"' in line]
    tokens = [m for m in emf if "tokens_out" in m and m.get("provider") == "bedrock"]
    assert tokens and tokens[0]["model"] == MODEL
    assert tokens[0]["tokens_out"] in (4, [4.0])  # EMF values may be lists
    assert plain["statusCode"] == 200, plain["body"]
    assert response_json(plain)["choices"][0]["message"]["content"] == "You said: hello lambda"
    assert headers_of(plain)["x-llamda-provider"] == "bedrock"
    assert streamed["statusCode"] == 200
    assert headers_of(streamed)["content-type"].startswith("text/event-stream")
    lines = [line for line in streamed["body"].split("\n\n") if line]
    assert lines[-1] == "data: [DONE]"
    assert '"usage"' in lines[-2]
    assert len(response_json(embedded)["data"]) == 2
    assert unknown["statusCode"] == 404
    assert completion["statusCode"] == 400
    assert len(fake_bedrock.fake.calls_for("converse", MODEL)) == 1
    assert len(fake_bedrock.fake.calls_for("converse-stream", MODEL)) == 1


@pytest.fixture
def stream_function(
    artifacts: dict[str, Artifact], env: dict[str, str], tmp_path: Path
) -> Iterator[str]:
    """run.sh from the built artifact, as the Lambda Web Adapter runs it (/opt/python = the
    built layer; python3 = the Lambda runtime's 3.12)."""
    fn = artifacts["InferenceStreamFunction"]
    code, *layers = fn.paths
    # The Lambda Web Adapter execs the handler script: it must ship executable.
    assert os.access(code / "run.sh", os.X_OK)
    port = free_port()
    proc_env = {
        **lambda_env(fn, env),
        "PATH": f"{os.path.dirname(base_python())}:/usr/bin:/bin",
        "PYTHONPATH": ":".join(str(p) for p in layers),
        "LAMBDA_TASK_ROOT": str(code),
        "PORT": str(port),
        "PYTHONNOUSERSITE": "1",
    }
    log = tmp_path / "stream.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["/bin/sh", str(code / "run.sh")],
            env=proc_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    url = f"http://127.0.0.1:{port}"
    wait_until_serving(url, proc, log, ok=None)  # any answer: the app has no route at /
    yield url
    proc.terminate()
    proc.wait(10)


def test_stream_function_streams_token_by_token(
    stream_function: str, fake_bedrock: FakeBedrockServer
) -> None:
    fake_bedrock.fake.token_delay = 0.05
    try:
        # What the Lambda Web Adapter adds to each request: API Gateway's request context, with
        # what our authorizer found for the caller's key.
        context = {"requestId": "r-1", "authorizer": {"tenant": "acme", "key_id": "key_e2e"}}
        client = openai.OpenAI(
            base_url=f"{stream_function}/v1",
            api_key="llamda-not-checked-here",
            max_retries=0,
            default_headers={"x-amzn-request-context": json.dumps(context)},
        )
        anonymous = openai.OpenAI(base_url=f"{stream_function}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            anonymous.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}]
            )
        arrivals: list[tuple[float, str]] = []
        stream = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "one two three four five six"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals.append((time.monotonic(), chunk.choices[0].delta.content))
        text = "".join(piece for _, piece in arrivals)
        assert text == "You said: one two three four five six"
        # Tokens arrived spread over time (not as one buffered body).
        assert arrivals[-1][0] - arrivals[0][0] > 0.2
    finally:
        fake_bedrock.fake.token_delay = 0.0


def test_safety_function_moderates_and_registers(
    artifacts: dict[str, Artifact], env: dict[str, str]
) -> None:
    fn = artifacts["SafetyFunction"]
    events = [
        api_gateway_event("GET", "/v1/shields"),
        api_gateway_event(
            "POST", "/v1/moderations", body={"model": "pii", "input": ["mail a@b.co", "hello"]}
        ),
        api_gateway_event(
            "POST",
            "/v1/shields",
            body={
                "shield_id": "codenames",
                "provider_id": "rules",
                "params": {"keywords": ["falcon"], "pii": []},
            },
        ),
        api_gateway_event(
            "POST",
            "/v1/safety/run-shield",
            body={
                "shield_id": "codenames",
                "messages": [{"role": "user", "content": "falcon status"}],
            },
        ),
        api_gateway_event(
            "POST",
            "/v1/safety/run-shield",
            body={"shield_id": "nope", "messages": [{"role": "user", "content": "x"}]},
        ),
    ]
    listed, moderated, registered, ran, missing = fn.invoke(events, lambda_env(fn, env))["results"]
    assert {s["identifier"] for s in response_json(listed)["data"]} >= {"pii", "pii-redact"}
    assert [r["flagged"] for r in response_json(moderated)["results"]] == [True, False]
    assert registered["statusCode"] == 200
    assert response_json(ran)["violation"]["violation_level"] == "error"
    assert missing["statusCode"] == 404


def test_files_function_uploads_to_s3(
    artifacts: dict[str, Artifact], env: dict[str, str], moto_endpoint: str
) -> None:
    fn = artifacts["FilesFunction"]
    upload = httpx.Request(
        "POST",
        "http://x/v1/files",
        files={"file": ("report.pdf", b"%PDF-1.4 fake\x00\xff", "application/pdf")},
        data={"purpose": "assistants"},
    )
    body = upload.read()
    created = fn.invoke(
        [
            api_gateway_event(
                "POST",
                "/v1/files",
                body=body,
                headers={"Content-Type": upload.headers["content-type"]},
            )
        ],
        lambda_env(fn, env),
    )["results"][0]
    assert created["statusCode"] == 200, created["body"]
    file_id = response_json(created)["id"]
    listed, content, deleted, gone = fn.invoke(
        [
            api_gateway_event("GET", "/v1/files"),
            api_gateway_event("GET", f"/v1/files/{file_id}/content", resource="/v1/files/{proxy+}"),
            api_gateway_event("DELETE", f"/v1/files/{file_id}", resource="/v1/files/{proxy+}"),
            api_gateway_event("GET", f"/v1/files/{file_id}", resource="/v1/files/{proxy+}"),
        ],
        lambda_env(fn, env),
    )["results"]
    assert file_id in [f["id"] for f in response_json(listed)["data"]]
    assert content["isBase64Encoded"] is True
    assert base64.b64decode(content["body"]) == b"%PDF-1.4 fake\x00\xff"
    assert deleted["statusCode"] == 200 and gone["statusCode"] == 404
    keys = (
        boto3.client("s3", endpoint_url=moto_endpoint)
        .list_objects_v2(Bucket="llamda-data")
        .get("Contents", [])
    )
    assert not [k["Key"] for k in keys if file_id in k["Key"]]


DEADLINE_CONFIG = """
version: 1
profile: aws
apis: [inference]
providers:
  inference:
    - provider_id: bedrock
      provider_type: bedrock
      config: {region_name: us-east-1, endpoint_url: "${env.BEDROCK_ENDPOINT_URL}"}
models:
  - {model_id: hangs, provider_id: bedrock, provider_model_id: hang-model, fallbacks: [MODEL]}
  - {model_id: MODEL, provider_id: bedrock}
storage:
  records: {type: dynamodb, table_name: "${env.LLAMDA_RECORDS_TABLE}"}
  objects: {type: s3, bucket: "${env.LLAMDA_BUCKET}", prefix: objects}
  vectors: {uri: "s3://${env.LLAMDA_BUCKET}/lancedb"}
"""


def test_a_hanging_primary_leaves_the_fallback_time_within_the_function_timeout(
    artifacts: dict[str, Artifact],
    env: dict[str, str],
    fake_bedrock: FakeBedrockServer,
    tmp_path: Path,
) -> None:
    """The routing defaults (60 s per attempt, 2 retries) in a function with 10 s left: the
    deadline comes from the Lambda context, so the fallback answers before the timeout."""
    config = tmp_path / "run.yaml"
    config.write_text(DEADLINE_CONFIG.replace("MODEL", MODEL))
    fake_bedrock.fake.script("hang-model", *[Reply(delay=25, text="too late")] * 3)
    fn = artifacts["InferenceFunction"]
    chat = {"model": "hangs", "messages": [{"role": "user", "content": "still there?"}]}
    report = fn.invoke(
        [api_gateway_event("POST", "/v1/chat/completions", body=chat)],
        lambda_env(fn, {**env, "LLAMDA_CONFIG": str(config)}),
        function_timeout_ms=10_000,
    )
    (reply,) = report["results"]
    assert reply.get("statusCode") == 200, reply  # not "Task timed out after 10.00 seconds"
    assert response_json(reply)["choices"][0]["message"]["content"] == "You said: still there?"
    assert headers_of(reply)["x-llamda-model"] == MODEL
    assert len(fake_bedrock.fake.calls_for("converse", "hang-model")) == 1
    assert len(fake_bedrock.fake.calls_for("converse", MODEL)) == 1


def test_a_slow_stream_in_the_buffered_function_ends_before_the_function_times_out(
    artifacts: dict[str, Artifact], env: dict[str, str], fake_bedrock: FakeBedrockServer
) -> None:
    """Mangum buffers a stream: one that would outlast the invocation is ended at the deadline
    with an error event, so the client gets a valid body instead of a Lambda timeout."""
    fake_bedrock.fake.script(MODEL, Reply(text=" ".join(["word"] * 40)))
    fake_bedrock.fake.token_delay = 0.5  # 20 s of tokens
    try:
        fn = artifacts["InferenceFunction"]
        chat = {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "stream": True}
        report = fn.invoke(
            [api_gateway_event("POST", "/v1/chat/completions", body=chat)],
            lambda_env(fn, env),
            function_timeout_ms=5_000,
        )
    finally:
        fake_bedrock.fake.token_delay = 0.0
    (reply,) = report["results"]
    assert reply.get("statusCode") == 200, reply  # not "Task timed out after 5.00 seconds"
    events = [line for line in reply["body"].split("\n\n") if line]
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2].removeprefix("data: "))["error"]["code"] == "deadline_exceeded"
    # The tokens that came in time were sent.
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert any(
        "word" in (c["choices"][0]["delta"].get("content") or "") for c in chunks if c["choices"]
    )
