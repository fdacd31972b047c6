"""Run what `sam build` produced: each function's artifact + layers, in a fresh interpreter with
a clean sys.path, invoked with real API Gateway REST (v1 proxy) events.

Image functions (LanceDB; no Docker engine here) are built as a directory from the image's
requirements with ``build_image_dir`` and invoked the same way.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import yaml

ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = ROOT / ".aws-sam" / "build"
INVOKER = ROOT / "scripts" / "lambda_invoke.py"
ZIP_LIMIT_BYTES = 250 * 1024 * 1024


def base_python() -> str:
    """The interpreter under the venv: only the artifact's directories will be importable."""
    return getattr(sys, "_base_executable", sys.executable)


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


@dataclass
class Artifact:
    """A function as Lambda would run it: code dir (/var/task) + layer dirs (/opt/python)."""

    name: str
    handler: str
    paths: list[Path]
    environment: dict[str, Any] = field(default_factory=dict)
    package_type: str = "Zip"

    @property
    def unzipped_bytes(self) -> int:
        return sum(dir_size(p) for p in self.paths)

    def invoke(
        self,
        events: list[dict[str, Any]],
        env: dict[str, str],
        timeout: float = 120,
        function_timeout_ms: int | None = None,
    ) -> dict[str, Any]:
        """Cold-start a fresh interpreter, send ``events`` in order; return results + timings.
        ``function_timeout_ms``: each invocation's Lambda context starts with that much time
        left (default 29 s), and a longer one is reported as timed out."""
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "result.json"
            request = {
                "paths": [str(p) for p in self.paths],
                "handler": self.handler,
                "events": events,
                "function_name": self.name,
            }
            if function_timeout_ms is not None:
                request["timeout_ms"] = function_timeout_ms
            spawned_at = time.time()
            proc = subprocess.run(
                [base_python(), "-I", "-S", "-B", str(INVOKER), str(out)],
                input=json.dumps(request),
                capture_output=True,
                text=True,
                env=env,
                timeout=timeout,
                cwd=tmp,
            )
            if proc.returncode != 0 or not out.exists():
                raise AssertionError(
                    f"{self.name} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
                )
            report = json.loads(out.read_text())
            report["stdout"], report["stderr"] = proc.stdout, proc.stderr
            # Fresh process → first event served, for scripts/bench/coldstart.py.
            report["cold_start_s"] = report["timings"]["first_event_epoch"] - spawned_at
            return report


# The pseudo parameters a template value may use, as a deploy to us-east-1 would see them.
PSEUDO_PARAMETERS = {
    "AWS::Region": "us-east-1",
    "AWS::Partition": "aws",
    "AWS::AccountId": "123456789012",
    "AWS::URLSuffix": "amazonaws.com",
}


def cfn_eval(value: Any, refs: dict[str, str], template: dict[str, Any]) -> Any:
    """``value`` with the intrinsic functions of environment values and policies evaluated:
    Ref (``refs``: parameters, logical ids, pseudo parameters), Fn::If and the condition
    functions, Fn::FindInMap, Fn::Join, Fn::Split, Fn::Select, Fn::Sub. Anything else is an
    error, not a guess."""

    def ev(node: Any) -> Any:
        if isinstance(node, list):
            return [ev(item) for item in node]
        if not isinstance(node, dict):
            return node
        if len(node) != 1:  # a plain mapping (a policy statement): its values evaluated
            return {key: ev(item) for key, item in node.items()}
        ((fn, arg),) = node.items()
        if fn == "Ref":
            return refs[arg]
        if fn == "Condition":
            return bool(ev(template["Conditions"][arg]))
        if fn == "Fn::If":
            name, yes, no = arg
            return ev(yes) if ev({"Condition": name}) else ev(no)
        if fn == "Fn::Equals":
            left, right = ev(arg)
            return str(left) == str(right)
        if fn == "Fn::Not":
            return not ev(arg[0])
        if fn == "Fn::And":
            return all(ev(a) for a in arg)
        if fn == "Fn::Or":
            return any(ev(a) for a in arg)
        if fn == "Fn::FindInMap":
            name, top, second = ev(arg)
            return template["Mappings"][name][top][second]
        if fn == "Fn::Join":
            sep, items = ev(arg)
            return sep.join(str(i) for i in items)
        if fn == "Fn::Split":
            sep, text = ev(arg)
            return str(text).split(sep)
        if fn == "Fn::Select":
            index, items = ev(arg)
            return items[int(index)]  # out of range fails, as CloudFormation does
        if fn == "Fn::Sub":
            text, local = arg if isinstance(arg, list) else (arg, {})
            names = {**refs, **{k: ev(v) for k, v in local.items()}}
            return re.sub(r"\$\{([^}!]+)\}", lambda m: str(names[m.group(1)]), text)
        if fn.startswith("Fn::"):
            raise ValueError(f"cfn_eval does not evaluate {fn}")
        return {fn: ev(arg)}

    return ev(value)


def _cfn_value(value: Any, refs: dict[str, str], template: dict[str, Any]) -> str:
    return str(cfn_eval(value, refs, template))


def load_artifacts(
    build_dir: Path = BUILD_DIR, refs: dict[str, str] | None = None
) -> dict[str, Artifact]:
    """Every function of the built template, with its environment resolved through ``refs``
    (logical id → physical name; parameters default to their template defaults)."""
    template = yaml.safe_load((build_dir / "template.yaml").read_text())
    params = {k: str(v.get("Default", "")) for k, v in template.get("Parameters", {}).items()}
    refs = {**PSEUDO_PARAMETERS, **params, **(refs or {})}
    glob_fn = template.get("Globals", {}).get("Function", {})
    resources = template["Resources"]
    artifacts = {}
    for name, res in resources.items():
        if res["Type"] != "AWS::Serverless::Function":
            continue
        props = {**glob_fn, **res["Properties"]}
        env = {
            **glob_fn.get("Environment", {}).get("Variables", {}),
            **res["Properties"].get("Environment", {}).get("Variables", {}),
        }
        # Layers of our own (a Ref to a built layer); external ones (the Lambda Web Adapter) are
        # binaries the harness stands in for.
        all_layers = [*glob_fn.get("Layers", []), *res["Properties"].get("Layers", [])]
        layers = [
            resources[layer["Ref"]]["Properties"]["ContentUri"]
            for layer in all_layers
            if isinstance(layer, dict) and "Ref" in layer and layer["Ref"] in resources
        ]
        artifacts[name] = Artifact(
            name=name,
            handler=props["Handler"],
            paths=[
                build_dir / props["CodeUri"],
                *(build_dir / layer / "python" for layer in layers),
            ],
            environment={k: _cfn_value(v, refs, template) for k, v in env.items()},
        )
    return artifacts


def build_image_dir(
    target: Path, requirements: Path, sources: list[Path], python_platform: str | None = None
) -> Path:
    """A directory with ``requirements`` installed for the Lambda Python version, plus source
    trees, precompiled like the zip builds (``build_image_from_dockerfile`` drives it)."""
    uv = Path(sys.executable).parent / "uv"
    target.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(uv),
        "pip",
        "install",
        "--quiet",
        "--target",
        str(target),
        "-r",
        str(requirements),
        "--python",
        base_python(),
        "--python-version",
        "3.12",
    ]
    if python_platform:
        cmd += ["--python-platform", python_platform]
    subprocess.run(cmd, check=True)
    for source in sources:
        subprocess.run(["cp", "-r", str(source), str(target)], check=True)
    return _compile(target)


def _compile(target: Path) -> Path:
    """Precompile like the zip builds (unchecked-hash: the .pyc is used as is)."""
    cmd = [base_python(), "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash"]
    subprocess.run([*cmd, str(target)], check=True)
    return target


def _dockerfile_instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def build_image_from_dockerfile(dockerfile: Path, target: Path) -> Path:
    """The image's task root as a directory, from the Dockerfile itself: its COPY lines and its
    ``pip install --requirement ... --target ${LAMBDA_TASK_ROOT}`` (the only forms it uses), so
    the tested tree cannot drift from the image. ``COPY --from=<image>`` (the Lambda Web
    Adapter binary of the agents-stream stage) copies outside the task root from an image this
    machine cannot pull: the tests stand in for the adapter, as for its layer."""
    task_root = "${LAMBDA_TASK_ROOT}"
    staged: dict[str, Path] = {}  # image path -> repo path, for files copied outside the root
    requirements: list[Path] = []
    sources: list[tuple[Path, str]] = []
    for word, args in _dockerfile_instructions(dockerfile):
        if word == "COPY" and args.startswith("--from="):
            assert task_root not in args, f"unsupported COPY in {dockerfile}: {args}"
        elif word == "COPY":
            src, dest = args.split()
            if dest.startswith(task_root):
                sources.append((ROOT / src, dest[len(task_root) :].lstrip("/")))
            else:
                staged[dest] = ROOT / src
        elif word == "RUN" and "pip install" in args:
            found = re.findall(r"--requirement\s+(\S+)", args)
            assert found and task_root in args, f"unsupported RUN in {dockerfile}: {args}"
            requirements += [staged[name] for name in found]
    assert requirements, f"{dockerfile} installs no requirements"
    if target.exists():
        shutil.rmtree(target)
    # One resolution of every requirements file, as the image's single pip install does.
    target.parent.mkdir(parents=True, exist_ok=True)
    combined = target.parent / f".{target.name}-requirements.txt"
    combined.write_text("".join(f"-r {path}\n" for path in requirements))
    build_image_dir(target, combined, [])
    for src, rel in sources:
        shutil.copytree(src, target / rel, ignore=shutil.ignore_patterns("__pycache__"))
    return _compile(target)


def load_image_artifacts(image_dir: Path, refs: dict[str, str]) -> dict[str, Artifact]:
    """The template's container-image functions, each run from ``image_dir`` with its command."""
    from samtranslator.yaml_helper import yaml_parse

    template = yaml_parse((ROOT / "template.yaml").read_text())
    params = {k: str(v.get("Default", "")) for k, v in template.get("Parameters", {}).items()}
    refs = {**PSEUDO_PARAMETERS, **params, **refs}
    glob_env = template["Globals"]["Function"]["Environment"]["Variables"]
    artifacts = {}
    for name, res in template["Resources"].items():
        props = res.get("Properties", {})
        if res["Type"] != "AWS::Serverless::Function" or props.get("PackageType") != "Image":
            continue
        env = {**glob_env, **props.get("Environment", {}).get("Variables", {})}
        artifacts[name] = Artifact(
            name=name,
            handler=props["ImageConfig"]["Command"][0],
            paths=[image_dir],
            environment={k: _cfn_value(v, refs, template) for k, v in env.items()},
            package_type="Image",
        )
    return artifacts


def api_gateway_event(
    method: str,
    path: str,
    *,
    resource: str | None = None,
    body: bytes | str | dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    query: str = "",
    stage: str = "api",
    tenant: str | None = "default",
    role: str = "member",
) -> dict[str, Any]:
    """An API Gateway REST API (payload v1.0) Lambda proxy event, as the service sends it.
    ``tenant``: the context our REQUEST authorizer adds for a valid key (None: no authorizer
    ran, as on the open health route)."""
    headers = {
        "Host": "abc123.execute-api.us-east-1.amazonaws.com",
        "User-Agent": "e2e",
        **(headers or {}),
    }
    encoded = False
    if isinstance(body, dict):
        body = json.dumps(body)
        headers.setdefault("Content-Type", "application/json")
    if isinstance(body, bytes):
        body, encoded = base64.b64encode(body).decode(), True
    qs = parse_qs(query, keep_blank_values=True) if query else None
    now = time.time()
    return {
        "resource": resource or path,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in qs.items()} if qs else None,
        "multiValueQueryStringParameters": qs,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "res123",
            "resourcePath": resource or path,
            "httpMethod": method,
            "extendedRequestId": "ext-" + uuid.uuid4().hex[:12],
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "path": f"/{stage}{path}",
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": stage,
            "domainPrefix": "abc123",
            "requestTimeEpoch": int(now * 1000),
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": "203.0.113.7", "userAgent": "e2e", "apiKeyId": "key123"},
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "apiId": "abc123",
            **(
                {
                    "authorizer": {
                        "principalId": f"key_e2e{tenant}",
                        "tenant": tenant,
                        "role": role,
                        "key_id": f"key_e2e{tenant}",
                        "rpm": "",
                        "tpm": "",
                        "integrationLatency": 3,
                    }
                }
                if tenant is not None
                else {}
            ),
        },
        "body": body,
        "isBase64Encoded": encoded,
    }


def lambda_env(artifact: Artifact, extra: dict[str, str]) -> dict[str, str]:
    """The environment Lambda gives a function: its template variables, region, credentials."""
    return {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": artifact.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        "LAMBDA_TASK_ROOT": str(artifact.paths[0]),
        "POWERTOOLS_TRACE_DISABLED": "true",
        **{k: str(v) for k, v in artifact.environment.items()},
        **extra,
    }


def response_json(response: dict[str, Any]) -> Any:
    body = response.get("body") or ""
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return json.loads(body) if body else None


def headers_of(response: dict[str, Any]) -> dict[str, str]:
    merged = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    for k, v in (response.get("multiValueHeaders") or {}).items():
        merged[k.lower()] = v[-1]
    return merged


__all__ = [
    "Artifact",
    "api_gateway_event",
    "base_python",
    "build_image_dir",
    "headers_of",
    "lambda_env",
    "load_artifacts",
    "response_json",
]


def s3_notification(
    event_name: str,
    bucket: str,
    key: str,
    *,
    etag: str = "",
    size: int = 0,
    version_id: str | None = None,
    sequencer: str = "",
) -> dict[str, Any]:
    """An S3 event notification message, as S3 sends it to SQS (key URL-encoded, '+' spaces)."""
    from urllib.parse import quote_plus

    obj: dict[str, Any] = {"key": quote_plus(key, safe="/"), "size": size, "eTag": etag}
    if version_id:
        obj["versionId"] = version_id
    obj["sequencer"] = sequencer or f"{time.time_ns():X}"
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                "eventName": event_name,
                "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
                "requestParameters": {"sourceIPAddress": "203.0.113.7"},
                "responseElements": {"x-amz-request-id": uuid.uuid4().hex[:16].upper()},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "ingest",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": "A3EXAMPLE"},
                        "arn": f"arn:aws:s3:::{bucket}",
                    },
                    "object": obj,
                },
            }
        ]
    }


def sqs_event(bodies: list[str], message_ids: list[str] | None = None) -> dict[str, Any]:
    """An SQS event source batch for a Lambda function."""
    ids = message_ids or [str(uuid.uuid4()) for _ in bodies]
    now = str(int(time.time() * 1000))
    return {
        "Records": [
            {
                "messageId": mid,
                "receiptHandle": base64.b64encode(mid.encode()).decode(),
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": now,
                    "SenderId": "AIDAEXAMPLE",
                    "ApproximateFirstReceiveTimestamp": now,
                },
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:llamda-IngestQueue",
                "awsRegion": "us-east-1",
            }
            for mid, body in zip(ids, bodies, strict=True)
        ]
    }


def sqs_event_from_messages(
    messages: list[dict[str, Any]], queue_arn: str, region: str = "us-east-1"
) -> dict[str, Any]:
    """The event Lambda's SQS event source builds from messages it received (ReceiveMessage
    with every attribute): the real message ids, receipt handles, bodies and receive counts."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {
                    name: {
                        "stringValue": value.get("StringValue"),
                        "binaryValue": value.get("BinaryValue"),
                        "stringListValues": [],
                        "binaryListValues": [],
                        "dataType": value["DataType"],
                    }
                    for name, value in m.get("MessageAttributes", {}).items()
                },
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for m in messages
        ]
    }


def receive(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """What the SQS event source receives: every message visible now, with its attributes."""
    return sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=10,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
        WaitTimeSeconds=0,
    ).get("Messages", [])
