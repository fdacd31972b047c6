"""Batches benchmark: rows per second per worker with an instant model, and a large batch through
the job runner on moto (S3 + DynamoDB + SQS) with its request counts and a cost model.

1. Per worker: one process (one JobsFunction container's worth) runs a batch of chat lines
   against scripts/bench/instant_upstream.py, locally (SQLite records, local objects, the
   in-process runner): the create (input checked and stored) and the run are timed apart.
2. On moto: the aws-shaped config (DynamoDB records, S3 objects, SQS JobsQueue); the create as
   BatchesFunction does it, then the jobs handler (lambda_jobs.sqs_handler) fed by a poller that
   does what the Lambda event source mapping does (ReceiveMessage batch size 1, invoke, delete
   on success), with a 900 s context like JobsFunction's. Every AWS request the code makes is
   counted by operation (a botocore ``before-send`` hook on the aioboto3 clients), and so are
   the poller's own SQS requests. The cost model prices them (see PRICES).

Run: ``.venv/bin/python scripts/bench/batches.py [--rows 10000] [--worker-rows 2000] [--write]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "shared"), str(ROOT)]
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")  # one log line per row otherwise

# us-east-1 list prices (USD) from the AWS pricing pages as of 2025 (not re-checked on the day
# of the run): Lambda x86 per GB-second and per request, SQS standard per request (64 KB
# chunks), S3 Standard PUT/GET per request, DynamoDB on-demand per write/read request unit
# (after the November 2024 price cut). The model calls themselves are not included.
PRICES = {
    "lambda_gb_s": 0.0000166667,
    "lambda_request": 0.20 / 1e6,
    "sqs_request": 0.40 / 1e6,
    "s3_put": 0.005 / 1000,
    "s3_get": 0.0004 / 1000,
    "ddb_write": 0.625 / 1e6,
    "ddb_read": 0.125 / 1e6,
}
JOBS_MEMORY_GB = 2.0  # template.yaml JobsFunction MemorySize 2048
BATCHES_MEMORY_GB = 1.0  # template.yaml Globals MemorySize 1024 (BatchesFunction)
MODEL = "bench-model"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int) -> None:
    for _ in range(300):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def _lines(rows: int) -> bytes:
    return "".join(
        json.dumps(
            {
                "custom_id": f"r{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": MODEL, "messages": [{"role": "user", "content": f"row {i}"}]},
            }
        )
        + "\n"
        for i in range(rows)
    ).encode()


CONFIG = """
version: 1
profile: {profile}
apis: [files, batches]
providers:
  inference:
    - {{provider_id: up, provider_type: vllm, config: {{url: "http://127.0.0.1:{up}/v1"}}}}
models:
  - {{model_id: {model}, provider_id: up, provider_model_id: {model}}}
storage:
{storage}
  vectors: {{uri: "{home}/lancedb"}}
routing: {{max_retries: 0}}
jobs: {{{jobs}}}
"""


class Counting:
    """Counts every request the aioboto3 clients send, by service and operation."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        from llamda.aws import AioClients

        original = AioClients.client
        counts = self.counts

        async def client(self: Any, service: str, **kw: Any) -> Any:
            made = await original(self, service, **kw)
            if not getattr(made, "_bench_counted", False):

                def count(event_name: str, **_: Any) -> None:
                    counts[".".join(event_name.split(".")[1:3])] += 1

                made.meta.events.register("before-send", count)
                made._bench_counted = True
            return made

        AioClients.client = client  # type: ignore[method-assign]


async def _create(config_path: Path, data: bytes) -> tuple[str, float]:
    """Upload the input File and create the batch (the Files and Batches functions' work)."""
    from llamda.api.batches import CreateBatchRequest
    from llamda.config import load_config
    from llamda.context import tenant_scope
    from llamda.stack import Stack

    stack = Stack(load_config(config_path))
    try:
        with tenant_scope("bench"):
            file = await stack.files.create(data, "in.jsonl", "batch", None)
            start = time.perf_counter()
            batch = await stack.batches.create(
                CreateBatchRequest(
                    input_file_id=file.id,
                    endpoint="/v1/chat/completions",
                    completion_window="24h",
                ),
                None,
            )
            return batch.id, time.perf_counter() - start
    finally:
        await stack.close()


def per_worker(rows: int, up_port: int) -> dict[str, Any]:
    from llamda.config import load_config
    from llamda.context import tenant_scope
    from llamda.stack import Stack

    home = Path(tempfile.mkdtemp(prefix="bench-batches-"))
    storage = (
        f'  records: {{type: sqlite, path: "{home}/r.sqlite3"}}\n'
        f'  objects: {{type: local, root: "{home}/o"}}'
    )
    config = home / "run.yaml"
    config.write_text(
        CONFIG.format(profile="local", up=up_port, model=MODEL, storage=storage, home=home, jobs="")
    )

    async def main() -> dict[str, Any]:
        from llamda.api.batches import CreateBatchRequest

        stack = Stack(load_config(config))
        try:
            with tenant_scope("bench"):
                file = await stack.files.create(_lines(rows), "in.jsonl", "batch", None)
                t0 = time.perf_counter()
                batch = await stack.batches.create(
                    CreateBatchRequest(
                        input_file_id=file.id,
                        endpoint="/v1/chat/completions",
                        completion_window="24h",
                    ),
                    None,
                )
                t1 = time.perf_counter()
                # Polled as a client does (the runner has no completion event to wait on).
                done_states = ("completed", "failed")
                while (await stack.batches.get(batch.id)).status not in done_states:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
                t2 = time.perf_counter()
                done = await stack.batches.get(batch.id)
        finally:
            await stack.close()
        return {
            "rows": rows,
            "create_s": t1 - t0,
            "run_s": t2 - t1,
            "completed": done.request_counts.completed,
            "chunk_rows": stack.config.jobs.chunk_rows,
            "concurrency": stack.config.jobs.max_concurrency_per_model,
        }

    return asyncio.run(main())


class LambdaContext:
    def __init__(self, timeout_ms: int = 900_000):
        self.function_name = "JobsFunction"
        self.function_version = "$LATEST"
        self.invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:JobsFunction"
        self.memory_limit_in_mb = 2048
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + timeout_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def on_moto(rows: int, up_port: int) -> dict[str, Any]:
    import boto3

    moto_port = _port()
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(moto_port)
        endpoint = f"http://127.0.0.1:{moto_port}"
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        from tests.conftest import records_table

        table = records_table(endpoint)
        sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
        queue = sqs.create_queue(QueueName="JobsQueue")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
            Bucket="data"
        )
        home = Path(tempfile.mkdtemp(prefix="bench-batches-moto-"))
        storage = (
            f'  records: {{type: dynamodb, table_name: "{table}", region_name: us-east-1, '
            f'endpoint_url: "{endpoint}"}}\n'
            f"  objects: {{type: s3, bucket: data, prefix: objects, region_name: us-east-1, "
            f'endpoint_url: "{endpoint}"}}'
        )
        config = home / "run.yaml"
        config.write_text(
            CONFIG.format(
                profile="aws",
                up=up_port,
                model=MODEL,
                storage=storage,
                home=home,
                jobs=f'queue_url: "{queue}"',
            )
        )
        os.environ["LLAMDA_CONFIG"] = str(config)
        counting = Counting()
        batch_id, create_s = asyncio.run(_create(config, _lines(rows)))
        create_counts = Counter(counting.counts)
        counting.counts.clear()

        from llamda.lambda_jobs import sqs_handler
        from tests.e2e.harness import sqs_event_from_messages

        handler = sqs_handler()
        poller: Counter[str] = Counter()
        invocations = 0
        handler_s = 0.0
        t0 = time.perf_counter()
        finished = False
        while not finished:
            poller["sqs.ReceiveMessage"] += 1
            got = sqs.receive_message(
                QueueUrl=queue, MaxNumberOfMessages=1, WaitTimeSeconds=1, AttributeNames=["All"]
            ).get("Messages", [])
            if not got:
                finished = _status(config, batch_id) in ("completed", "failed", "cancelled")
                continue
            start = time.perf_counter()
            result = handler(sqs_event_from_messages(got, arn), LambdaContext())
            handler_s += time.perf_counter() - start
            invocations += 1
            if not result["batchItemFailures"]:
                poller["sqs.DeleteMessage"] += 1
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=got[0]["ReceiptHandle"])
        wall = time.perf_counter() - t0
        run_counts = Counter(counting.counts)
        return {
            "rows": rows,
            "create_s": create_s,
            "create_counts": create_counts,
            "run_wall_s": wall,
            "handler_s": handler_s,
            "invocations": invocations,
            "run_counts": run_counts,
            "poller": poller,
            "status": _status(config, batch_id),
        }
    finally:
        moto.terminate()
        moto.wait(timeout=30)


def _status(config: Path, batch_id: str) -> str:
    async def main() -> str:
        from llamda.config import load_config
        from llamda.context import tenant_scope
        from llamda.stack import Stack

        stack = Stack(load_config(config))
        try:
            with tenant_scope("bench"):
                return (await stack.batches.get(batch_id)).status
        finally:
            await stack.close()

    return asyncio.run(main())


def _cost(result: dict[str, Any]) -> tuple[dict[str, float], dict[str, int]]:
    counts: Counter[str] = Counter()
    for part in ("create_counts", "run_counts", "poller"):
        counts.update(result[part])
    sqs = sum(v for k, v in counts.items() if k.startswith("sqs."))
    s3_put = sum(
        counts[k]
        for k in (
            "s3.PutObject",
            "s3.CreateMultipartUpload",
            "s3.UploadPart",
            "s3.CompleteMultipartUpload",
            "s3.ListObjectsV2",
            "s3.CopyObject",
        )
    )
    s3_get = counts["s3.GetObject"] + counts["s3.HeadObject"]
    s3_other = counts["s3.DeleteObject"] + counts["s3.DeleteObjects"]  # free
    ddb_write = sum(
        counts[k] for k in ("dynamodb.PutItem", "dynamodb.UpdateItem", "dynamodb.DeleteItem")
    )
    ddb_read = counts["dynamodb.GetItem"] + counts["dynamodb.Query"]
    gb_s = result["handler_s"] * JOBS_MEMORY_GB + result["create_s"] * BATCHES_MEMORY_GB
    cost = {
        "lambda": gb_s * PRICES["lambda_gb_s"]
        + (result["invocations"] + 1) * PRICES["lambda_request"],
        "sqs": sqs * PRICES["sqs_request"],
        "s3": s3_put * PRICES["s3_put"] + s3_get * PRICES["s3_get"],
        "dynamodb": ddb_write * PRICES["ddb_write"] + ddb_read * PRICES["ddb_read"],
    }
    totals = {
        "sqs": sqs,
        "s3_put_list": s3_put,
        "s3_get": s3_get,
        "s3_delete": s3_other,
        "ddb_write": ddb_write,
        "ddb_read": ddb_read,
        "gb_s_milli": int(gb_s * 1000),
    }
    return cost, totals


def report(worker: dict[str, Any], moto: dict[str, Any]) -> str:
    cost, totals = _cost(moto)
    total = sum(cost.values())
    lines = [
        f"machine: {os.cpu_count()} cores, {sys.platform}; instant upstream (uvicorn, loopback)",
        "",
        f"per worker (local runner, SQLite + local objects, chunk_rows {worker['chunk_rows']}, "
        f"{worker['concurrency']} calls per model at once):",
        f"  {worker['rows']} rows: create (check + store input) {worker['create_s']:.2f} s, "
        f"run {worker['run_s']:.2f} s = {worker['rows'] / worker['run_s']:.0f} rows/s "
        f"({worker['completed']} completed)",
        "",
        f"{moto['rows']} rows on moto (DynamoDB + S3 + SQS), jobs handler polled like the event "
        "source mapping:",
        f"  create {moto['create_s']:.2f} s; run wall {moto['run_wall_s']:.1f} s "
        f"(handler {moto['handler_s']:.1f} s in {moto['invocations']} invocation(s)) = "
        f"{moto['rows'] / moto['handler_s']:.0f} rows/s; status {moto['status']}",
        f"  SQS requests {totals['sqs']} (poller {sum(moto['poller'].values())}, "
        f"app {totals['sqs'] - sum(moto['poller'].values())})",
        f"  S3 writes/lists {totals['s3_put_list']}, reads {totals['s3_get']}, "
        f"deletes {totals['s3_delete']}; DynamoDB writes {totals['ddb_write']}, "
        f"reads {totals['ddb_read']}",
        "  by operation: "
        + ", ".join(
            f"{k} {v}" for k, v in sorted((moto["create_counts"] + moto["run_counts"]).items())
        ),
        "",
        f"cost model (us-east-1 list prices, 2025; model calls excluded) for {moto['rows']} rows:",
        f"  Lambda {totals['gb_s_milli'] / 1000:.1f} GB-s (jobs {JOBS_MEMORY_GB:g} GB x handler "
        f"time + create at {BATCHES_MEMORY_GB:g} GB) ${cost['lambda']:.5f}",
        f"  SQS ${cost['sqs']:.6f}, S3 ${cost['s3']:.5f}, DynamoDB ${cost['dynamodb']:.6f}",
        f"  total ${total:.5f} = ${total / moto['rows'] * 1e6:.2f} per million rows",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000, help="rows of the moto batch")
    parser.add_argument("--worker-rows", type=int, default=2_000, help="rows per worker run")
    parser.add_argument("--write", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()
    up_port = _port()
    upstream = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts/bench/instant_upstream.py"), str(up_port)]
    )
    try:
        _wait_port(up_port)
        worker = per_worker(args.worker_rows, up_port)
        moto = on_moto(args.rows, up_port)
    finally:
        upstream.terminate()
        upstream.wait(timeout=30)
    text = report(worker, moto)
    print(text)
    if args.write:
        from scripts.bench._report import append_report

        command = (
            f".venv/bin/python scripts/bench/batches.py --rows {args.rows} "
            f"--worker-rows {args.worker_rows} --write"
        )
        append_report("Batches", command, text)


if __name__ == "__main__":
    main()
