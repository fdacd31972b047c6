"""Benchmarks and eval as users run them: llama-stack-client against a live local server whose
candidate ("student") and judge are scripted models behind the OpenAI-compatible fake. The
student answers each question from its own script (tests/data/eval_multiple_choice.jsonl's
``generated_answer`` column, which is *not* in the registered dataset); the judge rates what
its prompt holds. Jobs run in chunks of 4 rows on the local job runner."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from llama_stack_client import BadRequestError, LlamaStackClient, NotFoundError

from tests.conftest import LiveServer, free_port, start_server, stop_server
from tests.fakes.openai_upstream import OpenAIUpstream
from tests.integration.agents_server import create_key

DATA = Path(__file__).resolve().parents[1] / "data" / "eval_multiple_choice.jsonl"
MC = "basic::regex_parser_multiple_choice_answer"
EVAL_RUN = [sys.executable, "-m", "llamda.cli", "eval", "run"]

CONFIG = """
version: 1
profile: local
apis: [inspect, models, inference, files, vector_io, agents, eval]
providers:
  inference:
    - provider_id: upstream
      provider_type: remote::vllm
      config: {{url: "{upstream}"}}
models:
  - {{model_id: student, provider_id: upstream, provider_model_id: student-up}}
  - {{model_id: slow-student, provider_id: upstream, provider_model_id: slow-student-up}}
  - {{model_id: judge, provider_id: upstream, provider_model_id: judge-up}}
  - {{model_id: rag-student, provider_id: upstream, provider_model_id: rag-student-up}}
  - {{model_id: embedder, provider_id: upstream, model_type: embedding,
     metadata: {{embedding_dimension: 3}}}}
storage:
  records: {{type: sqlite, path: "{home}/records.sqlite3"}}
  objects: {{type: local, root: "{home}/objects"}}
  vectors: {{uri: "{home}/lancedb"}}
server: {{auth: true}}
routing: {{max_retries: 0, timeout_seconds: 10}}
jobs: {{chunk_rows: 4}}
eval: {{max_sync_rows: 5}}
"""


def _data() -> list[dict[str, Any]]:
    return [json.loads(line) for line in DATA.read_text().splitlines()]


SCRIPT = {row["input_query"]: row["generated_answer"] for row in _data()}


def _reply(body: dict[str, Any]) -> str:
    """The student answers from its script; the judge grades an answer against the expected
    one as a model would (never told the expected score)."""
    text = body["messages"][-1]["content"]
    if isinstance(text, list):
        text = " ".join(part.get("text", "") for part in text)
    last = body["messages"][-1]
    if body["model"] == "rag-student-up" and last["role"] == "tool":
        # It read what file_search found and answers from it.
        found = re.search(r"capital of (\w+) is (\w+)", str(last["content"]))
        return f"{found.group(2)} is the capital." if found else "I could not find it."
    if body["model"].endswith("student-up"):
        system = [m["content"] for m in body["messages"] if m["role"] == "system"]
        if system and "shout" in system[0]:
            return SCRIPT.get(text, "no idea").upper()
        return SCRIPT.get(text, "no idea")
    if "supported by retrieved context" in text:
        context = text.split("Context:\n", 1)[1].split("\n\nAnswer: ", 1)
        words = re.findall(r"[A-Z][a-z]+", context[1].split("\n", 1)[0])
        return "Score: 1.0" if words and all(w in context[0] for w in words) else "Score: 0.0"
    expected = re.search(r"Expected answer: (.*)", text)
    generated = re.search(r"Generated answer: (.*)", text)
    if not expected or not generated:
        return "unparseable"
    if "not sure" in generated.group(1):
        return "I refuse to grade this."  # no score in it: a scored error
    return "Score: 5" if expected.group(1) in generated.group(1) else "Score: 1"


@pytest.fixture(scope="module")
def upstream() -> Iterator[OpenAIUpstream]:
    with OpenAIUpstream() as fake:
        fake.chat_reply = _reply
        fake.answer_after_tool = True
        yield fake


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("evaljobs")


@pytest.fixture(scope="module")
def server(home: Path, upstream: OpenAIUpstream) -> Iterator[LiveServer]:
    config = home / "run.yaml"
    config.write_text(CONFIG.format(home=home, upstream=upstream.url))
    live = start_server(config, home)
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def keys(server: LiveServer, home: Path) -> dict[str, str]:
    return {"alice": create_key(home, "alice"), "bob": create_key(home, "bob")}


@pytest.fixture(scope="module")
def alice(server: LiveServer, keys: dict[str, str]) -> LlamaStackClient:
    return LlamaStackClient(base_url=server.url, api_key=keys["alice"], max_retries=0)


@pytest.fixture(scope="module")
def bob(server: LiveServer, keys: dict[str, str]) -> LlamaStackClient:
    return LlamaStackClient(base_url=server.url, api_key=keys["bob"], max_retries=0)


@pytest.fixture(scope="module")
def benchmark(alice: LlamaStackClient) -> str:
    """The 30 questions without the student's answers, graded by the multiple-choice parser
    and by the judge."""
    rows = [{k: v for k, v in r.items() if k != "generated_answer"} for r in _data()]
    alice.beta.datasets.register(
        purpose="eval/question-answer",
        source={"type": "rows", "rows": rows},
        dataset_id="mc30-questions",
    )
    alice.alpha.benchmarks.register(
        benchmark_id="mc30",
        dataset_id="mc30-questions",
        scoring_functions=[MC, "llm-as-judge::base"],
    )
    return "mc30"


def _candidate(model: str = "student", **extra: Any) -> dict[str, Any]:
    return {
        "eval_candidate": {
            "type": "model",
            "model": model,
            "sampling_params": {"strategy": {"type": "greedy"}, "max_tokens": 16},
            **extra,
        },
        "scoring_params": {
            "llm-as-judge::base": {
                "type": "llm_as_judge",
                "judge_model": "judge",
                "judge_score_regexes": [r"Score: (\d)"],
                "aggregation_functions": ["categorical_count"],
            }
        },
    }


def _wait(client: LlamaStackClient, benchmark_id: str, job_id: str) -> Any:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = client.alpha.eval.jobs.status(job_id, benchmark_id=benchmark_id)
        if job.status not in ("scheduled", "in_progress"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def test_benchmark_register_list_get(alice: LlamaStackClient, benchmark: str) -> None:
    got = alice.alpha.benchmarks.retrieve(benchmark)
    assert got.identifier == "mc30" and got.dataset_id == "mc30-questions"
    assert got.scoring_functions == [MC, "llm-as-judge::base"]
    assert [b.identifier for b in alice.alpha.benchmarks.list()] == ["mc30"]
    # Registering it again identically is fine; another definition under its id is a 409.
    alice.alpha.benchmarks.register(
        benchmark_id="mc30",
        dataset_id="mc30-questions",
        scoring_functions=[MC, "llm-as-judge::base"],
    )
    with pytest.raises(Exception) as conflict:
        alice.alpha.benchmarks.register(
            benchmark_id="mc30", dataset_id="mc30-questions", scoring_functions=[MC]
        )
    assert getattr(conflict.value, "status_code", None) == 409


def test_an_eval_job_generates_scores_and_aggregates_exactly(
    alice: LlamaStackClient, benchmark: str, upstream: OpenAIUpstream
) -> None:
    """The student's script has 18 multiple-choice answers right (hand-counted: see
    tests/integration/test_eval_scoring.py); the judge gives 5 where the expected letter is in
    the answer, 1 where not, and no score for the 2 "not sure" answers (scored errors)."""
    before = len(upstream.requests)
    job = alice.alpha.eval.run_eval(benchmark, benchmark_config=_candidate())
    assert job.status in ("scheduled", "in_progress", "completed")
    done = _wait(alice, benchmark, job.job_id)
    assert done.status == "completed"
    raw = done.model_dump()
    assert raw["rows_done"] == raw["rows_total"] == 30
    result = alice.alpha.eval.jobs.retrieve(job.job_id, benchmark_id=benchmark)
    script = [row["generated_answer"] for row in _data()]
    assert [g["generated_answer"] for g in result.generations] == script  # in row order
    mc = result.scores[MC]
    assert mc.aggregated_results["accuracy"] == {
        "accuracy": 18 / 30,
        "num_correct": 18.0,
        "num_total": 30,
    }
    judged = result.scores["llm-as-judge::base"]
    expected_counts: dict[str, int] = {}
    errors = 0
    for row in _data():
        if "not sure" in row["generated_answer"]:
            errors += 1
            continue
        score = "5" if row["expected_answer"] in row["generated_answer"] else "1"
        expected_counts[score] = expected_counts.get(score, 0) + 1
    expected_counts["None"] = errors  # Llama Stack counts unscored rows as "None"
    assert judged.aggregated_results["categorical_count"]["categorical_count"] == expected_counts
    assert sum(1 for r in judged.score_rows if r.get("error")) == errors == 2
    # 30 student calls and 28 + 2 judge calls: each row generated and judged once.
    calls = upstream.requests[before:]
    assert sum(1 for c in calls if c["body"]["model"] == "student-up") == 30
    assert sum(1 for c in calls if c["body"]["model"] == "judge-up") == 30


def test_evaluate_rows_answers_at_once(alice: LlamaStackClient, benchmark: str) -> None:
    rows = [{k: v for k, v in r.items() if k != "generated_answer"} for r in _data()[:3]]
    result = alice.alpha.eval.evaluate_rows(
        benchmark,
        benchmark_config=_candidate(system_message={"role": "system", "content": "shout"}),
        input_rows=rows,
        scoring_functions=[MC],
    )
    script = [row["generated_answer"].upper() for row in _data()[:3]]
    assert [g["generated_answer"] for g in result.generations] == script
    assert result.scores[MC].aggregated_results["accuracy"]["num_total"] == 3


def test_cancel_stops_new_work_and_keeps_finished_rows(
    alice: LlamaStackClient, benchmark: str, upstream: OpenAIUpstream
) -> None:
    upstream.gate_models.add("slow-student-up")
    upstream.gate.clear()
    try:
        job = alice.alpha.eval.run_eval(benchmark, benchmark_config=_candidate("slow-student"))
        deadline = time.monotonic() + 30
        while not any(r["body"].get("model") == "slow-student-up" for r in upstream.requests):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        alice.alpha.eval.jobs.cancel(job.job_id, benchmark_id=benchmark)
    finally:
        upstream.gate.set()
        upstream.gate_models.discard("slow-student-up")
    done = _wait(alice, benchmark, job.job_id)
    assert done.status == "cancelled"
    raw = done.model_dump()
    assert raw["rows_done"] == 4  # the chunk that was running when the cancel came
    result = alice.alpha.eval.jobs.retrieve(job.job_id, benchmark_id=benchmark)
    assert len(result.generations) == 4
    asked = sum(1 for r in upstream.requests if r["body"].get("model") == "slow-student-up")
    assert asked == 4  # no chunk started after the cancel


def test_a_dataset_registered_again_mid_job_fails_the_job_instead_of_mixing_rows(
    alice: LlamaStackClient, upstream: OpenAIUpstream
) -> None:
    """Appends keep a job's rows (new ones come after rows_total), but a dataset unregistered
    and registered again under the same id is another dataset: the job fails saying so."""
    rows = [{k: v for k, v in r.items() if k != "generated_answer"} for r in _data()[:12]]
    alice.beta.datasets.register(
        purpose="eval/question-answer",
        source={"type": "rows", "rows": rows},
        dataset_id="swapped",
    )
    alice.alpha.benchmarks.register(
        benchmark_id="swap", dataset_id="swapped", scoring_functions=[MC]
    )
    upstream.gate_models.add("slow-student-up")
    upstream.gate.clear()
    try:
        job = alice.alpha.eval.run_eval(
            "swap",
            benchmark_config={"eval_candidate": _candidate("slow-student")["eval_candidate"]},
        )
        deadline = time.monotonic() + 30
        while not any(r["body"].get("model") == "slow-student-up" for r in upstream.requests):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        alice.beta.datasets.unregister("swapped")
        other = [
            {"input_query": f"Another question {i}?", "expected_answer": "A"} for i in range(12)
        ]
        alice.beta.datasets.register(
            purpose="eval/question-answer",
            source={"type": "rows", "rows": other},
            dataset_id="swapped",
        )
    finally:
        upstream.gate.set()
        upstream.gate_models.discard("slow-student-up")
    done = _wait(alice, "swap", job.job_id).model_dump()
    assert done["status"] == "failed", done
    assert "registered again" in str(done.get("error")), done
    asked = [
        r["body"]["messages"][-1]["content"]
        for r in upstream.requests
        if r["body"].get("model") == "slow-student-up"
    ]
    assert not any("Another question" in str(m) for m in asked)


def test_bad_eval_input_is_a_clear_4xx(
    alice: LlamaStackClient, benchmark: str, server: LiveServer, keys: dict[str, str]
) -> None:
    with pytest.raises(NotFoundError, match="nope::fn"):
        alice.alpha.benchmarks.register(
            benchmark_id="b2", dataset_id="mc30-questions", scoring_functions=["nope::fn"]
        )
    with pytest.raises(NotFoundError, match="no-such-dataset"):
        alice.alpha.benchmarks.register(
            benchmark_id="b3", dataset_id="no-such-dataset", scoring_functions=[MC]
        )
    with pytest.raises(NotFoundError):
        alice.alpha.eval.run_eval("no-such-benchmark", benchmark_config=_candidate())
    with pytest.raises(NotFoundError, match="ghost"):
        alice.alpha.eval.run_eval(benchmark, benchmark_config=_candidate("ghost"))
    top_k = _candidate()
    top_k["eval_candidate"]["sampling_params"]["strategy"] = {"type": "top_k", "top_k": 5}
    with pytest.raises(BadRequestError, match="top_k"):
        alice.alpha.eval.run_eval(benchmark, benchmark_config=top_k)
    rows = [{"input_query": "Question 0: pick one of A, B, C or D."}] * 6
    with pytest.raises(BadRequestError, match="max_sync_rows"):
        alice.alpha.eval.evaluate_rows(
            benchmark, benchmark_config=_candidate(), input_rows=rows, scoring_functions=[MC]
        )
    with pytest.raises(BadRequestError, match="input_rows\\[0\\]"):
        alice.alpha.eval.evaluate_rows(
            benchmark,
            benchmark_config=_candidate(),
            input_rows=[{"question": "no input column"}],
            scoring_functions=[MC],
        )
    with pytest.raises(NotFoundError):
        alice.alpha.eval.jobs.status("evaljob-0000", benchmark_id=benchmark)
    # Wrong types and malformed JSON: 400s in the OpenAI error shape.
    headers = {"Authorization": f"Bearer {keys['alice']}", "Content-Type": "application/json"}
    url = f"{server.url}/v1alpha/eval/benchmarks/{benchmark}/jobs"
    for body in (b"{not json", b'{"benchmark_config": {"eval_candidate": 7}}', b"[]"):
        reply = httpx.post(url, content=body, headers=headers)
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["message"]


def test_a_running_job_has_no_result_yet_and_jobs_are_the_tenants_own(
    alice: LlamaStackClient, bob: LlamaStackClient, benchmark: str, upstream: OpenAIUpstream
) -> None:
    upstream.gate_models.add("slow-student-up")
    upstream.gate.clear()
    try:
        job = alice.alpha.eval.run_eval(benchmark, benchmark_config=_candidate("slow-student"))
        with pytest.raises(Exception) as running:
            alice.alpha.eval.jobs.retrieve(job.job_id, benchmark_id=benchmark)
        assert getattr(running.value, "status_code", None) == 409
        with pytest.raises(NotFoundError):
            bob.alpha.eval.jobs.status(job.job_id, benchmark_id=benchmark)
        with pytest.raises(NotFoundError):
            bob.alpha.eval.jobs.cancel(job.job_id, benchmark_id=benchmark)
        with pytest.raises(NotFoundError):
            bob.alpha.benchmarks.retrieve(benchmark)
        assert alice.alpha.eval.jobs.status(job.job_id, benchmark_id=benchmark).status in (
            "scheduled",
            "in_progress",
        )
        alice.alpha.eval.jobs.cancel(job.job_id, benchmark_id=benchmark)
    finally:
        upstream.gate.set()
        upstream.gate_models.discard("slow-student-up")
    assert _wait(alice, benchmark, job.job_id).status == "cancelled"


def test_unregister(alice: LlamaStackClient) -> None:
    alice.alpha.benchmarks.register(
        benchmark_id="temp", dataset_id="mc30-questions", scoring_functions=[MC]
    )
    alice.alpha.benchmarks.unregister("temp")
    with pytest.raises(NotFoundError):
        alice.alpha.benchmarks.retrieve("temp")


def test_a_rag_agent_is_evaluated_end_to_end(
    alice: LlamaStackClient, server: LiveServer, keys: dict[str, str]
) -> None:
    """An agent candidate: the Responses API with file_search over a vector store; what it
    retrieved becomes the row's context, which the faithfulness judge reads."""
    oai = openai.OpenAI(base_url=f"{server.url}/v1", api_key=keys["alice"], max_retries=0)
    store = oai.vector_stores.create(name="facts")
    facts = b"The capital of France is Paris. The capital of Peru is Lima."
    uploaded = oai.files.create(file=("facts.txt", facts), purpose="assistants")
    attached = oai.vector_stores.files.create_and_poll(
        vector_store_id=store.id, file_id=uploaded.id
    )
    assert attached.status == "completed"
    rows = [{"input_query": "What is the capital of France?", "expected_answer": "Paris"}]
    alice.beta.datasets.register(
        purpose="eval/question-answer", source={"type": "rows", "rows": rows}, dataset_id="rag1"
    )
    alice.alpha.benchmarks.register(
        benchmark_id="rag",
        dataset_id="rag1",
        scoring_functions=["llm-as-judge::faithfulness", "basic::subset_of"],
    )
    agent = {
        "type": "agent",
        "config": {
            "model": "rag-student",
            "instructions": "Answer from the documents.",
            "tools": [{"type": "file_search", "vector_store_ids": [store.id]}],
        },
    }
    config = {
        "eval_candidate": agent,
        "scoring_params": {
            "llm-as-judge::faithfulness": {"type": "llm_as_judge", "judge_model": "judge"}
        },
    }
    result = alice.alpha.eval.evaluate_rows(
        "rag",
        benchmark_config=config,  # type: ignore[arg-type]
        input_rows=rows,
        scoring_functions=["llm-as-judge::faithfulness", "basic::subset_of"],
    )
    [generation] = result.generations
    assert generation["generated_answer"] == "Paris is the capital."
    assert "capital of France is Paris" in generation["context"]
    assert result.scores["llm-as-judge::faithfulness"].score_rows[0]["score"] == 1.0
    assert result.scores["basic::subset_of"].aggregated_results["accuracy"]["num_correct"] == 1
    # MCP credentials are never stored: not with a job either.
    mcp = {"type": "mcp", "server_label": "x", "server_url": "http://127.0.0.1:9/mcp"}
    secret = {**agent, "config": {**agent["config"], "tools": [{**mcp, "authorization": "sk-x"}]}}
    with pytest.raises(BadRequestError, match="never stored"):
        alice.alpha.eval.run_eval("rag", benchmark_config={**config, "eval_candidate": secret})  # type: ignore[arg-type]
    # An agent config the Responses API would refuse is a 400 before anything runs.
    bad = {**agent, "config": {**agent["config"], "tools": [{"type": "web_search"}]}}
    with pytest.raises(BadRequestError):
        alice.alpha.eval.evaluate_rows(
            "rag",
            benchmark_config={**config, "eval_candidate": bad},  # type: ignore[arg-type]
            input_rows=rows,
            scoring_functions=["basic::subset_of"],
        )


def test_the_cli_runs_a_benchmark_and_writes_its_report(
    benchmark: str, server: LiveServer, keys: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "report"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "llamda.cli",
            "eval",
            "run",
            benchmark,
            "--model",
            "student",
            "--judge",
            "judge",
            "--url",
            server.url,
            "--out",
            str(out),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LLAMDA_API_KEY": keys["alice"]},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    table = done.stdout
    assert re.search(rf"{re.escape(MC)}\s*\|\s*accuracy\s*\|.*\"accuracy\": {18 / 30}", table)
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [line["generation"]["generated_answer"] for line in lines] == [
        row["generated_answer"] for row in _data()
    ]
    assert lines[0]["input"]["input_query"] == _data()[0]["input_query"]
    report = (out / "report.html").read_text()
    assert report.count("<svg") == 2 and "score distribution" in report
    # A benchmark that does not exist: a clear message, exit status 2, no traceback.
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "llamda.cli",
            "eval",
            "run",
            "nope",
            "--model",
            "student",
            "--url",
            server.url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "LLAMDA_API_KEY": keys["alice"]},
        check=False,
    )
    assert missing.returncode == 2 and "nope" in missing.stderr
    assert "Traceback" not in missing.stderr
    # The benchmark has a judge and the server no default judge: the CLI says which flag.
    unjudged = subprocess.run(
        [*EVAL_RUN, benchmark, "--model", "student", "--url", server.url, "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "LLAMDA_API_KEY": keys["alice"]},
        check=False,
    )
    assert unjudged.returncode == 2 and unjudged.stderr.rstrip().endswith("pass --judge MODEL")
    # No server at the URL: say what to start.
    down = subprocess.run(
        [*EVAL_RUN, benchmark, "--model", "student", "--url", f"http://127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert down.returncode == 2 and "llamda serve" in down.stderr, down.stderr
    # --num-examples 0 is a mistake, not "all rows": the server's 400 names the field.
    zero = subprocess.run(
        [
            *EVAL_RUN,
            benchmark,
            "--model",
            "student",
            "--judge",
            "judge",
            "--url",
            server.url,
            "--num-examples",
            "0",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "LLAMDA_API_KEY": keys["alice"]},
        check=False,
    )
    assert zero.returncode == 2 and "num_examples" in zero.stderr, zero.stderr
    assert "Traceback" not in zero.stderr
