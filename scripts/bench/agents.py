"""Gateway overhead per agent step, Llamda vs Llama Stack 0.7.3, same instant upstream.

    .venv/bin/python scripts/bench/agents.py [--calls 500] [--no-peer] [--write]

Both gateways serve `POST /v1/responses` as local servers with a remote OpenAI-compatible
provider (Llamda: `vllm`; Llama Stack: `remote::vllm`) pointed at
scripts/bench/instant_upstream.py, which plays a scripted agent model: it calls the first tool
on a user turn and answers "ok" otherwise. Both gateways call it streamed (Llamda's loop
streams every step; so does Llama Stack's). Cases, each run sequentially over one keep-alive
connection per target (non-streaming responses, stored as by default), the upstream and the
gateways taking turns in blocks so that the shared machine's drifting load hits all alike:

- plain: `input: "hi"`, no tools: one model call, a message.
- function call: one function tool: one model call, the response ends with a `function_call`.
- tool round trip: the function call above, then its `function_call_output` sent with
  `previous_response_id` (the stored chain is read back): two responses, two model calls.
- file_search loop: one response, two model calls in Llamda's loop: the model calls
  file_search, which runs server-side (the query embedded by the upstream, a LanceDB search
  over a one-file store), the results go back, the model answers. Llamda only (see below).

Overhead = the case's latency minus the upstream's own latency for the same model (and
embedding) calls, measured directly the same way (p50 and p99); per step = overhead / model
calls.

Llama Stack's run config (PEER_CONFIG) is the smallest offline one 0.7.3 starts with: its agents
are the `responses` API (`inline::builtin`, sqlite persistence), which depends on vector_io,
tool_runtime and files. Every inline vector_io provider (faiss, sqlite-vec, milvus) loads
tiktoken's cl100k_base at start-up, a download; `remote::infinispan` does not touch the
network until a vector store is used, so it stands in (pointed at a closed loopback port; no
peer case uses vector stores). So Llama Stack's file_search cannot run here: no
file_search number for it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scripts.bench._report import append_report  # noqa: E402
from scripts.bench.overhead import PEER_VENV, free_port, pct, wait  # noqa: E402

LLAMDA_CONFIG = """
apis: [inspect, models, inference, files, vector_io, agents]
providers:
  inference:
    - {provider_id: vllm, provider_type: vllm, config: {url: "UPSTREAM/v1"}}
  vector_io:
    - {provider_id: lancedb, provider_type: lancedb}
models:
  - {model_id: bench-model, provider_id: vllm}
  - {model_id: bench-embed, provider_id: vllm, provider_model_id: bench-model,
     model_type: embedding, metadata: {embedding_dimension: 8}}
storage:
  records: {type: sqlite, path: "HOME/r.sqlite3"}
  objects: {type: local, root: "HOME/o"}
  vectors: {uri: "HOME/v"}
"""

PEER_CONFIG = """
version: 2
distro_name: llamda-bench-peer
apis: [inference, responses, vector_io, tool_runtime, files]
providers:
  inference:
  - provider_id: vllm
    provider_type: remote::vllm
    config: {base_url: "UPSTREAM/v1", api_token: fake}
  responses:
  - provider_id: builtin
    provider_type: inline::builtin
    config:
      persistence:
        agent_state: {namespace: agents, backend: kv_default}
        responses: {table_name: responses, backend: sql_default}
  vector_io:
  # Never contacted: no case uses vector stores (see the module docstring).
  - provider_id: infinispan
    provider_type: remote::infinispan
    config:
      url: "http://127.0.0.1:9"
      persistence: {namespace: "vector_io::infinispan", backend: kv_default}
  tool_runtime:
  - {provider_id: model-context-protocol, provider_type: "remote::model-context-protocol"}
  files:
  - provider_id: localfs
    provider_type: inline::localfs
    config:
      storage_dir: HOME/files
      metadata_store: {table_name: files_metadata, backend: sql_default}
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

TOOL = {
    "type": "function",
    "name": "lookup",
    "description": "Look a thing up.",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
}
CHAT_TOOL = {
    "type": "function",
    "function": {k: v for k, v in TOOL.items() if k != "type"},
}
USER = {"role": "user", "content": "hi"}
STREAM = {"stream": True, "stream_options": {"include_usage": True}}
SEARCH_TOOL = {"type": "function", "function": {"name": "file_search", "parameters": {}}}
DOC = "The warranty period for the bench kettle is 24 months."


def _answered(tool: dict[str, Any], result: str) -> dict[str, Any]:
    """A streamed chat call whose last message is the result of the model's call of tool."""
    function = {"name": tool["function"]["name"], "arguments": "{}"}
    call = {"id": "call_bench", "type": "function", "function": function}
    messages = [
        USER,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_bench", "content": result},
    ]
    return {"messages": messages, "tools": [tool], **STREAM}


CHAT = "/v1/chat/completions"
# The upstream's own calls per case, as the gateways send them (chat calls streamed).
UPSTREAM_CALLS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "plain": [(CHAT, {"messages": [USER], **STREAM})],
    "function call": [(CHAT, {"messages": [USER], "tools": [CHAT_TOOL], **STREAM})],
    "tool round trip": [
        (CHAT, {"messages": [USER], "tools": [CHAT_TOOL], **STREAM}),
        (CHAT, _answered(CHAT_TOOL, "42")),
    ],
    "file_search loop": [
        (CHAT, {"messages": [USER], "tools": [SEARCH_TOOL], **STREAM}),
        ("/v1/embeddings", {"input": ["bench"]}),
        (CHAT, _answered(SEARCH_TOOL, DOC)),
    ],
}
CASES = list(UPSTREAM_CALLS)
PEER_CASES = CASES[:3]
# Why Llama Stack has no file_search number (see the module docstring).
NO_PEER_SEARCH = (
    "Llama Stack 0.7.3: not run (its file_search needs an inline vector_io provider, and "
    "each loads tiktoken's cl100k_base at start-up: a download, impossible offline)"
)


def model_calls(case: str) -> int:
    return sum(path == CHAT for path, _ in UPSTREAM_CALLS[case])


Step = Callable[[httpx.Client], None]
Results = dict[str, dict[str, list[float]]]  # {case: {target: samples in ms}}


def _last_type(response: dict[str, Any]) -> str:
    if response.get("status") != "completed" or not response.get("output"):
        raise SystemExit(f"unexpected response: {str(response)[:500]}")
    return response["output"][-1]["type"]


def _create(client: httpx.Client, url: str, body: dict[str, Any], expect: str) -> dict[str, Any]:
    reply = client.post(url, json=body)
    if reply.status_code != 200:
        raise SystemExit(f"{url}: {reply.status_code} {reply.text[:500]}")
    response = reply.json()
    if _last_type(response) != expect:
        raise SystemExit(f"{url}: expected a {expect} last, got {str(response)[:500]}")
    return response


def responses_case(case: str, url: str, model: str, store: str | None = None) -> Step:
    """One iteration of a case against a gateway's /v1/responses; checks what comes back,
    so a misconfigured run fails instead of timing errors."""

    def plain(client: httpx.Client) -> None:
        _create(client, url, {"model": model, "input": "hi"}, "message")

    def call(client: httpx.Client) -> None:
        _create(client, url, {"model": model, "input": "hi", "tools": [TOOL]}, "function_call")

    def round_trip(client: httpx.Client) -> None:
        first = _create(
            client, url, {"model": model, "input": "hi", "tools": [TOOL]}, "function_call"
        )
        answer = {
            "type": "function_call_output",
            "call_id": first["output"][-1]["call_id"],
            "output": "42",
        }
        body = {
            "model": model,
            "input": [answer],
            "tools": [TOOL],
            "previous_response_id": first["id"],
        }
        _create(client, url, body, "message")

    def search(client: httpx.Client) -> None:
        tools = [{"type": "file_search", "vector_store_ids": [store]}]
        response = _create(client, url, {"model": model, "input": "hi", "tools": tools}, "message")
        found = response["output"][0]
        if found["type"] != "file_search_call" or found["status"] != "completed":
            raise SystemExit(f"{url}: the search did not run: {str(response)[:500]}")

    steps = {"plain": plain, "function call": call, "tool round trip": round_trip}
    return {**steps, "file_search loop": search}[case]


def upstream_case(case: str, base: str) -> Step:
    """The case's model calls sent straight to the upstream (full SSE bodies read)."""

    def run(client: httpx.Client) -> None:
        for path, body in UPSTREAM_CALLS[case]:
            client.post(f"{base}{path}", json={"model": "bench-model", **body}).raise_for_status()

    return run


BLOCK = 50  # runs per case and target before moving on to the next (see measure_all)


def measure_all(targets: dict[str, Callable[[str], Step | None]], calls: int) -> Results:
    """Samples (ms) per case and target (a target may skip a case: its maker answers None).
    The machine is shared and its load drifts, so the targets take turns in blocks of BLOCK
    runs instead of one after the other; each target keeps one keep-alive client and is
    warmed up first."""
    clients = {name: httpx.Client(timeout=30) for name in targets}
    steps = {
        (case, name): step
        for case in CASES
        for name, make in targets.items()
        if (step := make(case)) is not None
    }
    results: Results = {case: {} for case in CASES}
    for case, name in steps:
        results[case][name] = []
    try:
        for (_case, name), step in steps.items():
            for _ in range(10):  # warm-up
                step(clients[name])
        done = 0
        while done < calls:
            block = min(BLOCK, calls - done)
            for (case, name), step in steps.items():
                client, samples = clients[name], results[case][name]
                for _ in range(block):
                    start = time.perf_counter()
                    step(client)
                    samples.append((time.perf_counter() - start) * 1000)
            done += block
    finally:
        for client in clients.values():
            client.close()
    return results


def vector_store(base: str) -> str:
    """A vector store holding one small file (embedded by the instant upstream)."""
    with httpx.Client(base_url=base, timeout=60) as client:
        file = client.post(
            "/files", files={"file": ("kettle.txt", DOC.encode())}, data={"purpose": "assistants"}
        )
        file.raise_for_status()
        body = {"name": "bench", "file_ids": [file.json()["id"]], "embedding_model": "bench-embed"}
        store = client.post("/vector_stores", json=body)
        store.raise_for_status()
        store_id = store.json()["id"]
        for _ in range(300):
            counts = client.get(f"/vector_stores/{store_id}").json()["file_counts"]
            if counts["completed"]:
                return store_id
            if counts["failed"]:
                raise SystemExit(f"the benchmark's file was not ingested: {counts}")
            time.sleep(0.1)
    raise SystemExit("the benchmark's file was not ingested in 30 s")


def start(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env or dict(os.environ)
    )


def run(args: argparse.Namespace) -> Results:
    """Start the upstream and the gateways, then measure them side by side."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            up_port = free_port()
            script = ROOT / "scripts/bench/instant_upstream.py"
            procs.append(start([sys.executable, str(script), str(up_port)]))
            upstream = f"http://127.0.0.1:{up_port}"
            wait(f"{upstream}/v1/models", procs[-1])
            targets: dict[str, Callable[[str], Step | None]] = {
                "upstream (direct)": lambda case: upstream_case(case, upstream)
            }

            (home / "llamda.yaml").write_text(
                LLAMDA_CONFIG.replace("UPSTREAM", upstream).replace("HOME", str(home))
            )
            port = free_port()
            pythonpath = os.pathsep.join(
                p for p in (str(ROOT / "shared"), os.environ.get("PYTHONPATH")) if p
            )
            procs.append(
                start(
                    [
                        sys.executable,
                        "-m",
                        "llamda.cli",
                        "serve",
                        "--config",
                        str(home / "llamda.yaml"),
                        "--port",
                        str(port),
                    ],
                    # This tree's package, whatever the venv has installed.
                    env={**os.environ, "LLAMDA_LOG_LEVEL": "WARNING", "PYTHONPATH": pythonpath},
                )
            )
            llamda = f"http://127.0.0.1:{port}/v1"
            wait(f"{llamda}/health", procs[-1])
            store = vector_store(llamda)
            targets["Llamda"] = lambda case: responses_case(
                case, f"{llamda}/responses", "bench-model", store
            )

            if not args.no_peer:
                subprocess.run([str(ROOT / "scripts/bench/setup_peer")], check=True)
                (home / "files").mkdir()
                (home / "peer.yaml").write_text(
                    PEER_CONFIG.replace("UPSTREAM", upstream).replace("HOME", str(home))
                )
                peer_port = free_port()
                procs.append(
                    start(
                        [
                            str(PEER_VENV / "bin/llama"),
                            "stack",
                            "run",
                            str(home / "peer.yaml"),
                            "--port",
                            str(peer_port),
                        ],
                        # Like Llamda's LLAMDA_LOG_LEVEL above: no per-request log lines.
                        env={**os.environ, "LLAMA_STACK_LOGGING": "all=warning"},
                    )
                )
                peer = f"http://127.0.0.1:{peer_port}/v1/responses"
                wait(f"http://127.0.0.1:{peer_port}/v1/health", procs[-1])
                targets["Llama Stack 0.7.3"] = lambda case: (
                    responses_case(case, peer, "vllm/bench-model") if case in PEER_CASES else None
                )
            return measure_all(targets, args.calls)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


def report(results: Results, calls: int) -> str:
    title = f"gateway overhead per agent step, POST /v1/responses, {calls} sequential runs per case"
    lines = [f"{title}, instant upstream ({os.cpu_count()} cores)"]
    head = f"{'':<22}{'latency p50':>13}{'p99':>10}{'overhead p50':>15}{'p99':>10}"
    head += f"{'per step p50':>15}"
    for case, by_gateway in results.items():
        steps = model_calls(case)
        lines += ["", f"{case} ({steps} model call{'s' if steps > 1 else ''})", head]
        base = by_gateway["upstream (direct)"]
        base50, base99 = pct(base, 50), pct(base, 99)
        overhead = {}
        for name, samples in by_gateway.items():
            p50, p99 = pct(samples, 50), pct(samples, 99)
            line = f"  {name:<20}{p50:>10.2f} ms{p99:>7.2f} ms"
            if name != "upstream (direct)":
                overhead[name] = p50 - base50
                line += f"{p50 - base50:>12.2f} ms{p99 - base99:>7.2f} ms"
                line += f"{(p50 - base50) / steps:>12.2f} ms"
            lines.append(line)
        if "Llama Stack 0.7.3" in overhead:
            ratio = overhead["Llamda"] / overhead["Llama Stack 0.7.3"]
            lines.append(f"  Llamda overhead / Llama Stack overhead (p50): {ratio:.2f}")
        elif case not in PEER_CASES:
            lines.append(f"  {NO_PEER_SEARCH}")
        if case == "file_search loop":
            lines.append("  (the upstream's time includes the query's embedding call)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=500, help="runs per case and gateway")
    parser.add_argument("--no-peer", action="store_true", help="skip Llama Stack")
    parser.add_argument("--write", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    results = run(args)
    # The machine is shared: the load says how much to trust the absolute numbers.
    loads = f"load average (1 min) {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    text = report(results, args.calls) + "\n" + loads
    print(text)
    if args.write:
        append_report(
            "Agent step overhead",
            f".venv/bin/python scripts/bench/agents.py {' '.join(sys.argv[1:])}",
            text,
        )


if __name__ == "__main__":
    main()
