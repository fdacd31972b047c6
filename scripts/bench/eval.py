"""Eval jobs: rows per second of one worker with an instant model.

    .venv/bin/python scripts/bench/eval.py [--rows 2000] [--write]

One process holds the stack (SQLite records, a local object store) and runs the eval job on its
job runner, as the local server does and as one JobsFunction invocation does per chunk; the
candidate and the judge are scripts/bench/instant_upstream.py (it answers "ok" at once), so
what is measured is our per-row work: reading the dataset, a chat call per row through the
routed, guarded inference path (and a judge call per row in the second case), scoring,
checkpointing each chunk (an object and a record write), aggregating at the end.

Cases: `basic` (generation + basic::subset_of + the multiple-choice parser: one model call a
row) and `judge` (the same + llm-as-judge::base: two model calls a row).
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

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "shared"), str(ROOT)]
# One INFO line per model call would be most of the work measured.
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")

from scripts.bench._report import append_report  # noqa: E402
from scripts.bench.overhead import free_port, wait  # noqa: E402

CONFIG = """
version: 1
profile: local
apis: [models, inference, eval]
providers:
  inference:
    - {{provider_id: instant, provider_type: remote::vllm, config: {{url: "{upstream}/v1"}}}}
models:
  - {{model_id: bench-model, provider_id: instant, provider_model_id: bench-model}}
storage:
  records: {{type: sqlite, path: "{home}/records.sqlite3"}}
  objects: {{type: local, root: "{home}/objects"}}
  vectors: {{uri: "{home}/lancedb"}}
"""
MC = "basic::regex_parser_multiple_choice_answer"
JUDGE = {
    "type": "llm_as_judge",
    "judge_model": "bench-model",
    "judge_score_regexes": ["(ok)"],
    "aggregation_functions": ["categorical_count"],
}


async def run_case(home: Path, upstream: str, rows: int, judged: bool) -> float:
    from llamda.api.datasets import RegisterDatasetRequest
    from llamda.api.eval import RegisterBenchmarkRequest, RunEvalRequest
    from llamda.config import load_config
    from llamda.context import tenant_scope
    from llamda.stack import Stack

    (home / "run.yaml").write_text(CONFIG.format(upstream=upstream, home=home))
    stack = Stack(load_config(home / "run.yaml"))
    functions = ["basic::subset_of", MC] + (["llm-as-judge::base"] if judged else [])
    try:
        with tenant_scope("bench"):
            data = [
                {"input_query": f"Question {i}: pick A, B, C or D.", "expected_answer": "ok"}
                for i in range(rows)
            ]
            request = RegisterDatasetRequest.model_validate(
                {
                    "purpose": "eval/question-answer",
                    "source": {"type": "rows", "rows": data},
                    "dataset_id": "bench",
                }
            )
            await stack.datasets.register(
                purpose=request.purpose,
                source=request.source.model_dump(),
                metadata=None,
                dataset_id="bench",
            )
            await stack.eval.benchmarks.register(
                RegisterBenchmarkRequest(
                    benchmark_id="bench", dataset_id="bench", scoring_functions=functions
                )
            )
            config = {
                "eval_candidate": {
                    "type": "model",
                    "model": "bench-model",
                    "sampling_params": {"max_tokens": 8},
                },
                "scoring_params": {"llm-as-judge::base": JUDGE} if judged else {},
            }
            start = time.perf_counter()
            job = await stack.eval.run(
                "bench", RunEvalRequest.model_validate({"benchmark_config": config})
            )
            while stack.jobs._tasks:
                await asyncio.gather(*list(stack.jobs._tasks))
            elapsed = time.perf_counter() - start
            status = await stack.eval.status("bench", job.job_id)
            assert status.status == "completed" and status.rows_done == rows, status
            return elapsed
    finally:
        await stack.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--write", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()
    port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts/bench/instant_upstream.py"), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait(f"{url}/v1/models", upstream)
        load = os.getloadavg()[0]
        lines = [
            f"{args.rows} rows, chunks of 50, 8 model calls in flight per model (defaults); "
            f"load average {load:.1f} on {os.cpu_count()} cores at the start"
        ]
        for judged in (False, True):
            with tempfile.TemporaryDirectory() as home:
                seconds = asyncio.run(run_case(Path(home), url, args.rows, judged))
            name = "judge (2 model calls/row)" if judged else "basic (1 model call/row)"
            lines.append(f"{name:28s} {seconds:6.2f} s  {args.rows / seconds:7.0f} rows/s")
    finally:
        upstream.terminate()
    report = "\n".join(lines)
    print(report)
    if args.write:
        append_report(
            "Eval jobs: rows per second, one worker, instant model",
            f"scripts/bench/eval.py --rows {args.rows}",
            report,
        )


if __name__ == "__main__":
    main()
