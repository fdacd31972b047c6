"""Run what `sam build` produced: each function's artifact + layers, in a fresh interpreter with
a clean sys.path, invoked with real API Gateway REST (v1 proxy) events.

Image functions (LanceDB; no Docker engine here) are built as a directory from the image's
requirements with ``build_image_dir`` and invoked the same way.
"""

from __future__ import annotations

import base64
import json
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
        self, events: list[dict[str, Any]], env: dict[str, str], timeout: float = 120
    ) -> dict[str, Any]:
        """Cold-start a fresh interpreter, send ``events`` in order; return results + timings."""
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "result.json"
            request = {
                "paths": [str(p) for p in self.paths],
                "handler": self.handler,
                "events": events,
                "function_name": self.name,
            }
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


def _cfn_value(value: Any, refs: dict[str, str]) -> str:
    if isinstance(value, dict) and "Ref" in value:
        return refs[value["Ref"]]
    return str(value)


def load_artifacts(
    build_dir: Path = BUILD_DIR, refs: dict[str, str] | None = None
) -> dict[str, Artifact]:
    """Every function of the built template, with its environment resolved through ``refs``
    (logical id → physical name; parameters default to their template defaults)."""
    template = yaml.safe_load((build_dir / "template.yaml").read_text())
    params = {k: str(v.get("Default", "")) for k, v in template.get("Parameters", {}).items()}
    refs = {**params, **(refs or {})}
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
            environment={k: _cfn_value(v, refs) for k, v in env.items()},
        )
    return artifacts


def build_image_dir(
    target: Path, requirements: Path, sources: list[Path], python_platform: str | None = None
) -> Path:
    """An image function's filesystem as a directory: its requirements installed with the
    Lambda Python version, plus its source trees, then precompiled like the zip builds."""
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
    subprocess.run(
        [
            base_python(),
            "-m",
            "compileall",
            "-q",
            "--invalidation-mode",
            "unchecked-hash",
            str(target),
        ],
        check=True,
    )
    return target


def api_gateway_event(
    method: str,
    path: str,
    *,
    resource: str | None = None,
    body: bytes | str | dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    query: str = "",
    stage: str = "api",
) -> dict[str, Any]:
    """An API Gateway REST API (payload v1.0) Lambda proxy event, as the service sends it."""
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
