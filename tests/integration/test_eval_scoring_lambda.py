"""EvalFunction's handler (functions/eval/app.py) serving API Gateway REST events, its state in
DynamoDB and S3 on moto: a dataset registered from an s3:// URI in one cold process is scored
in another, and another tenant (from the authorizer's context) cannot see it."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import ROOT, records_table
from tests.e2e.harness import api_gateway_event, response_json
from tests.integration.lambda_process import invoke_handler, lambda_env

DATA = ROOT / "tests" / "data" / "eval_multiple_choice.jsonl"
CONFIG = """
version: 1
profile: aws
apis: [eval]
storage:
  records: {{type: dynamodb, table_name: "{table}", region_name: us-east-1,
            endpoint_url: "{moto}"}}
  objects: {{type: s3, bucket: "{bucket}", prefix: objects, region_name: us-east-1,
            endpoint_url: "{moto}"}}
  vectors: {{uri: "{home}/lancedb"}}
server: {{auth: authorizer}}
"""


@pytest.fixture
def function(tmp_path: Path, moto_endpoint: str) -> Path:
    bucket = f"eval-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="objects/tenants/acme/in/mc.jsonl", Body=DATA.read_bytes())
    (tmp_path / "run.yaml").write_text(
        CONFIG.format(
            table=records_table(moto_endpoint), moto=moto_endpoint, bucket=bucket, home=tmp_path
        )
    )
    (tmp_path / "bucket").write_text(bucket)
    (tmp_path / "moto").write_text(moto_endpoint)
    return tmp_path


def invoke(function: Path, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A fresh process (a cold container) serving ``events`` through functions/eval/app.py."""
    env = lambda_env(function / "run.yaml", (function / "moto").read_text(), "EvalFunction")
    return invoke_handler(
        function, [str(ROOT / "functions" / "eval")], "app.lambda_handler", events, env
    )


def test_register_then_score_across_cold_starts_and_tenants(function: Path) -> None:
    bucket = (function / "bucket").read_text()
    uri = f"s3://{bucket}/objects/tenants/acme/in/mc.jsonl"
    [registered, other_prefix] = invoke(
        function,
        [
            api_gateway_event(
                "POST",
                "/v1beta/datasets",
                body={
                    "purpose": "eval/question-answer",
                    "source": {"type": "uri", "uri": uri},
                    "dataset_id": "mc",
                },
                tenant="acme",
            ),
            api_gateway_event(
                "POST",
                "/v1beta/datasets",
                body={"purpose": "eval/question-answer", "source": {"type": "uri", "uri": uri}},
                tenant="globex",  # acme's prefix is not globex's to read
            ),
        ],
    )
    assert registered["statusCode"] == 200, registered["body"]
    assert response_json(registered)["row_count"] == 30
    assert other_prefix["statusCode"] == 400
    assert "objects/tenants/globex/" in response_json(other_prefix)["error"]["message"]

    score = {
        "dataset_id": "mc",
        "scoring_functions": {"basic::regex_parser_multiple_choice_answer": None},
    }
    scored, page, hidden = invoke(
        function,
        [
            api_gateway_event(
                "POST",
                "/v1/scoring/score-batch",
                resource="/v1/scoring/{proxy+}",
                body=score,
                tenant="acme",
            ),
            api_gateway_event(
                "GET",
                "/v1beta/datasetio/iterrows/mc",
                resource="/v1beta/datasetio/{proxy+}",
                query="start_index=28&limit=5",
                tenant="acme",
            ),
            api_gateway_event(
                "POST",
                "/v1/scoring/score-batch",
                resource="/v1/scoring/{proxy+}",
                body=score,
                tenant="globex",
            ),
        ],
    )
    assert scored["statusCode"] == 200, scored["body"]
    results = response_json(scored)["results"]["basic::regex_parser_multiple_choice_answer"]
    assert results["aggregated_results"]["accuracy"]["num_correct"] == 18
    assert response_json(page) == {
        "data": [json.loads(line) for line in DATA.read_text().splitlines()[28:]],
        "has_more": False,
        "next_start_index": None,
        "url": None,
    }
    assert hidden["statusCode"] == 404
