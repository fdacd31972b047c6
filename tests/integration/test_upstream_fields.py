"""Only known fields go upstream: unknown request fields are a 400 naming them (nothing
unvalidated reaches vLLM/TGI/...), each provider type receives only its allow-listed fields,
and image URLs are data: URLs or hosts the provider's image_url_allow lists. Checked on the
wire: the recording OpenAI upstream and the fake Bedrock show what really arrived."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import LiveServer, start_server, stop_server
from tests.fakes.bedrock import FakeBedrockServer
from tests.fakes.openai_upstream import OpenAIUpstream

CONFIG = """
apis: [inspect, models, inference]
providers:
  inference:
    - {provider_id: vllm, provider_type: vllm, config: {url: "UP"}}
    - {provider_id: oai, provider_type: openai, config: {url: "UP", api_key: k, image_url_allow: [images.example.com, "*.cdn.example.org"]}}
    - {provider_id: bro, provider_type: bedrock-openai, config: {base_url: "UP", api_key: k}}
    - {provider_id: bedrock, provider_type: bedrock, config: {region_name: us-east-1, endpoint_url: "BEDROCK"}}
models:
  - {model_id: vllm-m, provider_id: vllm}
  - {model_id: oai-m, provider_id: oai}
  - {model_id: bro-m, provider_id: bro}
  - {model_id: br-m, provider_id: bedrock, provider_model_id: br-model}
storage:
  records: {type: sqlite, path: "${env.LLAMDA_HOME}/r.sqlite3"}
  objects: {type: local, root: "${env.LLAMDA_HOME}/o"}
  vectors: {uri: "${env.LLAMDA_HOME}/v"}
routing: {max_retries: 0}
"""
PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 16).decode()
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def upstream() -> Iterator[OpenAIUpstream]:
    with OpenAIUpstream() as up:
        yield up


@pytest.fixture(scope="module")
def server(
    upstream: OpenAIUpstream,
    fake_bedrock: FakeBedrockServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("fields")
    config = CONFIG.replace("UP", upstream.url).replace("BEDROCK", fake_bedrock.endpoint)
    (home / "run.yaml").write_text(config)
    live = start_server(home / "run.yaml", home)
    yield live
    stop_server(live)


@pytest.fixture
def client(server: LiveServer, upstream: OpenAIUpstream, fake_bedrock: FakeBedrockServer):  # type: ignore[no-untyped-def]
    upstream.requests.clear()
    fake_bedrock.fake.reset()
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def _bad(err: pytest.ExceptionInfo[openai.BadRequestError], param: str) -> dict[str, Any]:
    body = err.value.body
    assert isinstance(body, dict), body
    assert body["param"] == param and body["type"] == "invalid_request_error", body
    return body


@pytest.mark.parametrize("model", ["vllm-m", "oai-m", "bro-m", "br-m"])
@pytest.mark.parametrize(
    "extra", [{"best_of": 64}, {"chat_template": "{{ evil }}"}, {"priority": -100}]
)
def test_unknown_chat_fields_are_400_and_never_arrive(
    client: openai.OpenAI,
    upstream: OpenAIUpstream,
    fake_bedrock: FakeBedrockServer,
    model: str,
    extra: dict[str, Any],
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=model, messages=HI, extra_body=extra)  # type: ignore[arg-type]
    (name,) = extra
    assert _bad(err, name)["code"] == "unknown_parameter"
    assert upstream.requests == [] and fake_bedrock.fake.calls == []


@pytest.mark.parametrize("model", ["vllm-m", "oai-m"])
def test_unknown_completion_fields_are_400_and_never_arrive(
    client: openai.OpenAI, upstream: OpenAIUpstream, model: str
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=model, prompt="once", best_of=64)
    _bad(err, "best_of")
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=model, prompt="once", extra_body={"priority": 1})
    _bad(err, "priority")
    assert upstream.requests == []


def test_provider_extras_go_only_where_documented(
    client: openai.OpenAI, upstream: OpenAIUpstream, fake_bedrock: FakeBedrockServer
) -> None:
    extras = {"top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1}
    client.chat.completions.create(model="vllm-m", messages=HI, extra_body=extras)
    client.completions.create(model="vllm-m", prompt="once", extra_body={"top_k": 5})
    chat, completion = upstream.requests
    assert chat["path"] == "/v1/chat/completions"
    assert {k: chat["body"][k] for k in extras} == extras
    assert completion["path"] == "/v1/completions" and completion["body"]["top_k"] == 5
    assert "guardrails" not in chat["body"]
    upstream.requests.clear()
    # Not a field these types take: a 400 naming it, nothing sent.
    for model in ("oai-m", "bro-m", "br-m"):
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(model=model, messages=HI, extra_body={"top_k": 40})
        assert _bad(err, "top_k")["code"] == "unsupported_parameter"
        assert "top_k" in err.value.message
    assert upstream.requests == [] and fake_bedrock.fake.calls == []


def test_extras_are_typed_and_bounded(client: openai.OpenAI, upstream: OpenAIUpstream) -> None:
    for extra, param in (
        ({"top_k": 10**9}, "top_k"),
        ({"min_p": 3}, "min_p"),
        ({"repetition_penalty": "lots"}, "repetition_penalty"),
        ({"top_logprobs": 500}, "top_logprobs"),
    ):
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(model="vllm-m", messages=HI, extra_body=extra)
        _bad(err, param)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="vllm-m", messages=HI, n=17)  # past MAX_CHOICES
    _bad(err, "n")
    assert upstream.requests == []


def test_bedrock_converse_refuses_what_it_cannot_honour(
    client: openai.OpenAI, fake_bedrock: FakeBedrockServer
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="br-m", messages=HI, frequency_penalty=1.0)
    _bad(err, "frequency_penalty")
    assert fake_bedrock.fake.calls == []
    # seed/user are best-effort hints: accepted, not sent (Converse has no such fields).
    client.chat.completions.create(model="br-m", messages=HI, seed=3, user="u")
    (call,) = fake_bedrock.fake.calls_for("converse", "br-model")
    assert "seed" not in str(call["body"]) and "user" not in call["body"]


def test_nested_unknown_keys_are_dropped(client: openai.OpenAI, upstream: OpenAIUpstream) -> None:
    client.chat.completions.create(
        model="vllm-m",
        messages=[
            {"role": "user", "content": "hi", "chat_template_kwargs": {"x": 1}},  # type: ignore[misc, list-item]
            {"role": "assistant", "content": "hello", "refusal": None, "audio": None},  # type: ignore[misc, list-item]
            {"role": "user", "content": "again"},
        ],
        tools=[
            {
                "type": "function",
                "function": {"name": "f", "parameters": {"type": "object"}, "x_priv": 1},
            }  # type: ignore[typeddict-unknown-key]
        ],
        tool_choice={"type": "function", "function": {"name": "f", "sneaky": "y"}},  # type: ignore[typeddict-unknown-key]
    )
    (sent,) = upstream.requests
    first, second, _ = sent["body"]["messages"]
    assert first == {"role": "user", "content": "hi"}
    assert second == {"role": "assistant", "content": "hello"}
    assert "x_priv" not in sent["body"]["tools"][0]["function"]
    assert sent["body"]["tool_choice"] == {"type": "function", "function": {"name": "f"}}


def _image_message(url: str) -> list[dict[str, Any]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": url}},
            ],
        }
    ]


@pytest.mark.parametrize("model", ["vllm-m", "oai-m", "bro-m", "br-m"])
@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "https://images.example.com@169.254.169.254/x.png",  # userinfo trick
        "http://169.254.169.254\\@images.example.com/x.png",  # backslash trick
        "https://evil.example.com/x.png",
        "https://images.example.com.evil.net/x.png",
    ],
)
def test_image_urls_outside_the_allow_list_are_400_and_never_sent(
    client: openai.OpenAI,
    upstream: OpenAIUpstream,
    fake_bedrock: FakeBedrockServer,
    model: str,
    url: str,
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=model, messages=_image_message(url))  # type: ignore[arg-type]
    _bad(err, "messages[0].content[1].image_url.url")
    assert "data URL" in err.value.message
    assert upstream.requests == [] and fake_bedrock.fake.calls == []


@pytest.mark.parametrize("model", ["vllm-m", "oai-m", "br-m"])
def test_other_schemes_are_refused(server: LiveServer, model: str) -> None:
    for url in ("file:///etc/passwd", "gopher://x/", "ftp://images.example.com/x.png", "//x/y"):
        reply = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={"model": model, "messages": _image_message(url)},
        )
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["param"] == "messages[0].content[1].image_url.url"


def test_data_urls_everywhere_and_allowed_hosts_where_configured(
    client: openai.OpenAI, upstream: OpenAIUpstream
) -> None:
    for model in ("vllm-m", "oai-m", "bro-m"):
        client.chat.completions.create(model=model, messages=_image_message(PNG))  # type: ignore[arg-type]
    allowed = ["https://images.example.com/cat.png", "https://a.cdn.example.org/dog.jpg"]
    for url in allowed:
        client.chat.completions.create(model="oai-m", messages=_image_message(url))  # type: ignore[arg-type]
    sent = [r["body"]["messages"][0]["content"][1]["image_url"]["url"] for r in upstream.requests]
    assert sent == [PNG, PNG, PNG, *allowed]
    # The same allowed host on a provider without an allow-list: refused.
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="vllm-m", messages=_image_message(allowed[0]))  # type: ignore[arg-type]


def test_embeddings_refuse_unknown_fields(client: openai.OpenAI, upstream: OpenAIUpstream) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(
            model="vllm-m", input="x", extra_body={"truncate_prompt_tokens": 1}
        )
    _bad(err, "truncate_prompt_tokens")
    assert upstream.requests == []
