"""Throughput: 64 concurrent keep-alive clients against one server process, upstream 20 ms.

    .venv/bin/python scripts/bench/throughput.py [--clients 64] [--delay-ms 20] [--seconds 10]
        [--write]

The upstream (scripts/bench/instant_upstream.py) answers every chat completion after a fixed
delay, as a real model would. Each client sends non-streaming chat calls back to back over its
own keep-alive connection for ``--seconds``; the ideal rate is clients / delay. Measured: the
upstream alone (what the load generator and the upstream can do on this machine), then Llamda
as deployed (auth on, stored completions on, one `llamda serve` process). Reported: calls per
second and its share of the ideal, errors, latency p50/p99, and the server's CPU time per call
(user+system from /proc): with one process the sustainable rate is at most 1000 / that.
Then Llama Stack 0.7.3 (``.venv-bench-peer``) under the same load, unless ``--no-peer``: its CPU
per call is its server process's (``llama stack run``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scripts.bench._report import append_report  # noqa: E402
from scripts.bench.overhead import (  # noqa: E402
    BODY,
    LLAMDA_CLI,
    LLAMDA_CONFIG,
    cpu_seconds,
    create_key,
    free_port,
    pct,
    start_peer,
    stop,
    wait,
)


async def _load(
    url: str, headers: dict[str, str], clients: int, seconds: float, pid: int, model: str
) -> tuple[list[float], int, float, float]:
    """(latencies in ms, errors, elapsed s, CPU s of process ``pid`` meanwhile): ``clients``
    connections, calls back to back, after a one-second warm-up."""
    body = {**BODY, "model": model}
    samples: list[float] = []
    errors = 0
    post = await _poster(url, headers, clients)

    async def worker(stop_at: float, record: bool) -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            ok = await post(body)
            if record:
                if ok:
                    samples.append((time.perf_counter() - start) * 1000)
                else:
                    errors += 1

    try:
        warm_until = time.perf_counter() + 1.0
        await asyncio.gather(*(worker(warm_until, False) for _ in range(clients)))
        cpu = cpu_seconds(pid)
        began = time.perf_counter()
        await asyncio.gather(*(worker(began + seconds, True) for _ in range(clients)))
        return samples, errors, time.perf_counter() - began, cpu_seconds(pid) - cpu
    finally:
        await post(None)


async def _poster(url: str, headers: dict[str, str], clients: int) -> Any:
    """``await post(body)`` → whether it got a 200; ``await post(None)`` closes. aiohttp when
    installed (the load generator shares the cores with the server: the cheaper the better),
    else httpx."""
    try:
        import aiohttp
    except ImportError:
        aiohttp = None
    if aiohttp is not None:
        connector = aiohttp.TCPConnector(limit=clients)
        session = aiohttp.ClientSession(
            connector=connector, headers=headers, timeout=aiohttp.ClientTimeout(total=30)
        )

        async def post_aiohttp(body: dict[str, Any] | None) -> bool:
            if body is None:
                await session.close()
                return True
            try:
                async with session.post(url, json=body) as response:
                    await response.read()
                    return response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                return False

        return post_aiohttp
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    client = httpx.AsyncClient(timeout=30, headers=headers, limits=limits)

    async def post_httpx(body: dict[str, Any] | None) -> bool:
        if body is None:
            await client.aclose()
            return True
        try:
            return (await client.post(url, json=body)).status_code == 200
        except httpx.HTTPError:
            return False

    return post_httpx


def run_load(
    url: str,
    headers: dict[str, str],
    clients: int,
    seconds: float,
    pid: int,
    model: str = "bench-model",
) -> dict[str, float]:
    samples, errors, elapsed, cpu = asyncio.run(_load(url, headers, clients, seconds, pid, model))
    return {
        "cpu_ms": cpu * 1000 / max(1, len(samples) + errors),
        "rate": len(samples) / elapsed,
        "errors": errors,
        "p50": pct(samples, 50) if len(samples) > 1 else float("nan"),
        "p99": pct(samples, 99) if len(samples) > 1 else float("nan"),
        "calls": len(samples),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--delay-ms", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    ideal = args.clients / (args.delay_ms / 1000)
    procs: list[subprocess.Popen[bytes]] = []
    results: dict[str, dict[str, float]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            up_port = free_port()
            script = ROOT / "scripts/bench/instant_upstream.py"
            procs.append(
                subprocess.Popen([sys.executable, str(script), str(up_port), str(args.delay_ms)])
            )
            upstream = f"http://127.0.0.1:{up_port}"
            wait(f"{upstream}/v1/models", procs[-1])
            results["upstream (direct)"] = run_load(
                f"{upstream}/v1/chat/completions", {}, args.clients, args.seconds, procs[-1].pid
            )
            config = home / "llamda.yaml"
            config.write_text(
                LLAMDA_CONFIG.replace("UPSTREAM", upstream)
                .replace("HOME", str(home))
                .replace("AUTH", "keys")
                .replace("STORE", "true")
            )
            headers = {"authorization": f"Bearer {create_key(config)}"}
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
            results["Llamda as deployed"] = run_load(
                f"{url}/v1/chat/completions", headers, args.clients, args.seconds, server.pid
            )
            stop(server)
            if not args.no_peer:
                peer = start_peer(home, upstream, procs)
                results["Llama Stack 0.7.3"] = run_load(
                    f"{peer}/v1/chat/completions",
                    {},
                    args.clients,
                    args.seconds,
                    procs[-1].pid,
                    model="vllm/bench-model",
                )
    finally:
        for proc in procs:
            stop(proc)

    load = os.getloadavg()[0]
    lines = [
        f"throughput, {args.clients} keep-alive clients, upstream answers after "
        f"{args.delay_ms:g} ms, {args.seconds:g} s, one server process "
        f"({os.cpu_count()} cores, load average {load:.1f} at the end)",
        f"ideal rate: {ideal:.0f} calls/s",
        f"{'':<22}{'calls/s':>9}{'of ideal':>10}{'errors':>8}{'p50':>10}{'p99':>10}"
        f"{'server CPU/call':>17}",
    ]
    for name, r in results.items():
        lines.append(
            f"{name:<22}{r['rate']:>9.0f}{r['rate'] / ideal:>9.0%}{r['errors']:>8.0f}"
            f"{r['p50']:>7.1f} ms{r['p99']:>7.1f} ms{r['cpu_ms']:>14.2f} ms"
        )
    deployed = results["Llamda as deployed"]
    lines.append(
        f"Llamda server CPU {deployed['cpu_ms']:.2f} ms per call: one process sustains at "
        f"most ~{1000 / deployed['cpu_ms']:.0f} calls/s on one core"
    )
    if "Llama Stack 0.7.3" not in results:
        lines.append("Llama Stack 0.7.3 not run (--no-peer)")
    report = "\n".join(lines)
    print(report)
    if args.write:
        append_report(
            "Throughput",
            f".venv/bin/python scripts/bench/throughput.py {' '.join(sys.argv[1:])}".strip(),
            report,
        )


if __name__ == "__main__":
    main()
