"""Datasets and scoring as users call them: llama-stack-client (and the openai SDK for Files)
against a live server whose objects are in S3 on moto, with keys for two tenants and a scripted
judge model (the OpenAI-compatible fake rating what each prompt holds)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import openai
import pytest
from llama_stack_client import APIStatusError, BadRequestError, LlamaStackClient, NotFoundError

from tests.conftest import LiveServer, start_server, stop_server
from tests.fakes.openai_upstream import OpenAIUpstream
from tests.integration.agents_server import create_key

# llama-stack-client 0.7 marks the datasets methods deprecated (Llama Stack still serves them).
pytestmark = pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")
DATA = Path(__file__).resolve().parents[1] / "data" / "eval_multiple_choice.jsonl"
BUCKET = "eval-stack-bucket"
MC = "basic::regex_parser_multiple_choice_answer"

CONFIG = """
version: 1
profile: local
apis: [inspect, models, inference, safety, files, eval]
providers:
  inference:
    - provider_id: upstream
      provider_type: vllm
      config: {{url: "{upstream}"}}
  safety:
    - {{provider_id: rules, provider_type: rules}}
shields:
  - {{shield_id: pii, provider_id: rules}}
models:
  - {{model_id: judge, provider_id: upstream, provider_model_id: judge-upstream}}
  - {{model_id: guarded-judge, provider_id: upstream, provider_model_id: judge-upstream,
     input_shields: [pii]}}
  - {{model_id: embedder, provider_id: upstream, model_type: embedding,
     metadata: {{embedding_dimension: 3}}}}
storage:
  records: {{type: sqlite, path: "{home}/records.sqlite3"}}
  objects: {{type: s3, bucket: {bucket}, prefix: objects, region_name: us-east-1,
            endpoint_url: "{moto}"}}
  vectors: {{uri: "{home}/lancedb"}}
server: {{auth: true}}
routing: {{max_retries: 0, timeout_seconds: 10}}
eval: {{datasets_root: "{home}/datasets", max_rows: 100, judge_model: judge}}
"""


def _rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in DATA.read_text().splitlines()]


def _judge(body: dict[str, Any]) -> str:
    """A judge that rates what its prompt holds, as a model would (never told the answer)."""
    prompt = body["messages"][-1]["content"]
    if prompt.startswith("Rate "):  # a registered function's own template
        return "Rating: 3" if "Paris" in prompt else "Rating: 1"
    if "supported by retrieved context" in prompt:
        context = prompt.split("Context:\n", 1)[1].split("\n\nAnswer: ", 1)[0].lower()
        answer = prompt.split("\n\nAnswer: ", 1)[1].split("\n", 1)[0]
        words = re.findall(r"[a-z]+", answer.lower())
        return "Score: 1.0" if all(w in context for w in words) else "Score: 0.0"
    if "addresses the question" in prompt:
        question = prompt.split("Question: ", 1)[1].split("\n", 1)[0]
        answer = prompt.split("Answer: ", 1)[1].split("\n", 1)[0]
        topic = question.rstrip("?").split()[-1].lower()
        return "Score: 0.9" if topic in answer.lower() else "Score: 0.1"
    expected = prompt.split("Expected answer: ", 1)[1].split("\n", 1)[0]
    generated = prompt.split("Generated answer: ", 1)[1].split("\n", 1)[0]
    if generated == "gibberish":
        return "I would rather not grade this one."
    return "Score: 5" if expected.lower() in generated.lower() else "Score: 1"


@pytest.fixture(scope="module")
def upstream() -> Iterator[OpenAIUpstream]:
    with OpenAIUpstream() as fake:
        fake.chat_reply = _judge
        yield fake


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("eval")


@pytest.fixture(scope="module")
def server(home: Path, upstream: OpenAIUpstream, moto_endpoint: str) -> Iterator[LiveServer]:
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(
        Bucket=BUCKET
    )
    (home / "datasets").mkdir()
    config = home / "run.yaml"
    config.write_text(
        CONFIG.format(home=home, upstream=upstream.url, bucket=BUCKET, moto=moto_endpoint)
    )
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


def _register(client: LlamaStackClient, source: dict[str, Any], **kw: Any) -> Any:
    return client.beta.datasets.register(purpose="eval/question-answer", source=source, **kw)


def _all_rows(client: LlamaStackClient, dataset_id: str) -> list[dict[str, Any]]:
    return client.beta.datasets.iterrows(dataset_id, limit=-1).data


def _message(exc: pytest.ExceptionInfo[Any]) -> str:
    return exc.value.body["error"]["message"] if isinstance(exc.value.body, dict) else ""


# --- the hand-labelled set ------------------------------------------------------------------


def test_hand_labelled_set_scores_exactly(
    server: LiveServer, keys: dict[str, str], alice: LlamaStackClient
) -> None:
    """30 multiple-choice rows (tests/data): 14 "Answer: X" right and 6 wrong (2 of those
    expect "A", which "Answer: …" contains), 4 "The best answer is X" right and 1 wrong, 3 bare
    letters (right, but no answer marker), 2 "I am not sure."."""
    oai = openai.OpenAI(base_url=f"{server.url}/v1", api_key=keys["alice"], max_retries=0)
    uploaded = oai.files.create(file=("mc.jsonl", DATA.read_bytes()), purpose="user_data")
    dataset = _register(alice, {"type": "uri", "uri": uploaded.id}, dataset_id="mc30")
    assert dataset.identifier == "mc30" and dataset.provider_id == "datasetio-s3"
    assert _all_rows(alice, "mc30") == _rows()

    result = alice.scoring.score_batch(
        dataset_id="mc30",
        scoring_functions={MC: None, "basic::equality": None, "basic::subset_of": None},
    )
    assert result.dataset_id == "mc30"
    mc = result.results[MC]
    assert mc.aggregated_results == {
        "accuracy": {"accuracy": 18 / 30, "num_correct": 18.0, "num_total": 30}
    }
    assert [r["score"] for r in mc.score_rows[25:]] == [0.0] * 5  # no marker, no answer
    assert result.results["basic::equality"].aggregated_results["accuracy"] == {
        "accuracy": 3 / 30,
        "num_correct": 3.0,
        "num_total": 30,
    }
    assert result.results["basic::subset_of"].aggregated_results["accuracy"]["num_correct"] == 23


def test_score_batch_can_save_the_scored_rows_as_a_dataset(alice: LlamaStackClient) -> None:
    _register(alice, {"type": "rows", "rows": _rows()[:3]}, dataset_id="small3")
    raw = alice.scoring.with_raw_response.score_batch(
        dataset_id="small3",
        scoring_functions={"basic::equality": None},
        save_results_dataset=True,
    ).http_response.json()
    saved = raw["results_dataset_id"]
    rows = _all_rows(alice, saved)
    assert [r["basic::equality"] for r in rows] == [{"score": 0.0}] * 3
    assert rows[0]["input_query"] == _rows()[0]["input_query"]


# --- sources and formats --------------------------------------------------------------------


def test_rows_csv_parquet_local_path_and_s3_sources_read_the_same_rows(
    alice: LlamaStackClient, home: Path, moto_endpoint: str
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = _rows()
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    (home / "datasets" / "mc.csv").write_text(text.getvalue())
    (home / "datasets" / "sub").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), home / "datasets" / "sub" / "mc.parquet")
    # No extension: told by content.
    (home / "datasets" / "mc-noext").write_bytes(DATA.read_bytes())
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.put_object(
        Bucket=BUCKET, Key="objects/tenants/alice/imports/mc.jsonl", Body=DATA.read_bytes()
    )

    sources = {
        "from-rows": {"type": "rows", "rows": rows},
        "from-csv": {"type": "uri", "uri": "mc.csv"},
        "from-file-uri": {"type": "uri", "uri": f"file://{home}/datasets/sub/mc.parquet"},
        "from-noext": {"type": "uri", "uri": "mc-noext"},
        "from-s3": {"type": "uri", "uri": f"s3://{BUCKET}/objects/tenants/alice/imports/mc.jsonl"},
    }
    # The client may leave out the source's type: told by its fields.
    sources["untyped-rows"] = {"rows": rows}
    sources["untyped-uri"] = {"uri": "mc.csv"}
    for dataset_id, source in sources.items():
        _register(alice, source, dataset_id=dataset_id, metadata={"origin": dataset_id})
        assert _all_rows(alice, dataset_id) == rows, dataset_id
    listed = {d.identifier: d for d in alice.beta.datasets.list()}
    assert set(sources) <= set(listed)
    assert listed["from-csv"].source.uri == "mc.csv"
    assert listed["from-s3"].metadata == {"origin": "from-s3"}
    fetched = alice.beta.datasets.retrieve("from-rows")
    assert fetched.purpose == "eval/question-answer" and fetched.source.type == "rows"

    # A snapshot: the source changing later does not change the dataset.
    (home / "datasets" / "mc.csv").write_text("input_query,expected_answer\nx,y\n")
    assert _all_rows(alice, "from-csv") == rows
    alice.beta.datasets.unregister("from-csv")
    with pytest.raises(NotFoundError):
        alice.beta.datasets.retrieve("from-csv")


def test_iterrows_pages_and_append_rows(alice: LlamaStackClient, server: LiveServer) -> None:
    rows = _rows()
    _register(alice, {"type": "rows", "rows": rows}, dataset_id="paged")
    seen: list[dict[str, Any]] = []
    start = 0
    pages = 0
    while True:
        page = alice.beta.datasets.iterrows("paged", start_index=start, limit=7)
        seen += page.data
        pages += 1
        if not page.has_more:
            assert page.next_start_index is None  # type: ignore[attr-defined]
            break
        start = page.next_start_index  # type: ignore[attr-defined]
        assert start == len(seen)
    assert seen == rows and pages == 5
    beyond = alice.beta.datasets.iterrows("paged", start_index=500, limit=7)
    assert beyond.data == [] and not beyond.has_more
    with pytest.raises(BadRequestError):  # an empty page would say has_more forever
        alice.beta.datasets.iterrows("paged", start_index=0, limit=0)

    extra = [
        {"input_query": "Q30", "expected_answer": "A", "generated_answer": "Answer: A"},
        {"input_query": "Q31", "expected_answer": "B", "generated_answer": "Answer: C"},
    ]
    alice.beta.datasets.appendrows("paged", rows=extra)
    assert _all_rows(alice, "paged") == rows + extra
    assert alice.beta.datasets.retrieve("paged").row_count == 32  # type: ignore[attr-defined]
    with pytest.raises(BadRequestError) as bad:
        alice.beta.datasets.appendrows(
            "paged", rows=[{"input_query": "Q32", "expected_answer": "A"}, {"input_query": "Q33"}]
        )
    assert _message(bad) == 'row 33: missing column "expected_answer"'
    assert len(_all_rows(alice, "paged")) == 32  # nothing of a refused append is kept
    with pytest.raises(BadRequestError) as too_many:
        alice.beta.datasets.appendrows("paged", rows=rows + rows + rows)
    assert "eval.max_rows" in _message(too_many)


def test_register_checks_rows_against_the_purpose(
    alice: LlamaStackClient, server: LiveServer, keys: dict[str, str]
) -> None:
    rows = _rows()
    del rows[7]["expected_answer"]
    with pytest.raises(BadRequestError) as missing:
        _register(alice, {"type": "rows", "rows": rows})
    assert _message(missing) == 'row 7: missing column "expected_answer"'
    with pytest.raises(BadRequestError) as chat:
        alice.beta.datasets.register(
            purpose="eval/messages-answer",
            source={"type": "rows", "rows": [{"expected_answer": "x", "messages": "hello"}]},
        )
    assert 'row 0: column "messages"' in _message(chat)
    ok = alice.beta.datasets.register(
        purpose="eval/messages-answer",
        source={
            "type": "rows",
            "rows": [{"expected_answer": "4", "messages": [{"role": "user", "content": "2+2?"}]}],
        },
    )
    assert ok.identifier.startswith("dataset-")
    refused = httpx.post(
        f"{server.url}/v1beta/datasets",
        headers={"authorization": f"Bearer {keys['alice']}"},
        json={"purpose": "post-training/messages", "source": {"type": "rows", "rows": []}},
    )
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "purpose"


# --- scoring functions ----------------------------------------------------------------------


def test_each_basic_function_and_aggregation_exactly(alice: LlamaStackClient) -> None:
    rows = [
        {
            "expected_answer": "0.5",
            "generated_answer": "The final answer is $\\boxed{\\frac{1}{2}}$",
        },
        {"expected_answer": "12", "generated_answer": "so the final answer is $\\boxed{12}$"},
        {"expected_answer": "12", "generated_answer": "The final answer is $\\boxed{13}$"},
        {"expected_answer": "12", "generated_answer": "I think it is 12"},
    ]
    every = ["accuracy", "average", "median", "categorical_count"]
    result = alice.scoring.score(
        input_rows=rows,
        scoring_functions={
            "basic::regex_parser_math_response": None,
            "basic::subset_of": {"type": "basic", "aggregation_functions": every},
            "basic::equality": {"type": "basic", "aggregation_functions": []},
            MC: {"type": "regex_parser", "parsing_regexes": [r"is \$\\boxed\{(\d+)\}"]},
        },
    ).results
    math = result["basic::regex_parser_math_response"]
    assert [r["score"] for r in math.score_rows] == [1.0, 1.0, 0.0, 0.0]
    assert math.aggregated_results == {
        "accuracy": {"accuracy": 0.5, "num_correct": 2.0, "num_total": 4}
    }
    subset = result["basic::subset_of"]  # "12" is in rows 1 and 3 only
    assert [r["score"] for r in subset.score_rows] == [0.0, 1.0, 0.0, 1.0]
    assert subset.aggregated_results == {
        "accuracy": {"accuracy": 0.5, "num_correct": 2.0, "num_total": 4},
        "average": {"average": 0.5},
        "median": {"median": 0.5},
        "categorical_count": {"categorical_count": {"0.0": 2, "1.0": 2}},
    }
    assert result["basic::equality"].aggregated_results == {}
    # Request params replace the registered ones: the regex finds "12" and "13", and the
    # aggregations are the request's (none given: none).
    custom = result[MC]
    assert [r["score"] for r in custom.score_rows] == [0.0, 1.0, 0.0, 0.0]
    assert custom.aggregated_results == {}

    names = {f.identifier for f in alice.scoring_functions.list()}
    assert {
        "basic::equality",
        "basic::subset_of",
        MC,
        "basic::regex_parser_math_response",
        "llm-as-judge::base",
        "llm-as-judge::faithfulness",
        "llm-as-judge::answer-relevancy",
    } <= names
    assert alice.scoring_functions.retrieve(MC).params.type == "regex_parser"


def _judge_calls(upstream: OpenAIUpstream) -> list[dict[str, Any]]:
    return [
        r["body"]
        for r in upstream.requests
        if r["path"].endswith("/chat/completions") and r["body"]["model"] == "judge-upstream"
    ]


def test_llm_as_judge_scores_and_an_unparsed_reply_is_a_scored_error(
    alice: LlamaStackClient, upstream: OpenAIUpstream
) -> None:
    upstream.requests.clear()
    rows = [
        {
            "input_query": "Capital of France?",
            "expected_answer": "Paris",
            "generated_answer": "Paris",
        },
        {"input_query": "2+2?", "expected_answer": "4", "generated_answer": "It is 4."},
        {
            "input_query": "Largest ocean?",
            "expected_answer": "Pacific",
            "generated_answer": "Atlantic",
        },
        {
            "input_query": "Color of sky?",
            "expected_answer": "blue",
            "generated_answer": "gibberish",
        },
    ]
    result = alice.scoring.score(
        input_rows=rows,
        scoring_functions={
            "llm-as-judge::base": {
                "type": "llm_as_judge",
                "judge_model": "judge",
                "aggregation_functions": ["average", "median", "categorical_count", "accuracy"],
            }
        },
    ).results["llm-as-judge::base"]
    assert [r["score"] for r in result.score_rows] == [5, 5, 1, None]
    failed = result.score_rows[3]
    assert failed["error"] == "the judge's reply matched none of judge_score_regexes"
    assert failed["judge_feedback"] == "I would rather not grade this one."
    assert result.aggregated_results == {
        "average": {"average": 11 / 3},
        "median": {"median": 5},
        "categorical_count": {"categorical_count": {"1": 1, "5": 2, "None": 1}},
        "accuracy": {"accuracy": 11 / 4, "num_correct": 11, "num_total": 4},
    }
    prompts = [b["messages"][-1]["content"] for b in _judge_calls(upstream)]
    assert len(prompts) == 4
    assert any("Generated answer: Atlantic" in p for p in prompts)


def test_rag_judges_rate_faithfulness_and_relevancy(
    alice: LlamaStackClient, upstream: OpenAIUpstream
) -> None:
    rows = [
        {
            "input_query": "Where is the Eiffel Tower?",
            "context": ["The Eiffel Tower is in Paris.", "It was built in 1889."],
            "generated_answer": "The tower is in Paris",
        },
        {
            "input_query": "When was the tower built?",
            "context": "The Eiffel Tower is in Paris.",
            "generated_answer": "Aliens made it",
        },
        {
            "input_query": "How tall is the tower?",
            "context": "The tower is 330 metres tall.",
            "generated_answer": "The tower is tall",
        },
    ]
    result = alice.scoring.score(
        input_rows=rows,
        scoring_functions={
            "llm-as-judge::faithfulness": None,
            "llm-as-judge::answer-relevancy": None,
        },
    ).results
    faithful = result["llm-as-judge::faithfulness"]
    assert [r["score"] for r in faithful.score_rows] == [1.0, 0.0, 1.0]
    assert faithful.aggregated_results == {"average": {"average": 2 / 3}, "median": {"median": 1.0}}
    relevant = result["llm-as-judge::answer-relevancy"]  # the question's last word answered?
    assert [r["score"] for r in relevant.score_rows] == [0.9, 0.1, 0.9]
    assert relevant.aggregated_results == {
        "average": {"average": pytest.approx(1.9 / 3)},
        "median": {"median": 0.9},
    }
    with pytest.raises(BadRequestError) as missing:
        alice.scoring.score(
            input_rows=[{"input_query": "q", "generated_answer": "a"}],
            scoring_functions={"llm-as-judge::faithfulness": None},
        )
    assert _message(missing).startswith('row 0: missing column "context"')


def test_registered_functions_are_the_tenants_own(
    alice: LlamaStackClient, bob: LlamaStackClient, upstream: OpenAIUpstream
) -> None:
    alice.scoring_functions.register(
        scoring_fn_id="alice::final",
        description="Final: <word>",
        return_type={"type": "number"},
        params={
            "type": "regex_parser",
            "parsing_regexes": [r"Final:\s*(\w+)"],
            "aggregation_functions": ["accuracy"],
        },
    )
    alice.scoring_functions.register(
        scoring_fn_id="alice::judge",
        description="a judge with its own template",
        return_type={"type": "number"},
        params={
            "type": "llm_as_judge",
            "judge_model": "judge",
            "prompt_template": "Rate {generated_answer} as an answer to: {input_query}",
            "judge_score_regexes": [r"Rating: (\d)"],
            "aggregation_functions": ["average"],
        },
    )
    rows = [
        {"input_query": "Capital?", "expected_answer": "Paris", "generated_answer": "Final: Paris"},
        {"input_query": "Capital?", "expected_answer": "Paris", "generated_answer": "Final: Rome"},
    ]
    result = alice.scoring.score(
        input_rows=rows, scoring_functions={"alice::final": None, "alice::judge": None}
    ).results
    assert result["alice::final"].aggregated_results["accuracy"]["accuracy"] == 0.5
    assert [r["score"] for r in result["alice::judge"].score_rows] == [3, 1]
    assert result["alice::judge"].aggregated_results == {"average": {"average": 2.0}}
    assert "alice::final" in {f.identifier for f in alice.scoring_functions.list()}

    assert "alice::final" not in {f.identifier for f in bob.scoring_functions.list()}
    with pytest.raises(NotFoundError):
        bob.scoring_functions.retrieve("alice::final")
    with pytest.raises(NotFoundError) as unknown:
        bob.scoring.score(input_rows=rows, scoring_functions={"alice::final": None})
    assert "alice::final" in _message(unknown)
    alice.scoring_functions.unregister("alice::final")
    with pytest.raises(NotFoundError):
        alice.scoring_functions.retrieve("alice::final")


# --- bad input ------------------------------------------------------------------------------


def test_bad_scoring_input_is_a_clear_4xx(alice: LlamaStackClient) -> None:
    rows = _rows()[:3]
    with pytest.raises(NotFoundError) as unknown:
        alice.scoring.score(input_rows=rows, scoring_functions={"basic::nope": None})
    assert _message(unknown) == "Scoring function 'basic::nope' not found"
    broken = [dict(r) for r in rows]
    del broken[2]["generated_answer"]
    with pytest.raises(BadRequestError) as missing:
        alice.scoring.score(input_rows=broken, scoring_functions={"basic::equality": None})
    assert _message(missing).startswith('row 2: missing column "generated_answer"')
    with pytest.raises(NotFoundError) as model:
        alice.scoring.score(
            input_rows=rows,
            scoring_functions={
                "llm-as-judge::base": {"type": "llm_as_judge", "judge_model": "gpt-x"}
            },
        )
    assert "gpt-x" in _message(model)
    with pytest.raises(BadRequestError) as embedding:
        alice.scoring.score(
            input_rows=rows,
            scoring_functions={
                "llm-as-judge::base": {"type": "llm_as_judge", "judge_model": "embedder"}
            },
        )
    assert "not an llm" in _message(embedding)
    bad_params = {
        "backreference": {"type": "regex_parser", "parsing_regexes": [r"(a)\1"]},
        "no group": {"type": "regex_parser", "parsing_regexes": [r"Answer: [A-D]"]},
        "attribute": {
            "type": "llm_as_judge",
            "judge_model": "judge",
            "prompt_template": "{generated_answer.__class__}",
        },
        "huge pad": {
            "type": "llm_as_judge",
            "judge_model": "judge",
            "prompt_template": "{generated_answer:>999999999}",
        },
    }
    for case, params in bad_params.items():
        fn = MC if params["type"] == "regex_parser" else "llm-as-judge::base"
        with pytest.raises(BadRequestError):
            alice.scoring.score(input_rows=rows, scoring_functions={fn: params})
        assert case
    with pytest.raises(BadRequestError) as regex:
        alice.scoring_functions.register(
            scoring_fn_id="bad-regex",
            description="RE2 has no backreferences",
            return_type={"type": "number"},
            params={"type": "regex_parser", "parsing_regexes": [r"(a)\1"]},
        )
    assert regex.value.body["error"]["param"] == "params"
    assert "not a valid RE2 regex" in _message(regex)
    with pytest.raises(BadRequestError):
        alice.scoring_functions.register(
            scoring_fn_id="plain",
            description="no params",
            return_type={"type": "number"},
        )


def test_dataset_uris_outside_what_the_caller_owns_are_refused(
    alice: LlamaStackClient, home: Path, moto_endpoint: str
) -> None:
    outside = home / "secret.jsonl"
    outside.write_bytes(DATA.read_bytes())
    (home / "datasets" / "link.jsonl").symlink_to(outside)
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="someone-elses")
    s3.put_object(Bucket="someone-elses", Key="objects/tenants/alice/x.jsonl", Body=b"{}")
    s3.put_object(Bucket=BUCKET, Key="objects/tenants/bob/x.jsonl", Body=DATA.read_bytes())
    refused = {
        "../secret.jsonl": "inside eval.datasets_root",
        str(outside): "inside eval.datasets_root",
        f"file://{outside}": "inside eval.datasets_root",
        "link.jsonl": "inside eval.datasets_root",
        "sub/../../secret.jsonl": "inside eval.datasets_root",
        "https://example.com/data.jsonl": "unsupported dataset URI scheme 'https'",
        "s3://someone-elses/objects/tenants/alice/x.jsonl": "the stack's bucket",
        f"s3://{BUCKET}/objects/tenants/bob/x.jsonl": "objects/tenants/alice/",
        f"s3://{BUCKET}/objects/tenants/alice/../bob/x.jsonl": "invalid key",
        "file-0123456789abcdef": "No such File",
    }
    for uri, reason in refused.items():
        with pytest.raises((BadRequestError, NotFoundError)) as exc:
            _register(alice, {"type": "uri", "uri": uri})
        assert reason in _message(exc), (uri, _message(exc))
    assert all(
        d.source.type != "uri" or "secret" not in d.source.uri for d in alice.beta.datasets.list()
    )


def test_dataset_errors_on_the_defaults_say_what_would_work(live_server: LiveServer) -> None:
    """No eval.datasets_root (the default): a mistyped File id is not answered as if it were a
    path the caller meant; an unknown File id's 404 names the field sent; a taken id's 409
    says how to reuse it."""
    client = LlamaStackClient(base_url=live_server.url, max_retries=0)
    with pytest.raises(BadRequestError) as typo:
        _register(client, {"type": "uri", "uri": "file-notes"})
    assert _message(typo).startswith("'file-notes' is not a File id (file-<hex>)")
    assert "upload the rows as a File" in _message(typo)
    with pytest.raises(NotFoundError) as missing:
        _register(client, {"type": "uri", "uri": "file-0123456789abcdef"})
    assert missing.value.body["error"]["param"] == "source.uri"  # type: ignore[index]
    # Running the README's example twice: the 409 says what to do.
    _register(client, {"type": "rows", "rows": _rows()[:1]}, dataset_id="twice")
    with pytest.raises(APIStatusError) as again:
        _register(client, {"type": "rows", "rows": _rows()[:1]}, dataset_id="twice")
    assert again.value.status_code == 409 and "unregister it first" in _message(again)


def test_another_tenants_dataset_is_a_404(alice: LlamaStackClient, bob: LlamaStackClient) -> None:
    _register(alice, {"type": "rows", "rows": _rows()[:2]}, dataset_id="alice-only")
    assert "alice-only" not in {d.identifier for d in bob.beta.datasets.list()}
    for call in (
        lambda: bob.beta.datasets.retrieve("alice-only"),
        lambda: bob.beta.datasets.iterrows("alice-only"),
        lambda: bob.beta.datasets.appendrows("alice-only", rows=_rows()[:1]),
        lambda: bob.beta.datasets.unregister("alice-only"),
        lambda: bob.scoring.score_batch(
            dataset_id="alice-only", scoring_functions={"basic::equality": None}
        ),
    ):
        with pytest.raises(NotFoundError):
            call()
    # Bob may use the same id for his own dataset; Alice's is untouched.
    _register(bob, {"type": "rows", "rows": _rows()[5:6]}, dataset_id="alice-only")
    assert _all_rows(alice, "alice-only") == _rows()[:2]
    assert _all_rows(bob, "alice-only") == _rows()[5:6]


def test_providers_and_routes_show_the_eval_api(alice: LlamaStackClient) -> None:
    providers = {(p.api, p.provider_id, p.provider_type) for p in alice.providers.list()}
    assert {
        ("datasetio", "datasetio-s3", "remote::s3"),
        ("scoring", "basic", "inline::basic"),
        ("scoring", "llm-as-judge", "inline::llm-as-judge"),
    } <= providers
    assert alice.providers.retrieve("datasetio-s3").api == "datasetio"
    types = {(r.route, r.method): r.provider_types for r in alice.routes.list()}
    assert types[("/v1beta/datasets", "POST")] == ["remote::s3"]
    assert types[("/v1/scoring/score", "POST")] == ["inline::basic", "inline::llm-as-judge"]
    paths = {route for route, _ in types}
    assert {
        "/v1beta/datasets",
        "/v1beta/datasetio/iterrows/{dataset_id}",
        "/v1/scoring-functions",
        "/v1/scoring/score-batch",
    } <= paths


def test_judge_calls_take_the_guarded_path_and_an_outage_is_not_a_score(
    alice: LlamaStackClient, upstream: OpenAIUpstream
) -> None:
    """The judge model's input shield blocks the row holding a card number: that row is a
    scored error, the other is judged. An upstream outage fails the request (503), it is not
    written down as a score."""
    rows = [
        {"input_query": "Pay?", "expected_answer": "ok", "generated_answer": "4111 1111 1111 1111"},
        {"input_query": "Pay?", "expected_answer": "ok", "generated_answer": "ok"},
    ]
    judged = alice.scoring.score(
        input_rows=rows,
        scoring_functions={
            "llm-as-judge::base": {"type": "llm_as_judge", "judge_model": "guarded-judge"}
        },
    ).results["llm-as-judge::base"]
    assert judged.score_rows[0]["score"] is None
    assert judged.score_rows[0]["error"].startswith("judge call refused")
    assert judged.score_rows[1]["score"] == 5

    upstream.failures.append((503, {}))
    with pytest.raises(APIStatusError) as down:
        alice.scoring.score(
            input_rows=rows[1:],
            scoring_functions={
                "llm-as-judge::base": {"type": "llm_as_judge", "judge_model": "judge"}
            },
        )
    assert down.value.status_code == 503
