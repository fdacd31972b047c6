"""The built control-plane function (inspect + models), invoked as Lambda would invoke it."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from tests.e2e.harness import (
    ROOT,
    ZIP_LIMIT_BYTES,
    Artifact,
    api_gateway_event,
    build_image_dir,
    headers_of,
    lambda_env,
    response_json,
)

pytestmark = pytest.mark.e2e
MODEL = "us.meta.llama3-1-8b-instruct-v1:0"


@pytest.fixture(scope="module")
def control(artifacts: dict[str, Artifact]) -> Artifact:
    return artifacts["ControlFunction"]


def test_zip_functions_fit_lambda_limit(artifacts: dict[str, Artifact]) -> None:
    for artifact in artifacts.values():
        if artifact.package_type == "Zip":
            size = artifact.unzipped_bytes
            assert size < ZIP_LIMIT_BYTES, f"{artifact.name}: {size / 2**20:.0f} MB unzipped"


def test_artifact_imports_only_from_its_own_dirs(
    control: Artifact, aws_env: dict[str, str]
) -> None:
    report = control.invoke([api_gateway_event("GET", "/v1/health")], lambda_env(control, aws_env))
    allowed = {str(p) for p in control.paths}
    foreign = [p for p in report["sys_path"] if p and p not in allowed and "site-packages" in p]
    assert not foreign, foreign
    assert report["results"][0]["statusCode"] == 200


def test_control_function_serves_inspect_and_models(
    control: Artifact, aws_env: dict[str, str], moto_endpoint: str
) -> None:
    events = [
        api_gateway_event("GET", "/v1/health"),
        api_gateway_event("GET", "/v1/version", headers={"x-request-id": "client-chosen-id"}),
        api_gateway_event("GET", "/v1/inspect/routes", resource="/v1/inspect/{proxy+}"),
        api_gateway_event("GET", "/v1/providers"),
        api_gateway_event("GET", "/v1/providers/bedrock", resource="/v1/providers/{proxy+}"),
        api_gateway_event(
            "POST",
            "/v1/models",
            body={
                "model_id": "team/llama-8b",
                "provider_model_id": MODEL,
                "provider_id": "bedrock",
            },
        ),
        api_gateway_event("GET", "/v1/models"),
        api_gateway_event("GET", "/v1/models/team/llama-8b", resource="/v1/models/{proxy+}"),
        api_gateway_event("GET", "/v1/models/nope", resource="/v1/models/{proxy+}"),
        api_gateway_event(
            "POST", "/v1/models", body='{"model_id": ', headers={"Content-Type": "application/json"}
        ),
        api_gateway_event("GET", "/v1/no-such-route"),
    ]
    report = control.invoke(events, lambda_env(control, aws_env))
    health, version, routes, providers, provider, created, listed, got, missing, bad, unknown = (
        report["results"]
    )
    assert (health["statusCode"], response_json(health)) == (200, {"status": "OK"})
    assert headers_of(health)["x-request-id"] == events[0]["requestContext"]["requestId"]
    assert headers_of(version)["x-request-id"] == "client-chosen-id"
    assert response_json(version)["version"]

    paths = {(r["route"], r["method"]) for r in response_json(routes)["data"]}
    assert {
        ("/v1/models", "POST"),
        ("/v1/models/{model_id}", "DELETE"),
        ("/v1/health", "GET"),
    } <= paths

    # Lambda always has AWS_REGION, so the aws profile turns Bedrock on; rules need nothing;
    # files are S3 (not probed from this function: it has no bucket access).
    by_id = {p["provider_id"]: p for p in response_json(providers)["data"]}
    # Every API of the aws profile: agents, eval (datasetio, scoring, benchmarks), batches too.
    assert list(by_id) == [
        "bedrock",
        "rules",
        "lancedb",
        "s3",
        "datasetio-s3",
        "basic",
        "llm-as-judge",
        "eval-builtin",
        "builtin",
        "reference",
    ]
    assert [by_id[p]["provider_type"] for p in by_id] == [
        "remote::bedrock",
        "inline::rules",
        "remote::lancedb",
        "remote::s3",
        "remote::s3",
        "inline::basic",
        "inline::llm-as-judge",
        "inline::builtin",
        "inline::builtin",
        "inline::reference",
    ]
    assert by_id["s3"]["api"] == "files"
    assert by_id["s3"]["health"]["status"] == "Not Implemented"
    assert response_json(provider)["provider_type"] == "remote::bedrock"

    assert created["statusCode"] == 200, created["body"]
    assert response_json(created)["provider_resource_id"] == MODEL
    ids = [m["id"] for m in response_json(listed)["data"]]
    assert "team/llama-8b" in ids
    assert response_json(got)["identifier"] == "team/llama-8b"
    assert missing["statusCode"] == 404
    assert response_json(missing)["error"]["code"] == "model_not_found"
    assert bad["statusCode"] == 400 and response_json(bad)["error"]["code"] == "invalid_json"
    assert unknown["statusCode"] == 404 and "error" in response_json(unknown)

    # The registration really is in DynamoDB, under the default tenant.
    ddb = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1")
    item = ddb.get_item(
        TableName="llamda-records",
        Key={"pk": {"S": "default#models"}, "sk": {"S": "team/llama-8b"}},
    )["Item"]
    assert json.loads(item["doc"]["S"])["provider_model_id"] == MODEL

    # A second cold container sees the same registry and can delete from it.
    again = control.invoke(
        [
            api_gateway_event("DELETE", "/v1/models/team/llama-8b", resource="/v1/models/{proxy+}"),
            api_gateway_event("GET", "/v1/models/team/llama-8b", resource="/v1/models/{proxy+}"),
        ],
        lambda_env(control, aws_env),
    )
    assert [r["statusCode"] for r in again["results"]] == [200, 404]


def test_oversize_body_is_refused(control: Artifact, aws_env: dict[str, str]) -> None:
    body = {"model_id": "big", "provider_id": "bedrock", "metadata": {"x": "y" * 4096}}
    report = control.invoke(
        [api_gateway_event("POST", "/v1/models", body=body)],
        lambda_env(control, {**aws_env, "LLAMDA_MAX_BODY_BYTES": "2048"}),
    )
    result = report["results"][0]
    assert result["statusCode"] == 413
    assert response_json(result)["error"]["code"] == "request_too_large"


def test_misconfigured_function_answers_503_naming_the_key(
    control: Artifact, aws_env: dict[str, str]
) -> None:
    env = lambda_env(control, aws_env)
    del env["LLAMDA_RECORDS_TABLE"]
    result = control.invoke([api_gateway_event("GET", "/v1/health")], env)["results"][0]
    assert result["statusCode"] == 503
    message = response_json(result)["error"]["message"]
    assert "LLAMDA_RECORDS_TABLE" in message and "storage.records.table_name" in message


def test_image_layout_serves_the_same_handler(
    control: Artifact, aws_env: dict[str, str], tmp_path: Path
) -> None:
    """How image (LanceDB) functions are tested without a Docker engine: the image's
    filesystem built as a directory from the same requirements, invoked the same way."""
    image = build_image_dir(
        tmp_path / "image",
        ROOT / "shared" / "requirements.txt",
        [ROOT / "shared" / "llamda", ROOT / "functions" / "inspect" / "app.py"],
    )
    artifact = Artifact("ControlImage", "app.lambda_handler", [image], control.environment, "Image")
    result = artifact.invoke(
        [api_gateway_event("GET", "/v1/health")], lambda_env(artifact, aws_env)
    )
    assert result["results"][0]["statusCode"] == 200
