"""What Llamda costs on AWS per 1M chat calls and per 10k ingested documents, next to a Llama
Stack container running all month on Fargate: the case for scale-to-zero, in numbers.

    .venv/bin/python scripts/bench/cost.py [--measure-rss] [--write]

Every input is a named constant below with its source: rerun with new prices or new
measurements. ``--measure-rss`` starts Llama Stack 0.7.3 (``.venv-bench-peer``, see
scripts/bench/setup_peer) with scripts/bench/llama_stack_minimal.yaml against the instant
upstream, serves some chat calls and reads the server's resident memory from /proc (its whole
process tree), instead of using PEER_RSS_MIB.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# --- AWS prices, us-east-1, on-demand, first tier (free tiers ignored) ------------------------
# Looked up on 2026-12-02 in stored copies of these pages (the pages' own dates in brackets).
LAMBDA_ARM_GB_S = 0.0000133334  # $/GB-s, Arm, first 7.5B GB-s/month
# cloudchipr.com/blog/aws-lambda-pricing ("2024", US East N. Virginia); same figure in
# git.mcrn.ar/mariano/lambda_local_runner docs/lambdas-md/lambda-13-cost.md (2026-05-11).
LAMBDA_REQUEST = 0.20 / 1e6  # $/invocation; lambda-13-cost.md above (2026-05-11)
APIGW_REST_REQUEST = 3.50 / 1e6  # $/call, REST API (template.yaml: AWS::Serverless::Api),
# first 333M/month; docs.aws.amazon.com/whitepapers/latest/
# best-practices-api-gateway-private-apis-integration/cost-optimization.html (undated)
DDB_WRITE_UNIT = 0.625 / 1e6  # $/write request unit, on-demand; airbyte.com/
DDB_READ_UNIT = 0.125 / 1e6  # data-engineering-resources/dynamodb-pricing (after the
# Nov 2024 on-demand price cut; aws.amazon.com/blogs/aws/amazon-dynamodb-on-demand-... updated
# 2025-01-31 "to clarify the reduced on-demand pricing")
S3_PUT = 0.005 / 1000  # $/PUT, COPY, POST, LIST (S3 Standard); c3x.dev/blog/
S3_GET = 0.0004 / 1000  # s3-request-fees-explained (undated)
SQS_REQUEST = 0.40 / 1e6  # $/request (64 KB chunk), standard queue; cloudburn.io/blog/
# amazon-sqs-pricing (March 2026)
FARGATE_ARM_VCPU_HOUR = 0.03238  # $/vCPU-hour, Linux/ARM; vantage.sh/blog/fargate-pricing
FARGATE_ARM_GB_HOUR = 0.00356  # $/GB-hour, Linux/ARM (originally 2021, updated; us-east-1)
# Fargate task sizes (vCPU, GB), smallest first: docs.aws.amazon.com/AmazonECS/latest/
# userguide/task-cpu-memory-error.html
FARGATE_SIZES = [(0.25, 0.5), (0.25, 1.0), (0.25, 2.0), (0.5, 1.0), (0.5, 2.0), (0.5, 3.0)]
HOURS_PER_MONTH = 730  # AWS's convention for monthly prices

# --- our deployment (template.yaml) -----------------------------------------------------------
INFERENCE_MEMORY_GB = 1024 / 1024  # InferenceFunction: Globals MemorySize 1024
AUTHORIZER_MEMORY_GB = 512 / 1024  # AuthorizerFunction MemorySize
INGEST_MEMORY_GB = 2048 / 1024  # IngestFunction MemorySize
INGEST_BATCH = 10  # IngestFunction SQS event BatchSize

# --- measured -----------------------------------------------------------------------------------
# Gateway overhead per chat call, as deployed: p50 3.57 ms over the instant upstream
# (docs/benchmarks.md, "Gateway overhead, before and after", 2026-12-02, the last "after" run).
# The Lambda function waits for the model, so it is billed overhead + model latency.
CHAT_OVERHEAD_S = 0.00357
MODEL_LATENCIES_S = (0.5, 3.0)  # stated, not measured: a short and a long model answer
# Authorizer: not measured here; ASSUMED 20 ms billed per run (2 GetItems on a warm container).
AUTHORIZER_S = 0.020
# Ingest (scripts/bench/ingest_s3.py, docs/benchmarks.md "S3 upload → searchable", 2026-12-02):
# handler seconds per 20-page PDF in the throughput run (4 concurrent writers to one store, a
# loaded 2-core machine) and alone (one document, the single-document p50 invocation).
INGEST_HANDLER_S_CONCURRENT = 8.222
INGEST_HANDLER_S_ALONE = 1.078
INGEST_BATCH_MEAN = 8.6  # messages per invocation in that run
# Requests per document, from moto's count in the same benchmark (see ingest_requests()).
# 40-document run, batch 10, one store (LanceDB's reads grow with the table: count_rows before
# each write scans its fragments). PUT tier: PUT (incl. the upload itself) + LIST + POST; GET
# tier: GET + HEAD. DynamoDB: GetItem (strongly consistent, < 4 KB: 1 unit) + Query; PutItem +
# UpdateItem (items taken as <= 1 KB: 1 unit). SQS: S3's SendMessage (not seen by the count)
# + ReceiveMessage (incl. the poller's empty 1 s polls) + DeleteMessageBatch.
INGEST_S3_PUTS = 12.0
INGEST_S3_GETS = 39.6
INGEST_DDB_WRITES = 6.2
INGEST_DDB_READS = 5.2
INGEST_SQS = 2.1
# Llama Stack 0.7.3 with llama_stack_minimal.yaml: resident memory after serving chat calls.
PEER_RSS_MIB = 149.0  # measured 2026-12-02 (--measure-rss: 200 chat calls, process tree)


# --- DynamoDB work of one chat call (read from the code, 2026-12-02) ---------------------------
# API Gateway caches the authorizer's answer per Authorization header for 30 s
# (template.yaml ReauthorizeEvery: 30); when it runs, the authorizer reads api_key_hashes and
# api_keys (2 strongly consistent GetItems = 2 RRU; services/keys.py authenticate) and writes
# api_key_usage at most every 300 s per key and container (touch). In the inference function a
# key with limits adds atomic counters (services/limits.py): rpm 1 UpdateItem, tpm 1 UpdateItem
# to check + 1 to settle. Stored completions are off in the aws profile (1 PutItem with
# ``store: true``). A model from the config needs no read (a registered one: 1-2 GetItems).
def chat_dynamodb(authorizer_runs: bool, limits: bool) -> tuple[float, float]:
    """(read units, write units) per chat call."""
    reads = 2.0 if authorizer_runs else 0.0
    writes = 3.0 if limits else 0.0
    return reads, writes


def per_million_chat(model_s: float, authorizer_runs: bool, limits: bool) -> dict[str, float]:
    """Dollars per 1M chat calls, by line."""
    billed_s = math.ceil((model_s + CHAT_OVERHEAD_S) * 1000) / 1000  # 1 ms billing
    reads, writes = chat_dynamodb(authorizer_runs, limits)
    lines = {
        "Lambda requests": 1e6 * LAMBDA_REQUEST,
        "Lambda GB-s": 1e6 * INFERENCE_MEMORY_GB * billed_s * LAMBDA_ARM_GB_S,
        "API Gateway (REST)": 1e6 * APIGW_REST_REQUEST,
        "DynamoDB": 1e6 * (reads * DDB_READ_UNIT + writes * DDB_WRITE_UNIT),
    }
    if authorizer_runs:
        lines["authorizer Lambda"] = 1e6 * (
            LAMBDA_REQUEST + AUTHORIZER_MEMORY_GB * AUTHORIZER_S * LAMBDA_ARM_GB_S
        )
    return lines


def per_10k_docs(handler_s: float) -> dict[str, float]:
    docs = 10_000
    return {
        "Lambda GB-s": docs * INGEST_MEMORY_GB * handler_s * LAMBDA_ARM_GB_S,
        "Lambda requests": docs / INGEST_BATCH_MEAN * LAMBDA_REQUEST,
        "S3 requests": docs * (INGEST_S3_PUTS * S3_PUT + INGEST_S3_GETS * S3_GET),
        "DynamoDB": docs * (INGEST_DDB_READS * DDB_READ_UNIT + INGEST_DDB_WRITES * DDB_WRITE_UNIT),
        "SQS": docs * INGEST_SQS * SQS_REQUEST,
    }


def fargate_month(rss_mib: float) -> tuple[tuple[float, float], float]:
    """The smallest Fargate arm64 size whose memory holds the measured RSS with 25% headroom
    (Python's RSS grows with traffic; an OOM kill is a restart), and its monthly price."""
    need_gb = rss_mib * 1.25 / 1024
    size = next(s for s in FARGATE_SIZES if s[1] >= need_gb)
    hourly = size[0] * FARGATE_ARM_VCPU_HOUR + size[1] * FARGATE_ARM_GB_HOUR
    return size, hourly * HOURS_PER_MONTH


def measure_peer_rss(calls: int = 200) -> float:
    """Llama Stack 0.7.3's resident memory (MiB, its process tree) after ``calls`` chats."""
    import httpx

    from scripts.bench.overhead import free_port, wait

    def tree_rss_kib(pid: int) -> int:
        total, todo = 0, [pid]
        while todo:
            p = todo.pop()
            try:
                status = Path(f"/proc/{p}/status").read_text()
                total += int(
                    next(x for x in status.splitlines() if x.startswith("VmRSS")).split()[1]
                )
                for task in Path(f"/proc/{p}/task").iterdir():
                    todo += [int(c) for c in (task / "children").read_text().split()]
            except (OSError, StopIteration):
                continue
        return total

    llama = ROOT / ".venv-bench-peer" / "bin" / "llama"
    if not llama.exists():
        raise SystemExit(f"{llama} missing: run scripts/bench/setup_peer")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with tempfile.TemporaryDirectory() as home:
            up = free_port()
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(ROOT / "scripts/bench/instant_upstream.py"), str(up)]
                )
            )
            wait(f"http://127.0.0.1:{up}/v1/models", procs[-1], timeout=120)
            port = free_port()
            env = {
                **os.environ,
                "PEER_UPSTREAM_URL": f"http://127.0.0.1:{up}/v1",
                "SQLITE_STORE_DIR": home,
            }
            config = str(ROOT / "scripts/bench/llama_stack_minimal.yaml")
            procs.append(
                subprocess.Popen(
                    [str(llama), "stack", "run", config, "--port", str(port)],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            url = f"http://127.0.0.1:{port}"
            wait(f"{url}/v1/health", procs[-1], timeout=120)
            with httpx.Client(timeout=30) as client:
                for _ in range(calls):
                    reply = client.post(
                        f"{url}/v1/chat/completions",
                        json={
                            "model": "vllm/bench-model",
                            "messages": [{"role": "user", "content": "hi"}],
                        },
                    )
                    reply.raise_for_status()
            return tree_rss_kib(procs[-1].pid) / 1024
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)


def dollars(x: float) -> str:
    if x == 0:
        return "$0"
    return f"${x:,.2f}" if x >= 0.1 else f"${x:,.4f}"


def report(rss_mib: float) -> str:
    out = []
    size, month = fargate_month(rss_mib)
    out.append(
        "Prices: us-east-1, on-demand, first tier, free tiers ignored; sources and dates in "
        "scripts/bench/cost.py."
    )
    out.append("")
    out.append("Per 1M chat calls (InferenceFunction 1024 MB arm64, overhead 3.57 ms + model):")
    out.append("")
    out.append(
        "| model latency | authorizer | key limits | Lambda | API Gateway | DynamoDB | "
        "authorizer | total |"
    )
    out.append("|---|---|---|---|---|---|---|---|")
    totals: dict[tuple[float, bool, bool], float] = {}
    for model_s in MODEL_LATENCIES_S:
        for auth_runs, limits in ((False, False), (True, True)):
            lines = per_million_chat(model_s, auth_runs, limits)
            total = sum(lines.values())
            totals[(model_s, auth_runs, limits)] = total
            out.append(
                f"| {model_s:g} s | {'every call' if auth_runs else 'cached (30 s)'} | "
                f"{'rpm+tpm' if limits else 'none'} | "
                f"{dollars(lines['Lambda requests'] + lines['Lambda GB-s'])} | "
                f"{dollars(lines['API Gateway (REST)'])} | {dollars(lines['DynamoDB'])} | "
                f"{dollars(lines.get('authorizer Lambda', 0.0))} | **{dollars(total)}** |"
            )
    out.append("")
    out.append("Per 10k ingested 20-page PDFs (IngestFunction 2048 MB arm64):")
    out.append("")
    out.append("| handler time per document | Lambda | S3 | DynamoDB | SQS | total |")
    out.append("|---|---|---|---|---|---|")
    for label, seconds in (
        (f"{INGEST_HANDLER_S_ALONE:.2f} s (one at a time)", INGEST_HANDLER_S_ALONE),
        (
            f"{INGEST_HANDLER_S_CONCURRENT:.2f} s (4 writers, one store)",
            INGEST_HANDLER_S_CONCURRENT,
        ),
    ):
        lines = per_10k_docs(seconds)
        out.append(
            f"| {label} | {dollars(lines['Lambda GB-s'] + lines['Lambda requests'])} | "
            f"{dollars(lines['S3 requests'])} | {dollars(lines['DynamoDB'])} | "
            f"{dollars(lines['SQS'])} | **{dollars(sum(lines.values()))}** |"
        )
    out.append("")
    out.append(
        f"Always on: Llama Stack 0.7.3 (minimal config) measured at {rss_mib:.0f} MiB RSS; the "
        f"smallest Fargate arm64 task holding it with 25% headroom is {size[0]:g} vCPU / "
        f"{size[1]:g} GB: {dollars(month)} a month (compute only; its load balancer, "
        "API Gateway or public IPv4 address come on top)."
    )
    out.append("")
    out.append("Break-even (calls a month at which Llamda's per-call bill equals that task):")
    out.append("")
    for (model_s, auth_runs, limits), total in totals.items():
        calls = month / (total / 1e6)
        out.append(
            f"- model {model_s:g} s, authorizer {'every call' if auth_runs else 'cached'}, "
            f"limits {'rpm+tpm' if limits else 'none'}: {calls:,.0f} calls/month "
            f"({calls / (30 * 86400):.2f} calls/s on average)"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--measure-rss", action="store_true")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    rss = measure_peer_rss() if args.measure_rss else PEER_RSS_MIB
    if not rss:
        raise SystemExit("no Llama Stack RSS: pass --measure-rss or set PEER_RSS_MIB")
    text = report(rss)
    print(text)
    if args.write:
        from scripts.bench._report import append_report

        append_report(
            "Cost", f".venv/bin/python scripts/bench/cost.py {' '.join(sys.argv[1:])}", text
        )


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
