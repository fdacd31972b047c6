"""The agents functions as built into the container image (functions/Dockerfile): AgentsFunction
invoked with API Gateway events (state in moto DynamoDB, each invocation a fresh process as a
new container would be), file_search over a store the VectorFunction made, and
AgentsStreamFunction started the way the Lambda Web Adapter starts it (run.sh → uvicorn), read
with the openai SDK. Bedrock is the wire-level fake, scripted per test."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import free_port, wait_until_serving
from tests.e2e.harness import (
    Artifact,
    api_gateway_event,
    base_python,
    lambda_env,
    response_json,
)
from tests.fakes.bedrock import FakeBedrockServer, Reply

pytestmark = pytest.mark.e2e
MODEL = "us.meta.llama3-3-70b-instruct-v1:0"  # the template default, derived for us-east-1
TOOL = {
    "type": "function",
    "name": "lookup",
    "description": "Look a word up.",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
}


@pytest.fixture
def env(aws_env: dict[str, str], fake_bedrock: FakeBedrockServer) -> dict[str, str]:
    fake_bedrock.fake.reset()
    return {**aws_env, "BEDROCK_ENDPOINT_URL": fake_bedrock.endpoint}


def responses_event(
    method: str, path: str, body: dict[str, Any] | None = None, tenant: str = "acme"
) -> dict[str, Any]:
    """An event for a route of AgentsFunction, with the resource API Gateway matched."""
    base = "/" + "/".join(path.strip("/").split("/")[:2])
    resource = base if path == base else f"{base}/{{proxy+}}"
    return api_gateway_event(method, path, resource=resource, body=body, tenant=tenant)


def emitted_metrics(stdout: str) -> list[dict[str, Any]]:
    """The EMF documents a function printed (CloudWatch reads metrics from these lines)."""
    return [json.loads(line) for line in stdout.splitlines() if '"_aws"' in line]


def test_function_tool_round_trip_across_two_cold_starts_tenants_apart(
    image_artifacts: dict[str, Artifact], env: dict[str, str], fake_bedrock: FakeBedrockServer
) -> None:
    fn = image_artifacts["AgentsFunction"]
    fake_bedrock.fake.script(MODEL, Reply(tool={"name": "lookup", "input": {"q": "vicuña"}}))
    first = fn.invoke(
        [
            responses_event(
                "POST",
                "/v1/responses",
                {"model": MODEL, "input": "Look up vicuña", "tools": [TOOL]},
            )
        ],
        lambda_env(fn, env),
    )
    (created,) = first["results"]
    assert created["statusCode"] == 200, created
    response = response_json(created)
    (call,) = response["output"]
    assert call["type"] == "function_call" and json.loads(call["arguments"]) == {"q": "vicuña"}
    # The loop's metrics, with the dimensions the dashboard searches for.
    steps = [m for m in emitted_metrics(first["stdout"]) if "agent_steps" in m]
    assert steps and steps[0]["status"] == "completed"
    by_type = [m for m in emitted_metrics(first["stdout"]) if "agent_tool_calls_by_type" in m]
    assert by_type and by_type[0]["tool"] == "function"

    # A second container: the answer continues the stored response; another tenant cannot.
    answer = {
        "model": MODEL,
        "previous_response_id": response["id"],
        "input": [
            {"type": "function_call_output", "call_id": call["call_id"], "output": "camelid"}
        ],
        "tools": [TOOL],
    }
    continued, foreign, foreign_get, fetched, items = fn.invoke(
        [
            responses_event("POST", "/v1/responses", answer),
            responses_event("POST", "/v1/responses", answer, tenant="globex"),
            responses_event("GET", f"/v1/responses/{response['id']}", tenant="globex"),
            responses_event("GET", f"/v1/responses/{response['id']}"),
            responses_event("GET", f"/v1/responses/{response['id']}/input_items"),
        ],
        lambda_env(fn, env),
    )["results"]
    assert continued["statusCode"] == 200, continued
    final = response_json(continued)
    assert final["status"] == "completed"
    assert final["output"][-1]["content"][0]["text"] == "You said: camelid"
    assert final["previous_response_id"] == response["id"]
    for denied in (foreign, foreign_get):
        assert denied["statusCode"] == 404, denied
        assert response_json(denied)["error"]["type"] == "invalid_request_error"
        assert "acme" not in denied["body"]
    assert response_json(fetched)["output"][0]["call_id"] == call["call_id"]
    assert response_json(items)["data"][0]["content"][0]["text"] == "Look up vicuña"
    # The model saw the tool's output in the second container (state came from DynamoDB).
    assert (
        len(fake_bedrock.fake.calls_for("converse-stream", MODEL))
        + len(fake_bedrock.fake.calls_for("converse", MODEL))
        == 2
    )


def test_file_search_over_a_store_the_vector_function_built(
    image_artifacts: dict[str, Artifact], env: dict[str, str], fake_bedrock: FakeBedrockServer
) -> None:
    """file_search runs in-process in AgentsFunction (LanceDB on moto S3), over the store that
    VectorFunction created and filled: same image, same tenant, another function."""
    vector, agents = image_artifacts["VectorFunction"], image_artifacts["AgentsFunction"]
    (created,) = vector.invoke(
        [api_gateway_event("POST", "/v1/vector_stores", body={"name": "camelids"}, tenant="acme")],
        lambda_env(vector, env),
    )["results"]
    assert created["statusCode"] == 200, created["body"]
    store = response_json(created)["id"]
    chunks = [
        {"chunk_id": "a", "content": "Vicuñas graze in the high Andes.", "metadata": {}},
        {"chunk_id": "b", "content": "Reindeer pull sleds in Lapland.", "metadata": {}},
    ]
    (inserted,) = vector.invoke(
        [
            api_gateway_event(
                "POST",
                "/v1/vector-io/insert",
                resource="/v1/vector-io/{proxy+}",
                body={"vector_store_id": store, "chunks": chunks},
                tenant="acme",
            )
        ],
        lambda_env(vector, env),
    )["results"]
    assert inserted["statusCode"] == 200, inserted["body"]

    fake_bedrock.fake.script(
        MODEL, Reply(tool={"name": "file_search", "input": {"queries": ["sleds in Lapland"]}})
    )
    request = {
        "model": MODEL,
        "input": "Who pulls sleds?",
        "tools": [{"type": "file_search", "vector_store_ids": [store], "max_num_results": 1}],
        "include": ["file_search_call.results"],
    }
    report = agents.invoke(
        [
            responses_event("POST", "/v1/responses", request),
            # Another tenant's store id is not found: the search does not reach acme's table.
            responses_event("POST", "/v1/responses", request, tenant="globex"),
        ],
        lambda_env(agents, env),
    )
    found, foreign = report["results"]
    assert found["statusCode"] == 200, found
    response = response_json(found)
    assert response["status"] == "completed"
    search = next(item for item in response["output"] if item["type"] == "file_search_call")
    assert search["status"] == "completed" and search["queries"] == ["sleds in Lapland"]
    assert [r["text"] for r in search["results"]] == ["Reindeer pull sleds in Lapland."]
    # The result went back to the model (the fake answers with what it was given).
    assert "Reindeer pull sleds in Lapland." in response["output"][-1]["content"][0]["text"]
    assert "Vicuñas" not in json.dumps(response)
    assert foreign["statusCode"] == 404, foreign
    assert "Reindeer" not in foreign["body"]
    tools = [m for m in emitted_metrics(report["stdout"]) if "agent_tool_calls_by_type" in m]
    assert [m["tool"] for m in tools] == ["file_search"]


def test_a_hanging_model_ends_incomplete_before_the_buffered_function_times_out(
    image_artifacts: dict[str, Artifact], env: dict[str, str], fake_bedrock: FakeBedrockServer
) -> None:
    """The model never answers (held until the test ends): the loop stops at the invocation's
    deadline and stores an ``incomplete`` response, instead of Lambda killing the function."""
    fn = image_artifacts["AgentsFunction"]
    hold = threading.Event()
    fake_bedrock.fake.script(MODEL, Reply(text="never sent", hold=hold))
    try:
        report = fn.invoke(
            [responses_event("POST", "/v1/responses", {"model": MODEL, "input": "hello?"})],
            lambda_env(fn, env),
            function_timeout_ms=6_000,
        )
        (reply,) = report["results"]
        # Answered while the model call is still held (the harness reports a Lambda timeout
        # for an invocation that outlives its 6 s).
        assert not hold.is_set()
    finally:
        hold.set()
    assert reply.get("statusCode") == 200, reply  # not "Task timed out after 6.00 seconds"
    response = response_json(reply)
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "deadline"}
    steps = [m for m in emitted_metrics(report["stdout"]) if "agent_steps" in m]
    assert steps and steps[0]["status"] == "incomplete"


StreamStarter = Callable[..., str]


@pytest.fixture
def stream_function(
    image_artifacts: dict[str, Artifact], env: dict[str, str], tmp_path: Path
) -> Iterator[StreamStarter]:
    """Starts AgentsStreamFunction as the Lambda Web Adapter runs it in the image: the entry
    point (ImageConfig: /bin/sh run.sh) starts uvicorn on $PORT; the adapter only relays.
    Keyword arguments override the function's environment; returns the app's URL."""
    fn = image_artifacts["AgentsStreamFunction"]
    (task_root,) = fn.paths
    script = task_root / fn.handler.removeprefix("/var/task/")
    assert script.name == "run.sh" and script.exists()
    procs: list[subprocess.Popen[bytes]] = []

    def start(**overrides: str) -> str:
        port = free_port()
        proc_env = {
            **lambda_env(fn, env),
            "PATH": f"{os.path.dirname(base_python())}:/usr/bin:/bin",
            "LAMBDA_TASK_ROOT": str(task_root),
            "PORT": str(port),
            "PYTHONNOUSERSITE": "1",
            **overrides,
        }
        assert "PYTHONPATH" not in proc_env  # run.sh sets it, as in the image
        log = tmp_path / f"stream-{port}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                ["/bin/sh", str(script)],
                env=proc_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
            )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(url, proc, log, ok=None)  # any answer: the app has no route at /
        return url

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def _client(url: str, tenant: str = "acme") -> openai.OpenAI:
    # What the Lambda Web Adapter adds to each request: API Gateway's request context, with
    # what our authorizer found for the caller's key.
    context = {"requestId": "r-1", "authorizer": {"tenant": tenant, "key_id": "key_e2e"}}
    return openai.OpenAI(
        base_url=f"{url}/v1",
        api_key="llamda-not-checked-here",
        max_retries=0,
        timeout=60,
        default_headers={"x-amzn-request-context": json.dumps(context)},
    )


def test_stream_function_streams_responses_events_token_by_token(
    stream_function: StreamStarter, fake_bedrock: FakeBedrockServer
) -> None:
    url = stream_function()  # the template's environment: an 870 s loop deadline
    anonymous = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        anonymous.responses.create(model=MODEL, input="hi")
    # The SDK builds its event models while parsing the first stream (seconds on a busy
    # machine, events pile up meanwhile): a first stream, then the one whose timing counts.
    warm = list(_client(url).responses.create(model=MODEL, input="warm up", stream=True))
    assert warm[-1].type == "response.completed"
    fake_bedrock.fake.token_delay = 0.05
    try:
        arrivals: list[float] = []
        kinds: list[str] = []
        text = ""
        final: Any = None
        for event in _client(url).responses.create(
            model=MODEL, input="one two three four five six", stream=True
        ):
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                arrivals.append(time.monotonic())
                text += event.delta
            if event.type == "response.completed":
                final = event.response
    finally:
        fake_bedrock.fake.token_delay = 0.0
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert text == "You said: one two three four five six" == final.output_text
    # Token by token: many deltas, spread over time (not one buffered body at the end).
    assert len(arrivals) >= 5
    assert arrivals[-1] - arrivals[0] > 0.2
    # Stored like any response: the buffered function's GET would find it (same Records).
    assert _client(url).responses.retrieve(final.id).output_text == text
    with pytest.raises(openai.NotFoundError):
        _client(url, tenant="globex").responses.retrieve(final.id)


def test_stream_function_ends_a_hanging_loop_incomplete_at_its_configured_deadline(
    stream_function: StreamStarter, fake_bedrock: FakeBedrockServer
) -> None:
    """No Lambda context under the Web Adapter: agents.deadline_seconds from the function's
    environment (LLAMDA_AGENTS_DEADLINE_SECONDS, 3 s here, 870 s of 900 in the template) ends
    the stream ``incomplete`` while the model call is still held."""
    url = stream_function(LLAMDA_AGENTS_DEADLINE_SECONDS="3")
    hold = threading.Event()
    fake_bedrock.fake.script(MODEL, Reply(text="never sent", hold=hold))
    try:
        events = list(_client(url).responses.create(model=MODEL, input="hello?", stream=True))
        assert not hold.is_set()
    finally:
        hold.set()
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "deadline"
    assert not [e for e in events if e.type == "response.output_text.delta"]
