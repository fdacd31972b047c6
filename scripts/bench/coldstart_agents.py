"""Cold start of the agents function, both packagings (docs/agents.md says which we ship, why):

- image: AgentsFunction from the LanceDB image (functions/Dockerfile; file_search in-process);
- zip: the same handler over the core layer (no LanceDB), where file_search would have to be a
  call to VectorFunction: its cost is the zip start plus a VectorFunction query, cold (a new
  container) or warm.

Each sample is a fresh `python` process → its first API Gateway event served: a Responses
request with a function tool (one model call), or with file_search over a 50-chunk store (two
model calls and a search; records in moto DynamoDB, LanceDB on moto S3, the fake Bedrock).

    .venv/bin/python scripts/bench/coldstart_agents.py [--runs 7] [--write]

Needs `scripts/build x86_64 --zip-only` (the core layer; done here when missing). The image's
task root is built from functions/Dockerfile into .aws-sam/image-x86_64 (tests/e2e/harness.py).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import boto3

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scripts.bench._report import append_report  # noqa: E402
from tests.e2e.harness import (  # noqa: E402
    BUILD_DIR,
    Artifact,
    api_gateway_event,
    base_python,
    build_image_from_dockerfile,
    lambda_env,
    load_image_artifacts,
    response_json,
)
from tests.fakes.bedrock import FakeBedrockServer, Reply  # noqa: E402

MODEL = "us.meta.llama3-3-70b-instruct-v1:0"
REFS = {
    "RecordsTable": "bench-records",
    "DataBucket": "bench-data",
    "IngestBucket": "bench-ingest",
    "IdempotencyTable": "bench-idempotency",
    "IngestQueue": "",
    "JobsQueue": "",  # no background responses in the benchmark
}
TOOL = {"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}}


def zip_artifact(image_fn: Artifact, into: Path) -> Artifact:
    """AgentsFunction as a zip function would ship: functions/agents (precompiled) over the
    built core layer, with the same environment."""
    layer = BUILD_DIR / "CoreLayer" / "python"
    if not layer.exists() or (BUILD_DIR / ".architecture").read_text().strip() != "x86_64":
        subprocess.run([str(ROOT / "scripts/build"), "x86_64", "--zip-only"], check=True)
    code = into / "agents"
    shutil.copytree(ROOT / "functions" / "agents", code / "functions" / "agents")
    cmd = [base_python(), "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash"]
    subprocess.run([*cmd, str(code)], check=True)
    return Artifact("AgentsFunction", image_fn.handler, [code, layer], image_fn.environment)


def cold(fn: Artifact, env: dict[str, str], event: dict[str, Any], runs: int) -> dict[str, float]:
    """Median and spread of fresh process → first event served."""
    fn.invoke([event], env)  # the OS page cache warm, as a Lambda host's would be
    samples, imports = [], []
    for _ in range(runs):
        report = fn.invoke([event], env)
        result = report["results"][0]
        assert result.get("statusCode") == 200, result
        assert response_json(result)["status"] == "completed", result["body"][:500]
        samples.append(report["cold_start_s"] * 1000)
        imports.append(report["timings"]["import_s"] * 1000)
    return {
        "p50": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "import": statistics.median(imports),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    target = ROOT / ".aws-sam" / "image-x86_64"
    if not (target / "functions" / "agents").exists():
        build_image_from_dockerfile(ROOT / "functions" / "Dockerfile", target)
    image = load_image_artifacts(target, REFS)
    agents, vector = image["AgentsFunction"], image["VectorFunction"]

    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    creds = {"aws_access_key_id": "x", "aws_secret_access_key": "y", "region_name": "us-east-1"}
    boto3.client("s3", endpoint_url=endpoint, **creds).create_bucket(Bucket="bench-data")
    boto3.client("dynamodb", endpoint_url=endpoint, **creds).create_table(
        TableName="bench-records",
        AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in ("pk", "sk")],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    rows: list[tuple[str, dict[str, float]]] = []
    with FakeBedrockServer() as bedrock, tempfile.TemporaryDirectory() as tmp:
        env = {
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "y",
            "AWS_ENDPOINT_URL": endpoint,
            "BEDROCK_ENDPOINT_URL": bedrock.endpoint,
        }
        created = vector.invoke(
            [api_gateway_event("POST", "/v1/vector_stores", body={"name": "bench"})],
            lambda_env(vector, env),
        )["results"][0]
        store = response_json(created)["id"]
        chunks = [{"chunk_id": f"c{i}", "content": f"fact {i} about llamas"} for i in range(50)]
        vector.invoke(
            [
                api_gateway_event(
                    "POST",
                    "/v1/vector-io/insert",
                    body={"vector_store_id": store, "chunks": chunks},
                )
            ],
            lambda_env(vector, env),
        )
        function_tool = api_gateway_event(
            "POST", "/v1/responses", body={"model": MODEL, "input": "hi", "tools": [TOOL]}
        )
        file_search = api_gateway_event(
            "POST",
            "/v1/responses",
            body={
                "model": MODEL,
                "input": "llamas?",
                "tools": [{"type": "file_search", "vector_store_ids": [store]}],
            },
        )
        query = api_gateway_event(
            "POST", "/v1/vector-io/query", body={"vector_store_id": store, "query": "llamas"}
        )
        # Every file_search sample: the model asks for a search, then answers from it.
        bedrock.fake.respond(MODEL, lambda body: _search_then_answer(body))

        zipped = zip_artifact(agents, Path(tmp))
        agents_env, vector_env = lambda_env(agents, env), lambda_env(vector, env)
        rows.append(("image, function tool", cold(agents, agents_env, function_tool, args.runs)))
        rows.append(("image, file_search in-process", cold(agents, agents_env, file_search, 3)))
        rows.append(("zip, function tool", cold(zipped, agents_env, function_tool, args.runs)))
        rows.append(("VectorFunction query, cold", _vector(vector, vector_env, query, args.runs)))
        warm = vector.invoke([query] * 6, vector_env)["timings"]["event_s"][1:]
        rows.append(("VectorFunction query, warm", _flat(statistics.median(warm) * 1000)))
    moto.stop()
    zip_cold = rows[2][1]["p50"] + rows[3][1]["p50"]
    zip_warm = rows[2][1]["p50"] + rows[4][1]["p50"]
    lines = [f"agents function cold start, median of fresh processes ({args.runs} runs)"]
    lines += [
        f"{name:<34}{r['p50']:>7.0f} ms  (min {r['min']:.0f}, max {r['max']:.0f}; "
        f"import {r['import']:.0f} ms)"
        for name, r in rows
    ]
    lines.append(
        f"zip + VectorFunction for file_search: {zip_warm:.0f} ms (vector warm) to "
        f"{zip_cold:.0f} ms (vector cold), plus a Lambda Invoke hop per search"
    )
    report = "\n".join(lines)
    print(report)
    if args.write:
        append_report(
            "Cold start, agents function (image vs zip)",
            f".venv/bin/python scripts/bench/coldstart_agents.py {' '.join(sys.argv[1:])}",
            report,
        )


def _search_then_answer(body: dict[str, Any]) -> Reply:
    answered = any(
        "toolResult" in block for m in body.get("messages", []) for block in m.get("content", [])
    )
    if answered or not body.get("toolConfig"):
        return Reply(text="done")
    names = [t["toolSpec"]["name"] for t in body["toolConfig"].get("tools", [])]
    if "file_search" not in names:
        return Reply(text="done")
    return Reply(tool={"name": "file_search", "input": {"queries": ["llamas"]}})


def _vector(
    fn: Artifact, env: dict[str, str], event: dict[str, Any], runs: int
) -> dict[str, float]:
    samples, imports = [], []
    for _ in range(runs):
        report = fn.invoke([event], env)
        assert report["results"][0]["statusCode"] == 200, report["results"][0]
        samples.append(report["cold_start_s"] * 1000)
        imports.append(report["timings"]["import_s"] * 1000)
    return {
        "p50": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "import": statistics.median(imports),
    }


def _flat(ms: float) -> dict[str, float]:
    return {"p50": ms, "min": ms, "max": ms, "import": 0.0}


if __name__ == "__main__":
    main()
