"""Eval across the built functions: EvalFunction (the zip artifact, API Gateway events)
registers a dataset and a benchmark and queues an eval job on moto SQS; JobsFunction (the
image's tree) runs it from the SQS event built from what moto delivers; EvalFunction serves the
status and the result. The candidate is the wire-level fake Bedrock, answering each question
from its own script (not from the expected answers)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from tests.e2e.harness import Artifact, api_gateway_event, lambda_env, receive, response_json
from tests.e2e.test_jobs_function import MODEL, run_jobs
from tests.fakes.bedrock import FakeBedrockServer, Reply

pytestmark = pytest.mark.e2e
MC = "basic::regex_parser_multiple_choice_answer"
# The candidate's answers: right, wrong, right, unparseable, right.
QUESTIONS = {
    "Which letter is first?": ("A", "Answer: A"),
    "Which letter is second?": ("B", "Answer: D"),
    "Which letter is third?": ("C", "The best answer is C"),
    "Which letter is fourth?": ("D", "I am not sure."),
    "Which letter comes back?": ("A", "Answer: A"),
}


def _event(
    method: str, path: str, body: dict[str, Any] | None = None, tenant: str = "acme"
) -> dict[str, Any]:
    for base in ("/v1beta/datasets", "/v1alpha/eval/benchmarks"):
        if path == base:
            return api_gateway_event(method, path, resource=base, body=body, tenant=tenant)
        if path.startswith(base + "/"):
            return api_gateway_event(
                method, path, resource=base + "/{proxy+}", body=body, tenant=tenant
            )
    raise ValueError(path)


def _answer(body: dict[str, Any]) -> Reply:
    question = body["messages"][-1]["content"][0]["text"]
    return Reply(text=QUESTIONS[question][1])


def test_an_eval_job_is_queued_by_the_eval_function_and_run_by_the_jobs_function(
    artifacts: dict[str, Artifact],
    image_artifacts: dict[str, Artifact],
    aws_resources: dict[str, str],
    aws_env: dict[str, str],
    fake_bedrock: FakeBedrockServer,
    sqs: Any,
) -> None:
    fake_bedrock.fake.reset()
    fake_bedrock.fake.respond(MODEL, _answer)
    env = {**aws_env, "BEDROCK_ENDPOINT_URL": fake_bedrock.endpoint}
    evalfn, jobs = artifacts["EvalFunction"], image_artifacts["JobsFunction"]
    queue = aws_resources["JobsQueue"]
    assert evalfn.environment["LLAMDA_JOBS_QUEUE_URL"] == queue
    rows = [{"input_query": q, "expected_answer": a} for q, (a, _) in QUESTIONS.items()]
    candidate = {"type": "model", "model": MODEL, "sampling_params": {"max_tokens": 16}}
    results = evalfn.invoke(
        [
            _event(
                "POST",
                "/v1beta/datasets",
                {
                    "purpose": "eval/question-answer",
                    "source": {"type": "rows", "rows": rows},
                    "dataset_id": "letters",
                },
            ),
            _event(
                "POST",
                "/v1alpha/eval/benchmarks",
                {
                    "benchmark_id": "letters",
                    "dataset_id": "letters",
                    "scoring_functions": [MC],
                },
            ),
            _event(
                "POST",
                "/v1alpha/eval/benchmarks/letters/jobs",
                {"benchmark_config": {"eval_candidate": candidate}},
            ),
        ],
        lambda_env(evalfn, env),
    )["results"]
    assert [r["statusCode"] for r in results] == [200, 200, 200], results
    job = response_json(results[2])
    assert job["status"] == "scheduled" and job["rows_total"] == 5
    assert not fake_bedrock.fake.calls  # queued, not run by the API function

    (message,) = receive(sqs, queue)
    assert json.loads(message["Body"])["kind"] == "eval_jobs"
    assert run_jobs(jobs, env, sqs, queue, [message]) == {"batchItemFailures": []}

    path = f"/v1alpha/eval/benchmarks/letters/jobs/{job['job_id']}"
    status, result, foreign = evalfn.invoke(
        [
            _event("GET", path),
            _event("GET", f"{path}/result"),
            _event("GET", path, tenant="globex"),
        ],
        lambda_env(evalfn, env),
    )["results"]
    assert response_json(status)["status"] == "completed"
    scores = response_json(result)
    assert [g["generated_answer"] for g in scores["generations"]] == [
        answer for _, answer in QUESTIONS.values()
    ]
    assert scores["scores"][MC]["aggregated_results"]["accuracy"] == {
        "accuracy": 3 / 5,
        "num_correct": 3.0,
        "num_total": 5,
    }
    assert foreign["statusCode"] == 404
    # The result object carries the tag the bucket's JobDays lifecycle rule expires.
    creds = {
        "aws_access_key_id": aws_env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": aws_env["AWS_SECRET_ACCESS_KEY"],
    }
    s3 = boto3.client(
        "s3", endpoint_url=aws_env["AWS_ENDPOINT_URL"], region_name="us-east-1", **creds
    )
    keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=aws_resources["DataBucket"], Prefix="objects/")[
            "Contents"
        ]
        if o["Key"].endswith(f"/eval/results/{job['job_id']}.json")
    ]
    assert len(keys) == 1
    tags = s3.get_object_tagging(Bucket=aws_resources["DataBucket"], Key=keys[0])["TagSet"]
    assert {"Key": "llamda-lifecycle", "Value": "job"} in tags
