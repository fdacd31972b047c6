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


def cold_start_once(artifact: Artifact, env: dict[str, str]) -> tuple[float, float, float]:
    """(spawn → first event served, import time, CPU time to the first event) in seconds, for
    one fresh process."""
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
        "--write", action="store_true", help="append the results to docs/benchmarks.md"
    )
    args = parser.parse_args()

    build_dir = (args.build_dir or BUILD_DIR).resolve()
    if args.build_dir is None and (
        not (BUILD_DIR / "template.yaml").exists()
        or (BUILD_DIR / ".architecture").read_text().strip() != "x86_64"
    ):
        subprocess.run([str(ROOT / "scripts/build"), "x86_64", "--zip-only"], check=True)
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
