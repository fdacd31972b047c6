"""The local profile's embedded defaults: start-to-ready and embedding time (issue 15 targets:
later starts ≤ 5 s to ready; 100 short texts embedded ≤ 1 s).

    .venv/bin/python scripts/bench/embedded.py [--starts 5] [--runs 10] [--write]

Each start is ``llamda serve`` with no run config and no provider variable (the local
profile on a fresh LLAMDA_HOME), timed from launch to the first 200 on ``/v1/health``; the
first embeddings call after it also loads the model (once per process). Then 100 short texts
are embedded ``--runs`` times through ``POST /v1/embeddings`` (and in-process, without HTTP).
Where the `local` extra is installed, the first chat answer of the chat default is timed too.
"""

from __future__ import annotations

import argparse
import os
import re
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
sys.path.insert(0, str(ROOT / "shared"))

from scripts.bench._report import append_report  # noqa: E402

MODEL = "all-MiniLM-L6-v2"
TEXTS = [
    f"Ticket {i}: the {w} on floor {i % 9} needs attention before Friday."
    for i, w in enumerate(["printer", "heating", "badge reader", "coffee machine", "wifi"] * 20)
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _clean_env(home: str) -> dict[str, str]:
    profile = (ROOT / "shared/llamda/profiles/local.yaml").read_text()
    read = set(re.findall(r"\$\{env\.([A-Z0-9_]+)", profile)) | {"AWS_DEFAULT_REGION"}
    env = {k: v for k, v in os.environ.items() if k not in read and not k.startswith("LLAMDA_")}
    env["LLAMDA_HOME"] = home
    env["PYTHONPATH"] = str(ROOT / "shared")  # this checkout's package, whatever is installed
    return env


def _start(home: str) -> tuple[subprocess.Popen[bytes], str, float]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llamda.cli", "serve", "--port", str(port)],
        env=_clean_env(home),
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = start + 60
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the server exited; run `.venv/bin/llamda serve` to see why")
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                return proc, url, time.perf_counter() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    proc.kill()
    raise SystemExit("the server did not start within 60 s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _embed(client: httpx.Client, url: str) -> float:
    start = time.perf_counter()
    reply = client.post(f"{url}/v1/embeddings", json={"model": MODEL, "input": TEXTS})
    reply.raise_for_status()
    assert len(reply.json()["data"]) == len(TEXTS)
    return time.perf_counter() - start


def _first_chat(client: httpx.Client, url: str) -> tuple[str, float] | None:
    """The chat default's first answer (model load included), where one is listed."""
    models = [m["id"] for m in client.get(f"{url}/v1/models").json()["data"]]
    llms = [m for m in models if m != MODEL]
    if not llms:
        return None
    start = time.perf_counter()
    client.post(
        f"{url}/v1/chat/completions",
        json={
            "model": llms[0],
            "messages": [{"role": "user", "content": "What is 2 + 2?"}],
            "max_tokens": 32,
            "temperature": 0,
        },
    ).raise_for_status()
    return llms[0], time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--write", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()

    ready: list[float] = []
    first_embed: list[float] = []
    warm: list[float] = []
    chat: tuple[str, float] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.starts):
            home = Path(tmp) / f"home{i}"  # fresh each time
            home.mkdir()
            proc, url, took = _start(str(home))
            try:
                ready.append(took)
                with httpx.Client(timeout=60) as client:
                    first_embed.append(_embed(client, url))
                    if i == args.starts - 1:  # the last server: warm runs and the chat
                        warm = [_embed(client, url) for _ in range(args.runs)]
                        chat = _first_chat(client, url)
            finally:
                _stop(proc)

    from llamda.providers.inference.minilm import MiniLMEncoder, packaged_model_dir

    start = time.perf_counter()
    encoder = MiniLMEncoder(packaged_model_dir())
    load = time.perf_counter() - start
    encoder.encode(TEXTS)
    inproc = []
    for _ in range(args.runs):
        start = time.perf_counter()
        encoder.encode(TEXTS)
        inproc.append(time.perf_counter() - start)

    ms = lambda s: f"{s * 1000:.0f} ms"  # noqa: E731
    lines = [
        f"local profile, no provider variables, fresh LLAMDA_HOME ({os.cpu_count()} cores)",
        f"start → /v1/health 200       median {ms(statistics.median(ready))}, "
        f"max {ms(max(ready))} ({args.starts} starts; target ≤ 5 s)",
        f"first /v1/embeddings (loads)  median {ms(statistics.median(first_embed))} "
        f"(100 texts, model load included)",
        f"100 short texts, HTTP         median {ms(statistics.median(warm))}, "
        f"max {ms(max(warm))} ({args.runs} runs; target ≤ 1 s)",
        f"100 short texts, in-process   median {ms(statistics.median(inproc))} "
        f"(model load {ms(load)})",
    ]
    if chat:
        lines.append(f"first chat answer ({chat[0]})  {ms(chat[1])} (model load included)")
    else:
        lines.append("chat default: not installed (scripts/serve --with-local)")
    report = "\n".join(lines)
    print(report)
    if args.write:
        append_report(
            "Embedded defaults",
            f".venv/bin/python scripts/bench/embedded.py {' '.join(sys.argv[1:])}".strip(),
            report,
        )


if __name__ == "__main__":
    main()
