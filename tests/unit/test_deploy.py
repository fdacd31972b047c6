"""The deploy path, offline: the example samconfig against the template, scripts/build without a
Docker engine, body limits under Lambda's payload limit, the EMF the code emits against the
dashboard's SEARCH schemas, and why the functions need s3:ListBucket (missing key = 404)."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import stat
import subprocess
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from samtranslator.yaml_helper import yaml_parse

from tests.e2e.harness import api_gateway_event

ROOT = Path(__file__).resolve().parents[2]
SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"
# Lambda's synchronous invocation payload limit (request event), bytes.
LAMBDA_SYNC_PAYLOAD = 6 * 1024 * 1024
# API Gateway REST APIs cap all request headers at 10240 bytes; the event carries them twice
# (headers and multiValueHeaders).
HEADERS_MAX = 10240


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return yaml_parse((ROOT / "template.yaml").read_text())


# -- 1. infra/samconfig.example.toml deploys as written ------------------------------------------


def _deploy_config() -> dict[str, Any]:
    text = (ROOT / "infra" / "samconfig.example.toml").read_text()
    return tomllib.loads(text)["default"]["deploy"]["parameters"]


def _check_value(name: str, spec: dict[str, Any], value: str) -> None:
    """The checks CloudFormation applies to a parameter value (AllowedValues, AllowedPattern,
    Number bounds), plus ours: never empty (`X=` is rejected by sam deploy's parser)."""
    assert value.strip(), f"{name}: empty override"
    if "AllowedValues" in spec:
        assert value in [str(v) for v in spec["AllowedValues"]], (name, value)
    if "AllowedPattern" in spec:
        assert re.fullmatch(spec["AllowedPattern"], value), (name, value)
    if spec["Type"] == "Number":
        number = float(value)
        assert number >= float(spec.get("MinValue", "-inf")), (name, value)
        assert number <= float(spec.get("MaxValue", "inf")), (name, value)


def test_samconfig_example_overrides_are_template_parameters_with_allowed_values(
    template: dict[str, Any],
) -> None:
    config = _deploy_config()
    params = template["Parameters"]
    assert config["resolve_s3"] is True
    assert config["resolve_image_repos"] is True  # the image functions need an ECR repository
    assert "region" not in config  # the user's region (aws configure / --region), not a pin
    overrides = config["parameter_overrides"]
    assert overrides
    for item in overrides:
        name, sep, value = item.partition("=")
        assert sep and name in params, item
        _check_value(name, params[name], value)


def test_value_checks_reject_what_cloudformation_would(template: dict[str, Any]) -> None:
    params = template["Parameters"]
    for name, value in (
        ("Architecture", "arm"),
        ("MaxBodyBytes", "6291456"),
        ("BedrockGuardrailId", ""),
        ("AlarmEmail", "not-an-email"),
    ):
        with pytest.raises(AssertionError):
            _check_value(name, params[name], value)


@pytest.mark.skipif(not SAM_PYTHON.exists(), reason="needs .venv-sam (scripts/bootstrap)")
def test_sam_cli_parses_the_example_overrides() -> None:
    """SAM CLI's own parameter-override parser, as `sam deploy` runs it on samconfig.toml."""
    overrides = _deploy_config()["parameter_overrides"]
    script = (
        "import json, sys\n"
        "from samcli.cli.types import CfnParameterOverridesType\n"
        "print(json.dumps(CfnParameterOverridesType().convert(json.loads(sys.argv[1]), None, None)))"
    )
    ok = subprocess.run(
        [str(SAM_PYTHON), "-c", script, json.dumps(overrides)], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == dict(o.split("=", 1) for o in overrides)
    # The parser does reject an empty override (what the old example had).
    bad = subprocess.run(
        [str(SAM_PYTHON), "-c", script, json.dumps([*overrides, "BedrockGuardrailId="])],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "BedrockGuardrailId=" in bad.stderr


# -- 2. scripts/build without Docker -----------------------------------------------------------


def test_build_without_a_docker_engine_stops_and_says_how(tmp_path: Path) -> None:
    docker = tmp_path / "docker"
    docker.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    docker.chmod(docker.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    proc = subprocess.run(
        [str(ROOT / "scripts" / "build"), "x86_64"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "no Docker engine" in proc.stderr
    for function in (
        "VectorFunction",
        "IngestFunction",
        "AgentsFunction",
        "AgentsStreamFunction",
        "JobsFunction",
    ):
        assert function in proc.stderr, function
    assert "--zip-only" in proc.stderr


def test_zip_only_template_is_marked_not_deployable(template: dict[str, Any]) -> None:
    from scripts.zip_only import MARKER, mark_not_deployable, strip_images

    doc = json.loads(json.dumps(template))
    assert sorted(strip_images(doc)) == [
        "AgentsFunction",
        "AgentsStreamFunction",
        "IngestFunction",
        "JobsFunction",
        "MaintenanceFunction",
        "VectorFunction",
    ]
    assert not any(
        r.get("Properties", {}).get("PackageType") == "Image" for r in doc["Resources"].values()
    )
    mark_not_deployable(doc)
    param = doc["Parameters"][MARKER]
    # No default: CloudFormation refuses a change set without a value for it ...
    assert "Default" not in param
    # ... and a rule that never holds refuses it even if someone supplies the value.
    (assertion,) = doc["Rules"][MARKER]["Assertions"]
    left, right = assertion["Assert"]["Fn::Equals"]
    assert left != right and "zip-only" in assertion["AssertDescription"]
    assert doc["Description"].startswith("NOT DEPLOYABLE")


def test_cloudformation_refuses_the_marked_template(moto_endpoint: str) -> None:
    """CloudFormation (moto's here) refuses the marked template for the missing value before it
    creates anything; unmarked, the same template is accepted. (AWS refuses it already at
    CreateChangeSet, which `sam deploy` calls; moto checks parameters when it creates stacks.)"""
    from scripts.zip_only import mark_not_deployable

    doc: dict[str, Any] = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}}
    cfn = boto3.client("cloudformation", endpoint_url=moto_endpoint, region_name="us-east-1")
    cfn.create_stack(StackName="unmarked", TemplateBody=json.dumps(doc))
    mark_not_deployable(doc)
    with pytest.raises(cfn.exceptions.ClientError, match="ZipOnlyBuildNotDeployable"):
        cfn.create_stack(StackName="zip-only", TemplateBody=json.dumps(doc))
    names = [s["StackName"] for s in cfn.list_stacks()["StackSummaries"]]
    assert "zip-only" not in names and "unmarked" in names


# -- 4. body limits below Lambda's payload limit -----------------------------------------------


def _aws_env(**extra: str) -> dict[str, str]:
    return {"LLAMDA_PROFILE": "aws", "LLAMDA_RECORDS_TABLE": "t", "LLAMDA_BUCKET": "b", **extra}


def test_default_body_limit_fits_lambda_payload_base64_encoded(template: dict[str, Any]) -> None:
    from llamda.config import load_config

    spec = template["Parameters"]["MaxBodyBytes"]
    default, largest = int(spec["Default"]), int(spec["MaxValue"])
    # The template passes MaxBodyBytes to every function; the aws profile's own default agrees.
    for env in (_aws_env(LLAMDA_MAX_BODY_BYTES=str(default)), _aws_env()):
        server = load_config(env=env).server
        assert server.max_body_bytes == server.max_file_bytes == default
    # Uploads are limited by the same number in AWS.
    server = load_config(env=_aws_env(LLAMDA_MAX_BODY_BYTES=str(largest))).server
    assert server.max_file_bytes == largest
    for size in (default, largest):
        event = api_gateway_event(
            "POST",
            "/v1/files",
            body=os.urandom(size),
            headers={"Content-Type": "multipart/form-data; boundary=x", "x-api-key": "k" * 40},
        )
        assert event["isBase64Encoded"]
        assert len(json.dumps(event)) + 2 * HEADERS_MAX < LAMBDA_SYNC_PAYLOAD, size
    # Just above what fits: the parameter refuses it (MaxValue), so no deploy can set it.
    too_big = LAMBDA_SYNC_PAYLOAD * 3 // 4
    assert largest < too_big


# -- 6. the EMF the code emits matches the dashboard -------------------------------------------


def _metric_call_sites() -> list[tuple[str, dict[str, str], list[str]]]:
    """Every `record_metrics({...}, name=value)` in the package: (where, dimensions, names)."""
    sites = []
    for path in sorted((ROOT / "shared" / "llamda").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "record_metrics"
            ):
                dims = node.args[0]
                assert isinstance(dims, ast.Dict), f"{path}: dimensions must be a dict literal"
                keys = [k.value for k in dims.keys if isinstance(k, ast.Constant)]
                names = [k.arg for k in node.keywords if k.arg]
                sites.append((f"{path.name}:{node.lineno}", {k: "x" for k in keys}, names))
    return sites


def _dashboard_searches(template: dict[str, Any]) -> list[tuple[str, frozenset[str], str]]:
    body = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    widgets = json.loads(re.sub(r"\$\{[^}]+\}", "X", body))["widgets"]
    out = []
    for widget in widgets:
        for metric in widget["properties"]["metrics"]:
            if isinstance(metric[0], dict) and "SEARCH(" in metric[0].get("expression", ""):
                m = re.search(r"SEARCH\('\{([^}]*)\} MetricName=\"(\w+)\"", metric[0]["expression"])
                assert m, metric
                namespace, *dims = [d.strip() for d in m.group(1).split(",")]
                out.append((namespace, frozenset(dims), m.group(2)))
    return out


def test_dashboard_searches_match_the_emitted_dimension_sets(
    template: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The functions' environment as the template sets it, in Lambda (where metrics are emitted).
    for name, value in template["Globals"]["Function"]["Environment"]["Variables"].items():
        if isinstance(value, str):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "llamda-test")
    from llamda.observability import record_metrics

    sites = _metric_call_sites()
    assert len(sites) >= 3
    capsys.readouterr()
    for _, dims, names in sites:
        record_metrics(dims, **dict.fromkeys(names, 1.0))
    emitted = set()
    for line in capsys.readouterr().out.splitlines():
        emf = json.loads(line)["_aws"]["CloudWatchMetrics"][0]
        for dim_set in emf["Dimensions"]:
            for metric in emf["Metrics"]:
                emitted.add((emf["Namespace"], frozenset(dim_set), metric["Name"]))
    assert any("service" in dims for _, dims, _ in emitted)  # Powertools adds it
    searches = set(_dashboard_searches(template))
    # A SEARCH schema matches a metric only with exactly its dimension set.
    assert emitted <= searches, emitted - searches
    assert searches <= emitted, searches - emitted


# -- 7. a missing object is a 404 only with s3:ListBucket --------------------------------------


class _DeniedS3(BaseHTTPRequestHandler):
    """S3 as it answers a missing key to a caller without s3:ListBucket: 403 AccessDenied."""

    def _deny(self) -> None:
        body = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = _deny

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def denied_s3() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _DeniedS3)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


async def _missing(endpoint: str) -> tuple[str, str]:
    from llamda.errors import NotFoundError
    from llamda.storage.objects_s3 import S3ObjectStore

    store = S3ObjectStore("llamda-listbucket", prefix="objects", endpoint_url=endpoint)
    try:
        try:
            await store.get("files/file-missing")
            got = "found"
        except NotFoundError:
            got = "missing"
        except Exception as exc:  # the point: anything but "missing"
            got = type(exc).__name__
        try:
            deleted = str(await store.delete("files/file-missing"))
        except Exception as exc:
            deleted = type(exc).__name__
        return got, deleted
    finally:
        await store.close()


def test_missing_object_is_not_found_only_when_s3_answers_404(
    moto_endpoint: str, denied_s3: str
) -> None:
    """With ListBucket S3 answers 404 (moto): the store reports "missing". Without it S3 answers
    403 (the fake): the store cannot tell and fails, so the template grants ListBucket."""
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(
        Bucket="llamda-listbucket"
    )
    assert asyncio.run(_missing(moto_endpoint)) == ("missing", "False")
    got, deleted = asyncio.run(_missing(denied_s3))
    assert got != "missing" and deleted != "False"
