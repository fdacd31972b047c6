"""``llamda eval run BENCHMARK --model M [--judge J]``: run an eval job on a running stack (the
local server by default, or a deployed one with --url), show its progress, print the
aggregated scores as a table and write ``results.jsonl`` and ``report.html`` (a score
distribution per scoring function and, when the dataset has a ``category`` column, the mean
score per category)."""

from __future__ import annotations

import argparse
import html
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from llamda.cli_ingest import UsageError, _error, base_url

DEFAULT_URL = "http://127.0.0.1:8321"
POLL_SECONDS = 1.0
PAGE = 1000
# Rows per page of a job result (each page one answer: at most eval.max_result_bytes).
RESULT_PAGE_ROWS = 200


def add_parser(sub: Any) -> None:
    cmd = sub.add_parser("eval", help="run evaluations (benchmarks) against a running stack")
    actions = cmd.add_subparsers(dest="eval_command", required=True)
    run = actions.add_parser(
        "run",
        help="run a benchmark with a model; print and save the scores",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("benchmark", help="a registered benchmark id")
    run.add_argument("--model", required=True, help="the candidate model id")
    run.add_argument("--judge", help="judge model for the benchmark's LLM-as-judge functions")
    run.add_argument("--system", help="a system message for the candidate")
    run.add_argument("--max-tokens", type=int, default=512, help="candidate max_tokens (512)")
    run.add_argument("--num-examples", type=int, help="only the first N rows")
    run.add_argument("--out", help="results directory (default: ./eval-results/<job id>)")
    run.add_argument("--url", default=DEFAULT_URL, help=f"the stack's base URL ({DEFAULT_URL})")
    run.add_argument(
        "--api-key", default=os.environ.get("LLAMDA_API_KEY"), help="($LLAMDA_API_KEY)"
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except UsageError as exc:
        print(f"llamda eval: {exc}", file=sys.stderr)
        return 2


class _Client:
    def __init__(self, url: str, api_key: str | None):
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = url
        self.http = httpx.Client(
            base_url=url, headers=headers, timeout=httpx.Timeout(120, connect=10)
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            reply = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise UsageError(
                f"cannot reach {self.url}: {type(exc).__name__} (is the server running? "
                "`llamda serve`, or give a deployed stack's --url)"
            ) from None
        if reply.status_code >= 400:
            raise UsageError(f"{method} {path}: {_error(reply)}")
        return reply.json() if reply.content else None


def _run(args: argparse.Namespace) -> int:
    client = _Client(base_url(args.url), args.api_key)
    prefix = f"/v1alpha/eval/benchmarks/{args.benchmark}"
    benchmark = client.call("GET", prefix)
    candidate: dict[str, Any] = {
        "type": "model",
        "model": args.model,
        "sampling_params": {"strategy": {"type": "greedy"}, "max_tokens": args.max_tokens},
    }
    if args.system:
        candidate["system_message"] = {"role": "system", "content": args.system}
    config: dict[str, Any] = {"eval_candidate": candidate}
    if args.num_examples is not None:  # 0 or less: the server's 400 says so (not "all rows")
        config["num_examples"] = args.num_examples
    if args.judge:
        config["scoring_params"] = _judge_params(client, benchmark["scoring_functions"], args.judge)
    try:
        job = client.call("POST", f"{prefix}/jobs", json={"benchmark_config": config})
    except UsageError as exc:
        if args.judge is None and "judge_model" in str(exc):  # the server names its own fields
            raise UsageError(f"{exc}; pass --judge MODEL") from None
        raise
    job_id = job["job_id"]
    try:
        job = _follow(client, f"{prefix}/jobs/{job_id}", job, args.quiet)
    except KeyboardInterrupt:
        client.call("DELETE", f"{prefix}/jobs/{job_id}")
        print(f"\ncancelled {job_id}", file=sys.stderr)
        return 130
    if job["status"] != "completed":
        error = (job.get("error") or {}).get("message", "")
        print(f"llamda eval: job {job_id} {job['status']} {error}".rstrip(), file=sys.stderr)
        return 1
    result = _job_result(client, f"{prefix}/jobs/{job_id}/result", int(job["rows_total"]))
    rows = _dataset_rows(client, benchmark["dataset_id"], len(result["generations"]))
    out = Path(args.out or Path("eval-results") / job_id)
    out.mkdir(parents=True, exist_ok=True)
    _write_jsonl(out / "results.jsonl", rows, result)
    (out / "report.html").write_text(report_html(args.benchmark, args.model, rows, result))
    print(score_table(result))
    print(f"\nresults: {out / 'results.jsonl'}\nreport:  {out / 'report.html'}")
    return 0


def _job_result(client: _Client, path: str, rows_total: int) -> dict[str, Any]:
    """A job's result read in pages (a large one is more than one answer holds); a page the
    server finds too large is asked for again in halves."""
    result: dict[str, Any] | None = None
    start, size = 0, RESULT_PAGE_ROWS
    while result is None or start < rows_total:
        try:
            page = client.call("GET", path, params={"start_index": start, "limit": size})
        except UsageError as exc:
            if "max_result_bytes" not in str(exc) or size == 1:
                raise
            size = max(1, size // 2)
            continue
        if result is None:
            result = page
        else:
            result["generations"].extend(page["generations"])
            for fn, scores in page["scores"].items():
                result["scores"][fn]["score_rows"].extend(scores["score_rows"])
        if not page["generations"]:
            break  # a cancelled job finished fewer rows than it had
        start += len(page["generations"])
    assert result is not None  # the loop ran at least once
    return result


def _judge_params(client: _Client, functions: list[str], judge: str) -> dict[str, Any]:
    """The benchmark's LLM-as-judge functions' own params with ``judge_model`` replaced."""
    params: dict[str, Any] = {}
    for fn in functions:
        definition = client.call("GET", f"/v1/scoring-functions/{fn}")
        own = definition.get("params") or {}
        if own.get("type") == "llm_as_judge":
            params[fn] = {**own, "judge_model": judge}
    if not params:
        raise UsageError("--judge: the benchmark has no LLM-as-judge scoring function")
    return params


def _follow(client: _Client, path: str, job: dict[str, Any], quiet: bool) -> dict[str, Any]:
    bar = None
    if not quiet:
        try:
            from tqdm import tqdm

            bar = tqdm(total=job["rows_total"], unit="row", desc=job["job_id"])
        except ImportError:
            bar = None
    done = 0
    while job["status"] in ("scheduled", "in_progress"):
        time.sleep(POLL_SECONDS)
        job = client.call("GET", path)
        if bar is not None:
            bar.update(job["rows_done"] - done)
        elif not quiet:
            print(f"\r{job['rows_done']}/{job['rows_total']} rows", end="", file=sys.stderr)
        done = job["rows_done"]
    if bar is not None:
        bar.close()
    return job


def _dataset_rows(client: _Client, dataset_id: str, count: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    while len(rows) < count:
        page = client.call(
            "GET",
            f"/v1beta/datasetio/iterrows/{dataset_id}",
            params={"start_index": len(rows), "limit": min(PAGE, count - len(rows))},
        )
        rows.extend(page["data"])
        if not page["data"] or page.get("next_start_index") is None:
            break
    return rows


def _write_jsonl(path: Path, rows: list[dict[str, Any]], result: dict[str, Any]) -> None:
    with path.open("w") as out:
        for index, generation in enumerate(result["generations"]):
            line = {
                "index": index,
                "input": rows[index] if index < len(rows) else None,
                "generation": generation,
                "scores": {fn: s["score_rows"][index] for fn, s in result["scores"].items()},
            }
            out.write(json.dumps(line) + "\n")


def score_table(result: dict[str, Any]) -> str:
    """The aggregated results as an aligned text table: function | metric | value."""
    lines = [("scoring function", "aggregate", "value")]
    for fn, scores in result["scores"].items():
        for name, value in (scores.get("aggregated_results") or {}).items():
            shown = json.dumps(value) if isinstance(value, dict | list) else str(value)
            lines.append((fn, name, shown))
    widths = [max(len(line[i]) for line in lines) for i in range(3)]
    text = [
        " | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in lines
    ]
    text.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(text)


def _numeric(score: Any) -> float | None:
    if isinstance(score, bool):
        return float(score)
    if isinstance(score, int | float):
        return float(score)
    try:
        return float(score)
    except (TypeError, ValueError):
        return None


def _bars(title: str, items: list[tuple[str, float]], maximum: float, unit: str) -> str:
    """A horizontal bar chart as inline SVG (no scripts, no external files)."""
    height = 24 * len(items) + 40
    out = [f'<h3>{html.escape(title)}</h3><svg width="640" height="{height}" role="img">']
    for i, (label, value) in enumerate(items):
        y = 20 + 24 * i
        width = 0 if maximum <= 0 else int(400 * value / maximum)
        shown = f"{value:.3g}{unit}"
        out.append(
            f'<text x="0" y="{y + 14}" font-size="12">{html.escape(label[:28])}</text>'
            f'<rect x="200" y="{y}" width="{width}" height="18" fill="#4a7bd0"/>'
            f'<text x="{205 + width}" y="{y + 14}" font-size="12">{html.escape(shown)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def report_html(
    benchmark: str, model: str, rows: list[dict[str, Any]], result: dict[str, Any]
) -> str:
    """A one-file HTML report: aggregates, score distribution, accuracy per category."""
    sections = [
        f"<h1>{html.escape(benchmark)}</h1><p>model <b>{html.escape(model)}</b>, "
        f"{len(result['generations'])} rows</p>",
        f"<pre>{html.escape(score_table(result))}</pre>",
    ]
    for fn, scores in result["scores"].items():
        counts: dict[str, int] = {}
        for row in scores["score_rows"]:
            key = "error" if row.get("score") is None else str(row.get("score"))
            counts[key] = counts.get(key, 0) + 1
        items = sorted(counts.items(), key=lambda kv: kv[0])
        sections.append(
            _bars(
                f"{fn}: score distribution",
                [(k, float(v)) for k, v in items],
                max(counts.values(), default=0),
                " rows",
            )
        )
        by_category: dict[str, list[float]] = {}
        for index, row in enumerate(scores["score_rows"]):
            category = rows[index].get("category") if index < len(rows) else None
            value = _numeric(row.get("score"))
            if category is not None and value is not None:
                by_category.setdefault(str(category), []).append(value)
        if by_category:
            means = sorted((c, sum(v) / len(v)) for c, v in by_category.items())
            sections.append(_bars(f"{fn}: mean score per category", means, 1.0, ""))
    body = "\n".join(sections)
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(benchmark)} — llamda eval</title></head>"
        f"<body style='font-family: sans-serif'>{body}</body></html>\n"
    )
