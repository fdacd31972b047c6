"""Cold-start guard: what a built zip function imports before and while serving a request that
needs no AWS call. Contents checks on ``sys.modules`` of the fresh process, not timings: each
module listed here costs tens to hundreds of ms of a cold start (docs/benchmarks.md), and its
first real use still imports it (the other e2e tests serve those requests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Artifact, api_gateway_event, lambda_env

# Imported only by the request that uses them: AWS SDKs (aiobotocore + aiohttp ~0.5 s, boto3
# ~0.2 s), the X-Ray SDK (tracing off), LanceDB and its Arrow/NumPy stack, the upstream HTTP client.
NEVER_AT_IMPORT = (
    "boto3",
    "aioboto3",
    "aiobotocore",
    "aiohttp",
    "aws_xray_sdk",
    "lancedb",
    "pyarrow",
    "numpy",
    "httpx",
)
# Services (and their API models) of the APIs a function does not serve.
OTHER_SERVICES = (
    "llamda.services.agents.responses",
    "llamda.services.agents.conversations",
    "llamda.services.eval.evaluate",
    "llamda.services.batches",
    "llamda.services.vector_stores",
)


def _loaded(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return [name for name in names if name in modules]


@pytest.mark.parametrize(
    "name", ["ControlFunction", "InferenceFunction", "SafetyFunction", "FilesFunction"]
)
def test_zip_function_imports_only_what_a_request_uses(
    artifacts: dict[str, Artifact], name: str
) -> None:
    fn = artifacts[name]
    report: dict[str, Any] = fn.invoke(
        [api_gateway_event("GET", "/v1/health")],
        lambda_env(fn, {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}),
    )
    # The whole app ran (ControlFunction serves the health route; the others answer 404).
    assert report["results"][0]["statusCode"] in (200, 404), report["results"][0]
    at_import = report["modules_at_import"]
    assert _loaded(at_import, NEVER_AT_IMPORT) == []
    assert _loaded(at_import, OTHER_SERVICES) == []
    # Serving a request that needs no AWS call builds no AWS client and no other API's service.
    at_end = report["modules_at_end"]
    assert _loaded(at_end, ("boto3", "aioboto3", "aiobotocore", "aws_xray_sdk", "lancedb")) == []
    assert _loaded(at_end, OTHER_SERVICES) == []


def test_control_function_serves_models_after_a_lean_import(
    artifacts: dict[str, Artifact], aws_env: dict[str, str]
) -> None:
    """The lazily built services still build on the path that needs them: listing models
    reads the registry in DynamoDB (moto) through the aiobotocore client imported then."""
    fn = artifacts["ControlFunction"]
    report = fn.invoke([api_gateway_event("GET", "/v1/models")], lambda_env(fn, aws_env))
    result = report["results"][0]
    assert result["statusCode"] == 200, result
    assert "aiobotocore" not in report["modules_at_import"]
    assert "aiobotocore" in report["modules_at_end"]
    assert "boto3" not in report["modules_at_end"]  # clients come from aiobotocore directly


@pytest.mark.parametrize("name", ["InferenceFunction", "AuthorizerFunction"])
def test_snapstart_restore_reseeds_random(
    artifacts: dict[str, Artifact], tmp_path: Path, name: str
) -> None:
    """Lambda's Python runtime offers ``snapshot_restore_py`` (a stand-in here, on the path as
    /var/runtime is): the handler registers ``random.seed`` to run after each restore, so the
    environments resumed from one snapshot do not share the retry jitter's sequence."""
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    (runtime / "snapshot_restore_py.py").write_text(
        "import os\n"
        "def register_after_restore(fn, *args, **kwargs):\n"
        "    with open(os.environ['HOOKS_OUT'], 'a') as out:\n"
        "        out.write(f'{fn.__self__.__class__.__module__}.{fn.__qualname__}\\n')\n"
    )
    hooks = tmp_path / "hooks.txt"
    base = artifacts[name]
    fn = Artifact(base.name, base.handler, [*base.paths, runtime], base.environment)
    env = lambda_env(fn, {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"})
    # The authorizer refuses a request without a key before any AWS call.
    event = (
        {"type": "REQUEST", "methodArn": "arn:aws:execute-api:us-east-1:1:a/api/GET/v1/models"}
        if name == "AuthorizerFunction"
        else api_gateway_event("GET", "/v1/health")
    )
    report = fn.invoke([event], {**env, "HOOKS_OUT": str(hooks)})
    result = report["results"][0]
    assert result.get("statusCode") == 404 or result.get("errorMessage") == "Unauthorized"
    assert hooks.read_text().splitlines() == ["random.Random.seed"]
