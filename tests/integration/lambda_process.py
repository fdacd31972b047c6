"""Run a Lambda handler from this repo's sources the way the Lambda Python runtime does, in a
fresh process (a cold container): scripts/lambda_invoke.py with the function's environment
(the run config, moto for every AWS endpoint, fake credentials) and its context's timeout."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from tests.conftest import ROOT


def lambda_env(config: Path, moto: str, function_name: str) -> dict[str, str]:
    """The environment a function of ours gets in these tests."""
    return {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": f"{ROOT / 'shared'}:{ROOT}",
        "LLAMDA_CONFIG": str(config),
        "AWS_LAMBDA_FUNCTION_NAME": function_name,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "AWS_ENDPOINT_URL": moto,
    }


def start_handler(
    work: Path,
    paths: list[str],
    handler: str,
    events: list[dict[str, Any]],
    env: dict[str, str],
    timeout_ms: int = 29000,
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start serving ``events``; the process and the file its results will be in. Its output
    goes to ``<results>.log`` (a pipe nobody reads would fill and stop it)."""
    out = work / f"result-{uuid.uuid4().hex[:6]}.json"
    request = work / f"{out.stem}.request.json"
    request.write_text(
        json.dumps({"paths": paths, "handler": handler, "events": events, "timeout_ms": timeout_ms})
    )
    with request.open("rb") as stdin, out.with_suffix(".log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "lambda_invoke.py"), str(out)],
            stdin=stdin,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    return proc, out


def invoke_handler(
    work: Path,
    paths: list[str],
    handler: str,
    events: list[dict[str, Any]],
    env: dict[str, str],
    timeout_ms: int = 29000,
) -> list[dict[str, Any]]:
    """Serve ``events`` in a fresh process and return each event's result."""
    proc, out = start_handler(work, paths, handler, events, env, timeout_ms)
    assert proc.wait(timeout=180) == 0, out.with_suffix(".log").read_text()[-3000:]
    return json.loads(out.read_text())["results"]
