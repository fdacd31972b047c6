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

from tests.e2e.harness import PSEUDO_PARAMETERS, cfn_eval

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


def test_key_authorizer_on_every_route_but_health_and_version(cfn: dict[str, Any]) -> None:
    open_paths = {"/v1/health", "/v1/version"}
    ops = _methods(cfn)
    assert ops
    for (api, path, method), op in ops.items():
        security = op.get("security") or []
        if path in open_paths:
            assert not any("KeyAuthorizer" in s for s in security), (api, path, method)
        else:
            assert security == [{"KeyAuthorizer": []}], (api, path, method)
    types = {res["Type"] for res in cfn["Resources"].values()}
    assert "AWS::ApiGateway::ApiKey" not in types and "AWS::ApiGateway::UsagePlan" not in types
    for name, res in cfn["Resources"].items():
        if res["Type"] != "AWS::ApiGateway::RestApi":
            continue
        body = res["Properties"]["Body"]
        scheme = body["components"]["securitySchemes"]["KeyAuthorizer"]
        authorizer = scheme["x-amazon-apigateway-authorizer"]
        assert authorizer["type"] == "request"
        assert authorizer["identitySource"] == "method.request.header.Authorization"
        # Revocation takes effect within a minute: gateway cache + the function's own cache.
        assert 0 < authorizer["authorizerResultTtlInSeconds"] <= 30
        # The published alias (SnapStart), not $LATEST.
        uri = json.dumps(authorizer["authorizerUri"])
        assert "AuthorizerFunctionAliaslive" in uri, name
        unauthorized = body["x-amazon-apigateway-gateway-responses"]["UNAUTHORIZED"]
        assert unauthorized["statusCode"] == "401"
        shape = json.loads(unauthorized["responseTemplates"]["application/json"])
        assert shape["error"]["type"] == "authentication_error"
        assert shape["error"]["code"] == "invalid_api_key"


def test_authorizer_reads_only_the_key_partition(cfn: dict[str, Any]) -> None:
    role = cfn["Resources"]["AuthorizerFunctionRole"]
    statements = [
        st
        for policy in role["Properties"]["Policies"]
        for st in policy["PolicyDocument"]["Statement"]
    ]
    records = [st for st in statements if "dynamodb:GetItem" in st["Action"]]
    assert records and all(
        st["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"] == ["_system#*"]
        for st in records
    )
    assert not any("dynamodb:Query" in st["Action"] or st["Action"] == "*" for st in statements)


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
    "BatchesFunction",
    "VectorFunction",
    "IngestFunction",
    "AgentsFunction",
    "AgentsStreamFunction",
    "JobsFunction",
    "EvalFunction",
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


# BedrockModel, or BedrockFoundationModel behind this region's inference-profile prefix.
CHAT_MODEL = {
    "Fn::If": [
        "HasBedrockModel",
        {"Ref": "BedrockModel"},
        {
            "Fn::Join": [
                "",
                [
                    {"Fn::FindInMap": ["BedrockProfilePrefix", {"Ref": "AWS::Region"}, "Prefix"]},
                    {"Ref": "BedrockFoundationModel"},
                ],
            ]
        },
    ]
}
DERIVED_MODEL_ARNS = [
    {
        "Fn::Sub": [
            "arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}:inference-profile/${Model}",
            {"Model": CHAT_MODEL},
        ]
    },
    {
        "Fn::Sub": [
            "arn:${AWS::Partition}:bedrock:${AWS::Region}::foundation-model/${Model}",
            {"Model": CHAT_MODEL},
        ]
    },
    {"Fn::Sub": "arn:${AWS::Partition}:bedrock:*::foundation-model/${BedrockFoundationModel}"},
    {
        "Fn::Sub": "arn:${AWS::Partition}:bedrock:${AWS::Region}::foundation-model/${BedrockEmbeddingModel}"
    },
]


def test_bedrock_access_is_limited_to_configured_models(cfn: dict[str, Any]) -> None:
    # The given ARNs, or ones derived from the configured models: the inference profile in this
    # account and region only, foundation models by exact id.
    configured = {"Fn::If": ["HasModelArns", {"Ref": "BedrockModelArns"}, DERIVED_MODEL_ARNS]}
    for function in (
        "InferenceFunction",
        "InferenceStreamFunction",
        "SafetyFunction",
        "AgentsFunction",
        "AgentsStreamFunction",
        "JobsFunction",
        "EvalFunction",
    ):
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
    for function in (
        "ControlFunction",
        "InferenceFunction",
        "SafetyFunction",
        "FilesFunction",
        "BatchesFunction",
        "EvalFunction",
    ):
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
    for function, module in (
        ("VectorFunction", "vector_io"),
        ("IngestFunction", "ingest"),
        ("AgentsFunction", "agents"),
        ("JobsFunction", "jobs"),
    ):
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
        r["Properties"]
        for r in res.values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
        and r["Properties"]["EventSourceArn"] == {"Fn::GetAtt": ["IngestQueue", "Arn"]}
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


def _raw() -> dict[str, Any]:
    return yaml_parse((ROOT / "template.yaml").read_text())


def _api_functions(raw: dict[str, Any], api: str) -> set[str]:
    return {
        name
        for name, res in raw["Resources"].items()
        if res["Type"] == "AWS::Serverless::Function"
        and any(
            e["Type"] == "Api" and e["Properties"]["RestApiId"] == {"Ref": api}
            for e in res["Properties"].get("Events", {}).values()
        )
    }


def test_streams_may_run_15_minutes_and_buffered_functions_end_before_the_gateway(
    cfn: dict[str, Any],
) -> None:
    raw = _raw()
    ops = _methods(cfn)
    stream_ops = [op for (api, _, _), op in ops.items() if api == "StreamApi"]
    assert stream_ops
    for op in stream_ops:
        assert op["x-amazon-apigateway-integration"]["timeoutInMillis"] == 900000
    stream_fns = _api_functions(raw, "StreamApi")
    assert stream_fns == {"InferenceStreamFunction", "AgentsStreamFunction"}
    for stream_fn in stream_fns:
        assert cfn["Resources"][stream_fn]["Properties"]["Timeout"] * 1000 >= 900000
    buffered = _api_functions(raw, "Api")
    assert len(buffered) == 8
    for name in buffered:
        # API Gateway's default integration timeout is 29 s: the function must end first.
        assert cfn["Resources"][name]["Properties"]["Timeout"] < 29, name
    assert not any(
        "timeoutInMillis" in op["x-amazon-apigateway-integration"]
        for (api, _, _), op in ops.items()
        if api == "Api"
    )


def test_alarms_reach_a_person_through_a_topic_cloudwatch_can_use(cfn: dict[str, Any]) -> None:
    res = cfn["Resources"]
    topic = res["AlarmTopic"]["Properties"]
    # Not alias/aws/sns: its key policy cannot be changed to let CloudWatch use it.
    assert topic["KmsMasterKeyId"] == {"Ref": "AlarmKey"}
    key = res["AlarmKey"]["Properties"]
    assert key["EnableKeyRotation"] is True
    cloudwatch = [
        s
        for s in key["KeyPolicy"]["Statement"]
        if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert cloudwatch and {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(cloudwatch[0]["Action"])
    subscription = res["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"] == {
        "TopicArn": {"Ref": "AlarmTopic"},
        "Protocol": "email",
        "Endpoint": {"Ref": "AlarmEmail"},
    }
    assert cfn["Conditions"]["HasAlarmEmail"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]
    }
    alarms = {k: r["Properties"] for k, r in res.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
    watched = {
        (a["Namespace"], a["MetricName"], json.dumps(a["Dimensions"], sort_keys=True))
        for a in alarms.values()
    }

    def has(namespace: str, metric: str, *dims: tuple[str, Any]) -> bool:
        want = json.dumps([{"Name": n, "Value": v} for n, v in dims], sort_keys=True)
        return (namespace, metric, want) in watched

    for function in FUNCTIONS:
        for metric in ("Errors", "Throttles"):
            assert has("AWS/Lambda", metric, ("FunctionName", {"Ref": function})), (
                function,
                metric,
            )
    for api, name in (("Api", "${AWS::StackName}-api"), ("StreamApi", "${AWS::StackName}-stream")):
        # The alarm's ApiName must be the RestApi's name, or it watches nothing.
        assert res[api]["Properties"]["Name"] == {"Fn::Sub": name}
        assert has(
            "AWS/ApiGateway",
            "5XXError",
            ("ApiName", {"Fn::Sub": name}),
            ("Stage", {"Ref": "StageName"}),
        ), api
    assert has(
        "AWS/SQS",
        "ApproximateAgeOfOldestMessage",
        ("QueueName", {"Fn::GetAtt": ["IngestQueue", "QueueName"]}),
    )
    assert has(
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        ("QueueName", {"Fn::GetAtt": ["IngestDeadLetterQueue", "QueueName"]}),
    )
    assert has(
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        ("QueueName", {"Fn::GetAtt": ["JobsDeadLetterQueue", "QueueName"]}),
    )


def test_missing_keys_stay_404_list_bucket_is_unconditioned(cfn: dict[str, Any]) -> None:
    """S3 answers a missing key with 403 unless the caller may s3:ListBucket the bucket, and
    GetObject/HeadObject carry no s3:prefix, so a prefix condition would not help."""
    data_arn = {"Fn::GetAtt": ["DataBucket", "Arn"]}
    for function in FUNCTIONS:
        statements = _statements(cfn, function)
        reads_data = any(
            "s3:GetObject" in s["Action"] and "${DataBucket.Arn}" in str(s["Resource"])
            for s in statements
        )
        lists = [s for s in statements if "s3:ListBucket" in s["Action"]]
        assert all("Condition" not in s for s in lists), function
        if reads_data:
            assert any(s["Resource"] == data_arn for s in lists), function
    assert {
        f for f in FUNCTIONS if any("s3:ListBucket" in s["Action"] for s in _statements(cfn, f))
    } == {
        "FilesFunction",
        "BatchesFunction",  # reads input Files, writes chunk objects
        "VectorFunction",
        "IngestFunction",
        "AgentsFunction",
        "AgentsStreamFunction",
        "EvalFunction",  # dataset sources and snapshots
        "JobsFunction",
        "InferenceFunction",  # stored chat completions spilled to objects
    }


def test_queue_accepts_s3_events_from_the_ingest_bucket_only(cfn: dict[str, Any]) -> None:
    res = cfn["Resources"]
    (statement,) = res["IngestQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    source = statement["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::Sub"]
    name = res["IngestBucket"]["Properties"]["BucketName"]["Fn::Sub"]
    # Same name expression, same variables: the ARN is exactly the ingest bucket's.
    assert source[0] == f"arn:${{AWS::Partition}}:s3:::{name[0]}"
    assert source[1] == name[1]
    assert statement["Condition"]["StringEquals"] == {
        "aws:SourceAccount": {"Ref": "AWS::AccountId"}
    }
    assert "*" not in source[0]


def test_versions_are_not_kept_and_only_the_named_stages_exist(cfn: dict[str, Any]) -> None:
    res = cfn["Resources"]
    versions = [r for r in res.values() if r["Type"] == "AWS::Lambda::Version"]
    assert len(versions) == 7  # the SnapStart functions (authorizer included)
    assert all(v["DeletionPolicy"] == "Delete" for v in versions)
    for function in (
        "ControlFunction",
        "InferenceFunction",
        "SafetyFunction",
        "FilesFunction",
        "BatchesFunction",
        "EvalFunction",
    ):
        raw = _raw()["Resources"][function]["Properties"]
        assert raw["AutoPublishAliasAllProperties"] is True
    stages = {k: r["Properties"] for k, r in res.items() if r["Type"] == "AWS::ApiGateway::Stage"}
    # No implicit "Stage" stage (outside the usage plan): OpenApiVersion is set.
    assert set(stages) == {"ApiStage", "StreamApiStage"}
    for name, logs in (("ApiStage", "ApiAccessLogs"), ("StreamApiStage", "StreamApiAccessLogs")):
        setting = stages[name]["AccessLogSetting"]
        assert setting["DestinationArn"] == {"Fn::GetAtt": [logs, "Arn"]}
        assert "$context.requestId" in setting["Format"]
    for api in ("Api", "StreamApi"):
        assert res[api]["DependsOn"] == "ApiGatewayAccount"
    assert res["ApiGatewayAccount"]["Properties"]["CloudWatchRoleArn"] == {
        "Fn::GetAtt": ["ApiGatewayCloudWatchRole", "Arn"]
    }


def test_buckets_expire_old_versions_and_abandoned_uploads(cfn: dict[str, Any]) -> None:
    res = cfn["Resources"]
    for bucket in ("DataBucket", "IngestBucket"):
        rules = res[bucket]["Properties"]["LifecycleConfiguration"]["Rules"]
        assert all(r["Status"] == "Enabled" for r in rules)
        assert any(
            r.get("NoncurrentVersionExpiration")
            == {"NoncurrentDays": {"Ref": "NoncurrentVersionDays"}}
            for r in rules
        )
        assert any("AbortIncompleteMultipartUpload" in r for r in rules)
        # Versioned buckets cannot be deleted while not empty: kept, not a failed stack delete.
        assert res[bucket]["DeletionPolicy"] == "Retain"


def test_portable_no_partition_account_or_region_pinned() -> None:
    text = (ROOT / "template.yaml").read_text()
    assert "arn:aws:" not in text  # arn:${AWS::Partition}:
    accounts = set(re.findall(r"\b\d{12}\b", text))
    assert accounts == {"753240598075"}  # AWS's Lambda Web Adapter publisher, overridable
    # Region names only as the keys of the region mapping (the deploy's region picks one).
    head, _, rest = text.partition("\nMappings:\n")
    mappings, _, tail = rest.partition("\nConditions:\n")
    assert mappings and tail
    assert not re.search(r"\b(us|eu|ap|sa|ca|me|af|il|mx)-[a-z]+-\d\b", head + tail)
    assert all(
        re.fullmatch(r"  #.*|  [A-Za-z]+:|    [a-z0-9-]+: \{Prefix: \"[a-z.-]*\"\}|", line)
        for line in mappings.splitlines()
    ), mappings
    raw = _raw()
    layers = raw["Resources"]["InferenceStreamFunction"]["Properties"]["Layers"]
    adapter = layers[1]["Fn::If"]
    assert adapter[0] == "HasWebAdapterLayerArn"
    assert adapter[1] == {"Ref": "LambdaWebAdapterLayerArn"}
    assert raw["Parameters"]["LambdaWebAdapterLayerArn"]["Default"] == ""


def test_checkov_skips_say_why() -> None:
    """Every checkov skip names a check and gives a reason (CI runs checkov: zero failures)."""
    skips = [
        (name, skip)
        for name, res in _raw()["Resources"].items()
        for skip in res.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    for name, skip in skips:
        assert re.fullmatch(r"CKV_AWS_\d+", skip["id"]), name
        assert len(skip["comment"]) > 20, (name, skip["id"])


def _linted_regions() -> list[str]:
    """The regions .ci/run lints the template in (cfn-lint --regions)."""
    match = re.search(r"cfn-lint --regions ([a-z0-9 -]+?) --", (ROOT / ".ci" / "run").read_text())
    assert match
    return match.group(1).split()


def _deployable_regions() -> set[str]:
    """Every region cfn-lint knows in the partitions the template deploys to (not the isolated
    ones): Fn::FindInMap fails a deploy on a missing key, derived model or not."""
    from cfnlint.helpers import REGIONS

    return {r for r in REGIONS if "-iso" not in r and not r.startswith("eusc-")}


def _function_envs(cfn: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: res["Properties"]["Environment"]["Variables"]
        for name, res in cfn["Resources"].items()
        if res["Type"] == "AWS::Lambda::Function"
        and "BEDROCK_MODEL" in res["Properties"].get("Environment", {}).get("Variables", {})
    }


def _deploy_refs(cfn: dict[str, Any], region: str, **overrides: str) -> dict[str, str]:
    params = {k: str(v.get("Default", "")) for k, v in cfn["Parameters"].items()}
    partition = (
        "aws-us-gov"
        if region.startswith("us-gov-")
        else "aws-cn"
        if region.startswith("cn-")
        else "aws"
    )
    return {
        **PSEUDO_PARAMETERS,
        "AWS::Region": region,
        "AWS::Partition": partition,
        **params,
        **overrides,
    }


@pytest.mark.parametrize(
    ("region", "prefix"),
    [
        ("us-east-1", "us."),
        ("us-west-2", "us."),
        ("eu-west-1", "eu."),
        ("eu-central-1", "eu."),
        ("ap-northeast-1", "apac."),
        ("ap-southeast-2", "apac."),
        ("us-gov-west-1", "us-gov."),
        ("sa-east-1", ""),  # no geography: the foundation model in this region
    ],
)
def test_default_chat_model_follows_the_region(
    cfn: dict[str, Any], region: str, prefix: str
) -> None:
    assert cfn["Parameters"]["BedrockModel"]["Default"] == ""
    refs = _deploy_refs(cfn, region)
    model = prefix + refs["BedrockFoundationModel"]
    envs = _function_envs(cfn)
    assert set(envs) >= set(FUNCTIONS)
    for name, env in envs.items():
        assert cfn_eval(env["BEDROCK_MODEL"], refs, cfn) == model, name
    # The IAM statements name the same model: the profile in this region and account.
    profile = (
        f"arn:{refs['AWS::Partition']}:bedrock:{region}:123456789012:inference-profile/{model}"
    )
    for function in ("InferenceFunction", "InferenceStreamFunction", "SafetyFunction"):
        invoke = [s for s in _statements(cfn, function) if "bedrock:InvokeModel" in s["Action"]]
        assert invoke and all(profile in cfn_eval(s["Resource"], refs, cfn) for s in invoke)


def test_a_given_chat_model_wins_over_the_region(cfn: dict[str, Any]) -> None:
    refs = _deploy_refs(cfn, "eu-west-1", BedrockModel="eu.meta.llama3-2-3b-instruct-v1:0")
    for env in _function_envs(cfn).values():
        assert cfn_eval(env["BEDROCK_MODEL"], refs, cfn) == "eu.meta.llama3-2-3b-instruct-v1:0"
    (invoke,) = [
        s for s in _statements(cfn, "InferenceFunction") if "bedrock:InvokeModel" in s["Action"]
    ]
    arns = cfn_eval(invoke["Resource"], refs, cfn)
    assert (
        "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.meta.llama3-2-3b-instruct-v1:0"
        in arns
    )


def test_the_profile_prefix_mapping_covers_every_region(cfn: dict[str, Any]) -> None:
    mapping = cfn["Mappings"]["BedrockProfilePrefix"]
    linted = _linted_regions()
    assert linted and set(linted) <= set(mapping)
    missing = _deployable_regions() - set(mapping)
    assert not missing, f"add to the BedrockProfilePrefix mapping: {sorted(missing)}"
    prefixes = {entry["Prefix"] for entry in mapping.values()}
    assert prefixes == {"us.", "eu.", "apac.", "us-gov.", ""}
    for region, entry in mapping.items():
        geography = entry["Prefix"].rstrip(".")
        if geography == "apac":
            assert region.startswith("ap-") or region == "me-central-1", region
        elif geography:
            assert region.startswith(f"{geography}-"), region


def test_uploads_api_is_routed_to_the_files_function_behind_the_authorizer(
    cfn: dict[str, Any],
) -> None:
    """Every Uploads route the app serves reaches FilesFunction (with the key authorizer), and
    its role may abort the multipart uploads that assemble large Files."""
    from llamda.routers.uploads import router

    ops = _methods(cfn)
    for route in router.routes:
        path = route.path  # type: ignore[attr-defined]
        gateway = "/v1/uploads" if path == "/v1/uploads" else "/v1/uploads/{proxy+}"
        op = ops[("Api", gateway, "x-amazon-apigateway-any-method")]
        assert "FilesFunction" in json.dumps(op["x-amazon-apigateway-integration"]["uri"])
        assert op["security"] == [{"KeyAuthorizer": []}]
    actions = {a for st in _statements(cfn, "FilesFunction") for a in st["Action"]}
    assert {"s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"} <= actions


AGENT_ROUTES = ("/v1/responses", "/v1/conversations", "/v1/prompts")


def test_agents_routes_reach_the_agents_functions_behind_the_authorizer(
    cfn: dict[str, Any],
) -> None:
    """Every route of the agents API reaches AgentsFunction on the buffered API (with the key
    authorizer); POST /v1/responses also streams through AgentsStreamFunction."""
    from llamda.routers import conversations, prompts, responses

    ops = _methods(cfn)
    served = {
        route.path  # type: ignore[attr-defined]
        for module in (responses, conversations, prompts)
        for route in module.router.routes
    }
    assert {"/v1/responses", "/v1/responses/{response_id}"} <= served
    for base in AGENT_ROUTES:  # whatever the routers serve today, both shapes are routed
        for gateway in (base, f"{base}/{{proxy+}}"):
            assert ("Api", gateway, "x-amazon-apigateway-any-method") in ops, gateway
    assert {p for p in served if not p.startswith(AGENT_ROUTES)} == set()
    for path in served:
        base = next(b for b in AGENT_ROUTES if path.startswith(b))
        gateway = base if path == base else f"{base}/{{proxy+}}"
        op = ops[("Api", gateway, "x-amazon-apigateway-any-method")]
        assert "AgentsFunction.Arn" in json.dumps(op["x-amazon-apigateway-integration"]["uri"])
        assert op["security"] == [{"KeyAuthorizer": []}]
    stream = ops[("StreamApi", "/v1/responses", "post")]
    integration = stream["x-amazon-apigateway-integration"]
    assert "AgentsStreamFunction.Arn" in json.dumps(integration["uri"])
    assert integration["responseTransferMode"] == "STREAM"
    assert "response-streaming-invocations" in str(integration["uri"])
    assert stream["security"] == [{"KeyAuthorizer": []}]
    assert not [k for k in ops if k[0] == "StreamApi" and k[1].startswith(AGENT_ROUTES[1:])]


def test_agents_loop_deadline_is_below_each_functions_timeout(cfn: dict[str, Any]) -> None:
    """The loop's deadline (agents.deadline_seconds from the function's environment, as the aws
    profile reads it) ends a response before its function times out: 29 s buffered (Lambda's
    context bounds it too), 15 minutes streaming (no Lambda context under the Web Adapter)."""
    from llamda.config import load_config

    for function, longest in (("AgentsFunction", 28), ("AgentsStreamFunction", 900)):
        props = cfn["Resources"][function]["Properties"]
        assert props["Timeout"] == longest, function
        env = {k: v for k, v in props["Environment"]["Variables"].items() if isinstance(v, str)}
        assert "LLAMDA_AGENTS_DEADLINE_SECONDS" in env, function
        config = load_config(
            env={"LLAMDA_PROFILE": "aws", "LLAMDA_RECORDS_TABLE": "t", "LLAMDA_BUCKET": "b", **env}
        )
        assert "agents" in config.apis
        # Room to store the response and answer (and, streaming, to close the stream).
        assert 0 < config.agents.deadline_seconds <= props["Timeout"] - 3, function
    # The profile's own default (no variable set) is the buffered path's.
    config = load_config(
        env={"LLAMDA_PROFILE": "aws", "LLAMDA_RECORDS_TABLE": "t", "LLAMDA_BUCKET": "b"}
    )
    assert config.agents.deadline_seconds < 28


AGENT_ACTIONS = {
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
    "s3:GetObject",
    "s3:ListBucket",
    "bedrock:InvokeModel",
    "bedrock:InvokeModelWithResponseStream",
    "bedrock:ApplyGuardrail",
}
JOBS_QUEUE = json.dumps({"Fn::GetAtt": ["JobsQueue", "Arn"]}, sort_keys=True)


def test_agents_functions_are_least_privilege(cfn: dict[str, Any]) -> None:
    """Records, LanceDB read-only (file_search), the configured models (invoke and stream), the
    guardrail only when one is configured, and (to queue background responses) SendMessage on
    JobsQueue: nothing else. JobsFunction also consumes JobsQueue, and only it, and (batches)
    reads and writes the objects under objects/ (batch chunks, output Files)."""
    data_arn = {"Fn::GetAtt": ["DataBucket", "Arn"]}
    sqs_actions = {
        "AgentsFunction": {"sqs:SendMessage"},
        "AgentsStreamFunction": {"sqs:SendMessage"},
        "JobsFunction": {
            "sqs:SendMessage",
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes",
        },
    }
    for function, queue_actions in sqs_actions.items():
        role = cfn["Resources"][f"{function}Role"]["Properties"]["Policies"]
        raw_statements = [st for p in role for st in p["PolicyDocument"]["Statement"]]
        guard = [st for st in raw_statements if "Fn::If" in st]
        assert len(guard) == 1 and guard[0]["Fn::If"][0] == "HasGuardrail"
        assert guard[0]["Fn::If"][2] == {"Ref": "AWS::NoValue"}
        grants = {
            (action, json.dumps(st["Resource"], sort_keys=True))
            for st in _statements(cfn, function)
            for action in st["Action"]
        }
        records = json.dumps({"Fn::GetAtt": ["RecordsTable", "Arn"]}, sort_keys=True)
        lancedb = json.dumps({"Fn::Sub": "${DataBucket.Arn}/lancedb/*"}, sort_keys=True)
        actions = {action for action, _ in grants}
        objects = json.dumps({"Fn::Sub": "${DataBucket.Arn}/objects/*"}, sort_keys=True)
        batch_actions = (
            {"s3:PutObject", "s3:PutObjectTagging", "s3:DeleteObject", "s3:AbortMultipartUpload"}
            if function == "JobsFunction"
            else set()
        )
        assert actions == AGENT_ACTIONS | queue_actions | batch_actions, function
        assert {r for a, r in grants if a.startswith("dynamodb:")} == {records}
        reads = {lancedb, objects} if batch_actions else {lancedb}
        assert {r for a, r in grants if a == "s3:GetObject"} == reads
        assert {r for a, r in grants if a == "s3:ListBucket"} == {json.dumps(data_arn)}
        assert {r for a, r in grants if a.startswith("sqs:")} == {JOBS_QUEUE}, function
        # No write to vector stores, no other function; only the jobs function writes objects.
        writes = {r for a, r in grants if a.startswith(("s3:Put", "s3:Delete", "s3:Abort"))}
        assert writes == ({objects} if batch_actions else set()), function
        assert not any(a.startswith("lambda:") for a in actions)
        # No managed policy that reads every queue of the account (a SAM SQS event adds one).
        managed = cfn["Resources"][f"{function}Role"]["Properties"]["ManagedPolicyArns"]
        assert not [arn for arn in managed if "SQS" in json.dumps(arn)], function


def test_agents_functions_run_from_the_image_the_stream_one_with_the_web_adapter() -> None:
    raw = _raw()["Resources"]
    dockerfile = (ROOT / "functions" / "Dockerfile").read_text()
    buffered = raw["AgentsFunction"]
    assert buffered["Properties"]["PackageType"] == "Image"
    assert "DockerBuildTarget" not in buffered["Metadata"]  # the last stage: no adapter
    stream = raw["AgentsStreamFunction"]
    props, meta = stream["Properties"], stream["Metadata"]
    assert props["PackageType"] == "Image" and meta["Dockerfile"] == "functions/Dockerfile"
    target = meta["DockerBuildTarget"]
    stages = re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, flags=re.M)
    assert target in stages and stages[-1] != target
    # Only the stream stage holds the adapter (an extension runs in every function of its image).
    stream_stage = dockerfile.split(f" AS {target}\n", 1)[1].split("\nFROM ", 1)[0]
    assert "/opt/extensions/lambda-adapter" in stream_stage
    assert dockerfile.count("/opt/extensions/lambda-adapter") == 1
    # An AWS base image: the entry point starts the app (the adapter only relays).
    entry = [*props["ImageConfig"]["EntryPoint"], *props["ImageConfig"]["Command"]]
    assert entry == ["/bin/sh", "/var/task/functions/agents_stream/run.sh"]
    assert (ROOT / "functions" / "agents_stream" / "run.sh").exists()
    assert props["Environment"]["Variables"]["AWS_LWA_INVOKE_MODE"] == "RESPONSE_STREAM"
    assert "AWS_LAMBDA_EXEC_WRAPPER" not in props["Environment"]["Variables"]
    # The app trusts the adapter's request-context header only where the adapter runs.
    assert props["Environment"]["Variables"]["LLAMDA_WEB_ADAPTER"] == "extension"
    assert not [
        name
        for name, res in raw.items()
        if name != "AgentsStreamFunction"
        and "LLAMDA_WEB_ADAPTER" in str(res.get("Properties", {}).get("Environment", {}))
    ]
    assert "LLAMDA_WEB_ADAPTER" not in str(_raw()["Globals"])
    assert "Layers" not in props


def _docker_context_includes(path: str) -> bool:
    """Whether .dockerignore lets ``path`` into the build context (its rules in order, the
    last match wins; ``**`` any run of path segments, ``*`` within one)."""
    included = True
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        rule = line.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = re.escape(rule.lstrip("!")).replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        if re.fullmatch(pattern, path) or re.fullmatch(pattern + "/.*", path):
            included = negate
    return included


def test_every_file_the_dockerfile_copies_is_in_the_build_context() -> None:
    """A COPY of a path .dockerignore leaves out fails `sam build` (the tests build the image's
    tree without Docker, so only this check sees it)."""
    dockerfile = (ROOT / "functions" / "Dockerfile").read_text()
    sources = re.findall(r"^COPY (?!--from)(\S+) ", dockerfile, flags=re.M)
    assert "functions/agents" in sources and "functions/agents_stream" in sources
    for source in sources:
        files = (
            [source]
            if (ROOT / source).is_file()
            else [str(p.relative_to(ROOT)) for p in (ROOT / source).rglob("*.py")]
        )
        assert files, source
        for path in files:
            assert _docker_context_includes(path), path
    assert not _docker_context_includes("tests/conftest.py")
    assert not _docker_context_includes("functions/agents/__pycache__/app.cpython-312.pyc")


def _aws_config(env: dict[str, str]) -> Any:
    from llamda.config import load_config

    return load_config(
        env={"LLAMDA_PROFILE": "aws", "LLAMDA_RECORDS_TABLE": "t", "LLAMDA_BUCKET": "b", **env}
    )


def test_jobs_queue_feeds_the_jobs_function_one_job_at_a_time(cfn: dict[str, Any]) -> None:
    """JobsQueue (SSE, visibility 6x the function timeout, redrive to its DLQ after the aws
    profile's max_receive_count, so the last delivery is the one that records a failure) →
    JobsFunction (15 minutes, batch size 1, partial failures, bounded concurrency)."""
    res = cfn["Resources"]
    fn = res["JobsFunction"]["Properties"]
    assert fn["Timeout"] == 900 and fn["PackageType"] == "Image"
    queue = res["JobsQueue"]["Properties"]
    assert queue["SqsManagedSseEnabled"] is True
    assert res["JobsDeadLetterQueue"]["Properties"]["SqsManagedSseEnabled"] is True
    assert queue["VisibilityTimeout"] >= 6 * fn["Timeout"]
    redrive = queue["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["JobsDeadLetterQueue", "Arn"]}
    assert redrive["maxReceiveCount"] == _aws_config({}).jobs.max_receive_count
    (mapping,) = [
        r["Properties"]
        for r in res.values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
        and r["Properties"]["FunctionName"] == {"Ref": "JobsFunction"}
    ]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["JobsQueue", "Arn"]}
    assert mapping["BatchSize"] == 1
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "JobsMaxConcurrency"}}
    assert int(cfn["Parameters"]["JobsMaxConcurrency"]["MinValue"]) >= 2  # SQS's own minimum
    # The function that consumes it has its log group and the queue its DLQ alarm.
    logs = res["JobsFunctionLogs"]["Properties"]
    assert logs["LogGroupName"] == {"Fn::Sub": "/aws/lambda/${JobsFunction}"}
    alarm = res["JobsDeadLettersAlarm"]["Properties"]
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["JobsDeadLetterQueue", "QueueName"]}}
    ]


def test_agents_and_jobs_functions_read_the_queue_and_budget_the_profile_way(
    cfn: dict[str, Any],
) -> None:
    """The agents functions and JobsFunction get JobsQueue's URL (so background requests are
    queued, not refused) and the aws profile reads it; an empty one means unset. JobsFunction
    gets the background budget (BackgroundMaxSeconds). BatchesFunction queues batch chunks. No
    other function can queue jobs."""
    envs = {
        name: res["Properties"].get("Environment", {}).get("Variables", {})
        for name, res in cfn["Resources"].items()
        if res["Type"] == "AWS::Lambda::Function"
    }
    queued = {name for name, env in envs.items() if "LLAMDA_JOBS_QUEUE_URL" in env}
    assert queued == {
        "AgentsFunction",
        "AgentsStreamFunction",
        "JobsFunction",
        "BatchesFunction",
        "EvalFunction",
    }
    for name in queued:
        assert envs[name]["LLAMDA_JOBS_QUEUE_URL"] == {"Ref": "JobsQueue"}, name
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/llamda-JobsQueue"
    assert _aws_config({"LLAMDA_JOBS_QUEUE_URL": url}).jobs.queue_url == url
    assert _aws_config({"LLAMDA_JOBS_QUEUE_URL": ""}).jobs.queue_url is None
    assert _aws_config({}).jobs.queue_url is None
    budget = envs["JobsFunction"]["LLAMDA_AGENTS_BACKGROUND_MAX_SECONDS"]
    assert budget == {"Ref": "BackgroundMaxSeconds"}
    default = str(cfn["Parameters"]["BackgroundMaxSeconds"]["Default"])
    config = _aws_config({"LLAMDA_AGENTS_BACKGROUND_MAX_SECONDS": default})
    assert config.agents.background_max_seconds == float(default)
    assert (
        _aws_config({"LLAMDA_AGENTS_BACKGROUND_MAX_SECONDS": "120"}).agents.background_max_seconds
        == 120
    )


def test_dashboard_charts_the_jobs_queue() -> None:
    raw = yaml_parse((ROOT / "template.yaml").read_text())
    body = raw["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    widgets = json.loads(re.sub(r"\$\{([^}]+)\}", r"<\1>", body))["widgets"]
    lines = [m for w in widgets for m in w["properties"]["metrics"] if isinstance(m[0], str)]
    assert ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", "<JobsQueue.QueueName>"] in [
        m[:4] for m in lines
    ]
    assert [
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        "QueueName",
        "<JobsDeadLetterQueue.QueueName>",
    ] in [m[:4] for m in lines]
    assert ["AWS/Lambda", "Errors", "FunctionName", "<JobsFunction>"] in [m[:4] for m in lines]


def test_batches_routes_reach_the_batches_function_and_jobs_can_write_outputs(
    cfn: dict[str, Any],
) -> None:
    """Every Batches route reaches BatchesFunction behind the key authorizer; it may queue on
    JobsQueue only, and JobsFunction (which runs the chunks) may read and write the batch
    objects and the output Files."""
    from llamda.routers.batches import router

    ops = _methods(cfn)
    for route in router.routes:
        path = route.path  # type: ignore[attr-defined]
        gateway = "/v1/batches" if path == "/v1/batches" else "/v1/batches/{proxy+}"
        op = ops[("Api", gateway, "x-amazon-apigateway-any-method")]
        assert "BatchesFunction" in json.dumps(op["x-amazon-apigateway-integration"]["uri"])
        assert op["security"] == [{"KeyAuthorizer": []}]
    statements = _statements(cfn, "BatchesFunction")
    sends = [s for s in statements if "sqs:SendMessage" in s["Action"]]
    assert [s["Resource"] for s in sends] == [{"Fn::GetAtt": ["JobsQueue", "Arn"]}]
    assert not any(a.startswith("bedrock:") for s in statements for a in s["Action"])
    # The create reads input Files and writes (or, failing, deletes: a HEAD first) batch input
    # chunks: no other object of any tenant (output Files are JobsFunction's).
    s3 = {
        (a, s["Resource"]["Fn::Sub"])
        for s in statements
        for a in s["Action"]
        if a.startswith("s3:") and a != "s3:ListBucket"
    }
    assert s3 == {
        ("s3:GetObject", "${DataBucket.Arn}/objects/tenants/*/files/*"),
        ("s3:GetObject", "${DataBucket.Arn}/objects/tenants/*/jobs/batches/*"),
        ("s3:PutObject", "${DataBucket.Arn}/objects/tenants/*/jobs/batches/*"),
        ("s3:PutObjectTagging", "${DataBucket.Arn}/objects/tenants/*/jobs/batches/*"),
        ("s3:DeleteObject", "${DataBucket.Arn}/objects/tenants/*/jobs/batches/*"),
    }
    objects = {"Fn::Sub": "${DataBucket.Arn}/objects/*"}
    jobs = {
        a for s in _statements(cfn, "JobsFunction") if s["Resource"] == objects for a in s["Action"]
    }
    assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"} <= jobs
    # Output Files are spooled to /tmp in finish: room for a full batch of large lines.
    jobs_props = cfn["Resources"]["JobsFunction"]["Properties"]
    assert jobs_props["EphemeralStorage"]["Size"] == 10240
    logs = cfn["Resources"]["BatchesFunctionLogs"]["Properties"]
    assert logs["LogGroupName"] == {"Fn::Sub": "/aws/lambda/${BatchesFunction}"}
    for alarm in ("BatchesFunctionErrorsAlarm", "BatchesFunctionThrottlesAlarm"):
        assert cfn["Resources"][alarm]["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_eval_routes_reach_the_eval_function_behind_the_authorizer(cfn: dict[str, Any]) -> None:
    """Every datasets and scoring route the app serves reaches EvalFunction (with the key
    authorizer); its role writes dataset snapshots only under a tenant's datasets/."""
    from llamda.app import _api_routes
    from llamda.routers.eval import router

    ops = _methods(cfn)
    bases = (
        "/v1beta/datasets",
        "/v1beta/datasetio",
        "/v1/scoring-functions",
        "/v1/scoring",
        "/v1alpha/eval/benchmarks",
    )
    served = {route.path for route in _api_routes(router.routes)}
    assert {"/v1beta/datasets", "/v1/scoring/score", "/v1/scoring/score-batch"} <= served
    for path in served:
        base = next(b for b in bases if path == b or path.startswith(f"{b}/"))
        gateway = base if path == base else f"{base}/{{proxy+}}"
        op = ops[("Api", gateway, "x-amazon-apigateway-any-method")]
        assert "EvalFunction" in json.dumps(op["x-amazon-apigateway-integration"]["uri"])
        assert op["security"] == [{"KeyAuthorizer": []}]
    writes = [
        st
        for st in _statements(cfn, "EvalFunction")
        if "s3:PutObject" in st["Action"] or "s3:DeleteObject" in st["Action"]
    ]
    assert writes and all(
        st["Resource"]["Fn::Sub"].endswith("/objects/tenants/*/datasets/*") for st in writes
    )


def test_job_objects_expire_with_their_jobs(cfn: dict[str, Any]) -> None:
    """Chunk spills and eval results are tagged by the code (storage/objects_s3.py
    LIFECYCLE_TAG); the data bucket expires them after JobDays, the days the aws profile keeps
    eval job records (one parameter for both, so a result never outlives its job or the
    reverse)."""
    from llamda.storage.objects import JOB_LIFECYCLE
    from llamda.storage.objects_s3 import LIFECYCLE_TAG

    rules = cfn["Resources"]["DataBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    (rule,) = [r for r in rules if r["Id"] == "ExpireJobObjects"]
    assert rule["Status"] == "Enabled"
    assert rule["TagFilters"] == [{"Key": LIFECYCLE_TAG, "Value": JOB_LIFECYCLE}]
    assert rule["ExpirationInDays"] == {"Ref": "JobDays"}
    env = _raw()["Globals"]["Function"]["Environment"]["Variables"]
    assert env["LLAMDA_JOB_DAYS"] == {"Ref": "JobDays"}
    assert "${env.LLAMDA_JOB_DAYS" in (ROOT / "shared/llamda/profiles/aws.yaml").read_text()


# --- remote vector backends (#17): parameters, secrets, VPC --------------------------------------

IMAGE_FUNCTIONS = {
    "VectorFunction",
    "IngestFunction",
    "MaintenanceFunction",
    "AgentsFunction",
    "AgentsStreamFunction",
    "JobsFunction",
}
BACKEND_ENV = {
    "PGVECTOR_HOST": "PgVectorHost",
    "PGVECTOR_PORT": "PgVectorPort",
    "PGVECTOR_DB": "PgVectorDatabase",
    "PGVECTOR_USER": "PgVectorUser",
    "PGVECTOR_PASSWORD_PARAMETER": "PgVectorPasswordParameter",
    "PGVECTOR_SSLMODE": "PgVectorSslMode",
    "CHROMA_URL": "ChromaUrl",
    "WEAVIATE_HTTP_HOST": "WeaviateHttpHost",
    "WEAVIATE_HTTP_PORT": "WeaviateHttpPort",
    "WEAVIATE_GRPC_HOST": "WeaviateGrpcHost",
    "WEAVIATE_GRPC_PORT": "WeaviateGrpcPort",
    "WEAVIATE_SECURE": "WeaviateSecure",
    "WEAVIATE_API_KEY_PARAMETER": "WeaviateApiKeyParameter",
}
_NO_VALUE = object()


def _eval(cfn: dict[str, Any], value: Any, **params: Any) -> Any:
    """``value`` as a deploy to us-east-1 with ``params`` would see it (AWS::NoValue dropped)."""
    refs: dict[str, Any] = {**_deploy_refs(cfn, "us-east-1"), "AWS::NoValue": _NO_VALUE}
    refs.update(params)

    def drop(node: Any) -> Any:
        if isinstance(node, list):
            return [drop(i) for i in node if i is not _NO_VALUE]
        if isinstance(node, dict):
            return {k: drop(v) for k, v in node.items() if v is not _NO_VALUE}
        return node

    return drop(cfn_eval(value, refs, cfn))


def _backend_policy(cfn: dict[str, Any], **params: Any) -> list[dict[str, Any]] | None:
    """The statements of the backend-secrets policy a deploy with ``params`` creates (None:
    the resource is not created)."""
    policy = cfn["Resources"]["VectorBackendSecrets"]
    if not _eval(cfn, {"Condition": policy["Condition"]}, **params):
        return None
    return _eval(cfn, policy["Properties"]["PolicyDocument"]["Statement"], **params)


def test_remote_vector_backends_are_off_by_default_and_reach_the_image_functions_only(
    cfn: dict[str, Any],
) -> None:
    """Every backend parameter defaults to "off"; the image functions (the ones that reach
    vector stores) get all of them, no other function any; the aws profile reads them."""
    for name in (
        "PgVectorHost",
        "PgVectorPasswordParameter",
        "ChromaUrl",
        "WeaviateHttpHost",
        "WeaviateApiKeyParameter",
        "VpcSubnetIds",
        "VpcSecurityGroupIds",
    ):
        assert cfn["Parameters"][name]["Default"] == "", name
    envs = {
        name: res["Properties"].get("Environment", {}).get("Variables", {})
        for name, res in cfn["Resources"].items()
        if res["Type"] == "AWS::Lambda::Function"
    }
    for name, env in envs.items():
        wired = {var: env[var] for var in BACKEND_ENV if var in env}
        if name in IMAGE_FUNCTIONS:
            assert wired == {var: {"Ref": param} for var, param in BACKEND_ENV.items()}, name
        else:
            assert not wired, name
    env = envs["VectorFunction"]

    def config(**params: Any) -> Any:
        return _aws_config({var: str(_eval(cfn, env[var], **params)) for var in BACKEND_ENV})

    assert config().provider_ids("vector_io") == ["lancedb"]
    on = config(
        PgVectorHost="db.internal",
        PgVectorPasswordParameter="/llamda/pg",
        ChromaUrl="http://10.0.1.20:8000",
        WeaviateHttpHost="10.0.1.30",
        WeaviateApiKeyParameter="/llamda/wv",
    )
    assert on.provider_ids("vector_io") == ["lancedb", "pgvector", "chromadb", "weaviate"]
    _, wv = on.provider("weaviate")
    assert (wv.settings.http_host, wv.settings.http_port, wv.settings.grpc_port) == (
        "10.0.1.30",
        8080,
        50051,
    )
    assert wv.settings.http_secure is False and wv.settings.api_key_parameter == "/llamda/wv"
    _, pg = on.provider("pgvector")
    assert (pg.settings.host, pg.settings.port, pg.settings.sslmode) == (
        "db.internal",
        5432,
        "require",
    )
    assert pg.settings.password_parameter == "/llamda/pg" and pg.settings.password is None


@pytest.mark.parametrize(
    ("given", "action", "resource"),
    [
        (
            "/llamda/pg",
            "ssm:GetParameter",
            "arn:aws:ssm:us-east-1:123456789012:parameter/llamda/pg",
        ),
        ("pgpw", "ssm:GetParameter", "arn:aws:ssm:us-east-1:123456789012:parameter/pgpw"),
        (
            "arn:aws:ssm:eu-west-1:123456789012:parameter/shared/pg",
            "ssm:GetParameter",
            "arn:aws:ssm:eu-west-1:123456789012:parameter/shared/pg",
        ),
        (
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:llamda/pg-AbCdEf",
            "secretsmanager:GetSecretValue",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:llamda/pg-AbCdEf",
        ),
    ],
)
def test_backend_secrets_are_readable_exactly_as_named(
    cfn: dict[str, Any], given: str, action: str, resource: str
) -> None:
    assert _backend_policy(cfn) is None  # nothing named: no policy at all
    # A password named for a backend that is off grants nothing either.
    assert _backend_policy(cfn, PgVectorPasswordParameter=given) is None
    pg = _backend_policy(cfn, PgVectorHost="db.internal", PgVectorPasswordParameter=given)
    assert pg == [
        {"Sid": "ReadPgVectorPassword", "Effect": "Allow", "Action": action, "Resource": resource}
    ]
    weaviate = _backend_policy(cfn, WeaviateHttpHost="wv.internal", WeaviateApiKeyParameter=given)
    assert weaviate == [
        {"Sid": "ReadWeaviateApiKey", "Effect": "Allow", "Action": action, "Resource": resource}
    ]
    both = _backend_policy(
        cfn,
        PgVectorHost="db.internal",
        PgVectorPasswordParameter=given,
        WeaviateHttpHost="wv.internal",
        WeaviateApiKeyParameter="/llamda/wv",
    )
    assert both is not None and [s["Sid"] for s in both] == [
        "ReadPgVectorPassword",
        "ReadWeaviateApiKey",
    ]
    # The parameters refuse wildcards and other services' ARNs (a policy on "parameter/*").
    for name in ("PgVectorPasswordParameter", "WeaviateApiKeyParameter"):
        pattern = re.compile(cfn["Parameters"][name]["AllowedPattern"])
        assert pattern.fullmatch(given) and pattern.fullmatch("")
        for bad in ("*", "/llamda/*", "arn:aws:iam::123456789012:role/x", "arn:aws:ssm:*"):
            assert not pattern.fullmatch(bad), (name, bad)


def test_backend_secrets_policy_is_attached_to_the_image_functions_only(
    cfn: dict[str, Any],
) -> None:
    attached = {
        name.removesuffix("Role")
        for name, res in cfn["Resources"].items()
        if res["Type"] == "AWS::IAM::Role"
        and {
            "Fn::If": [
                "HasVectorBackendSecret",
                {"Ref": "VectorBackendSecrets"},
                {"Ref": "AWS::NoValue"},
            ]
        }
        in res["Properties"].get("ManagedPolicyArns", [])
    }
    assert attached == IMAGE_FUNCTIONS


def test_vpc_placement_is_optional_and_for_the_image_functions_only(cfn: dict[str, Any]) -> None:
    placed = {
        name
        for name, res in cfn["Resources"].items()
        if res["Type"] == "AWS::Lambda::Function" and "VpcConfig" in res["Properties"]
    }
    assert placed == IMAGE_FUNCTIONS
    vpc_policy = "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
    deny = cfn["Resources"]["DenyNetworkInterfaces"]
    subnets, groups = ["subnet-0a", "subnet-0b"], ["sg-0c"]
    for name in placed:
        vpc = cfn["Resources"][name]["Properties"]["VpcConfig"]
        assert _eval(cfn, [vpc]) == []  # default: no VPC
        assert _eval(cfn, vpc, VpcSubnetIds=subnets, VpcSecurityGroupIds=groups) == {
            "SubnetIds": subnets,
            "SecurityGroupIds": groups,
        }
        # SAM adds the ENI permissions a VPC function needs, even for the empty !If...
        arns = cfn["Resources"][f"{name}Role"]["Properties"]["ManagedPolicyArns"]
        assert vpc_policy in arns
        # ...so outside a VPC the deny policy takes back creating interfaces.
        (no_eni,) = [a for a in arns if "DenyNetworkInterfaces" in json.dumps(a)]
        deny_arn = "arn:aws:iam::123456789012:policy/deny"
        assert _eval(cfn, [no_eni], DenyNetworkInterfaces=deny_arn) == [deny_arn]
        assert _eval(cfn, [no_eni], DenyNetworkInterfaces=deny_arn, VpcSubnetIds=subnets) == []
    assert _eval(cfn, {"Condition": deny["Condition"]}) is True
    assert _eval(cfn, {"Condition": deny["Condition"]}, VpcSubnetIds=subnets) is False
    (statement,) = deny["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny" and "ec2:CreateNetworkInterface" in statement["Action"]
    # No other function has SAM's VPC policy.
    others = {
        name.removesuffix("Role")
        for name, res in cfn["Resources"].items()
        if res["Type"] == "AWS::IAM::Role"
        and vpc_policy in res["Properties"].get("ManagedPolicyArns", [])
    }
    assert others == IMAGE_FUNCTIONS


def _rule_value(node: Any, params: dict[str, list[str]]) -> Any:
    """A rule's condition or assertion (the functions these rules use) for list ``params``."""
    ((fn, arg),) = node.items()
    if fn == "Ref":
        return params.get(arg, [""])  # an empty CommaDelimitedList is [""]
    if fn == "Fn::Not":
        return not _rule_value(arg[0], params)
    if fn == "Fn::EachMemberEquals":
        values, want = _rule_value(arg[0], params), arg[1]
        return all(v == want for v in values)
    raise ValueError(fn)


def test_vpc_subnets_and_security_groups_come_together(cfn: dict[str, Any]) -> None:
    """One without the other is refused at deploy (Rules), never a stack outside the VPC."""
    rules = cfn["Rules"]

    def refused(**params: list[str]) -> list[str]:
        return [
            name
            for name, rule in rules.items()
            if name.startswith("Vpc")
            and _rule_value(rule["RuleCondition"], params)
            and not all(_rule_value(a["Assert"], params) for a in rule["Assertions"])
        ]

    assert refused() == []
    assert refused(VpcSubnetIds=["subnet-0a"], VpcSecurityGroupIds=["sg-0c"]) == []
    assert refused(VpcSubnetIds=["subnet-0a", "subnet-0b"]) == ["VpcSecurityGroupsWithSubnets"]
    assert refused(VpcSecurityGroupIds=["sg-0c"]) == ["VpcSubnetsWithSecurityGroups"]
