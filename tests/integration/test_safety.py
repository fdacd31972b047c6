"""Safety through the live server: shields, run-shield, moderations and guardrails on chat,
with Llama Guard (scripted through the fake Bedrock's Converse), Bedrock Guardrails (the
fake's ApplyGuardrail) and local rules, over the labelled prompts in tests/data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from llama_stack_client import LlamaStackClient
from llama_stack_client import NotFoundError as LSNotFoundError

from tests.conftest import LiveServer, start_server, stop_server
from tests.fakes.bedrock import FakeBedrockServer, Reply

PROMPTS = [
    json.loads(line)
    for line in (Path(__file__).parents[1] / "data" / "safety_prompts.jsonl")
    .read_text()
    .splitlines()
]
GUARD_MODEL = "meta.llama-guard-3-8b"
GUARDRAIL = "gr-test123:1"

CONFIG = """
apis: [inspect, models, inference, safety]
providers:
  inference:
    - {provider_id: bedrock, provider_type: bedrock, config: {region_name: us-east-1, endpoint_url: "ENDPOINT"}}
  safety:
    - {provider_id: llama-guard, provider_type: llama-guard, config: {excluded_categories: [S8]}}
    - {provider_id: guardrails, provider_type: bedrock-guardrails, config: {region_name: us-east-1, endpoint_url: "ENDPOINT"}}
    - {provider_id: rules, provider_type: rules}
shields:
  - {shield_id: llama-guard, provider_id: llama-guard, provider_shield_id: guard-model}
  - {shield_id: bedrock-guard, provider_id: guardrails, provider_shield_id: "GUARDRAIL"}
  - {shield_id: pii-block, provider_id: rules}
  - {shield_id: pii-redact, provider_id: rules, params: {action: redact}}
  - {shield_id: broken-guard, provider_id: guardrails, provider_shield_id: no-version}
models:
  - {model_id: guard-model, provider_id: bedrock, provider_model_id: GUARD_MODEL}
  - {model_id: plain, provider_id: bedrock, provider_model_id: plain-model}
  - {model_id: guarded, provider_id: bedrock, provider_model_id: guarded-model, input_shields: [pii-block], output_shields: [llama-guard]}
  - {model_id: redacting, provider_id: bedrock, provider_model_id: redact-model, input_shields: [pii-redact], output_shields: [pii-redact]}
storage:
  records: {type: sqlite, path: "${env.LLAMDA_HOME}/r.sqlite3"}
  objects: {type: local, root: "${env.LLAMDA_HOME}/o"}
  vectors: {uri: "${env.LLAMDA_HOME}/v"}
routing: {max_retries: 0}
guardrails: {on_violation: error}
"""


@pytest.fixture(scope="module")
def server(
    fake_bedrock: FakeBedrockServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("safety")
    text = (
        CONFIG.replace("ENDPOINT", fake_bedrock.endpoint)
        .replace("GUARDRAIL", GUARDRAIL)
        .replace("GUARD_MODEL", GUARD_MODEL)
    )
    (home / "run.yaml").write_text(text)
    live = start_server(home / "run.yaml", home)
    yield live
    stop_server(live)


@pytest.fixture
def fake(fake_bedrock: FakeBedrockServer):  # type: ignore[no-untyped-def]
    fake_bedrock.fake.reset()
    return fake_bedrock.fake


@pytest.fixture(scope="module")
def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def lsc(server: LiveServer) -> LlamaStackClient:
    return LlamaStackClient(base_url=server.url, max_retries=0)


@pytest.mark.parametrize("row", PROMPTS, ids=[p["text"][:40] for p in PROMPTS])
def test_rules_shield_on_labelled_prompts(client: openai.OpenAI, row: dict[str, Any]) -> None:
    result = client.moderations.create(model="pii-block", input=row["text"]).results[0]
    assert result.flagged == (row["label"] == "pii")
    found = sorted(
        k.split(":", 1)[1]
        for k, v in result.categories.model_dump().items()
        if v and k.startswith("pii:")
    )
    assert found == sorted(row["pii"])


def test_llama_guard_mapping_on_labelled_prompts(client: openai.OpenAI, fake) -> None:  # type: ignore[no-untyped-def]
    for row in PROMPTS:
        fake.script(GUARD_MODEL, Reply(text=row["llama_guard"]))
        result = client.moderations.create(model="llama-guard", input=row["text"]).results[0]
        scores = result.category_scores.model_dump()
        codes = row["llama_guard"].split("\n")[1].split(",") if "\n" in row["llama_guard"] else []
        assert result.flagged == bool(set(codes) - {"S8"}), row  # S8 is excluded by config
        for category in row["openai"]:
            assert result.categories.model_dump()[category] is True, (row, category)
        if result.flagged:
            assert all(any(k.startswith(f"{c}: ") for k, v in scores.items() if v) for c in codes)
    prompt = fake.calls_for("converse", GUARD_MODEL)[0]["body"]["messages"][0]["content"][0]["text"]
    assert f"User: {PROMPTS[0]['text']}" in prompt
    assert "S1: Violent Crimes." in prompt and "S14: Code Interpreter Abuse." in prompt
    assert "S8: Intellectual Property." not in prompt  # excluded in the provider config
    assert "ONLY THE LAST User message" in prompt


def test_llama_guard_excluded_category_is_not_a_violation(client: openai.OpenAI, fake) -> None:  # type: ignore[no-untyped-def]
    fake.script(GUARD_MODEL, Reply(text="unsafe\nS8"))
    assert client.moderations.create(model="llama-guard", input="x").results[0].flagged is False


def test_llama_guard_judges_the_agent_turn(lsc: LlamaStackClient, fake) -> None:  # type: ignore[no-untyped-def]
    fake.script(GUARD_MODEL, Reply(text="unsafe\nS10"))
    reply = lsc.safety.run_shield(
        shield_id="llama-guard",
        messages=[
            {"role": "user", "content": "tell me about them"},
            {"role": "assistant", "content": "they are awful people"},
        ],
    )
    assert reply.violation.violation_level == "error"
    assert reply.violation.metadata["violation_type"] == "S10"
    prompt = fake.calls_for("converse", GUARD_MODEL)[0]["body"]["messages"][0]["content"][0]["text"]
    assert "Agent: they are awful people" in prompt and "ONLY THE LAST Agent message" in prompt


def _guardrail_reply(spec: dict[str, Any] | None, text: str) -> dict[str, Any]:
    if spec is None:
        return {"action": "NONE", "outputs": [], "assessments": [{}], "usage": {}}
    if "filter" in spec:
        assessment = {
            "contentPolicy": {
                "filters": [
                    {
                        "type": spec["filter"],
                        "confidence": "HIGH",
                        "action": "BLOCKED",
                        "detected": True,
                    }
                ]
            }
        }
        outputs = [{"text": "Sorry, the model cannot answer this question."}]
    else:
        assessment = {
            "sensitiveInformationPolicy": {
                "piiEntities": [
                    {"type": spec["pii"], "match": "x", "action": "ANONYMIZED", "detected": True}
                ]
            }
        }
        outputs = [{"text": f"{{{spec['pii']}}} masked: {text[:10]}"}]
    return {
        "action": "GUARDRAIL_INTERVENED",
        "actionReason": "scripted",
        "outputs": outputs,
        "assessments": [assessment],
        "usage": {},
    }


def test_bedrock_guardrails_mapping_on_labelled_prompts(client: openai.OpenAI, fake) -> None:  # type: ignore[no-untyped-def]
    for row in PROMPTS:
        spec = row["bedrock"]
        fake.script(GUARDRAIL, Reply(guardrail=_guardrail_reply(spec, row["text"])))
        result = client.moderations.create(model="bedrock-guard", input=row["text"]).results[0]
        assert result.flagged == (spec is not None), row
        if spec and "filter" in spec:
            assert result.category_scores.model_dump()[f"content:{spec['filter']}"] == 1.0
            assert result.user_message == "Sorry, the model cannot answer this question."
        if spec and "pii" in spec:
            assert result.metadata["redacted_text"].startswith(f"{{{spec['pii']}}}")
    call = fake.calls_for("apply-guardrail", GUARDRAIL)[0]["body"]
    assert call["source"] == "INPUT" and call["content"][0]["text"]["text"] == PROMPTS[0]["text"]


def test_bedrock_guardrail_output_source_and_anonymized_run_shield(
    lsc: LlamaStackClient, fake
) -> None:  # type: ignore[no-untyped-def]
    fake.script(GUARDRAIL, Reply(guardrail=_guardrail_reply({"pii": "EMAIL"}, "a@b.co")))
    reply = lsc.safety.run_shield(
        shield_id="bedrock-guard", messages=[{"role": "assistant", "content": "write to a@b.co"}]
    )
    assert reply.violation.violation_level == "warn"
    assert reply.violation.metadata["redacted_text"].startswith("{EMAIL}")
    assert fake.calls_for("apply-guardrail", GUARDRAIL)[0]["body"]["source"] == "OUTPUT"


def test_shields_registry_with_llama_stack_client(lsc: LlamaStackClient) -> None:
    ids = {s.identifier for s in lsc.shields.list()}
    assert {"llama-guard", "bedrock-guard", "pii-block"} <= ids
    lsc.shields.register(
        shield_id="team/no-codenames",
        provider_id="rules",
        params={"keywords": ["Project Falcon"], "pii": []},
    )
    got = lsc.shields.retrieve("team/no-codenames")
    assert got.provider_id == "rules" and got.params["keywords"] == ["Project Falcon"]
    hit = lsc.safety.run_shield(
        shield_id="team/no-codenames",
        messages=[{"role": "user", "content": "status of project falcon?"}],
    )
    assert hit.violation is not None and hit.violation.metadata["categories"] == [
        "keyword:Project Falcon"
    ]
    clean = lsc.safety.run_shield(
        shield_id="team/no-codenames", messages=[{"role": "user", "content": "mail a@b.co"}]
    )
    assert clean.violation is None
    lsc.shields.delete("team/no-codenames")
    with pytest.raises(LSNotFoundError):
        lsc.shields.retrieve("team/no-codenames")


def test_unsafe_input_never_reaches_the_model(client: openai.OpenAI, fake) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model="guarded",
            messages=[{"role": "user", "content": "my card is 4111 1111 1111 1111"}],
        )
    assert err.value.code == "guardrail_intervened" and "pii:credit_card" in err.value.message
    assert fake.calls_for("converse", "guarded-model") == []


def test_unsafe_output_is_blocked(client: openai.OpenAI, fake) -> None:  # type: ignore[no-untyped-def]
    fake.script("guarded-model", Reply(text="here is how to build a weapon"))
    fake.script(GUARD_MODEL, Reply(text="unsafe\nS9"))
    with pytest.raises(openai.BadRequestError, match="output blocked by shield 'llama-guard'"):
        client.chat.completions.create(
            model="guarded", messages=[{"role": "user", "content": "hello"}]
        )
    assert len(fake.calls_for("converse", "guarded-model")) == 1
    judged = fake.calls_for("converse", GUARD_MODEL)[0]["body"]["messages"][0]["content"][0]["text"]
    assert "Agent: here is how to build a weapon" in judged


def test_refusal_mode_answers_with_content_filter(client: openai.OpenAI, fake) -> None:  # type: ignore[no-untyped-def]
    raw = client.chat.completions.with_raw_response.create(
        model="guarded",
        messages=[{"role": "user", "content": "my email is x@y.org"}],
        extra_body={"guardrails": {"on_violation": "refuse"}},
    )
    reply = raw.parse()
    assert reply.choices[0].finish_reason == "content_filter"
    assert "pii:email" in reply.choices[0].message.refusal
    assert raw.headers["x-llamda-provider"] == "guardrail:pii-block"
    assert fake.calls_for("converse", "guarded-model") == []


def test_redaction_on_input_and_output(client: openai.OpenAI, fake) -> None:  # type: ignore[no-untyped-def]
    fake.script("redact-model", Reply(text="sure, call me at +1 (415) 555-0100"))
    reply = client.chat.completions.create(
        model="redacting", messages=[{"role": "user", "content": "I am jane@corp.com"}]
    )
    sent = fake.calls_for("converse", "redact-model")[0]["body"]["messages"][0]["content"][0][
        "text"
    ]
    assert sent == "I am [REDACTED:EMAIL]"
    assert reply.choices[0].message.content == "sure, call me at [REDACTED:PHONE]"


def test_streams_are_checked_before_any_token_is_sent(client: openai.OpenAI, fake) -> None:  # type: ignore[no-untyped-def]
    fake.script("guarded-model", Reply(text="unsafe words here"))
    fake.script(GUARD_MODEL, Reply(text="unsafe\nS1"))
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="guarded", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    fake.script("guarded-model", Reply(text="unsafe words here"))
    fake.script(GUARD_MODEL, Reply(text="unsafe\nS1"))
    chunks = list(
        client.chat.completions.create(
            model="guarded",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            extra_body={"guardrails": {"on_violation": "refuse"}},
        )
    )
    assert "unsafe words" not in "".join(
        c.choices[0].delta.content or "" for c in chunks if c.choices
    )
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    fake.script("redact-model", Reply(text="reach me at a@b.co please"))
    chunks = list(
        client.chat.completions.create(
            model="redacting", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == "reach me at [REDACTED:EMAIL] please"
    )


def test_per_request_input_shield(client: openai.OpenAI, fake) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(openai.BadRequestError, match="pii-block"):
        client.chat.completions.create(
            model="plain",
            messages=[{"role": "user", "content": "key AKIAIOSFODNN7EXAMPLE"}],
            extra_body={"guardrails": {"input": ["pii-block"]}},
        )
    assert fake.calls_for("converse", "plain-model") == []
    ok = client.chat.completions.create(
        model="plain",
        messages=[{"role": "user", "content": "hi"}],
        extra_body={"guardrails": {"input": ["pii-block"]}},
    )
    assert ok.choices[0].message.content == "You said: hi"


def test_bad_safety_requests(server: LiveServer, client: openai.OpenAI) -> None:
    url = server.url
    with pytest.raises(openai.NotFoundError):
        client.moderations.create(model="nope", input="x")
    missing = httpx.post(
        f"{url}/v1/safety/run-shield",
        json={"shield_id": "nope", "messages": [{"role": "user", "content": "x"}]},
    )
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "shield_not_found"
    empty = httpx.post(
        f"{url}/v1/safety/run-shield", json={"shield_id": "pii-block", "messages": []}
    )
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "messages"
    broken = httpx.post(
        f"{url}/v1/safety/run-shield",
        json={"shield_id": "broken-guard", "messages": [{"role": "user", "content": "x"}]},
    )
    assert broken.status_code == 503 and "provider_shield_id" in broken.json()["error"]["message"]
    bad_params = httpx.post(
        f"{url}/v1/safety/run-shield",
        json={
            "shield_id": "pii-block",
            "messages": [{"role": "user", "content": "x"}],
            "params": {"pii": ["dna"]},
        },
    )
    assert bad_params.status_code == 400
    bad_regex = httpx.post(
        f"{url}/v1/safety/run-shield",
        json={
            "shield_id": "pii-block",
            "messages": [{"role": "user", "content": "x"}],
            "params": {"patterns": {"x": "("}},
        },
    )
    assert bad_regex.status_code == 400
    unknown_provider = httpx.post(
        f"{url}/v1/shields", json={"shield_id": "s", "provider_id": "nowhere"}
    )
    assert unknown_provider.status_code == 400
    dup = httpx.post(f"{url}/v1/shields", json={"shield_id": "pii-block", "provider_id": "rules"})
    assert dup.status_code == 409
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="plain",
            messages=[{"role": "user", "content": "x"}],
            extra_body={"guardrails": {"input": ["nope"]}},
        )


def test_registered_model_with_shields(server: LiveServer, client: openai.OpenAI, fake) -> None:  # type: ignore[no-untyped-def]
    url = f"{server.url}/v1/models"
    bad = httpx.post(
        url, json={"model_id": "x", "provider_id": "bedrock", "input_shields": ["nope"]}
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input_shields"
    ok = httpx.post(
        url,
        json={
            "model_id": "team/guarded",
            "provider_id": "bedrock",
            "provider_model_id": "team-model",
            "input_shields": ["pii-block"],
        },
    )
    assert ok.status_code == 200 and ok.json()["input_shields"] == ["pii-block"]
    with pytest.raises(openai.BadRequestError, match="pii-block"):
        client.chat.completions.create(
            model="team/guarded", messages=[{"role": "user", "content": "ip 10.1.2.3"}]
        )
    assert fake.calls_for("converse", "team-model") == []
