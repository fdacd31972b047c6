"""Secrets never leave the server. A distinct secret is planted in every secret-bearing place
of every provider type the registry knows (API keys, extra headers, URL userinfo and query
parameters) and in the provider-data header; then every inspect route, failing calls (an
unreachable upstream, an upstream that quotes the Authorization header back, bad provider data)
and the server's whole log are searched for each secret."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import pytest
import yaml

from llamda.providers.registry import SPECS
from tests.conftest import LiveServer, start_server, stop_server
from tests.fakes.openai_upstream import OpenAIUpstream


def _secret(where: str) -> str:
    return f"s3cr3t-{where}-{uuid.uuid4().hex[:10]}"


SECRETS = {
    name: _secret(name)
    for name in (
        "bedrock-user",
        "bedrock-pass",
        "bedrock-token",
        "bro-key",
        "bro-url-pass",
        "vllm-key",
        "vllm-auth-header",
        "vllm-x-header",
        "tgi-query-token",
        "ollama-pass",
        "fireworks-key",
        "together-key",
        "together-header",
        "openai-key",
        "openai-query-key",
        "openai-query-sig",
        "guardrails-pass",
        "pg-pass",
        "chroma-url-pass",
        "chroma-token",
        "weaviate-key",
    )
}
S = SECRETS
# Provider types whose config has no secret-bearing field (checked below, so a new field
# with a secret-looking name makes this test ask for a planted secret).
NO_SECRET_FIELDS = {
    ("inference", "inline::llama-cpp"),
    ("safety", "inline::llama-guard"),
    ("safety", "inline::rules"),
}
NO_SECRET_FIELDS |= {("vector_io", "inline::lancedb"), ("vector_io", "remote::lancedb")}
NO_SECRET_FIELDS |= {("vector_io", "inline::faiss")}
NO_SECRET_FIELDS |= {("inference", "inline::sentence-transformers")}

CONFIG = f"""
apis: [inspect, models, inference, safety]
providers:
  inference:
    - provider_id: bedrock
      provider_type: remote::bedrock
      config:
        region_name: us-east-1
        endpoint_url: "http://{S["bedrock-user"]}:{S["bedrock-pass"]}@127.0.0.1:9/?X-Amz-Security-Token={S["bedrock-token"]}"
    - provider_id: bro
      provider_type: remote::bedrock-openai
      config: {{api_key: {S["bro-key"]}, base_url: "http://llamda:{S["bro-url-pass"]}@127.0.0.1:9/v1"}}
    - provider_id: vllm
      provider_type: remote::vllm
      config:
        url: http://127.0.0.1:9/v1
        api_key: {S["vllm-key"]}
        extra_headers: {{Authorization: "Bearer {S["vllm-auth-header"]}", x-api-key: {S["vllm-x-header"]}}}
        model_map: {{vllm-m: meta-llama/Llama-3.1-8B-Instruct}}
    - {{provider_id: tgi, provider_type: remote::tgi, config: {{url: "http://127.0.0.1:9/v1?token={S["tgi-query-token"]}"}}}}
    - {{provider_id: ollama, provider_type: remote::ollama, config: {{url: "http://me:{S["ollama-pass"]}@127.0.0.1:9/v1"}}}}
    - provider_id: fireworks
      provider_type: remote::fireworks
      config: {{api_key: {S["fireworks-key"]}, api_key_parameter: /llamda/fireworks-key-name}}
    - provider_id: together
      provider_type: remote::together
      config: {{url: UP, api_key: {S["together-key"]}, extra_headers: {{x-team: {S["together-header"]}}}}}
    - provider_id: openai
      provider_type: remote::openai
      config: {{api_key: {S["openai-key"]}, url: "https://api.example.com/v1?api_key={S["openai-query-key"]}&sig={S["openai-query-sig"]}"}}
    - {{provider_id: cpp, provider_type: inline::llama-cpp, config: {{model_path: /nowhere/model.gguf}}}}
    - {{provider_id: st, provider_type: "inline::sentence-transformers", config: {{model_path: /nowhere}}}}
  safety:
    - {{provider_id: guard, provider_type: inline::llama-guard}}
    - {{provider_id: rules, provider_type: inline::rules}}
    - provider_id: guardrails
      provider_type: remote::bedrock-guardrails
      config: {{endpoint_url: "https://aws:{S["guardrails-pass"]}@bedrock.example.com"}}
  vector_io:
    - {{provider_id: lancedb, provider_type: inline::lancedb}}
    - {{provider_id: faiss, provider_type: inline::faiss}}
    - provider_id: pgvector
      provider_type: remote::pgvector
      config: {{host: 127.0.0.1, port: 9, password: {S["pg-pass"]}, password_parameter: /llamda/pg-pass-name, sslmode: disable}}
    - provider_id: chroma
      provider_type: remote::chromadb
      config: {{url: "http://me:{S["chroma-url-pass"]}@127.0.0.1:9", headers: {{x-chroma-token: {S["chroma-token"]}}}}}
    - provider_id: weaviate
      provider_type: remote::weaviate
      config: {{http_host: 127.0.0.1, http_port: 9, grpc_port: 10, api_key: {S["weaviate-key"]}, api_key_parameter: /llamda/wv-key-name}}
models:
  - {{model_id: vllm-m, provider_id: vllm}}
  - {{model_id: together-m, provider_id: together}}
  - {{model_id: bedrock-m, provider_id: bedrock, provider_model_id: some-model}}
  - {{model_id: bro-m, provider_id: bro}}
  - {{model_id: tgi-m, provider_id: tgi}}
  - {{model_id: ollama-m, provider_id: ollama}}
storage:
  records: {{type: sqlite, path: "${{env.LLAMDA_HOME}}/r.sqlite3"}}
  objects: {{type: local, root: "${{env.LLAMDA_HOME}}/o"}}
  vectors: {{uri: "${{env.LLAMDA_HOME}}/v"}}
routing: {{max_retries: 0}}
"""

PROVIDER_DATA_SECRETS = {name: _secret(name) for name in ("pd-vllm", "pd-together", "pd-nl")}
P = PROVIDER_DATA_SECRETS
PD_HEADER = "X-LlamaStack-Provider-Data"


@pytest.fixture(scope="module")
def upstream() -> Iterator[OpenAIUpstream]:
    with OpenAIUpstream() as up:
        up.echo_auth_in_errors = True
        yield up


@pytest.fixture(scope="module")
def server(
    upstream: OpenAIUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("secrets")
    (home / "run.yaml").write_text(CONFIG.replace("UP", upstream.url))
    live = start_server(
        home / "run.yaml", home, {"LLAMDA_LOG_LEVEL": "DEBUG", "PYTHONUNBUFFERED": "1"}
    )
    yield live
    stop_server(live)


def test_every_provider_type_is_covered() -> None:
    configured = {
        (api, entry["provider_type"])
        for api, entries in yaml.safe_load(CONFIG)["providers"].items()
        for entry in entries
    }
    # remote::lancedb is inline::lancedb's class and config on an s3:// location.
    configured.add(("vector_io", "remote::lancedb"))
    assert configured == set(SPECS), set(SPECS) ^ configured
    for key in NO_SECRET_FIELDS:
        fields = SPECS[key].config_class.model_fields
        suspicious = ("_key", "token", "secret", "passw", "header")
        assert not [f for f in fields if f.endswith("url") or any(w in f for w in suspicious)]


def _chat(server: LiveServer, model: str, provider_data: str | None = None) -> httpx.Response:
    headers = {PD_HEADER: provider_data} if provider_data is not None else {}
    return httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        headers=headers,
        timeout=30,
    )


def test_no_secret_in_any_response_or_log_line(
    server: LiveServer, upstream: OpenAIUpstream
) -> None:
    seen: list[str] = []
    # Every inspect route (and the other read-only descriptions of the stack).
    for path in ("/v1/health", "/v1/version", "/v1/inspect/routes", "/v1/models"):
        reply = httpx.get(f"{server.url}{path}")
        assert reply.status_code == 200, reply.text
        seen.append(reply.text)
    providers = httpx.get(f"{server.url}/v1/providers").json()["data"]
    seen.append(json.dumps(providers))
    assert len(providers) == len(SPECS) - 1  # remote::lancedb: inline::lancedb on S3
    for info in providers:
        one = httpx.get(f"{server.url}/v1/providers/{info['provider_id']}")
        assert one.status_code == 200
        seen.append(one.text)
    seen.append(httpx.get(f"{server.url}/openapi.json").text)

    # Masked, yet still useful: keys are kept, what is not secret is shown.
    by_id = {p["provider_id"]: p["config"] for p in providers}
    assert by_id["vllm"]["url"] == "http://127.0.0.1:9/v1"
    assert set(by_id["vllm"]["extra_headers"]) == {"Authorization", "x-api-key"}
    assert by_id["vllm"]["model_map"] == {"vllm-m": "meta-llama/Llama-3.1-8B-Instruct"}
    assert by_id["fireworks"]["api_key_parameter"] == "/llamda/fireworks-key-name"
    assert by_id["weaviate"]["api_key_parameter"] == "/llamda/wv-key-name"
    assert by_id["weaviate"]["http_port"] == 9
    assert by_id["openai"]["url"].startswith("https://api.example.com/v1?api_key=")
    assert by_id["bedrock"]["endpoint_url"].endswith(
        "@127.0.0.1:9/?X-Amz-Security-Token=**********"
    )

    # Failing calls: unreachable upstream with a config key, then with a provider-data key.
    down = _chat(server, "vllm-m")
    assert down.status_code == 503 and "ConnectError" in down.text
    seen.append(down.text)
    down = _chat(server, "vllm-m", json.dumps({"vllm_api_key": P["pd-vllm"]}))
    assert down.status_code == 503
    seen.append(down.text)
    # Unreachable endpoints whose URLs carry credentials (userinfo, query token).
    for model in ("bedrock-m", "bro-m", "tgi-m", "ollama-m"):
        down = _chat(server, model)
        assert down.status_code in (502, 503, 504), down.text
        seen.append(down.text)
    # An upstream whose error quotes the Authorization header back (config key, then ours).
    for provider_data in (None, json.dumps({"together_api_key": P["pd-together"]})):
        upstream.failures.append((401, {}))
        quoted = _chat(server, "together-m", provider_data)
        assert quoted.status_code == 401 and "you sent" in quoted.text, quoted.text
        seen.append(quoted.text)
    assert upstream.requests[-1]["headers"]["authorization"] == f"Bearer {P['pd-together']}"

    # Bad provider data: a 400 naming the header, never repeating a key or a value.
    for raw in (
        json.dumps({"vllm_api_key": f"ab\n{P['pd-nl']}"}),  # a newline: not a header value
        json.dumps({P["pd-nl"]: "x"}),  # a secret where the key name goes
        json.dumps({"vllm_api_key": P["pd-nl"] + " " * 600}),  # too long
        json.dumps({"vllm_api_key": [P["pd-nl"]]}),  # not a string
        "[" * 4000,  # deep nesting
    ):
        bad = _chat(server, "vllm-m", raw)
        assert bad.status_code == 400, bad.text
        error = bad.json()["error"]
        assert error["param"] == PD_HEADER and error["code"] == "invalid_provider_data"
        seen.append(bad.text)
    # Keys of other types, or spellings we do not document, are refused the same way.
    for key in ("vllm_api_token", "bedrock_api_key", "aws_secret_access_key"):
        bad = _chat(server, "vllm-m", json.dumps({key: "x" * 10}))
        assert bad.status_code == 400 and bad.json()["error"]["param"] == PD_HEADER

    stop_server(server)  # flushes every log line
    log = server.log.read_text()
    assert "inference attempt failed" in log or "request" in log  # the log was captured
    everything = "\n".join(seen)
    for where, secret in {**SECRETS, **PROVIDER_DATA_SECRETS}.items():
        assert secret not in everything, f"{where} leaked in a response"
        assert secret not in log, f"{where} leaked in the log"
