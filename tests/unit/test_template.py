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
    (stream_fn,) = _api_functions(raw, "StreamApi")
    assert cfn["Resources"][stream_fn]["Properties"]["Timeout"] * 1000 >= 900000
    buffered = _api_functions(raw, "Api")
    assert len(buffered) == 5
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
        "VectorFunction",
        "IngestFunction",
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
    assert len(versions) == 5  # the SnapStart functions (authorizer included)
    assert all(v["DeletionPolicy"] == "Delete" for v in versions)
    for function in ("ControlFunction", "InferenceFunction", "SafetyFunction", "FilesFunction"):
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
