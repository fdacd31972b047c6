"""The Batches API attacked as a hostile client, a careless client and an AWS engineer would:
on the live local server through the official openai SDK (the model calls answered by the
scripted fake upstream), and in the AWS shape on moto through the real Lambda handlers.
Attacks that held are here too, so they keep holding."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from llamda.stack import Stack
from llamda.storage.records import save
from tests.conftest import LiveServer
from tests.e2e.harness import api_gateway_event, response_json
from tests.integration import test_batches as _live
from tests.integration import test_batches_lambda as _aws
from tests.integration.agents_server import create_key
from tests.integration.test_batches import chat, jsonl, line, upload, wait
from tests.integration.test_batches_lambda import Function, create_batch

# The fixtures of the two suites this one attacks: a live local server with its scripted
# upstream, and the AWS shape on moto (both share this module's upstream).
upstream = _live.upstream
home = _live.home
server = _live.server
alice = _live.alice
oai = _live.oai
function = _aws.function

CHAT = "/v1/chat/completions"


def create(client: openai.OpenAI, file_id: str, **kw: Any) -> Any:
    return client.batches.create(
        input_file_id=file_id, endpoint=CHAT, completion_window="24h", **kw
    )


# -- malformed JSONL --------------------------------------------------------------------------


def test_lone_surrogates_anywhere_in_a_line_are_line_errors_never_a_500(
    oai: openai.OpenAI,
) -> None:
    """JSON may escape a lone surrogate (\\ud800), which no UTF-8 encoder accepts: in a
    custom_id or a model id it must be the line's error, and the rest must complete."""
    lines = [
        '{"custom_id": "\\ud800", "method": "POST", "url": "/v1/chat/completions", '
        '"body": {"model": "chat", "messages": [{"role": "user", "content": "x"}]}}',
        '{"custom_id": "bad-model", "method": "POST", "url": "/v1/chat/completions", '
        '"body": {"model": "ch\\udfffat", "messages": [{"role": "user", "content": "x"}]}}',
        '{"custom_id": "bad-text", "method": "POST", "url": "/v1/chat/completions", '
        '"body": {"model": "chat", "messages": [{"role": "user", "content": "a\\udc00"}]}}',
        # A surrogate pair is a character (a llama), and a literal backslash-u is text.
        '{"custom_id": "pair-\\ud83e\\udd99", "method": "POST", "url": "/v1/chat/completions", '
        '"body": {"model": "chat", "messages": [{"role": "user", "content": "\\\\ud800"}]}}',
        line("ok", chat("fine")),
    ]
    done = wait(oai, create(oai, upload(oai, lines)).id)
    assert done.status == "completed"
    assert (done.request_counts.completed, done.request_counts.failed) == (2, 3)
    assert [o["custom_id"] for o in jsonl(oai, done.output_file_id)] == ["pair-\U0001f999", "ok"]
    errors = jsonl(oai, done.error_file_id)
    assert [(e["custom_id"], e["error"]["code"]) for e in errors] == [
        (None, "invalid_json_line")
    ] * 3
    assert "surrogate" in errors[0]["error"]["message"]


def test_bom_crlf_blank_lines_unicode_nan_and_odd_shapes(oai: openai.OpenAI) -> None:
    """Held: a UTF-8 BOM, CRLF line ends and blank lines are what editors write; unicode ids
    are ids; numbers as custom_id, a JSON array line, NaN where a number must be bounded and
    deep nesting are each their line's error."""
    lines = [
        "\ufeff" + line("bom", chat("first")),
        "",
        "   ",
        line("ünï-🦙", chat("unicode")) + "\r",
        json.dumps({"custom_id": 7, "method": "POST", "url": CHAT, "body": chat("n")}),
        json.dumps([{"custom_id": "arr", "method": "POST", "url": CHAT, "body": chat("a")}]),
        line("nan", chat("x")).replace('"messages"', '"temperature": NaN, "messages"'),
        line(
            "deep",
            {
                "model": "chat",
                "messages": [{"role": "user", "content": "x"}],
                "metadata": {"k": "v"},
                "tools": [
                    {
                        "type": "function",
                        "function": {"name": "f", "parameters": json.loads("[" * 50 + "]" * 50)},
                    }
                ],
            },
        ),
    ]
    data = "\r\n".join(lines).encode()
    file_id = oai.files.create(file=("crlf.jsonl", data), purpose="batch").id
    done = wait(oai, create(oai, file_id).id)
    assert done.status == "completed"
    assert [o["custom_id"] for o in jsonl(oai, done.output_file_id)] == ["bom", "ünï-🦙"]
    got = [(e["custom_id"], e["error"]["code"]) for e in jsonl(oai, done.error_file_id)]
    assert got == [
        (None, "invalid_custom_id"),
        (None, "invalid_json_line"),
        ("nan", "invalid_request"),
        ("deep", "invalid_request"),
    ]


# -- tenancy and Files ------------------------------------------------------------------------


def test_one_idempotency_key_in_two_tenants_makes_two_batches(
    server: LiveServer, home: Path, oai: openai.OpenAI
) -> None:
    key = {"Idempotency-Key": f"shared-{time.time_ns()}"}
    mine = create(oai, upload(oai, [line("a", chat("alice"))]), extra_headers=key)
    bob = openai.OpenAI(
        base_url=f"{server.url}/v1", api_key=create_key(home, "bob2"), max_retries=0
    )
    theirs = create(bob, upload(bob, [line("b", chat("bob"))]), extra_headers=key)
    assert theirs.id != mine.id and theirs.input_file_id != mine.input_file_id
    with pytest.raises(openai.NotFoundError):
        bob.batches.retrieve(mine.id)
    # Bob's batch did not replay (or collide with) Alice's key: both run.
    wait(oai, mine.id)
    done = wait(bob, theirs.id)
    # Alice's output File is hers: Bob cannot read it, nor list a page after her batch's id.
    with pytest.raises(openai.NotFoundError):
        bob.files.content(wait(oai, mine.id).output_file_id)
    page = bob.batches.list(after=mine.id, limit=100)
    assert mine.id not in [b.id for b in page.data]
    assert done.status == "completed"


def test_idempotency_key_abuse_is_a_clean_4xx(
    server: LiveServer, oai: openai.OpenAI, alice: str
) -> None:
    file_id = upload(oai, [line("i", chat("idem"))])
    body = {"input_file_id": file_id, "endpoint": CHAT, "completion_window": "24h"}
    headers = {"authorization": f"Bearer {alice}"}
    for key in ("k" * 256, "k" * 100_000):
        reply = httpx.post(
            f"{server.url}/v1/batches", json=body, headers={**headers, "Idempotency-Key": key}
        )
        assert 400 <= reply.status_code < 500 and reply.json()["error"]["type"], reply.text[:200]
    # Header and body keys that disagree: which one is meant is unknowable.
    reply = httpx.post(
        f"{server.url}/v1/batches",
        json={**body, "idempotency_key": "a"},
        headers={**headers, "Idempotency-Key": "b"},
    )
    assert reply.status_code == 400
    # Concurrent creates with one key: one batch; the loser either replays it or is told to
    # retry (409), never a second batch or a 5xx.
    key = {**headers, "Idempotency-Key": f"race-{time.time_ns()}"}
    replies: list[httpx.Response] = []

    def post() -> None:
        replies.append(httpx.post(f"{server.url}/v1/batches", json=body, headers=key, timeout=60))

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r.status_code in (200, 409) for r in replies), [r.text for r in replies]
    assert len({r.json()["id"] for r in replies if r.status_code == 200}) == 1
    wait(oai, next(r.json()["id"] for r in replies if r.status_code == 200))


def test_files_purposes_and_metadata_limits_hold(
    server: LiveServer, oai: openai.OpenAI, alice: str
) -> None:
    headers = {"authorization": f"Bearer {alice}"}
    # Nobody uploads a File as if the stack had written it.
    reply = httpx.post(
        f"{server.url}/v1/files",
        files={"file": ("o.jsonl", b"{}\n")},
        data={"purpose": "batch_output"},
        headers=headers,
    )
    assert reply.status_code == 400, reply.text
    done = wait(oai, create(oai, upload(oai, [line("o", chat("out"))])).id)
    # An output File is not a batch's input.
    with pytest.raises(openai.BadRequestError):
        create(oai, done.output_file_id)
    # Deleting the input File mid-run (here: after create) changes nothing: the input was
    # checked and stored at create.
    file_id = upload(oai, [line("d", chat("del"))])
    batch = create(oai, file_id)
    oai.files.delete(file_id)
    assert wait(oai, batch.id).status == "completed"
    # OpenAI's metadata limits: 16 keys, 64-character keys, 512-character values.
    good = upload(oai, [line("m", chat("m"))])
    for metadata in (
        {f"k{i}": "v" for i in range(17)},
        {"k" * 65: "v"},
        {"k": "v" * 513},
        {"k": 1},
    ):
        reply = httpx.post(
            f"{server.url}/v1/batches",
            json={
                "input_file_id": good,
                "endpoint": CHAT,
                "completion_window": "24h",
                "metadata": metadata,
            },
            headers=headers,
        )
        assert reply.status_code == 400, reply.text
    for limit in (0, 101, -1):
        reply = httpx.get(f"{server.url}/v1/batches", params={"limit": limit}, headers=headers)
        assert reply.status_code == 400
    reply = httpx.get(f"{server.url}/v1/batches", params={"after": "file-x"}, headers=headers)
    assert reply.status_code == 400


def test_cancel_twice_and_cancel_a_completed_batch(oai: openai.OpenAI, upstream: Any) -> None:
    """Held: a second cancel (a careless retry) answers the same cancelling batch; the batch
    still ends; a completed batch cannot be cancelled and stays completed."""
    upstream.gate.clear()
    try:
        batch = create(oai, upload(oai, [line(f"w{i}", chat("w", model="slow")) for i in range(4)]))
        first = oai.batches.cancel(batch.id)
        again = oai.batches.cancel(batch.id)
        assert first.status == again.status == "cancelling"
        assert again.cancelling_at == first.cancelling_at
    finally:
        upstream.gate.set()
    assert wait(oai, batch.id).status == "cancelled"
    assert oai.batches.cancel(batch.id).status == "cancelled"
    done = wait(oai, create(oai, upload(oai, [line("c", chat("c"))])).id)
    assert done.status == "completed"
    with pytest.raises(openai.ConflictError):
        oai.batches.cancel(done.id)
    assert oai.batches.retrieve(done.id).status == "completed"


def test_a_batch_that_fails_as_a_whole_leaves_no_objects_behind(
    oai: openai.OpenAI, home: Path, upstream: Any
) -> None:
    """An input chunk lost from the store (or any failure of the job itself) fails the batch;
    its input chunks and the results of its finished chunks must not stay in the bucket."""
    upstream.gate.clear()
    try:
        lines = [line(f"g{i}", chat(f"g{i}", model="slow" if i < 2 else "chat")) for i in range(4)]
        batch = create(oai, upload(oai, lines))
        # Chunk 0 waits on the slow model; chunk 1's stored input goes missing meanwhile.
        prefix = home / "objects" / "tenants" / "alice" / "jobs" / "batches" / batch.id
        (prefix / "input-0000001.jsonl").unlink()
    finally:
        upstream.gate.set()
    done = wait(oai, batch.id)
    # Failed saying why (the chunk loop reports our own errors by their message).
    assert done.status == "failed" and done.errors and done.errors.data[0].message
    assert not prefix.exists() or not any(prefix.iterdir())


# -- in the AWS shape (moto, the real Lambda handlers) ----------------------------------------


def test_a_create_bounded_by_the_lambda_deadline_fails_the_batch_cleanly(
    function: Function,
) -> None:
    """BatchesFunction has 28 s: a create whose input check cannot finish in the invocation's
    time must answer (a failed batch saying why, nothing left in S3) rather than be killed by
    the Lambda timeout (a 5xx from API Gateway, input chunks left behind). The invocation here
    has less time left (6 s less the 1.5 s margin) than the check keeps in reserve (5 s)."""
    lines = [line(f"t{i}", chat(f"t{i}")) for i in range(6)]

    async def upload_input(stack: Stack) -> str:
        return (await stack.files.create("\n".join(lines).encode(), "t.jsonl", "batch", None)).id

    file_id = function.stack_call(upload_input)
    body = {"input_file_id": file_id, "endpoint": CHAT, "completion_window": "24h"}
    [result] = function.invoke(
        [api_gateway_event("POST", "/v1/batches", body=body, tenant="acme")], timeout_ms=6000
    )
    assert result["statusCode"] == 200, result
    batch = response_json(result)
    assert batch["status"] == "failed", batch
    assert batch["errors"]["data"][0]["code"] == "validation_timeout"

    async def left(stack: Stack) -> list[str]:
        return await stack.objects.list(f"jobs/batches/{batch['id']}")

    assert function.stack_call(left) == []
    assert function.receive() == []  # nothing queued for it


def test_cancel_during_finalizing_keeps_the_batch_completed(function: Function) -> None:
    """A batch whose chunks are all done is finalizing (writing its Files; a finish cut
    short is redone by the next delivery): a cancel then is too late. It must not turn the
    finished batch into a cancelled (or failed) one."""
    batch = create_batch(function, "f")
    [message] = function.receive()

    async def finish_cut_short(stack: Stack) -> None:
        # What a jobs invocation that died inside finish leaves behind.
        record = await stack.records.get("batches", batch["id"])
        record.update(status="finalizing", final_status="completed")
        assert await save(stack.records, "batches", batch["id"], record)

    function.stack_call(finish_cut_short)
    [reply] = function.invoke(
        [api_gateway_event("POST", f"/v1/batches/{batch['id']}/cancel", tenant="acme")]
    )
    assert reply["statusCode"] == 409, reply
    assert response_json(reply)["error"]["code"] == "batch_not_cancellable"
    [result] = function.invoke([function.event([message])], handler="jobs.lambda_handler")
    assert result == {"batchItemFailures": []}
    function.done([message])

    async def status(stack: Stack) -> str:
        return (await stack.batches.get(batch["id"])).status

    assert function.stack_call(status) == "completed"
