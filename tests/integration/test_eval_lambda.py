"""Eval jobs as deployed: API Gateway events into the eval function's real handler, the job
queued on a real SQS queue (moto), run by the jobs function's real handler from the SQS event
built from the received message, state in DynamoDB (moto). A jobs process killed mid-job is
redelivered and resumes without generating or scoring its finished chunks again; progress is
visible while it runs; a cancel stops new work."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import records_table
from tests.e2e.harness import api_gateway_event, response_json, sqs_event_from_messages
from tests.fakes.openai_upstream import OpenAIUpstream
from tests.integration.lambda_process import invoke_handler, lambda_env, start_handler

DATA = Path(__file__).resolve().parents[1] / "data" / "eval_multiple_choice.jsonl"
MC = "basic::regex_parser_multiple_choice_answer"
ROWS = [json.loads(line) for line in DATA.read_text().splitlines()][:16]
SCRIPT = {row["input_query"]: row["generated_answer"] for row in ROWS}
CONFIG = """
version: 1
profile: aws
apis: [eval]
providers:
  inference:
    - {{provider_id: upstream, provider_type: remote::vllm, config: {{url: "{upstream}"}}}}
models:
  - {{model_id: student, provider_id: upstream, provider_model_id: student-up}}
storage:
  records: {{type: dynamodb, table_name: "{table}", region_name: us-east-1,
            endpoint_url: "{moto}"}}
  objects: {{type: local, root: "{home}/objects"}}
  vectors: {{uri: "{home}/lancedb"}}
server: {{auth: authorizer}}
routing: {{max_retries: 0, timeout_seconds: 60}}
jobs: {{queue_url: "{queue}", lambda_margin_seconds: 1, chunk_rows: 4, min_chunk_seconds: 1}}
"""
EVAL = (
    "from llamda.lambda_runtime import http_handler\nlambda_handler = http_handler(apis=['eval'])\n"
)
JOBS = "from llamda.lambda_jobs import sqs_handler\nlambda_handler = sqs_handler()\n"
BENCH = "/v1alpha/eval/benchmarks/mc16"


class Student:
    """Answers from its script; a question in ``block`` waits for ``release`` (a model that
    hangs while the process serving the job is killed)."""

    def __init__(self) -> None:
        self.block: str | None = None
        self.release = threading.Event()
        self.reached = threading.Event()

    def __call__(self, body: dict[str, Any]) -> str:
        question = body["messages"][-1]["content"]
        if question == self.block:
            self.reached.set()
            self.release.wait(60)
        return SCRIPT[question]


@pytest.fixture
def stack(tmp_path: Path, moto_endpoint: str) -> Any:
    student = Student()
    with OpenAIUpstream() as upstream:
        upstream.chat_reply = student
        sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
        queue = sqs.create_queue(QueueName=f"jobs-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        (tmp_path / "run.yaml").write_text(
            CONFIG.format(
                upstream=upstream.url,
                table=records_table(moto_endpoint),
                moto=moto_endpoint,
                home=tmp_path,
                queue=queue,
            )
        )
        (tmp_path / "app.py").write_text(EVAL)
        (tmp_path / "jobs.py").write_text(JOBS)
        yield {
            "home": tmp_path,
            "sqs": sqs,
            "queue": queue,
            "moto": moto_endpoint,
            "upstream": upstream,
            "student": student,
        }
        student.release.set()


def _env(stack: dict[str, Any]) -> dict[str, str]:
    return lambda_env(stack["home"] / "run.yaml", stack["moto"], "EvalFunction")


def _start(
    stack: dict[str, Any], events: list[dict[str, Any]], handler: str, timeout_ms: int = 60000
) -> Any:
    """A fresh process (a cold container) serving ``events`` through the real handler."""
    return start_handler(
        stack["home"], [str(stack["home"])], handler, events, _env(stack), timeout_ms
    )


def _invoke(
    stack: dict[str, Any], events: list[dict[str, Any]], handler: str = "app.lambda_handler"
) -> list[dict[str, Any]]:
    return invoke_handler(stack["home"], [str(stack["home"])], handler, events, _env(stack), 60000)


def _api(stack: dict[str, Any], *calls: tuple[str, str, dict[str, Any] | None]) -> list[Any]:
    events = [api_gateway_event(m, p, body=b, tenant="acme") for m, p, b in calls]
    results = _invoke(stack, events)
    for (method, path, _), result in zip(calls, results, strict=True):
        assert result["statusCode"] < 300, (method, path, result)
    return [response_json(r) for r in results]


def _receive(stack: dict[str, Any]) -> list[dict[str, Any]]:
    return (
        stack["sqs"]
        .receive_message(
            QueueUrl=stack["queue"],
            AttributeNames=["All"],
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
        )
        .get("Messages", [])
    )


def _jobs_event(stack: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any]:
    arn = stack["sqs"].get_queue_attributes(QueueUrl=stack["queue"], AttributeNames=["QueueArn"])
    return sqs_event_from_messages(messages, arn["Attributes"]["QueueArn"])


def _setup(stack: dict[str, Any]) -> str:
    """Dataset, benchmark and a started job (one cold start of the eval function)."""
    questions = [{k: v for k, v in r.items() if k != "generated_answer"} for r in ROWS]
    candidate = {"type": "model", "model": "student", "sampling_params": {"max_tokens": 8}}
    *_, job = _api(
        stack,
        (
            "POST",
            "/v1beta/datasets",
            {
                "purpose": "eval/question-answer",
                "source": {"type": "rows", "rows": questions},
                "dataset_id": "mc16",
            },
        ),
        (
            "POST",
            "/v1alpha/eval/benchmarks",
            {
                "benchmark_id": "mc16",
                "dataset_id": "mc16",
                "scoring_functions": [MC],
            },
        ),
        ("POST", f"{BENCH}/jobs", {"benchmark_config": {"eval_candidate": candidate}}),
    )
    return job["job_id"]


def _asked(stack: dict[str, Any]) -> Counter[int]:
    """How many times the student was asked each question (by row index)."""
    index = {row["input_query"]: i for i, row in enumerate(ROWS)}
    return Counter(
        index[r["body"]["messages"][-1]["content"]]
        for r in stack["upstream"].requests
        if r["body"].get("model") == "student-up"
    )


@pytest.mark.slow
def test_a_killed_job_resumes_without_redoing_finished_chunks(stack: dict[str, Any]) -> None:
    job_id = _setup(stack)
    [message] = _receive(stack)
    assert json.loads(message["Body"])["kind"] == "eval_jobs"
    stack["student"].block = ROWS[9]["input_query"]  # chunk 2 (rows 8-11) hangs
    # A 20 s invocation: its lease (its deadline) lapses soon after it is killed.
    proc, _ = _start(stack, [_jobs_event(stack, [message])], "jobs.lambda_handler", 20000)
    started = time.time()
    try:
        assert stack["student"].reached.wait(60), "the job never reached row 9"
        [status] = _api(stack, ("GET", f"{BENCH}/jobs/{job_id}", None))
        assert status["status"] == "in_progress"
        assert (status["rows_done"], status["rows_total"]) == (8, 16)  # progress, mid-job
    finally:
        proc.kill()  # the container dies mid-chunk
        proc.wait(30)
    stack["student"].block = None
    stack["student"].release.set()
    # SQS redelivers only after the visibility timeout, which outlasts any invocation; here
    # it comes as soon as the killed one's lease (its deadline + margin) has lapsed.
    time.sleep(max(0.0, started + 20 + 1 + 1 - time.time()))
    # SQS delivers the message again once its visibility timeout ends (here: at once).
    stack["sqs"].change_message_visibility(
        QueueUrl=stack["queue"], ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )
    [again] = _receive(stack)
    assert again["Attributes"]["ApproximateReceiveCount"] == "2"
    [result] = _invoke(stack, [_jobs_event(stack, [again])], "jobs.lambda_handler")
    assert result == {"batchItemFailures": []}
    [status, scores] = _api(
        stack,
        ("GET", f"{BENCH}/jobs/{job_id}", None),
        ("GET", f"{BENCH}/jobs/{job_id}/result", None),
    )
    assert status["status"] == "completed" and status["rows_done"] == 16
    asked = _asked(stack)
    assert all(asked[i] == 1 for i in [*range(8), *range(12, 16)]), asked  # not redone
    assert asked[9] == 2  # the chunk that died is done again
    assert [g["generated_answer"] for g in scores["generations"]] == [
        r["generated_answer"] for r in ROWS
    ]
    right = sum(
        1
        for r in ROWS
        if re.search(rf"(Answer|answer is)\W+{r['expected_answer']}\b", r["generated_answer"])
    )
    assert scores["scores"][MC]["aggregated_results"]["accuracy"]["num_correct"] == right


def test_a_cancelled_job_does_no_more_work(stack: dict[str, Any]) -> None:
    job_id = _setup(stack)
    [message] = _receive(stack)
    _api(stack, ("DELETE", f"{BENCH}/jobs/{job_id}", None))
    [result] = _invoke(stack, [_jobs_event(stack, [message])], "jobs.lambda_handler")
    assert result == {"batchItemFailures": []}
    [status] = _api(stack, ("GET", f"{BENCH}/jobs/{job_id}", None))
    assert status["status"] == "cancelled" and status["rows_done"] == 0
    assert not _asked(stack)
    assert not _receive(stack)  # nothing queued after it
