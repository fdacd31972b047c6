"""The Evaluation API attacked as a hostile client, a careless client and an operator: another
tenant's ids, path tricks in dataset URIs, regexes and templates built to hurt, wrong types,
non-JSON numbers, failing and hanging upstreams, resources removed under a running job. Every
answer must be a 4xx in the OpenAI error shape (never a 5xx), and a job must always end.

One live server (auth on, two tenants), the scripted OpenAI-compatible upstream: ``student``
answers ``B``, ``judge`` answers ``Score: 4``; ``hanger`` never answers (routing gives up after
1 s); ``broken`` answers 500."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, start_server, stop_server
from tests.fakes.openai_upstream import OpenAIUpstream
from tests.integration.agents_server import create_key

CONFIG = """
version: 1
profile: local
apis: [inspect, models, inference, files, vector_io, agents, eval]
providers:
  inference:
    - provider_id: upstream
      provider_type: remote::vllm
      config: {{url: "{upstream}", api_key: "sk-upstream-secret-4242"}}
models:
  - {{model_id: student, provider_id: upstream, provider_model_id: student-up}}
  - {{model_id: judge, provider_id: upstream, provider_model_id: judge-up}}
  - {{model_id: hanger, provider_id: upstream, provider_model_id: hanger-up}}
  - {{model_id: broken, provider_id: upstream, provider_model_id: broken-up}}
storage:
  records: {{type: sqlite, path: "{home}/records.sqlite3"}}
  objects: {{type: local, root: "{home}/objects"}}
  vectors: {{uri: "{home}/lancedb"}}
server: {{auth: true}}
routing: {{max_retries: 0, timeout_seconds: 1, deadline_seconds: 2}}
jobs: {{chunk_rows: 2}}
eval: {{max_sync_rows: 5, datasets_root: "{home}/datasets", max_result_bytes: 2000}}
"""
SECRET = "sk-upstream-secret-4242"
QA = [{"input_query": f"question {i}?", "expected_answer": "B", "category": "x"} for i in range(6)]
JUDGE = {
    "type": "llm_as_judge",
    "judge_model": "judge",
    "judge_score_regexes": [r"Score: (\d)"],
    "aggregation_functions": ["average"],
}


# The student's reply to "question 2?" waits for this (a job held after its first chunk).
HOLD = threading.Event()
HOLD.set()


def _reply(body: dict[str, Any]) -> str:
    if body["model"] == "judge-up":
        return "Score: 4"
    if body["model"] == "big-up":
        return "B" * 1_000_000
    if body["messages"][-1]["content"] == "question 2?":
        HOLD.wait(30)
    if body["messages"][-1]["content"].startswith("long"):
        return "Answer: B " + "x" * 500
    return "Answer: B"


@pytest.fixture(scope="module")
def upstream() -> Iterator[OpenAIUpstream]:
    with OpenAIUpstream() as fake:
        fake.chat_reply = _reply
        fake.hang_models.add("hanger-up")
        fake.fail_models["broken-up"] = 500
        yield fake


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("evalattacks")
    (home / "datasets").mkdir()
    (home / "datasets" / "ok.jsonl").write_text(json.dumps(QA[0]) + "\n")
    (home / "outside.jsonl").write_text(json.dumps(QA[1]) + "\n")
    (home / "datasets" / "link.jsonl").symlink_to(home / "outside.jsonl")
    return home


@pytest.fixture(scope="module")
def server(home: Path, upstream: OpenAIUpstream) -> Iterator[LiveServer]:
    config = home / "run.yaml"
    config.write_text(CONFIG.format(home=home, upstream=upstream.url))
    live = start_server(config, home)
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def alice(server: LiveServer, home: Path) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {create_key(home, 'alice')}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def bob(server: LiveServer, home: Path) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {create_key(home, 'bob')}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        yield client


def _ok(response: httpx.Response) -> Any:
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def _refused(response: httpx.Response, status: int | tuple[int, ...] = 400) -> dict[str, Any]:
    """A 4xx in the OpenAI error shape."""
    allowed = (status,) if isinstance(status, int) else status
    assert response.status_code in allowed, (response.status_code, response.text)
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}, error
    return error


def _dataset(client: httpx.Client, dataset_id: str, rows: list[dict[str, Any]] = QA) -> None:
    _ok(
        client.post(
            "/v1beta/datasets",
            json={
                "purpose": "eval/question-answer",
                "source": {"type": "rows", "rows": rows},
                "dataset_id": dataset_id,
            },
        )
    )


def _benchmark(client: httpx.Client, benchmark_id: str, dataset_id: str, fns: list[str]) -> None:
    _ok(
        client.post(
            "/v1alpha/eval/benchmarks",
            json={"benchmark_id": benchmark_id, "dataset_id": dataset_id, "scoring_functions": fns},
        )
    )


def _config(model: str = "student", **extra: Any) -> dict[str, Any]:
    return {
        "eval_candidate": {"type": "model", "model": model},
        "scoring_params": {"llm-as-judge::base": JUDGE},
        **extra,
    }


def _wait(client: httpx.Client, benchmark_id: str, job_id: str) -> dict[str, Any]:
    url = f"/v1alpha/eval/benchmarks/{benchmark_id}/jobs/{job_id}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = _ok(client.get(url))
        if job["status"] not in ("scheduled", "in_progress"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never ended: {job}")


# --- another tenant's resources ---------------------------------------------------------------


def test_another_tenants_resources_are_404(alice: httpx.Client, bob: httpx.Client) -> None:
    _dataset(alice, "secret-ds")
    _ok(
        alice.post(
            "/v1/scoring-functions",
            json={
                "scoring_fn_id": "alice::judge",
                "description": "hers",
                "return_type": {"type": "number"},
                "params": JUDGE,
            },
        )
    )
    _benchmark(alice, "secret-bm", "secret-ds", ["basic::subset_of"])
    job = _ok(
        alice.post("/v1alpha/eval/benchmarks/secret-bm/jobs", json={"benchmark_config": _config()})
    )
    assert _wait(alice, "secret-bm", job["job_id"])["status"] == "completed"

    for method, url, body in [
        ("GET", "/v1beta/datasets/secret-ds", None),
        ("GET", "/v1beta/datasetio/iterrows/secret-ds", None),
        ("POST", "/v1beta/datasetio/append-rows/secret-ds", {"rows": QA[:1]}),
        ("DELETE", "/v1beta/datasets/secret-ds", None),
        ("GET", "/v1/scoring-functions/alice::judge", None),
        ("DELETE", "/v1/scoring-functions/alice::judge", None),
        ("GET", "/v1alpha/eval/benchmarks/secret-bm", None),
        ("DELETE", "/v1alpha/eval/benchmarks/secret-bm", None),
        ("GET", f"/v1alpha/eval/benchmarks/secret-bm/jobs/{job['job_id']}", None),
        ("GET", f"/v1alpha/eval/benchmarks/secret-bm/jobs/{job['job_id']}/result", None),
        ("DELETE", f"/v1alpha/eval/benchmarks/secret-bm/jobs/{job['job_id']}", None),
        (
            "POST",
            "/v1/scoring/score-batch",
            {
                "dataset_id": "secret-ds",
                "scoring_functions": {"basic::equality": None},
                "save_results_dataset": False,
            },
        ),
        (
            "POST",
            "/v1/scoring/score",
            {
                "input_rows": [{"expected_answer": "a", "generated_answer": "a"}],
                "scoring_functions": {"alice::judge": None},
            },
        ),
    ]:
        _refused(bob.request(method, url, json=body), 404)
    # Bob's own benchmark cannot point at her dataset or her function either.
    _refused(
        bob.post(
            "/v1alpha/eval/benchmarks",
            json={
                "benchmark_id": "b",
                "dataset_id": "secret-ds",
                "scoring_functions": ["basic::equality"],
            },
        ),
        404,
    )
    # Her job id under a benchmark id bob owns is still not his.
    _dataset(bob, "bob-ds")
    _benchmark(bob, "secret-bm", "bob-ds", ["basic::subset_of"])
    _refused(bob.get(f"/v1alpha/eval/benchmarks/secret-bm/jobs/{job['job_id']}/result"), 404)
    # Everything of hers is still there.
    assert _ok(alice.get("/v1beta/datasets/secret-ds"))["row_count"] == len(QA)
    _ok(alice.get(f"/v1alpha/eval/benchmarks/secret-bm/jobs/{job['job_id']}/result"))


def test_another_tenants_file_is_not_a_dataset_source(
    alice: httpx.Client, bob: httpx.Client
) -> None:
    upload = _ok(
        alice.post(
            "/v1/files",
            files={"file": ("qa.jsonl", json.dumps(QA[0]).encode(), "application/jsonl")},
            data={"purpose": "user_data"},
        )
    )
    source = {"type": "uri", "uri": upload["id"]}
    _refused(
        bob.post("/v1beta/datasets", json={"purpose": "eval/question-answer", "source": source}),
        (400, 404),
    )
    _ok(alice.post("/v1beta/datasets", json={"purpose": "eval/question-answer", "source": source}))


# --- dataset URIs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "file:///etc/passwd",
        "/etc/passwd",
        "../outside.jsonl",
        "file://localhost/../outside.jsonl",
        "file:///%2e%2e/outside.jsonl",
        "%2e%2e/outside.jsonl",
        "link.jsonl",  # a symlink inside the root to a file outside it
        "file://evil.example/ok.jsonl",
        "s3://another-bucket/tenants/alice/x.jsonl",
        "http://169.254.169.254/latest/meta-data/",
        "ok.jsonl\x00.png",
        ".",
        "",
    ],
)
def test_dataset_uri_tricks_are_refused(alice: httpx.Client, home: Path, uri: str) -> None:
    response = alice.post(
        "/v1beta/datasets",
        json={"purpose": "eval/question-answer", "source": {"type": "uri", "uri": uri}},
    )
    error = _refused(response)
    assert str(home) not in error["message"]


def test_a_path_under_the_root_is_read(alice: httpx.Client, home: Path) -> None:
    got = _ok(
        alice.post(
            "/v1beta/datasets",
            json={"purpose": "eval/question-answer", "source": {"type": "uri", "uri": "ok.jsonl"}},
        )
    )
    assert got["row_count"] == 1


# --- regexes and templates ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("judge_score_regexes", [r"(a)\1"]),  # a backreference: not RE2
        ("judge_score_regexes", [r"(?=x)(a)"]),  # lookahead
        ("judge_score_regexes", [r"((a{100}){100}){100}(b)"]),  # an automaton too big
        ("judge_score_regexes", ["no group"]),
        ("judge_score_regexes", ["(" * 5000]),
        ("prompt_template", "{0}"),
        ("prompt_template", "{}"),
        ("prompt_template", "{generated_answer.__class__.__mro__}"),
        ("prompt_template", "{generated_answer[0]}"),
        ("prompt_template", "{generated_answer!r}"),
        ("prompt_template", "{generated_answer:>999999999}"),
        ("prompt_template", "{generated_answer"),
        ("prompt_template", "}"),
        ("judge_model", "no-such-model"),
        ("judge_model", 42),
        ("judge_score_regexes", "Score: (\\d)"),
    ],
)
def test_hostile_judge_params_are_400(alice: httpx.Client, field: str, value: Any) -> None:
    params = {**JUDGE, field: value}
    register = alice.post(
        "/v1/scoring-functions",
        json={
            "scoring_fn_id": "hostile::fn",
            "description": "x",
            "return_type": {"type": "number"},
            "params": params,
        },
    )
    _refused(register, (400, 404))
    score = alice.post(
        "/v1/scoring/score",
        json={
            "input_rows": [{"input_query": "q", "expected_answer": "a", "generated_answer": "a"}],
            "scoring_functions": {"llm-as-judge::base": params},
        },
    )
    _refused(score, (400, 404))


def test_a_dunder_placeholder_is_only_a_column_name(alice: httpx.Client) -> None:
    """``{__class__}`` names a row column like any other: the row lacks it, a 400."""
    params = {**JUDGE, "prompt_template": "{__class__} {generated_answer}"}
    error = _refused(
        alice.post(
            "/v1/scoring/score",
            json={
                "input_rows": [{"expected_answer": "a", "generated_answer": "a"}],
                "scoring_functions": {"llm-as-judge::base": params},
            },
        )
    )
    assert '"__class__"' in error["message"]


def test_a_template_reads_only_row_columns(alice: httpx.Client, upstream: OpenAIUpstream) -> None:
    """Braces in row values are text, not placeholders: a row cannot reach other columns."""
    before = len(upstream.requests)
    row = {
        "input_query": "{expected_answer}",
        "expected_answer": "the-expected",
        "generated_answer": "{0.__class__}{expected_answer}",
    }
    got = _ok(
        alice.post(
            "/v1/scoring/score",
            json={
                "input_rows": [row],
                "scoring_functions": {
                    "llm-as-judge::base": {
                        **JUDGE,
                        "prompt_template": "Q={input_query} A={generated_answer}",
                    }
                },
            },
        )
    )
    assert got["results"]["llm-as-judge::base"]["score_rows"][0]["score"] == 4
    prompt = upstream.requests[before]["body"]["messages"][-1]["content"]
    assert prompt == "Q={expected_answer} A={0.__class__}{expected_answer}"


# --- rows a careless or hostile client sends ------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'{"input_rows": [{"expected_answer": NaN, "generated_answer": NaN}], '
        b'"scoring_functions": {"basic::equality": null}}',
        b'{"input_rows": [{"expected_answer": Infinity, "generated_answer": "x"}], '
        b'"scoring_functions": {"basic::subset_of": null}}',
        b'{"input_rows": [{"expected_answer": "a", "generated_answer": -Infinity}], '
        b'"scoring_functions": {"basic::regex_parser_math_response": null}}',
        b'{"input_rows": [' + b"[" * 5000 + b"]" * 5000 + b"]}",
        b'{"input_rows": "rows", "scoring_functions": {"basic::equality": null}}',
        b'{"input_rows": [1, "a", null], "scoring_functions": {"basic::equality": null}}',
        b'{"input_rows": [{}], "scoring_functions": {"basic::equality": null}}',
        b'{"input_rows": [{"expected_answer": "a", "generated_answer": "a"}], '
        b'"scoring_functions": {"basic::equality": {"type": "llm_as_judge"}}}',
        b'{"input_rows": [{"expected_answer": "a", "generated_answer": "a"}], '
        b'"scoring_functions": {"nope::fn": null}}',
        b'{"input_rows": [{"expected_answer": "a", "generated_answer": "a"}], '
        b'"scoring_functions": {}}',
    ],
)
def test_bad_score_bodies_are_4xx(alice: httpx.Client, raw: bytes) -> None:
    response = alice.post(
        "/v1/scoring/score", content=raw, headers={"Content-Type": "application/json"}
    )
    if response.status_code == 200:
        json.loads(response.text)  # strict JSON: no NaN in an answer
        return
    _refused(response, (400, 404, 422))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"purpose": "eval/question-answer", "source": {"type": "rows", "rows": '
        b'[{"input_query": "q", "expected_answer": "a", "x": NaN}]}}',
        b'{"purpose": "eval/question-answer", "source": {"type": "rows", "rows": '
        b'[{"input_query": "q", "expected_answer": "a", "x": '
        + b"[" * 3000
        + b"]" * 3000
        + b"}]}}",
        b'{"purpose": "eval/question-answer", "source": {"type": "rows", "rows": [{"input_query": 1, "expected_answer": "a"}]}}',
        b'{"purpose": "eval/nope", "source": {"type": "rows", "rows": []}}',
        b'{"purpose": "eval/question-answer", "source": {"type": "rows", "rows": {}}}',
        b'{"purpose": "eval/question-answer", "source": []}',
        b'{"purpose": "eval/question-answer", "source": {"type": "uri", "uri": 7}}',
        b'{"purpose": "eval/question-answer", "source": {"type": "rows", "rows": []}, "dataset_id": "../x"}',
        b'{"purpose": "eval/messages-answer", "source": {"type": "rows", "rows": [{"messages": "[", "expected_answer": "a"}]}}',
    ],
)
def test_bad_dataset_bodies_are_4xx(alice: httpx.Client, raw: bytes) -> None:
    response = alice.post(
        "/v1beta/datasets", content=raw, headers={"Content-Type": "application/json"}
    )
    _refused(response, (400, 422))


@pytest.mark.parametrize(
    "config",
    [
        {"eval_candidate": {"type": "model", "model": "student"}, "num_examples": -1},
        {"eval_candidate": {"type": "model", "model": "student"}, "num_examples": "many"},
        {"eval_candidate": {"type": "model", "model": "no-such-model"}},
        {
            "eval_candidate": {
                "type": "model",
                "model": "student",
                "sampling_params": {"max_tokens": -1},
            }
        },
        {"eval_candidate": {"type": "agent", "config": {"model": "student", "tools": "all"}}},
        {"eval_candidate": {"type": "agent", "config": 3}},
        {"eval_candidate": {"type": "robot"}},
        {
            "eval_candidate": {"type": "model", "model": "student"},
            "scoring_params": {"llm-as-judge::base": {"type": "basic"}},
        },
        {
            "eval_candidate": {"type": "model", "model": "student"},
            "scoring_params": {"basic::subset_of": []},
        },
    ],
)
def test_bad_job_configs_are_4xx(alice: httpx.Client, config: dict[str, Any]) -> None:
    _dataset(alice, f"cfg-ds-{abs(hash(json.dumps(config, sort_keys=True))) % 10**8}")
    bench = f"cfg-bm-{abs(hash(json.dumps(config, sort_keys=True))) % 10**8}"
    _benchmark(
        alice,
        bench,
        f"cfg-ds-{bench.rsplit('-', 1)[1]}",
        ["basic::subset_of", "llm-as-judge::base"],
    )
    _refused(
        alice.post(f"/v1alpha/eval/benchmarks/{bench}/jobs", json={"benchmark_config": config}),
        (400, 404, 422),
    )


def test_huge_num_examples_runs_the_whole_dataset(alice: httpx.Client) -> None:
    _dataset(alice, "many-ds")
    _benchmark(alice, "many-bm", "many-ds", ["basic::subset_of"])
    job = _ok(
        alice.post(
            "/v1alpha/eval/benchmarks/many-bm/jobs",
            json={"benchmark_config": _config(num_examples=10**18)},
        )
    )
    done = _wait(alice, "many-bm", job["job_id"])
    assert done["status"] == "completed" and done["rows_total"] == len(QA)


# --- failing upstreams and things removed under a job ----------------------------------------


def test_hanging_candidate_job_ends(alice: httpx.Client, upstream: OpenAIUpstream) -> None:
    _dataset(alice, "hang-ds", QA[:2])
    _benchmark(alice, "hang-bm", "hang-ds", ["basic::subset_of"])
    job = _ok(
        alice.post(
            "/v1alpha/eval/benchmarks/hang-bm/jobs", json={"benchmark_config": _config("hanger")}
        )
    )
    done = _wait(alice, "hang-bm", job["job_id"])
    assert done["status"] == "completed", done
    result = _ok(alice.get(f"/v1alpha/eval/benchmarks/hang-bm/jobs/{job['job_id']}/result"))
    assert all(g.get("error") for g in result["generations"])
    assert SECRET not in json.dumps(result)


def test_hanging_candidate_sync_evaluation_answers(alice: httpx.Client) -> None:
    _dataset(alice, "hsync-ds", QA[:1])
    _benchmark(alice, "hsync-bm", "hsync-ds", ["basic::subset_of"])
    response = alice.post(
        "/v1alpha/eval/benchmarks/hsync-bm/evaluations",
        json={
            "benchmark_config": _config("hanger"),
            "input_rows": QA[:2],
            "scoring_functions": ["basic::subset_of"],
        },
    )
    got = _ok(response)
    assert all(g["error"] for g in got["generations"])


def test_failing_judge_job_ends_and_hides_secrets(alice: httpx.Client, server: LiveServer) -> None:
    _dataset(alice, "badjudge-ds", QA[:3])
    _benchmark(alice, "badjudge-bm", "badjudge-ds", ["llm-as-judge::base"])
    config = _config(scoring_params={"llm-as-judge::base": {**JUDGE, "judge_model": "broken"}})
    job = _ok(
        alice.post("/v1alpha/eval/benchmarks/badjudge-bm/jobs", json={"benchmark_config": config})
    )
    done = _wait(alice, "badjudge-bm", job["job_id"])
    assert done["status"] in ("failed", "completed"), done
    assert SECRET not in json.dumps(done)
    sync = alice.post(
        "/v1/scoring/score",
        json={
            "input_rows": [{"input_query": "q", "expected_answer": "a", "generated_answer": "a"}],
            "scoring_functions": {"llm-as-judge::base": {**JUDGE, "judge_model": "broken"}},
        },
    )
    assert SECRET not in sync.text
    assert SECRET not in Path(server.log_path).read_text() if hasattr(server, "log_path") else True


def test_dataset_unregistered_under_a_running_job(
    alice: httpx.Client, upstream: OpenAIUpstream
) -> None:
    """The job ends (failed, saying why) rather than running on or staying in progress."""
    upstream.gate.clear()
    upstream.gate_models.add("student-up")
    try:
        _dataset(alice, "gone-ds")
        _benchmark(alice, "gone-bm", "gone-ds", ["basic::subset_of"])
        job = _ok(
            alice.post(
                "/v1alpha/eval/benchmarks/gone-bm/jobs", json={"benchmark_config": _config()}
            )
        )
        _ok(alice.delete("/v1beta/datasets/gone-ds"))
        _ok(alice.delete("/v1alpha/eval/benchmarks/gone-bm"))
    finally:
        upstream.gate_models.discard("student-up")
        upstream.gate.set()
    url = f"/v1alpha/eval/benchmarks/gone-bm/jobs/{job['job_id']}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = alice.get(url)
        if got.status_code == 404 or got.json()["status"] not in ("scheduled", "in_progress"):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the job never ended")
    if got.status_code == 200:
        assert got.json()["status"] == "failed"
        assert got.json()["error"]["message"]


def test_dataset_removed_mid_job_fails_it_saying_why_and_drops_its_chunks(
    alice: httpx.Client, home: Path
) -> None:
    """Chunk 0 done, chunk 1 held; the dataset goes. The job fails with the reason a user can
    act on (not "the job failed (NotFoundError)"), and no chunk object stays in storage."""
    HOLD.clear()
    try:
        _dataset(alice, "mid-ds")
        _benchmark(alice, "mid-bm", "mid-ds", ["basic::subset_of"])
        job = _ok(
            alice.post("/v1alpha/eval/benchmarks/mid-bm/jobs", json={"benchmark_config": _config()})
        )
        url = f"/v1alpha/eval/benchmarks/mid-bm/jobs/{job['job_id']}"
        deadline = time.monotonic() + 20
        while _ok(alice.get(url))["rows_done"] < 2:
            assert time.monotonic() < deadline, "chunk 0 never finished"
            time.sleep(0.05)
        chunks = list((home / "objects").rglob(f"{job['job_id']}/chunk-*"))
        assert chunks, "chunk 0's results are stored"
        _ok(alice.delete("/v1beta/datasets/mid-ds"))
    finally:
        HOLD.set()
    done = _wait(alice, "mid-bm", job["job_id"])
    assert done["status"] == "failed"
    assert done["error"]["message"] == "Dataset 'mid-ds' not found", done["error"]
    assert not list((home / "objects").rglob(f"{job['job_id']}/chunk-*"))


@pytest.mark.parametrize(
    ("field", "pattern"),
    [
        # An 8 MiB automaton compiled in 0.6 s holding the GIL (64 of them: a 40 s freeze).
        ("judge_score_regexes", r"(\pL{400})"),
        ("parsing_regexes", r"(\pL{400})"),
        # 907 instructions: 150 ms to match 20 000 characters, per row and regex.
        ("parsing_regexes", r"(?:.*a){100}(x)"),
        ("judge_score_regexes", r"(?:.*a){100}(x)"),
    ],
)
def test_a_regex_with_a_huge_automaton_is_refused(
    alice: httpx.Client, field: str, pattern: str
) -> None:
    params = (
        {**JUDGE, field: [pattern]}
        if field == "judge_score_regexes"
        else {"type": "regex_parser", field: [pattern]}
    )
    error = _refused(
        alice.post(
            "/v1/scoring-functions",
            json={
                "scoring_fn_id": f"huge::{field}{len(pattern)}",
                "description": "x",
                "return_type": {"type": "number"},
                "params": params,
            },
        )
    )
    assert "not a valid RE2 regex" in error["message"]


def test_regexes_per_request_are_bounded(alice: httpx.Client) -> None:
    """Each function may hold 64 regexes; a request naming many such functions would compile
    thousands. Over 128 of a request's own is a 400 before any is compiled (or run)."""
    names = []
    for n in range(3):
        fn_id = f"many::{n}"
        _ok(
            alice.post(
                "/v1/scoring-functions",
                json={
                    "scoring_fn_id": fn_id,
                    "description": "x",
                    "return_type": {"type": "number"},
                    "params": {
                        "type": "regex_parser",
                        "parsing_regexes": [f"(x{n}_{i})" for i in range(64)],
                    },
                },
            )
        )
        names.append(fn_id)
    row = {"expected_answer": "a", "generated_answer": "a"}
    score = alice.post(
        "/v1/scoring/score",
        json={"input_rows": [row], "scoring_functions": dict.fromkeys(names)},
    )
    assert _refused(score)["code"] == "too_many_regexes"
    # Given in the request itself: refused before any is compiled.
    params = {"type": "regex_parser", "parsing_regexes": [f"(y{i})" for i in range(64)]}
    score = alice.post(
        "/v1/scoring/score",
        json={
            "input_rows": [row],
            "scoring_functions": dict.fromkeys(names[:2], params)
            | {"basic::regex_parser_math_response": params},
        },
    )
    assert _refused(score)["code"] == "too_many_regexes"
    # Two are fine (and the built-ins' own regexes do not count against a request).
    got = _ok(
        alice.post(
            "/v1/scoring/score",
            json={
                "input_rows": [row],
                "scoring_functions": dict.fromkeys(
                    [*names[:2], "basic::regex_parser_multiple_choice_answer"]
                ),
            },
        )
    )
    assert set(got["results"]) == {*names[:2], "basic::regex_parser_multiple_choice_answer"}


def test_a_large_result_is_read_in_pages(
    alice: httpx.Client, server: LiveServer, home: Path, tmp_path: Path
) -> None:
    """A result over eval.max_result_bytes (here 2000; in AWS 5 MB, under Lambda's 6 MB
    answer) would be a 5xx from Lambda: it is a 400 saying how to page, and pages hold it all;
    the CLI reads it in pages."""
    rows = [{**row, "input_query": f"long {i}"} for i, row in enumerate(QA)]
    _dataset(alice, "long-ds", rows)
    _benchmark(alice, "long-bm", "long-ds", ["basic::subset_of"])
    job = _ok(
        alice.post("/v1alpha/eval/benchmarks/long-bm/jobs", json={"benchmark_config": _config()})
    )
    assert _wait(alice, "long-bm", job["job_id"])["status"] == "completed"
    url = f"/v1alpha/eval/benchmarks/long-bm/jobs/{job['job_id']}/result"
    error = _refused(alice.get(url))
    assert error["code"] == "result_too_large" and "limit" in error["message"]
    generations, score_rows = [], []
    for start in range(0, len(rows), 2):
        page = _ok(alice.get(url, params={"start_index": start, "limit": 2}))
        assert (
            page["scores"]["basic::subset_of"]["aggregated_results"]["accuracy"]["accuracy"] == 1.0
        )
        generations += page["generations"]
        score_rows += page["scores"]["basic::subset_of"]["score_rows"]
    assert len(generations) == len(rows) == len(score_rows)
    assert all(g["generated_answer"].endswith("x" * 500) for g in generations)
    assert _ok(alice.get(url, params={"start_index": 99, "limit": 2}))["generations"] == []
    _refused(alice.get(url, params={"start_index": -1}), (400, 422))
    _refused(alice.get(url, params={"limit": 0}), (400, 422))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "llamda.cli",
            "eval",
            "run",
            "long-bm",
            "--model",
            "student",
            "--url",
            server.url,
            "--out",
            str(tmp_path / "out"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "LLAMDA_API_KEY": alice.headers["Authorization"].split()[1]},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert len(lines) == len(rows)


def test_the_cli_against_a_bad_url_or_key_exits_2(server: LiveServer) -> None:
    for url, key in [("http://127.0.0.1:9", "k"), (server.url, "not-a-key"), ("not a url", "k")]:
        done = subprocess.run(
            [sys.executable, "-m", "llamda.cli", "eval", "run", "b", "--model", "m", "--url", url],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "LLAMDA_API_KEY": key},
            check=False,
        )
        assert done.returncode == 2, (url, done.stderr)
        assert "Traceback" not in done.stderr and "not-a-key" not in done.stderr


LAMBDA_CONFIG = """
version: 1
profile: aws
apis: [eval]
providers:
  inference:
    - provider_id: upstream
      provider_type: remote::vllm
      config: {{url: "{upstream}"}}
models:
  - {{model_id: hanger, provider_id: upstream, provider_model_id: hanger-up}}
  - {{model_id: judge, provider_id: upstream, provider_model_id: judge-up}}
  - {{model_id: big, provider_id: upstream, provider_model_id: big-up}}
storage:
  records: {{type: dynamodb, table_name: "{table}", region_name: us-east-1,
            endpoint_url: "{moto}"}}
  objects: {{type: s3, bucket: "{bucket}", prefix: objects, region_name: us-east-1,
            endpoint_url: "{moto}"}}
  vectors: {{uri: "{home}/lancedb"}}
server: {{auth: authorizer}}
"""


def _invoke(home: Path, events: list[dict[str, Any]], timeout_ms: int) -> list[dict[str, Any]]:
    """functions/eval/app.py in a fresh process with ``timeout_ms`` to serve ``events``."""
    from tests.conftest import ROOT
    from tests.integration.lambda_process import invoke_handler, lambda_env

    env = lambda_env(home / "run.yaml", (home / "moto").read_text(), "EvalFunction")
    return invoke_handler(
        home, [str(ROOT / "functions" / "eval")], "app.lambda_handler", events, env, timeout_ms
    )


def test_sync_evaluations_in_lambda_answer_in_time_and_in_size(
    tmp_path: Path, moto_endpoint: str, upstream: OpenAIUpstream
) -> None:
    """EvalFunction, 8 s left: the candidate never answers and a judge scores. The routing's
    own limits (60 s per attempt) are longer than the invocation: the request deadline must
    end the generation, and the answer (its rows' errors, or a 504) come before Lambda's."""
    import boto3

    from tests.conftest import records_table
    from tests.e2e.harness import api_gateway_event, response_json

    bucket = f"evalatk-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    (tmp_path / "run.yaml").write_text(
        LAMBDA_CONFIG.format(
            table=records_table(moto_endpoint),
            moto=moto_endpoint,
            bucket=bucket,
            home=tmp_path,
            upstream=upstream.url,
        )
    )
    (tmp_path / "moto").write_text(moto_endpoint)

    def event(method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return api_gateway_event(method, path, body=body, tenant="acme")

    events = [
        event(
            "POST",
            "/v1beta/datasets",
            {
                "purpose": "eval/question-answer",
                "source": {"type": "rows", "rows": QA[:1]},
                "dataset_id": "d",
            },
        ),
        event(
            "POST",
            "/v1alpha/eval/benchmarks",
            {"benchmark_id": "b", "dataset_id": "d", "scoring_functions": ["llm-as-judge::base"]},
        ),
        event(
            "POST",
            "/v1alpha/eval/benchmarks/b/evaluations",
            {
                "benchmark_config": _config("hanger"),
                "input_rows": QA[:2],
                "scoring_functions": ["llm-as-judge::base"],
            },
        ),
    ]
    events.append(
        event(
            "POST",
            "/v1alpha/eval/benchmarks/b/evaluations",
            {
                "benchmark_config": _config("big"),
                "input_rows": [QA[0]] * 7,
                "scoring_functions": ["basic::subset_of"],
            },
        )
    )
    results = _invoke(tmp_path, events, 8000)
    # Seven 1 MB answers: more than a Lambda can return (a 502 from API Gateway): a 400.
    too_big = results.pop()
    assert too_big["statusCode"] == 400, too_big["statusCode"]
    assert response_json(too_big)["error"]["code"] == "response_too_large"
    last = results[-1]
    assert "errorMessage" not in last, last  # not "Task timed out"
    status, body = last["statusCode"], response_json(last)
    assert status in (200, 504), (status, body)
    if status == 504:
        assert body["error"]["code"] == "deadline_exceeded"
    else:
        assert all(g["error"] for g in body["generations"])


def test_a_job_config_too_large_to_keep_is_a_400(alice: httpx.Client) -> None:
    """A 200 KB system message was stored with the job; near DynamoDB's 400 KB item limit the
    worker's progress updates would fail and the job would never end."""
    _dataset(alice, "bigcfg-ds", QA[:1])
    _benchmark(alice, "bigcfg-bm", "bigcfg-ds", ["basic::subset_of"])
    config = _config()
    config["eval_candidate"]["system_message"] = {"role": "system", "content": "x" * 200_000}
    error = _refused(
        alice.post("/v1alpha/eval/benchmarks/bigcfg-bm/jobs", json={"benchmark_config": config})
    )
    assert error["code"] == "config_too_large"


def test_an_upstream_echoing_its_key_never_reaches_a_score_row_or_result(
    alice: httpx.Client, upstream: OpenAIUpstream, server: LiveServer
) -> None:
    """The judge's and the candidate's upstream refuse with the Authorization they were sent
    in the message: a scored error, a generation error, the job's result, the log: no key."""
    upstream.echo_auth_in_errors = True
    try:
        upstream.failures.extend([(400, None)])
        score = _ok(
            alice.post(
                "/v1/scoring/score",
                json={
                    "input_rows": [
                        {"input_query": "q", "expected_answer": "a", "generated_answer": "a"}
                    ],
                    "scoring_functions": {"llm-as-judge::base": JUDGE},
                },
            )
        )
        row = score["results"]["llm-as-judge::base"]["score_rows"][0]
        assert row["score"] is None and "refused" in row["error"]
        _dataset(alice, "echo-ds", QA[:2])
        _benchmark(alice, "echo-bm", "echo-ds", ["basic::subset_of"])
        upstream.failures.extend([(400, None), (400, None)])
        job = _ok(
            alice.post(
                "/v1alpha/eval/benchmarks/echo-bm/jobs", json={"benchmark_config": _config()}
            )
        )
        assert _wait(alice, "echo-bm", job["job_id"])["status"] == "completed"
        result = alice.get(f"/v1alpha/eval/benchmarks/echo-bm/jobs/{job['job_id']}/result").text
    finally:
        upstream.echo_auth_in_errors = False
        upstream.failures.clear()
    assert "you sent" in json.dumps(score) + result  # the upstream's text got through...
    for text in (json.dumps(score), result, server.log.read_text()):
        assert SECRET not in text  # ...but never its key


def test_regexes_match_the_first_20000_characters_of_an_answer(alice: httpx.Client) -> None:
    """Matching time is bounded per row: an answer is matched on its first 20 000 characters."""
    rows = [
        {"expected_answer": "B", "generated_answer": "Answer: B" + "x" * 30_000},
        {"expected_answer": "B", "generated_answer": "x" * 30_000 + "Answer: B"},
    ]
    got = _ok(
        alice.post(
            "/v1/scoring/score",
            json={
                "input_rows": rows,
                "scoring_functions": {"basic::regex_parser_multiple_choice_answer": None},
            },
        )
    )
    scores = got["results"]["basic::regex_parser_multiple_choice_answer"]["score_rows"]
    assert [s["score"] for s in scores] == [1.0, 0.0]


def test_a_local_job_stopped_with_its_server_resumes_when_the_next_one_is_asked(
    upstream: OpenAIUpstream, tmp_path: Path
) -> None:
    """Locally nothing redelivers a job: stopped with the server mid-run it stayed
    "in_progress" forever. The next server resumes it (at its first unfinished chunk) when its
    status is read."""
    config = tmp_path / "run.yaml"
    config.write_text(CONFIG.format(home=tmp_path, upstream=upstream.url))
    (tmp_path / "datasets").mkdir()
    first = start_server(config, tmp_path)
    HOLD.clear()
    try:
        headers = {"Authorization": f"Bearer {create_key(tmp_path, 'carol')}"}
        with httpx.Client(base_url=first.url, headers=headers, timeout=30) as carol:
            _dataset(carol, "restart-ds")
            _benchmark(carol, "restart-bm", "restart-ds", ["basic::subset_of"])
            job = _ok(
                carol.post(
                    "/v1alpha/eval/benchmarks/restart-bm/jobs",
                    json={"benchmark_config": _config()},
                )
            )
            url = f"/v1alpha/eval/benchmarks/restart-bm/jobs/{job['job_id']}"
            deadline = time.monotonic() + 20
            while _ok(carol.get(url))["rows_done"] < 2:  # chunk 0 done, chunk 1 held
                assert time.monotonic() < deadline, "chunk 0 never finished"
                time.sleep(0.05)
    finally:
        stop_server(first)
        HOLD.set()
    second = start_server(config, tmp_path)
    try:
        with httpx.Client(base_url=second.url, headers=headers, timeout=30) as carol:
            done = _wait(carol, "restart-bm", job["job_id"])
            assert done["status"] == "completed" and done["rows_done"] == len(QA), done
            result = _ok(carol.get(url + "/result"))
            assert len(result["generations"]) == len(QA)
    finally:
        stop_server(second)


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_a_dataset_file_with_a_lone_surrogate_escape_is_a_400(
    alice: httpx.Client, fmt: str
) -> None:
    r"""The body middleware refuses ``"\ud800"`` in JSON bodies, but a dataset's rows may come
    from an uploaded file: the parsed row is refused too (it was a 500 storing the snapshot)."""
    row = '{"input_query": "q\\ud800?", "expected_answer": "B"}'
    content, name = (f"[{row}]", "qa.json") if fmt == "json" else (row, "qa.jsonl")
    upload = _ok(
        alice.post(
            "/v1/files",
            files={"file": (name, content.encode(), "application/jsonl")},
            data={"purpose": "user_data"},
        )
    )
    source = {"type": "uri", "uri": upload["id"]}
    error = _refused(
        alice.post("/v1beta/datasets", json={"purpose": "eval/question-answer", "source": source})
    )
    assert "surrogate" in error["message"], error


def test_a_chat_column_string_with_a_lone_surrogate_escape_is_a_400(alice: httpx.Client) -> None:
    r"""A chat column may be its messages as a JSON *string*: the body is valid text (the
    escape is itself escaped, so the middleware passes it), but the string decodes to a lone
    surrogate that no upstream can take. Refused at registration, naming the row."""
    messages = json.dumps([{"role": "user", "content": "x"}]).replace('"x"', '"\\udfff"')
    rows = [{"messages": messages, "expected_answer": "B"}]
    error = _refused(
        alice.post(
            "/v1beta/datasets",
            json={"purpose": "eval/messages-answer", "source": {"type": "rows", "rows": rows}},
        )
    )
    assert "row 0" in error["message"], error
