"""Background responses across the built functions: AgentsFunction (API Gateway events) queues
a response into the jobs queue on moto SQS; JobsFunction, run from the container image's tree
with its own command, is invoked with the SQS event built from what moto delivers (real message
ids, receipt handles, receive counts) and runs it; AgentsFunction then serves the result. Each
invocation is a fresh process, as a new container would be. Bedrock is the wire-level fake."""

from __future__ import annotations

import json
from typing import Any

import pytest
from samtranslator.yaml_helper import yaml_parse

from tests.e2e.harness import (
    ROOT,
    Artifact,
    api_gateway_event,
    lambda_env,
    receive,
    response_json,
    sqs_event_from_messages,
)
from tests.fakes.bedrock import FakeBedrockServer, Reply

pytestmark = pytest.mark.e2e
MODEL = "us.meta.llama3-3-70b-instruct-v1:0"  # the template default, derived for us-east-1


@pytest.fixture
def env(aws_env: dict[str, str], fake_bedrock: FakeBedrockServer) -> dict[str, str]:
    fake_bedrock.fake.reset()
    return {**aws_env, "BEDROCK_ENDPOINT_URL": fake_bedrock.endpoint}


def jobs_timeout_ms() -> int:
    """JobsFunction's timeout as the template sets it: each invocation's Lambda context."""
    props = yaml_parse((ROOT / "template.yaml").read_text())["Resources"]["JobsFunction"]
    return int(props["Properties"]["Timeout"]) * 1000


def responses_event(
    method: str, path: str, body: dict[str, Any] | None = None, tenant: str = "acme"
) -> dict[str, Any]:
    resource = "/v1/responses" if path == "/v1/responses" else "/v1/responses/{proxy+}"
    return api_gateway_event(method, path, resource=resource, body=body, tenant=tenant)


def run_jobs(
    jobs: Artifact,
    env: dict[str, str],
    sqs: Any,
    queue_url: str,
    messages: list[dict[str, Any]],
    timeout_ms: int | None = None,
) -> dict[str, Any]:
    """Invoke JobsFunction with one batch (the template's batch size is 1) as Lambda would, then
    delete the messages it did not report failed, as the event source does. ``timeout_ms``: the
    time the invocation has (the function's timeout by default)."""
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    event = sqs_event_from_messages(messages, arn["Attributes"]["QueueArn"])
    (result,) = jobs.invoke(
        [event],
        lambda_env(jobs, env),
        function_timeout_ms=timeout_ms or jobs_timeout_ms(),
        timeout=300,
    )["results"]
    failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
    for message in messages:
        if message["MessageId"] not in failed:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return result


def model_calls(fake_bedrock: FakeBedrockServer) -> int:
    fake = fake_bedrock.fake
    return len(fake.calls_for("converse-stream", MODEL)) + len(fake.calls_for("converse", MODEL))


def test_a_background_response_is_queued_run_by_the_jobs_function_and_served(
    image_artifacts: dict[str, Artifact],
    aws_resources: dict[str, str],
    env: dict[str, str],
    sqs: Any,
    fake_bedrock: FakeBedrockServer,
) -> None:
    agents, jobs = image_artifacts["AgentsFunction"], image_artifacts["JobsFunction"]
    assert jobs.handler == "functions.jobs.app.lambda_handler"
    queue = aws_resources["JobsQueue"]
    # Both functions read the queue URL from the template's environment.
    assert agents.environment["LLAMDA_JOBS_QUEUE_URL"] == queue
    assert jobs.environment["LLAMDA_JOBS_QUEUE_URL"] == queue
    request = {"model": MODEL, "input": "count the llamas", "background": True}
    (created,) = agents.invoke(
        [responses_event("POST", "/v1/responses", request)], lambda_env(agents, env)
    )["results"]
    assert created["statusCode"] == 200, created
    queued = response_json(created)
    assert queued["status"] == "queued" and queued["background"] is True
    assert model_calls(fake_bedrock) == 0  # queued, not run by the API function

    (message,) = receive(sqs, queue)
    job = json.loads(message["Body"])
    assert (job["kind"], job["id"], job["tenant"]) == ("response", queued["id"], "acme")
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"
    result = run_jobs(jobs, env, sqs, queue, [message])
    assert result == {"batchItemFailures": []}
    assert model_calls(fake_bedrock) == 1
    assert receive(sqs, queue) == []  # done in one invocation: no continuation queued

    done, foreign = agents.invoke(
        [
            responses_event("GET", f"/v1/responses/{queued['id']}"),
            responses_event("GET", f"/v1/responses/{queued['id']}", tenant="globex"),
        ],
        lambda_env(agents, env),
    )["results"]
    assert done["statusCode"] == 200, done
    final = response_json(done)
    assert final["status"] == "completed" and final["background"] is True
    # The fake model echoes the last user message: it was given the queued request's input.
    assert final["output"][-1]["content"][0]["text"] == "You said: count the llamas"
    assert foreign["statusCode"] == 404
    assert "llamas" not in foreign["body"]


def test_a_response_cancelled_before_its_job_runs_stays_cancelled(
    image_artifacts: dict[str, Artifact],
    aws_resources: dict[str, str],
    env: dict[str, str],
    sqs: Any,
    fake_bedrock: FakeBedrockServer,
) -> None:
    agents, jobs = image_artifacts["AgentsFunction"], image_artifacts["JobsFunction"]
    queue = aws_resources["JobsQueue"]
    request = {"model": MODEL, "input": "never mind", "background": True}
    (created,) = agents.invoke(
        [responses_event("POST", "/v1/responses", request)], lambda_env(agents, env)
    )["results"]
    response_id = response_json(created)["id"]
    cancelled, foreign = agents.invoke(
        [
            responses_event("POST", f"/v1/responses/{response_id}/cancel"),
            # Another tenant cannot cancel it (nor learn that it exists).
            responses_event("POST", f"/v1/responses/{response_id}/cancel", tenant="globex"),
        ],
        lambda_env(agents, env),
    )["results"]
    assert cancelled["statusCode"] == 200, cancelled
    assert response_json(cancelled)["status"] == "cancelled"
    assert foreign["statusCode"] == 404

    (message,) = receive(sqs, queue)
    assert json.loads(message["Body"])["id"] == response_id
    assert run_jobs(jobs, env, sqs, queue, [message]) == {"batchItemFailures": []}
    assert model_calls(fake_bedrock) == 0  # the job did nothing
    assert receive(sqs, queue) == []
    (after,) = agents.invoke(
        [responses_event("GET", f"/v1/responses/{response_id}")], lambda_env(agents, env)
    )["results"]
    assert response_json(after)["status"] == "cancelled"
    assert response_json(after)["output"] == []


def test_without_a_queue_url_the_agents_function_refuses_background_and_keeps_nothing(
    image_artifacts: dict[str, Artifact],
    aws_resources: dict[str, str],
    env: dict[str, str],
    sqs: Any,
) -> None:
    """An empty LLAMDA_JOBS_QUEUE_URL means no queue: in Lambda a background request is a 503
    (a task left running when the invocation returns would be frozen), with nothing stored."""
    agents = image_artifacts["AgentsFunction"]
    request = {"model": MODEL, "input": "later", "background": True}
    refused, listed = agents.invoke(
        [
            responses_event("POST", "/v1/responses", request, tenant="solo"),
            responses_event("GET", "/v1/responses", tenant="solo"),
        ],
        lambda_env(agents, {**env, "LLAMDA_JOBS_QUEUE_URL": ""}),
    )["results"]
    assert refused["statusCode"] == 503, refused
    error = response_json(refused)["error"]
    assert error["type"] and "jobs.queue_url" in error["message"]
    assert receive(sqs, aws_resources["JobsQueue"]) == []
    assert listed["statusCode"] == 200 and response_json(listed)["data"] == []


def test_a_job_out_of_invocation_time_continues_from_the_message_it_queued(
    image_artifacts: dict[str, Artifact],
    aws_resources: dict[str, str],
    env: dict[str, str],
    sqs: Any,
    fake_bedrock: FakeBedrockServer,
) -> None:
    """An invocation with little time left (26 s less the profile's 20 s margin) stops the run
    at the model call, keeps it in_progress and queues the continuation itself (JobsFunction's
    own queue URL and SendMessage); the next invocation, from that message, completes it."""
    agents, jobs = image_artifacts["AgentsFunction"], image_artifacts["JobsFunction"]
    queue = aws_resources["JobsQueue"]
    request = {"model": MODEL, "input": "take your time", "background": True}
    (created,) = agents.invoke(
        [responses_event("POST", "/v1/responses", request)], lambda_env(agents, env)
    )["results"]
    response_id = response_json(created)["id"]
    fake_bedrock.fake.script(MODEL, Reply(text="too late", delay=12))
    (first,) = receive(sqs, queue)
    assert run_jobs(jobs, env, sqs, queue, [first], timeout_ms=26_000) == {"batchItemFailures": []}
    assert model_calls(fake_bedrock) == 1  # cut short
    (polled,) = agents.invoke(
        [responses_event("GET", f"/v1/responses/{response_id}")], lambda_env(agents, env)
    )["results"]
    assert response_json(polled)["status"] == "in_progress"
    (continuation,) = receive(sqs, queue)
    body = json.loads(continuation["Body"])
    assert (body["id"], body["tenant"], body["attempt"]) == (response_id, "acme", 1)
    assert continuation["MessageId"] != first["MessageId"]
    assert run_jobs(jobs, env, sqs, queue, [continuation]) == {"batchItemFailures": []}
    (done,) = agents.invoke(
        [responses_event("GET", f"/v1/responses/{response_id}")], lambda_env(agents, env)
    )["results"]
    final = response_json(done)
    assert final["status"] == "completed"
    assert final["output"][-1]["content"][0]["text"] == "You said: take your time"
    assert receive(sqs, queue) == []
