"""OpenAI Batches on the live local server through the official openai SDK, the model calls
answered by the scripted OpenAI-compatible fake upstream: outputs in input order, every kind
of bad line in the error file while the rest complete, each endpoint, cancel, idempotent
create, tenants."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import LiveServer, start_server, stop_server
from tests.fakes.openai_upstream import OpenAIUpstream
from tests.integration.agents_server import create_key

CONFIG = """
version: 1
profile: local
apis: [inspect, models, inference, safety, files, batches]
providers:
  inference:
    - {{provider_id: up, provider_type: vllm, config: {{url: "{upstream}", api_key: up-key}}}}
  safety:
    - {{provider_id: rules, provider_type: rules}}
shields:
  - {{shield_id: pii, provider_id: rules}}
models:
  - {{model_id: chat, provider_id: up, provider_model_id: up-chat}}
  - {{model_id: guarded, provider_id: up, provider_model_id: up-guarded, input_shields: [pii]}}
  - {{model_id: slow, provider_id: up, provider_model_id: up-slow}}
  - {{model_id: broken, provider_id: up, provider_model_id: up-broken}}
  - {{model_id: emb, provider_id: up, provider_model_id: up-emb, model_type: embedding,
     metadata: {{embedding_dimension: 3}}}}
storage:
  records: {{type: sqlite, path: "${{env.LLAMDA_HOME}}/records.sqlite3"}}
  objects: {{type: local, root: "${{env.LLAMDA_HOME}}/objects"}}
  vectors: {{uri: "${{env.LLAMDA_HOME}}/lancedb"}}
server: {{auth: true}}
routing: {{max_retries: 0, timeout_seconds: 30}}
jobs: {{chunk_rows: 2}}
batches: {{max_requests: 20, max_line_bytes: 200000, max_file_bytes: 1000000}}
"""
DONE = ("completed", "failed", "cancelled", "expired")


@pytest.fixture(scope="module")
def upstream() -> Iterator[OpenAIUpstream]:
    with OpenAIUpstream() as fake:
        fake.fail_models["up-broken"] = 400
        fake.gate_models.add("up-slow")
        yield fake


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("batches")


@pytest.fixture(scope="module")
def server(home: Path, upstream: OpenAIUpstream) -> Iterator[LiveServer]:
    (home / "run.yaml").write_text(CONFIG.format(upstream=upstream.url))
    live = start_server(home / "run.yaml", home)
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def alice(home: Path, server: LiveServer) -> str:
    return create_key(home, "alice")


@pytest.fixture(scope="module")
def oai(server: LiveServer, alice: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=alice, max_retries=0)


def line(custom_id: Any, body: dict[str, Any], url: str = "/v1/chat/completions") -> str:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body})


def chat(text: str, model: str = "chat") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}]}


def upload(oai: openai.OpenAI, lines: list[str], purpose: str = "batch") -> str:
    data = ("\n".join(lines) + "\n").encode()
    return oai.files.create(file=("input.jsonl", data), purpose=purpose).id  # type: ignore[arg-type]


def wait(oai: openai.OpenAI, batch_id: str, statuses: tuple[str, ...] = DONE) -> Any:
    """Poll the batch as a client does until it reaches one of ``statuses``."""
    for _ in range(300):
        batch = oai.batches.retrieve(batch_id)
        if batch.status in statuses:
            return batch
        time.sleep(0.1)
    raise AssertionError(f"batch stayed {batch.status}")


def jsonl(oai: openai.OpenAI, file_id: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in oai.files.content(file_id).text.splitlines() if x]


def test_three_lines_complete_with_outputs_in_input_order(
    oai: openai.OpenAI, upstream: OpenAIUpstream
) -> None:
    lines = [line(cid, chat(f"say {cid}")) for cid in ("zeta", "alpha", "mid")]
    batch = oai.batches.create(
        input_file_id=upload(oai, lines),
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"job": "nightly"},
    )
    assert batch.id.startswith("batch_") and batch.metadata == {"job": "nightly"}
    assert batch.status in ("in_progress", "finalizing", "completed")
    done = wait(oai, batch.id)
    assert done.status == "completed", done
    counts = done.request_counts
    assert (counts.total, counts.completed, counts.failed) == (3, 3, 0)
    assert done.error_file_id is None and done.output_file_id
    assert done.created_at <= done.in_progress_at <= done.finalizing_at <= done.completed_at
    assert done.expires_at == done.created_at + 24 * 3600
    out = jsonl(oai, done.output_file_id)
    assert [o["custom_id"] for o in out] == ["zeta", "alpha", "mid"]
    assert len({o["response"]["request_id"] for o in out}) == 3  # one request id per line
    for o in out:
        assert o["error"] is None and o["id"].startswith("batch_req_")
        assert o["response"]["status_code"] == 200 and o["response"]["request_id"]
        body = o["response"]["body"]
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["content"] == "upstream ok"
    # Each line reached the upstream through the router (model mapped to the provider's id).
    sent = [r["body"] for r in upstream.requests if r["path"].endswith("/chat/completions")]
    said = {b["messages"][0]["content"] for b in sent if b["model"] == "up-chat"}
    assert {"say zeta", "say alpha", "say mid"} <= said
    output = oai.files.retrieve(done.output_file_id)
    assert output.purpose == "batch_output"
    assert oai.batches.list(limit=1).data[0].id == batch.id  # newest first


def test_each_kind_of_bad_line_lands_in_the_error_file_and_the_rest_complete(
    oai: openai.OpenAI, upstream: OpenAIUpstream
) -> None:
    lines = [
        line("ok1", chat("one")),
        '{"custom_id": "broken-json", "method": "POST"',
        line("wrong-url", chat("x"), url="/v1/embeddings"),
        line("unknown-model", chat("x", model="no-such-model")),
        line("streaming", {**chat("x"), "stream": True}),
        line("ok1", chat("again")),
        line("bad-body", {"model": "chat", "messages": "not a list"}),
        line("upstream-error", chat("x", model="broken")),
        line("guarded", chat("my card is 4111 1111 1111 1111", model="guarded")),
        json.dumps({"custom_id": "get", "method": "GET", "url": "/v1/chat/completions"}),
        "[" * 100_000,  # nested too deep for any parser's stack
        line("odd-model", chat("x", model="\u0000/../" + "m" * 300)),
        line("too-long", chat("x" * 200_000)),  # over max_line_bytes: never held whole
        line("ok2", chat("two")),
    ]
    batch = oai.batches.create(
        input_file_id=upload(oai, lines),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    done = wait(oai, batch.id)
    assert done.status == "completed"
    counts = done.request_counts
    assert (counts.total, counts.completed, counts.failed) == (14, 2, 12)
    assert [o["custom_id"] for o in jsonl(oai, done.output_file_id)] == ["ok1", "ok2"]
    errors = jsonl(oai, done.error_file_id)
    got = [(e["custom_id"], e["error"]["code"]) for e in errors]
    assert got == [
        (None, "invalid_json_line"),
        ("wrong-url", "invalid_url"),
        ("unknown-model", "model_not_found"),
        ("streaming", "streaming_unsupported"),
        ("ok1", "duplicate_custom_id"),
        ("bad-body", "invalid_request"),
        ("upstream-error", "invalid_request"),
        ("guarded", errors[7]["error"]["code"]),
        ("get", "invalid_method"),
        (None, "invalid_json_line"),
        ("odd-model", got[-2][1]),
        (None, "request_too_large"),
    ]
    assert got[-2][1] in ("model_not_found", "invalid_id")
    # A line without a custom_id is named by its 1-based line number in the file.
    assert errors[0]["error"]["message"] == "Line 2: The line is not valid JSON."
    assert errors[9]["error"]["message"].startswith("Line 11: ")
    assert errors[11]["error"]["message"].startswith("Line 13: The line is longer than")
    assert "no-such-model" in errors[2]["error"]["message"]
    assert "messages" in errors[5]["error"]["message"]
    # Never sent: no response. The upstream's refusal: the endpoint's own error response.
    sent = ("upstream-error", "guarded")
    assert all(e["response"] is None for e in errors if e["custom_id"] not in sent)
    refused = errors[6]["response"]
    assert refused["status_code"] == 400 and refused["body"]["error"]["type"]
    # The model's input shield judged the line as it judges the HTTP endpoint's requests: the
    # card never reached the upstream.
    assert errors[7]["response"]["status_code"] == 400
    assert errors[7]["error"]["code"] in ("guardrail_intervened", "content_policy_violation")
    assert "up-guarded" not in {(r["body"] or {}).get("model") for r in upstream.requests}
    assert "up-key" not in json.dumps(errors)


def test_embeddings_and_completions_endpoints(oai: openai.OpenAI) -> None:
    embeds = oai.batches.create(
        input_file_id=upload(
            oai,
            [
                line("e1", {"model": "emb", "input": "hello"}, url="/v1/embeddings"),
                line("e2", {"model": "emb", "input": ["a", "b"]}, url="/v1/embeddings"),
                line("e3", {"model": "chat", "input": "x"}, url="/v1/embeddings"),
            ],
        ),
        endpoint="/v1/embeddings",
        completion_window="24h",
    )
    completions = oai.batches.create(
        input_file_id=upload(
            oai,
            [
                line("p1", {"model": "chat", "prompt": "once"}, url="/v1/completions"),
                line("p2", {"model": "chat", "prompt": "twice"}, url="/v1/completions"),
            ],
        ),
        endpoint="/v1/completions",
        completion_window="24h",
    )
    done = wait(oai, embeds.id)
    out = jsonl(oai, done.output_file_id)
    assert [o["custom_id"] for o in out] == ["e1", "e2"]
    assert out[0]["response"]["body"]["data"][0]["embedding"] == [0.1, 0.2, 0.3]
    assert len(out[1]["response"]["body"]["data"]) == 2
    # A chat model on the embeddings endpoint: the endpoint's own 400.
    [wrong] = jsonl(oai, done.error_file_id)
    assert wrong["custom_id"] == "e3" and wrong["response"]["status_code"] == 400
    assert wrong["error"]["code"] == "wrong_model_type"
    done = wait(oai, completions.id)
    texts = [o["response"]["body"]["choices"][0]["text"] for o in jsonl(oai, done.output_file_id)]
    assert texts == ["once -> done", "twice -> done"]
    assert done.error_file_id is None


def test_cancel_stops_new_work_and_keeps_what_finished(
    oai: openai.OpenAI, upstream: OpenAIUpstream
) -> None:
    def slow_calls() -> int:
        return sum(1 for r in upstream.requests if (r["body"] or {}).get("model") == "up-slow")

    upstream.gate.clear()
    lines = [line(f"s{i}", chat(f"slow {i}", model="slow")) for i in range(5)]
    batch = oai.batches.create(
        input_file_id=upload(oai, lines), endpoint="/v1/chat/completions", completion_window="24h"
    )
    try:
        for _ in range(300):  # the first chunk (2 lines) is at the upstream
            if slow_calls() == 2:
                break
            time.sleep(0.05)
        assert slow_calls() == 2
        cancelling = oai.batches.cancel(batch.id)
        assert cancelling.status == "cancelling" and cancelling.cancelling_at
        assert oai.batches.retrieve(batch.id).status == "cancelling"
    finally:
        upstream.gate.set()
    done = wait(oai, batch.id)
    assert done.status == "cancelled" and done.cancelled_at
    counts = done.request_counts
    assert (counts.total, counts.completed, counts.failed) == (5, 2, 0)
    assert [o["custom_id"] for o in jsonl(oai, done.output_file_id)] == ["s0", "s1"]
    assert slow_calls() == 2  # no later chunk was started
    # Cancelling again answers the cancelled batch; a finished batch cannot be cancelled.
    assert oai.batches.cancel(batch.id).status == "cancelled"
    finished = oai.batches.list(limit=100).data
    completed = next(b for b in finished if b.status == "completed")
    with pytest.raises(openai.ConflictError):
        oai.batches.cancel(completed.id)


def test_a_retried_create_with_the_same_idempotency_key_returns_the_same_batch(
    oai: openai.OpenAI,
) -> None:
    file_id = upload(oai, [line("i1", chat("idem"))])
    args: dict[str, Any] = {
        "input_file_id": file_id,
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    }
    key = {"Idempotency-Key": f"retry-{time.time_ns()}"}
    first = oai.batches.create(**args, extra_headers=key)
    again = oai.batches.create(**args, extra_headers=key)
    assert again.id == first.id
    with pytest.raises(openai.ConflictError) as caught:
        oai.batches.create(**args, metadata={"other": "body"}, extra_headers=key)
    assert caught.value.body["code"] == "idempotency_key_reused"  # type: ignore[index]
    assert oai.batches.create(**args).id != first.id  # no key: a new batch
    # A create that failed leaves the key free for the corrected request.
    key2 = {"Idempotency-Key": f"fix-{time.time_ns()}"}
    with pytest.raises(openai.NotFoundError):
        oai.batches.create(**{**args, "input_file_id": "file-0123abc"}, extra_headers=key2)
    fixed = oai.batches.create(**args, extra_headers=key2)
    assert oai.batches.create(**args, extra_headers=key2).id == fixed.id
    wait(oai, fixed.id)


def test_another_tenant_gets_404s(server: LiveServer, home: Path, oai: openai.OpenAI) -> None:
    file_id = upload(oai, [line("t1", chat("mine"))])
    batch = oai.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    bob = openai.OpenAI(base_url=f"{server.url}/v1", api_key=create_key(home, "bob"), max_retries=0)
    for call in (
        lambda: bob.batches.retrieve(batch.id),
        lambda: bob.batches.cancel(batch.id),
        lambda: bob.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        ),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert batch.id not in [b.id for b in bob.batches.list().data]
    wait(oai, batch.id)


def test_bad_creates_are_400s_and_404s_and_bad_files_fail_the_batch(
    server: LiveServer, oai: openai.OpenAI, alice: str
) -> None:
    good = upload(oai, [line("x", chat("x"))])
    with pytest.raises(openai.NotFoundError) as missing:
        oai.batches.create(
            input_file_id="file-00aa", endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert missing.value.body["param"] == "input_file_id"  # type: ignore[index]
    other_purpose = upload(oai, [line("x", chat("x"))], purpose="assistants")
    with pytest.raises(openai.BadRequestError) as caught:
        oai.batches.create(
            input_file_id=other_purpose, endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert caught.value.body["param"] == "input_file_id"  # type: ignore[index]
    headers = {"authorization": f"Bearer {alice}"}
    for body in (
        {"input_file_id": good, "endpoint": "/v1/responses", "completion_window": "24h"},
        {"input_file_id": good, "endpoint": "/v1/embeddings", "completion_window": "48h"},
        {"input_file_id": good, "endpoint": "/v1/embeddings"},
    ):
        reply = httpx.post(f"{server.url}/v1/batches", json=body, headers=headers)
        assert reply.status_code == 400 and reply.json()["error"]["type"], reply.text
    with pytest.raises(openai.NotFoundError):
        oai.batches.retrieve("batch_0123")
    # Whole-file problems: the batch is created failed, with its errors.
    empty = oai.files.create(file=("e.jsonl", b"\n\n"), purpose="batch").id
    binary = oai.files.create(file=("x.jsonl", bytes(range(256)) * 4), purpose="batch").id
    many = upload(oai, [line(f"m{i}", chat("x")) for i in range(21)])  # max_requests 20
    big = oai.files.create(file=("b.jsonl", b" " * 1_000_001), purpose="batch").id
    newlines = oai.files.create(file=("n.jsonl", b"\n" * 100_000), purpose="batch").id
    cases = (
        (empty, "empty_file"),
        (binary, "invalid_file_format"),
        (many, "too_many_requests"),
        (big, "file_too_large"),
        (newlines, "too_many_requests"),  # bounded before 100,000 blank lines are read
    )
    for file_id, code in cases:
        batch = oai.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        assert batch.status == "failed" and batch.failed_at
        assert batch.errors and batch.errors.data[0].code == code
        assert batch.output_file_id is None and batch.error_file_id is None


def test_batches_show_in_providers_and_routes(server: LiveServer, alice: str) -> None:
    headers = {"authorization": f"Bearer {alice}"}
    providers = httpx.get(f"{server.url}/v1/providers", headers=headers).json()["data"]
    [batches] = [p for p in providers if p["api"] == "batches"]
    assert batches["provider_type"] == "inline::reference"
    assert batches["health"]["status"] == "OK"
    assert batches["config"]["runner"] == "in-process"
    routes = httpx.get(f"{server.url}/v1/inspect/routes", headers=headers).json()["data"]
    served = {(r["route"], r["method"]): r["provider_types"] for r in routes}
    for route in (
        ("/v1/batches", "POST"),
        ("/v1/batches", "GET"),
        ("/v1/batches/{batch_id}", "GET"),
        ("/v1/batches/{batch_id}/cancel", "POST"),
    ):
        assert served[route] == ["inline::reference"], route


def test_a_retry_with_its_metadata_keys_in_another_order_is_the_same_request(
    server: LiveServer, oai: openai.OpenAI
) -> None:
    """A retry is the same request when it means the same: a client that rebuilds its
    metadata object (another key order) gets its batch back, not a 409."""
    file_id = upload(oai, [line("m1", chat("ordered"))])
    args: dict[str, Any] = {
        "input_file_id": file_id,
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    }
    key = {"Idempotency-Key": f"order-{time.time_ns()}"}
    first = oai.batches.create(**args, metadata={"a": "1", "b": "2"}, extra_headers=key)
    again = oai.batches.create(**args, metadata={"b": "2", "a": "1"}, extra_headers=key)
    assert again.id == first.id
    with pytest.raises(openai.ConflictError):
        oai.batches.create(**args, metadata={"a": "1", "b": "3"}, extra_headers=key)
    wait(oai, first.id)


def test_llama_stack_client_batches_with_its_idempotency_key(
    server: LiveServer, oai: openai.OpenAI, alice: str
) -> None:
    """llama-stack-client sends the key in the body (``idempotency_key``): the same rules."""
    from llama_stack_client import ConflictError as LSConflict
    from llama_stack_client import LlamaStackClient

    lsc = LlamaStackClient(base_url=server.url, api_key=alice, max_retries=0)
    file_id = upload(oai, [line("l1", chat("from lsc")), line("l2", chat("again"))])
    args: dict[str, Any] = {
        "input_file_id": file_id,
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    }
    key = f"lsc-{time.time_ns()}"
    first = lsc.batches.create(**args, idempotency_key=key)
    assert lsc.batches.create(**args, idempotency_key=key).id == first.id
    # The header form and the body form are one key.
    same = oai.batches.create(**args, extra_headers={"Idempotency-Key": key})
    assert same.id == first.id
    with pytest.raises(LSConflict):
        lsc.batches.create(**args, metadata={"x": "y"}, idempotency_key=key)
    with pytest.raises(openai.BadRequestError):
        oai.batches.create(
            **args, extra_headers={"Idempotency-Key": "one"}, extra_body={"idempotency_key": "two"}
        )
    done = wait(oai, first.id)
    got = lsc.batches.retrieve(first.id)
    assert got.status == "completed" and got.request_counts.completed == 2
    assert first.id in [b.id for b in lsc.batches.list(limit=50).data]
    out = [json.loads(x) for x in oai.files.content(done.output_file_id).text.splitlines()]
    assert [o["custom_id"] for o in out] == ["l1", "l2"]
