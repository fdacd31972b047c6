"""template.yaml after the SAM transform (the same translator `sam deploy` uses): every
reference resolves, auth and streaming are wired as intended, policies are least-privilege."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]


class _NoManagedPolicies:
    def load(self) -> dict[str, str]:
        return {}


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    text = (ROOT / "template.yaml").read_text()
    # Local code paths become S3 URIs at package time; stand in for that step.
    text = re.sub(r"(CodeUri|ContentUri): (\S+/)$", r"\1: s3://bucket/\2", text, flags=re.M)
    # `sam build`/`sam deploy` push the image and set ImageUri; stand in for that too.
    text = text.replace(
        "      PackageType: Image\n",
        "      PackageType: Image\n      ImageUri: 123456789012.dkr.ecr.us-east-1.amazonaws.com/llamda:v1\n",
    )
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return transform(yaml_parse(text), {}, _NoManagedPolicies())


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value[0] if isinstance(value, list) else value.split(".")[0])
            elif key == "Fn::Sub":
                template, local = (value[0], value[1]) if isinstance(value, list) else (value, {})
                names = {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", template)}
                found |= names - set(local)
            found |= _refs(value)
    elif isinstance(node, list):
        for item in node:
            found |= _refs(item)
    return found


def test_every_reference_resolves(cfn: dict[str, Any]) -> None:
    known = set(cfn["Resources"]) | set(cfn.get("Parameters", {}))
    unresolved = {r for r in _refs(cfn) if not r.startswith("AWS::")} - known
    assert not unresolved


def _methods(cfn: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(api, path, method) → the AWS::ApiGateway::RestApi swagger operation."""
    out = {}
    for name, res in cfn["Resources"].items():
        if res["Type"] == "AWS::ApiGateway::RestApi":
            for path, item in res["Properties"]["Body"]["paths"].items():
                for method, op in item.items():
                    out[(name, path, method)] = op
    return out


def test_api_key_on_every_route_but_health(cfn: dict[str, Any]) -> None:
    ops = _methods(cfn)
    assert ops
    for (api, path, method), op in ops.items():
        secured = any("api_key" in s for s in op.get("security", []))
        assert secured == (path != "/v1/health"), (api, path, method)


def test_stream_routes_use_response_streaming(cfn: dict[str, Any]) -> None:
    ops = _methods(cfn)
    stream = ops[("StreamApi", "/v1/chat/completions", "post")]["x-amazon-apigateway-integration"]
    assert stream.get("responseTransferMode") == "STREAM"
    assert "response-streaming-invocations" in str(stream["uri"])
    buffered = ops[("Api", "/v1/chat/completions", "post")]["x-amazon-apigateway-integration"]
    assert "response-streaming-invocations" not in str(buffered["uri"])


FUNCTIONS = (
    "ControlFunction",
    "InferenceFunction",
    "InferenceStreamFunction",
    "SafetyFunction",
    "FilesFunction",
    "VectorFunction",
    "IngestFunction",
)


def _statements(cfn: dict[str, Any], function: str) -> list[dict[str, Any]]:
    """The role's statements; a conditional one counts as its "true" branch; Action as a list."""
    role = cfn["Resources"][f"{function}Role"]["Properties"]
    out = []
    for policy in role.get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            if "Fn::If" in statement:
                statement = statement["Fn::If"][1]
            actions = statement["Action"]
            out.append({**statement, "Action": [actions] if isinstance(actions, str) else actions})
    return out


DERIVED_MODEL_ARNS = [
    {
        "Fn::Sub": "arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}:inference-profile/${BedrockModel}"
    },
    {"Fn::Sub": "arn:${AWS::Partition}:bedrock:${AWS::Region}::foundation-model/${BedrockModel}"},
    {"Fn::Sub": "arn:${AWS::Partition}:bedrock:*::foundation-model/${BedrockFoundationModel}"},
    {
        "Fn::Sub": "arn:${AWS::Partition}:bedrock:${AWS::Region}::foundation-model/${BedrockEmbeddingModel}"
    },
]


def test_bedrock_access_is_limited_to_configured_models(cfn: dict[str, Any]) -> None:
    # The given ARNs, or ones derived from the configured models: the inference profile in this
    # account and region only, foundation models by exact id.
    configured = {"Fn::If": ["HasModelArns", {"Ref": "BedrockModelArns"}, DERIVED_MODEL_ARNS]}
    for function in ("InferenceFunction", "InferenceStreamFunction", "SafetyFunction"):
        statements = _statements(cfn, function)
        invoke = [s for s in statements if any(a.startswith("bedrock:Invoke") for a in s["Action"])]
        assert invoke and all(s["Resource"] == configured for s in invoke)
        guard = [s for s in statements if "bedrock:ApplyGuardrail" in s["Action"]]
        assert len(guard) == 1
        assert guard[0]["Resource"]["Fn::Sub"].endswith(":guardrail/${BedrockGuardrailId}")
    assert not any("bedrock" in str(s["Action"]) for s in _statements(cfn, "ControlFunction"))
    for function in ("VectorFunction", "IngestFunction"):
        invoke = [s for s in _statements(cfn, function) if "bedrock:InvokeModel" in s["Action"]]
        assert invoke and all(s["Resource"] == configured for s in invoke)
    assert cfn["Parameters"]["BedrockModelArns"]["Default"] == ""
    for function in FUNCTIONS:
        for statement in _statements(cfn, function):
            assert statement["Resource"] != "*"
            assert not any(a.endswith(":*") for a in statement["Action"])


def test_zip_functions_use_snapstart_and_the_layer_follows_the_architecture(
    cfn: dict[str, Any],
) -> None:
    resources = cfn["Resources"]
    for function in ("ControlFunction", "InferenceFunction", "SafetyFunction", "FilesFunction"):
        props = resources[function]["Properties"]
        assert props["SnapStart"] == {"ApplyOn": "PublishedVersions"}
        assert props["Runtime"] == "python3.12"
        assert props["Architectures"] == [{"Ref": "Architecture"}]
    raw = yaml_parse((ROOT / "template.yaml").read_text())
    layer = raw["Resources"]["CoreLayer"]
    assert layer["Metadata"]["BuildArchitecture"] == {"Ref": "Architecture"}
    assert layer["Properties"]["CompatibleArchitectures"] == [{"Ref": "Architecture"}]


def test_bucket_is_encrypted_private_and_tls_only(cfn: dict[str, Any]) -> None:
    bucket = cfn["Resources"]["DataBucket"]["Properties"]
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    policy = cfn["Resources"]["DataBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert any(
        s["Effect"] == "Deny" and "aws:SecureTransport" in str(s["Condition"]) for s in policy
    )


def test_dashboard_body_is_json_and_charts_what_the_functions_emit() -> None:
    raw = yaml_parse((ROOT / "template.yaml").read_text())
    body = raw["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    widgets = json.loads(re.sub(r"\$\{[^}]+\}", "X", body))["widgets"]
    expressions = " ".join(
        m[0]["expression"]
        for w in widgets
        for m in w["properties"]["metrics"]
        if isinstance(m[0], dict) and "expression" in m[0]
    )
    # The EMF metric names services/inference.py, services/safety.py and guardrails emit.
    emitted = ("requests", "latency_ms", "tokens_in", "tokens_out", "fallbacks", "errors")
    for metric in (*emitted, "guardrail_blocks", "flagged"):
        assert f'MetricName="{metric}"' in expressions, metric


def test_lancedb_functions_share_one_image_with_a_command_each(cfn: dict[str, Any]) -> None:
    raw = yaml_parse((ROOT / "template.yaml").read_text())["Resources"]
    dockerfile = (ROOT / "functions" / "Dockerfile").read_text()
    for function, module in (("VectorFunction", "vector_io"), ("IngestFunction", "ingest")):
        props = raw[function]["Properties"]
        assert props["PackageType"] == "Image"
        assert props["ImageConfig"]["Command"] == [f"functions.{module}.app.lambda_handler"]
        assert raw[function]["Metadata"]["Dockerfile"] == "functions/Dockerfile"
        assert (ROOT / "functions" / module / "app.py").exists()
        assert "Layers" not in cfn["Resources"][function]["Properties"]
    assert "requirements/image.lock" in dockerfile


def test_ingest_pipeline_s3_to_sqs_with_dlq_alarm_and_idempotency(cfn: dict[str, Any]) -> None:
    res = cfn["Resources"]
    notifications = res["IngestBucket"]["Properties"]["NotificationConfiguration"]
    events = {c["Event"] for c in notifications["QueueConfigurations"]}
    assert events == {"s3:ObjectCreated:*", "s3:ObjectRemoved:*"}
    assert all(
        c["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": "ingest/"}]
        for c in notifications["QueueConfigurations"]
    )
    assert "IngestQueuePolicy" in res["IngestBucket"]["DependsOn"]
    queue = res["IngestQueue"]["Properties"]
    assert queue["RedrivePolicy"]["maxReceiveCount"] == 5
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["IngestDeadLetterQueue", "Arn"]
    }
    mapping = next(
        r["Properties"] for r in res.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"
    )
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "IngestMaxConcurrency"}}
    alarm = res["IngestDeadLettersAlarm"]["Properties"]
    assert alarm["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["IngestDeadLetterQueue", "QueueName"]}
    table = res["IdempotencyTable"]["Properties"]
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"]["AttributeName"] == "expiration"
    # The ingest function reads only ingest/ uploads, writes only objects/ and lancedb/.
    writes = [s for s in _statements(cfn, "IngestFunction") if "s3:PutObject" in s["Action"]]
    assert {s["Resource"]["Fn::Sub"] for s in writes} == {
        "${DataBucket.Arn}/objects/*",
        "${DataBucket.Arn}/lancedb/*",
    }
