"""Cold start: a fresh `python` process → the built handler has served its first API Gateway
event, side by side with Llama Stack 0.7 (launch → first 200 from /v1/health).

    .venv/bin/python scripts/bench/coldstart.py [--runs 10] [--no-peer] [--shipped-only]
        [--build-dir DIR] [--write]

Needs `scripts/build x86_64 --zip-only` (done here when missing) and, for the peer,
scripts/bench/setup_peer. --build-dir measures another build (e.g. another checkout's
.aws-sam/build, to compare two versions back to back with the same harness).
Reported: wall time from spawn to the first event served, and the process's CPU time to it
(steadier than wall time on a shared machine).
Each function is measured as built (precompiled .pyc, as shipped) and without bytecode
(read-only code dir: Python recompiles every module on every cold start) to show what the
precompilation buys. Lambda adds its own init (runtime start, SnapStart restore) on top.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scripts.bench._report import append_report  # noqa: E402
from tests.e2e.harness import (  # noqa: E402
    BUILD_DIR,
    Artifact,
    api_gateway_event,
    lambda_env,
    load_artifacts,
)

PEER_VENV = ROOT / ".venv-bench-peer"
REFS = {
    "RecordsTable": "bench-records",
    "DataBucket": "bench-data",
    # Queues the functions' environments name; the first events queue nothing.
    "JobsQueue": "",
    "IngestQueue": "",
}
# Tracing: Active in Lambda (the Powertools Tracer loads the X-Ray SDK).
TRACING_ON = {
    "POWERTOOLS_TRACE_DISABLED": "false",
    "_X_AMZN_TRACE_ID": (
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    ),
}


# The first event per function: a route it serves without AWS calls (moto is not running);
# functions without one answer GET /v1/health with a 404, which still runs the whole app.
FIRST_EVENT = {
    "SafetyFunction": ("POST", "/v1/moderations", {"model": "pii", "input": "mail a@b.co"}),
}


AUTHORIZER_EVENT = {
    "type": "REQUEST",
    "methodArn": "arn:aws:execute-api:us-east-1:123456789012:abc123/api/GET/v1/models",
    "resource": "/v1/models",
    "path": "/v1/models",
    "httpMethod": "GET",
    "headers": {},
    "requestContext": {"stage": "api", "requestId": "r-1"},
}


def cold_start_once(artifact: Artifact, env: dict[str, str]) -> tuple[float, float, float]:
    """(spawn → first event served, import time, CPU time to the first event) in seconds, for
    one fresh process."""
    if artifact.name == "AuthorizerFunction":
        # A REQUEST authorizer event without a key: refused before any DynamoDB read, with the
        # exact error API Gateway turns into a 401.
        report = artifact.invoke([AUTHORIZER_EVENT], env)
        assert report["results"][0].get("errorMessage") == "Unauthorized", report["results"][0]
    else:
        method, path, body = FIRST_EVENT.get(artifact.name, ("GET", "/v1/health", None))
        report = artifact.invoke([api_gateway_event(method, path, body=body)], env)
        assert report["results"][0]["statusCode"] < 500, report["results"][0]
    timings = report["timings"]
    return report["cold_start_s"], timings["import_s"], timings["first_event_cpu_s"]


def without_bytecode(artifact: Artifact, into: Path) -> Artifact:
    paths = []
    for i, path in enumerate(artifact.paths):
        target = into / f"p{i}"
        shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__"))
        paths.append(target)
    return Artifact(artifact.name, artifact.handler, paths, artifact.environment)


def measure(artifact: Artifact, runs: int, env: dict[str, str]) -> dict[str, float]:
    cold_start_once(artifact, env)  # warm the OS page cache, as a Lambda host's would be
    samples = [cold_start_once(artifact, env) for _ in range(runs)]
    return {
        "p50_ms": statistics.median(s[0] for s in samples) * 1000,
        "min_ms": min(s[0] for s in samples) * 1000,
        "import_p50_ms": statistics.median(s[1] for s in samples) * 1000,
        "cpu_p50_ms": statistics.median(s[2] for s in samples) * 1000,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def peer_once(store: Path) -> float:
    port = free_port()
    env = {**os.environ, "SQLITE_STORE_DIR": str(store)}
    start = time.time()
    proc = subprocess.Popen(
        [
            str(PEER_VENV / "bin" / "llama"),
            "stack",
            "run",
            str(ROOT / "scripts/bench/llama_stack_minimal.yaml"),
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        while time.time() - start < 60:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=1) as r:
                    if r.status == 200:
                        return time.time() - start
            except OSError:
                time.sleep(0.01)
        raise SystemExit("Llama Stack did not start within 60 s")
    finally:
        proc.terminate()
        proc.wait(10)


def measure_interleaved(
    ours: Artifact, theirs: Artifact, runs: int, env: dict[str, str], their_env: dict[str, str]
) -> tuple[dict[str, float], dict[str, float]]:
    """Both builds of one function, sample by sample in turn, so that a shared machine's load
    weighs on both alike: (ours, theirs)."""
    cold_start_once(ours, env)
    cold_start_once(theirs, their_env)
    pairs = [(cold_start_once(ours, env), cold_start_once(theirs, their_env)) for _ in range(runs)]

    def summary(samples: list[tuple[float, float, float]]) -> dict[str, float]:
        return {
            "p50_ms": statistics.median(s[0] for s in samples) * 1000,
            "cpu_p50_ms": statistics.median(s[2] for s in samples) * 1000,
        }

    return summary([p[0] for p in pairs]), summary([p[1] for p in pairs])


def compare(build_dir: Path, against: Path, runs: int) -> str:
    """``build_dir`` vs ``against`` (e.g. the same code before a change), interleaved."""
    theirs_all = load_artifacts(against, REFS)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        f"cold start, median of {runs} fresh processes per build, interleaved sample by sample "
        f"({os.cpu_count()} cores, load average {load} at the start)",
        f"  after:  {build_dir}",
        f"  before: {against}",
        f"{'function':<18}{'before':>10}{'after':>10}{'CPU before':>12}{'CPU after':>11}",
    ]
    for name, artifact in load_artifacts(build_dir, REFS).items():
        if not artifact.handler.startswith("app.") or name not in theirs_all:
            continue
        theirs = theirs_all[name]
        extra = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
        extra["PYTHONDONTWRITEBYTECODE"] = "1"
        after, before = measure_interleaved(
            artifact, theirs, runs, lambda_env(artifact, extra), lambda_env(theirs, extra)
        )
        lines.append(
            f"{name:<18}{before['p50_ms']:>7.0f} ms{after['p50_ms']:>7.0f} ms"
            f"{before['cpu_p50_ms']:>9.0f} ms{after['cpu_p50_ms']:>8.0f} ms"
        )
    return "\n".join(lines)


def measure_peer(runs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        peer_once(Path(tmp))
        samples = [peer_once(Path(tmp)) for _ in range(runs)]
    return {"p50_ms": statistics.median(samples) * 1000, "min_ms": min(samples) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument(
        "--shipped-only", action="store_true", help="skip the X-Ray and no-.pyc variants"
    )
    parser.add_argument("--build-dir", type=Path, help="a zip build to measure (default: ours)")
    parser.add_argument(
        "--against", type=Path, help="another zip build: compare the two, interleaved"
    )
    parser.add_argument(
        "--write", action="store_true", help="append the results to docs/benchmarks.md"
    )
    args = parser.parse_args()

    build_dir = (args.build_dir or BUILD_DIR).resolve()
    if args.build_dir is None and (
        not (BUILD_DIR / "template.yaml").exists()
        or (BUILD_DIR / ".architecture").read_text().strip() != "x86_64"
    ):
        subprocess.run([str(ROOT / "scripts/build"), "x86_64", "--zip-only"], check=True)
    if args.against is not None:
        report = compare(build_dir, args.against.resolve(), args.runs)
        print(report)
        if args.write:
            append_report(
                "Cold start, before and after",
                f".venv/bin/python scripts/bench/coldstart.py {' '.join(sys.argv[1:])}",
                report,
            )
        return
    rows = []
    for name, artifact in load_artifacts(build_dir, REFS).items():
        if not artifact.handler.startswith("app."):
            continue  # run.sh: uvicorn under the Lambda Web Adapter, not a Python handler
        env = lambda_env(
            artifact,
            {
                "AWS_ACCESS_KEY_ID": "x",
                "AWS_SECRET_ACCESS_KEY": "x",
                "PYTHONDONTWRITEBYTECODE": "1",
            },
        )
        shipped = measure(artifact, args.runs, env)
        traced = bare = None
        if not args.shipped_only:
            traced = measure(artifact, args.runs, {**env, **TRACING_ON})
            with tempfile.TemporaryDirectory() as tmp:
                bare = measure(without_bytecode(artifact, Path(tmp)), args.runs, env)
        rows.append((name, shipped, traced, bare))

    peer = None
    if not args.no_peer:
        subprocess.run([str(ROOT / "scripts/bench/setup_peer")], check=True)
        peer = measure_peer(args.runs)

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        f"cold start, median of {args.runs} fresh processes (this machine: {os.cpu_count()} cores,"
        f" load average {load} at the end), build {build_dir}",
        f"{'function':<18}{'shipped (.pyc)':>16}{'CPU to it':>11}{'+ X-Ray SDK':>14}"
        f"{'no .pyc':>10}{'import only':>14}{'vs Llama Stack':>16}",
    ]

    def ms(result: dict[str, float] | None) -> str:
        return f"{result['p50_ms']:.0f} ms" if result else "-"

    for name, shipped, traced, bare in rows:
        ratio = f"{peer['p50_ms'] / shipped['p50_ms']:.1f}x faster" if peer else "-"
        lines.append(
            f"{name:<18}{ms(shipped):>16}{shipped['cpu_p50_ms']:>8.0f} ms{ms(traced):>14}"
            f"{ms(bare):>10}{shipped['import_p50_ms']:>11.0f} ms{ratio:>16}"
        )
    if peer:
        lines.append(
            f"{'Llama Stack 0.7.3':<18}{peer['p50_ms']:>17.0f} ms   (launch → first /v1/health 200)"
        )
    report = "\n".join(lines)
    print(report)
    if args.write:
        append_report(
            "Cold start",
            f".venv/bin/python scripts/bench/coldstart.py {' '.join(sys.argv[1:])}",
            report,
        )


if __name__ == "__main__":
    main()
