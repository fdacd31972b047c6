"""Cold start of the LanceDB image function (VectorFunction): a fresh `python` process → its
first API Gateway event served, where that event is a vector-io query (records in moto
DynamoDB, LanceDB on moto S3, the query embedded by the fake Bedrock): imports, LanceDB
connect, table open and search, all in the first event.

    .venv/bin/python scripts/bench/coldstart_image.py [--runs 7] [--image-dir DIR] [--write]

The image's task root is built from functions/Dockerfile (tests/e2e/harness.py) into
.aws-sam/image-x86_64, or taken as built from --image-dir (e.g. another checkout's, to compare
two versions back to back). Measured with our lancedb import (the unused REST namespace client
skipped) and with the full import (LLAMDA_LANCEDB_FULL_IMPORT=1). Wall time from spawn and the
process's CPU time to the first query served (steadier on a shared host).
DESIGN target: <= 1.2 s to the first query.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scripts.bench._report import append_report  # noqa: E402
from tests.e2e.harness import (  # noqa: E402
    api_gateway_event,
    build_image_from_dockerfile,
    lambda_env,
    load_image_artifacts,
    response_json,
)
from tests.fakes.bedrock import FakeBedrockServer  # noqa: E402

REFS = {
    "RecordsTable": "bench-records",
    "DataBucket": "bench-data",
    "IngestBucket": "bench-ingest",
    "IdempotencyTable": "bench-idempotency",
    # The image functions' queues (their environment names them); the benchmark queues nothing.
    "IngestQueue": "",
    "JobsQueue": "",
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--image-dir", type=Path, help="an image task root built already")
    parser.add_argument("--full-import", action="store_true", help="also the full lancedb import")
    args = parser.parse_args()
    target = (args.image_dir or ROOT / ".aws-sam" / "image-x86_64").resolve()
    if args.image_dir is None:
        build_image_from_dockerfile(ROOT / "functions" / "Dockerfile", target)  # the current code
    fn = load_image_artifacts(target, REFS)["VectorFunction"]

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
    lines = []
    with FakeBedrockServer() as bedrock:
        env = {
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "y",
            "AWS_ENDPOINT_URL": endpoint,
            "BEDROCK_ENDPOINT_URL": bedrock.endpoint,
        }
        created = fn.invoke(
            [api_gateway_event("POST", "/v1/vector_stores", body={"name": "bench"})],
            lambda_env(fn, env),
        )["results"][0]
        store = response_json(created)["id"]
        insert = {
            "vector_store_id": store,
            "chunks": [
                {"chunk_id": f"c{i}", "content": f"fact {i} about llamas"} for i in range(50)
            ],
        }
        fn.invoke(
            [api_gateway_event("POST", "/v1/vector-io/insert", body=insert)], lambda_env(fn, env)
        )
        query = api_gateway_event(
            "POST", "/v1/vector-io/query", body={"vector_store_id": store, "query": "llamas"}
        )
        variants = [("lancedb import without the REST client", {})]
        if args.full_import:
            variants.append(("full lancedb import", {"LLAMDA_LANCEDB_FULL_IMPORT": "1"}))
        for label, extra in variants:
            starts, imports, cpus = [], [], []
            fn.invoke([query], {**lambda_env(fn, env), **extra})  # warm the OS page cache
            for _ in range(args.runs):
                report = fn.invoke([query], {**lambda_env(fn, env), **extra})
                assert report["results"][0]["statusCode"] == 200, report["results"][0]
                starts.append(report["cold_start_s"] * 1000)
                imports.append(report["timings"]["import_s"] * 1000)
                cpus.append(report["timings"]["first_event_cpu_s"] * 1000)
            lines.append(
                f"VectorFunction, {label}: first query served "
                f"p50 {statistics.median(starts):.0f} ms "
                f"(min {min(starts):.0f}, max {max(starts):.0f}); CPU to it p50 "
                f"{statistics.median(cpus):.0f} ms; handler import p50 "
                f"{statistics.median(imports):.0f} ms"
            )
    moto.stop()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    lines.append(f"image: {target}; load average {load} at the end ({os.cpu_count()} cores)")
    lines.append("target (DESIGN §9): first query <= 1200 ms p50")
    report = "\n".join(lines)
    print(report)
    if args.write:
        append_report(
            "Cold start, LanceDB image function",
            f".venv/bin/python scripts/bench/coldstart_image.py {' '.join(sys.argv[1:])}",
            report,
        )


if __name__ == "__main__":
    main()
