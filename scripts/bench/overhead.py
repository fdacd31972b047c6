"""Gateway overhead per chat call, Llamda vs Llama Stack, same instant upstream.

    .venv/bin/python scripts/bench/overhead.py [--calls 2000] [--no-peer] [--write]

Both gateways run as local servers with a remote OpenAI-compatible provider (Llamda: `vllm`;
Llama Stack 0.7.3: `remote::vllm`) pointed at scripts/bench/instant_upstream.py. The client
sends the same request sequentially over one keep-alive connection; overhead = gateway latency
minus the upstream's own latency measured the same way (p50 and p99), in the same run.

Llamda is measured twice: as deployed (auth on with a real key, stored completions as the local
profile sets them: on) and with both off. For each: non-streaming latency, and for
``stream: true`` the time to the first ``data:`` event. The server's CPU time per call (its
process's user+system time over the run, from /proc) is reported too: on a loaded machine it
is steadier than wall-clock latency.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scripts.bench._report import append_report  # noqa: E402

PEER_VENV = ROOT / ".venv-bench-peer"
BODY = {"model": "MODEL", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}

LLAMDA_CONFIG = """
apis: [inspect, models, inference]
providers:
  inference:
    - {provider_id: vllm, provider_type: vllm, config: {url: "UPSTREAM/v1"}}
models:
  - {model_id: bench-model, provider_id: vllm}
storage:
  records: {type: sqlite, path: "HOME/r.sqlite3"}
  objects: {type: local, root: "HOME/o"}
  vectors: {uri: "HOME/v"}
server: {auth: AUTH}
inference_store: {enabled: STORE}
"""
LLAMDA_CLI = (sys.executable, "-m", "llamda.cli")
# name → (auth mode, stored completions)
LLAMDA_SETUPS = {
    "Llamda as deployed": ("keys", "true"),
    "Llamda auth+store off": ("off", "false"),
}

PEER_CONFIG = """
version: 2
distro_name: llamda-bench-peer
apis: [inference]
providers:
  inference:
  - provider_id: vllm
    provider_type: remote::vllm
    config: {base_url: "UPSTREAM/v1", api_token: fake}
storage:
  backends:
    kv_default: {type: kv_sqlite, db_path: HOME/kv.db}
    sql_default: {type: sql_sqlite, db_path: HOME/sql.db}
  stores:
    metadata: {namespace: registry, backend: kv_default}
    inference: {table_name: inference_store, backend: sql_default}
    conversations: {table_name: openai_conversations, backend: sql_default}
    prompts: {namespace: prompts, backend: kv_default}
    connectors: {namespace: connectors, backend: kv_default}
registered_resources:
  models:
  - {model_id: bench-model, provider_id: vllm, provider_model_id: bench-model, model_type: llm}
server:
  port: 8321
"""


def start_peer(home: Path, upstream: str, procs: list[subprocess.Popen[bytes]]) -> str:
    """Llama Stack 0.7.3 (``.venv-bench-peer``, made by setup_peer) on ``upstream``; its URL.
    The process is appended to ``procs`` (the caller stops it)."""
    subprocess.run([str(ROOT / "scripts/bench/setup_peer")], check=True)
    (home / "peer.yaml").write_text(
        PEER_CONFIG.replace("UPSTREAM", upstream).replace("HOME", str(home))
    )
    peer_port = free_port()
    procs.append(
        subprocess.Popen(
            [
                str(PEER_VENV / "bin/llama"),
                "stack",
                "run",
                str(home / "peer.yaml"),
                "--port",
                str(peer_port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    peer = f"http://127.0.0.1:{peer_port}"
    wait(f"{peer}/v1/health", procs[-1])
    return peer


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate, then kill what is still running after 10 s (a server draining a loaded
    queue on a busy machine)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait(url: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: process exited")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not start")


def measure(url: str, model: str, calls: int, headers: dict[str, str] | None = None) -> list[float]:
    body = {**BODY, "model": model}
    with httpx.Client(timeout=30, headers=headers) as client:
        for _ in range(50):  # warm-up
            client.post(url, json=body).raise_for_status()
        samples = []
        for _ in range(calls):
            start = time.perf_counter()
            client.post(url, json=body).raise_for_status()
            samples.append((time.perf_counter() - start) * 1000)
    return samples


def measure_stream(
    url: str, model: str, calls: int, headers: dict[str, str] | None = None
) -> list[float]:
    """Time to the first ``data:`` event of a streamed chat call (the rest is read too)."""
    body = {**BODY, "model": model, "stream": True}

    def one(client: httpx.Client) -> float:
        start = time.perf_counter()
        first = None
        with client.stream("POST", url, json=body) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if first is None and line.startswith("data:"):
                    first = time.perf_counter()
        assert first is not None, "no event"
        return (first - start) * 1000

    with httpx.Client(timeout=30, headers=headers) as client:
        for _ in range(50):
            one(client)
        return [one(client) for _ in range(calls)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def create_key(config: Path) -> str:
    """A member key in the config's record store (the last line `llamda keys create` prints)."""
    out = subprocess.run(
        [*LLAMDA_CLI, "keys", "create", "--tenant", "bench", "--config", str(config)],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip().splitlines()[-1]


def pct(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[int(q) - 1] if q < 100 else max(samples)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            up_port = free_port()
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(ROOT / "scripts/bench/instant_upstream.py"), str(up_port)]
                )
            )
            upstream = f"http://127.0.0.1:{up_port}"
            wait(f"{upstream}/v1/models", procs[-1])

            results: dict[str, list[float]] = {}
            streams: dict[str, list[float]] = {}
            cpu_ms: dict[str, float] = {}
            before = cpu_seconds(procs[0].pid)
            results["upstream (direct)"] = measure(
                f"{upstream}/v1/chat/completions", "bench-model", args.calls
            )
            cpu_ms["upstream (direct)"] = (
                (cpu_seconds(procs[0].pid) - before) * 1000 / (args.calls + 50)
            )
            streams["upstream (direct)"] = measure_stream(
                f"{upstream}/v1/chat/completions", "bench-model", args.calls
            )
            for name, (auth, store) in LLAMDA_SETUPS.items():
                sub = home / name.replace(" ", "_").replace("+", "_")
                sub.mkdir()
                config = sub / "llamda.yaml"
                config.write_text(
                    LLAMDA_CONFIG.replace("UPSTREAM", upstream)
                    .replace("HOME", str(sub))
                    .replace("AUTH", auth)
                    .replace("STORE", store)
                )
                headers = {"authorization": f"Bearer {create_key(config)}"} if auth != "off" else {}
                port = free_port()
                server = subprocess.Popen(
                    [*LLAMDA_CLI, "serve", "--config", str(config), "--port", str(port)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env={**os.environ, "LLAMDA_LOG_LEVEL": "WARNING"},
                )
                procs.append(server)
                url = f"http://127.0.0.1:{port}"
                wait(f"{url}/v1/health", server)
                chat = f"{url}/v1/chat/completions"
                before = cpu_seconds(server.pid)
                results[name] = measure(chat, "bench-model", args.calls, headers)
                cpu_ms[name] = (cpu_seconds(server.pid) - before) * 1000 / (args.calls + 50)
                streams[name] = measure_stream(chat, "bench-model", args.calls, headers)
                server.terminate()
                server.wait(10)
            if not args.no_peer:
                peer = start_peer(home, upstream, procs)
                results["Llama Stack 0.7.3"] = measure(
                    f"{peer}/v1/chat/completions", "vllm/bench-model", args.calls
                )
                streams["Llama Stack 0.7.3"] = measure_stream(
                    f"{peer}/v1/chat/completions", "vllm/bench-model", args.calls
                )
    finally:
        for proc in procs:
            stop(proc)

    load = os.getloadavg()[0]
    title = f"gateway overhead per chat call, {args.calls} sequential calls, instant upstream"
    lines = [f"{title} ({os.cpu_count()} cores, load average {load:.1f} at the end)"]
    overhead: dict[str, float] = {}
    for label, table in (("non-streaming", results), ("streaming, first chunk", streams)):
        base50, base99 = pct(table["upstream (direct)"], 50), pct(table["upstream (direct)"], 99)
        lines.append(f"{label:<24}{'latency p50':>13}{'p99':>10}{'overhead p50':>15}{'p99':>10}")
        for name, samples in table.items():
            p50, p99 = pct(samples, 50), pct(samples, 99)
            if label == "non-streaming":
                overhead[name] = p50 - base50
            extra = (
                ""
                if name.startswith("upstream")
                else f"{p50 - base50:>12.2f} ms{p99 - base99:>7.2f} ms"
            )
            lines.append(f"{name:<24}{p50:>10.2f} ms{p99:>7.2f} ms{extra}")
    for name, ms in cpu_ms.items():
        lines.append(f"{name}: server process CPU {ms:.2f} ms per non-streaming call")
    if "Llama Stack 0.7.3" in overhead:
        ratio = overhead["Llamda as deployed"] / overhead["Llama Stack 0.7.3"]
        lines.append(f"Llamda (as deployed) overhead / Llama Stack overhead (p50): {ratio:.2f}")
    else:
        lines.append("Llama Stack 0.7.3 not run (--no-peer)")
    report = "\n".join(lines)
    print(report)
    if args.write:
        append_report(
            "Gateway overhead",
            f".venv/bin/python scripts/bench/overhead.py {' '.join(sys.argv[1:])}",
            report,
        )


if __name__ == "__main__":
    main()
