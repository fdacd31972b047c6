"""Providers tell the truth: connection errors name where the provider was called (without
its credentials), and a provider's health follows what its calls have seen."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest
from llama_stack_client import LlamaStackClient

from tests.conftest import ROOT, LiveServer, log_text, start_server, stop_server
from tests.fakes.bedrock import FakeBedrockServer, Reply
from tests.fakes.openai_upstream import OpenAIUpstream

LOCAL_PROFILE = ROOT / "shared" / "llamda" / "profiles" / "local.yaml"
# Port 9 (discard) refuses connections on loopback: an upstream that is down.
DOWN_URL = "http://llama:pw-s3cret-9@127.0.0.1:9/v1?token=q-s3cret-9"
CONFIG = """
apis: [inspect, models, inference]
providers:
  inference:
    - {provider_id: flaky, provider_type: vllm, config: {url: "UP"}}
    - {provider_id: gone, provider_type: vllm, config: {url: "DOWN"}}
    - provider_id: gone-bedrock
      provider_type: bedrock
      config: {region_name: us-east-1, endpoint_url: "http://127.0.0.1:9"}
models:
  - {model_id: flaky-llm, provider_id: flaky}
  - {model_id: down, provider_id: gone}
  - {model_id: down-bedrock, provider_id: gone-bedrock}
storage:
  records: {type: sqlite, path: "${env.LLAMDA_HOME}/r.sqlite3"}
  objects: {type: local, root: "${env.LLAMDA_HOME}/o"}
  vectors: {uri: "${env.LLAMDA_HOME}/v"}
routing: {max_retries: 0, breaker_failure_threshold: 2, breaker_cooldown_seconds: 0}
"""
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def upstream() -> Iterator[OpenAIUpstream]:
    with OpenAIUpstream() as up:
        yield up


@pytest.fixture(scope="module")
def server(
    upstream: OpenAIUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("truth")
    (home / "run.yaml").write_text(CONFIG.replace("UP", upstream.url).replace("DOWN", DOWN_URL))
    live = start_server(home / "run.yaml", home)
    yield live
    stop_server(live)


@pytest.fixture
def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def test_connection_errors_name_the_provider_url_without_its_credentials(
    client: openai.OpenAI, server: LiveServer
) -> None:
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="down", messages=HI)
    assert err.value.status_code == 503
    message = err.value.message
    assert "gone" in message and "127.0.0.1:9/v1" in message, message
    assert "s3cret" not in message and "llama:" not in message, message
    assert "s3cret" not in server.log.read_text()


def test_bedrock_connection_errors_name_the_endpoint(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="down-bedrock", messages=HI)
    assert err.value.status_code in (503, 504)
    message = err.value.message
    assert "gone-bedrock" in message and "unreachable at http://127.0.0.1:9" in message, message
    # The endpoint, not botocore's whole request URL (it carries the model path).
    assert "converse" not in message, message


def test_health_turns_degraded_then_error_and_back_to_ok(
    client: openai.OpenAI, server: LiveServer, upstream: OpenAIUpstream
) -> None:
    stack = LlamaStackClient(base_url=server.url, max_retries=0)
    assert stack.providers.retrieve("flaky").health["status"] == "OK"
    upstream.failures.extend([(503, {}), (503, {})])
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="flaky-llm", messages=HI)
    health = stack.providers.retrieve("flaky").health
    assert health["status"] == "Degraded", health
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="flaky-llm", messages=HI)
    # Two consecutive failures: the circuit opened (its trial not yet tried).
    health = stack.providers.retrieve("flaky").health
    assert health["status"] == "Error", health
    listed = {p.provider_id: p.health["status"] for p in stack.providers.list()}
    assert listed["flaky"] == "Error"
    # The half-open trial succeeds: healthy again.
    reply = client.chat.completions.create(model="flaky-llm", messages=HI)
    assert reply.choices[0].message.content == "upstream ok"
    assert stack.providers.retrieve("flaky").health["status"] == "OK"


def test_a_model_whose_provider_is_off_is_not_listed_and_says_why(
    upstream: OpenAIUpstream, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Registered on a provider, then the server runs without it (the run config changed):
    the model is left out of the list, a call is a 404 naming the provider that is off (not a
    503 at call time), and it can still be unregistered."""
    home = tmp_path_factory.mktemp("off")
    with_extra = CONFIG.replace("UP", upstream.url).replace("DOWN", DOWN_URL)
    with_extra = with_extra.replace(
        "  inference:\n",
        f'  inference:\n    - {{provider_id: extra, provider_type: ollama, config: {{url: "{upstream.url}"}}}}\n',
    )
    (home / "run.yaml").write_text(with_extra)
    server = start_server(home / "run.yaml", home)
    try:
        # Registration is not in llama-stack-client 0.7 (an admin call): plain HTTP.
        made = httpx.post(
            f"{server.url}/v1/models",
            json={"model_id": "orphan", "provider_id": "extra", "provider_model_id": "o"},
        )
        assert made.status_code == 200, made.text
        ids = {m.id for m in openai.OpenAI(base_url=f"{server.url}/v1", api_key="x").models.list()}
        assert "orphan" in ids
    finally:
        stop_server(server)
    (home / "run.yaml").write_text(CONFIG.replace("UP", upstream.url).replace("DOWN", DOWN_URL))
    server = start_server(home / "run.yaml", home)
    try:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
        ids = {m.id for m in client.models.list()}
        assert "orphan" not in ids and "flaky-llm" in ids
        stack = LlamaStackClient(base_url=server.url, max_retries=0)
        assert "orphan" not in {m.identifier for m in stack.models.list()}
        with pytest.raises(openai.NotFoundError) as err:
            client.chat.completions.create(model="orphan", messages=HI)
        assert "provider 'extra'" in err.value.message
        assert err.value.code == "model_unavailable"
        assert httpx.delete(f"{server.url}/v1/models/orphan").status_code == 200
        with pytest.raises(openai.NotFoundError) as err:
            client.chat.completions.create(model="orphan", messages=HI)
        assert err.value.code == "model_not_found"
    finally:
        stop_server(server)


DISCOVERY = """
apis: [inspect, models, inference]
providers:
  inference:
    - provider_id: ollama
      provider_type: remote::ollama
      config: {url: "UP", auto_register: true, embedding_model: nomic-embed-text}
    - {provider_id: stuck, provider_type: remote::vllm, config: {url: "STUCK", auto_register: true}}
    - provider_id: no-embedder
      provider_type: remote::vllm
      config: {url: "http://127.0.0.1:9/v1", embedding_model: e5-small}
models:
  - {model_id: configured, provider_id: ollama, provider_model_id: llama3.2:3b}
storage:
  records: {type: sqlite, path: "${env.LLAMDA_HOME}/r.sqlite3"}
  objects: {type: local, root: "${env.LLAMDA_HOME}/o"}
  vectors: {uri: "${env.LLAMDA_HOME}/v"}
routing: {max_retries: 0}
"""


def test_auto_register_and_probed_embedding_models_on_start(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The upstream's models are served as it lists them; the embedding model's dimension is
    what one probe call returned; a stuck or unreachable upstream is a log line, not a server
    that does not start; the list is refreshed on the next start."""
    home = tmp_path_factory.mktemp("discovery")
    with OpenAIUpstream() as up, OpenAIUpstream() as stuck:
        up.models = ["llama3.2:3b", "qwen2.5:0.5b", "nomic-embed-text", "bad id\n" + "x" * 300]
        up.embedding_dimensions = {"nomic-embed-text": 768}
        stuck.hang_listing = True
        stuck.models = ["never-seen"]
        config = DISCOVERY.replace("UP", up.url).replace("STUCK", stuck.url)
        (home / "run.yaml").write_text(config)
        server = start_server(home / "run.yaml", home)
        try:
            client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
            ids = [m.id for m in client.models.list()]
            assert {"configured", "llama3.2:3b", "qwen2.5:0.5b", "nomic-embed-text"} <= set(ids)
            assert "never-seen" not in ids and "e5-small" not in ids
            assert not any(i.startswith("bad id") for i in ids)  # not an id we can serve
            clash = httpx.post(
                f"{server.url}/v1/models",
                json={"model_id": "qwen2.5:0.5b", "provider_id": "ollama"},
            )
            assert clash.status_code == 409, clash.text
            stack = LlamaStackClient(base_url=server.url, max_retries=0)
            embedder = stack.models.retrieve("nomic-embed-text")
            assert embedder.custom_metadata["model_type"] == "embedding"
            assert embedder.custom_metadata["embedding_dimension"] == 768
            qwen = stack.models.retrieve("qwen2.5:0.5b")
            assert qwen.custom_metadata["model_type"] == "llm"
            reply = client.chat.completions.create(model="qwen2.5:0.5b", messages=HI)
            assert reply.choices[0].message.content == "upstream ok"
            assert up.requests[-1]["body"]["model"] == "qwen2.5:0.5b"
            vectors = client.embeddings.create(model="nomic-embed-text", input=["a", "b"])
            assert [len(d.embedding) for d in vectors.data] == [768, 768]
            log = log_text(server, "e5-small")
            assert "stuck did not answer within" in log
            assert "no-embedder" in log and "127.0.0.1:9" in log and "e5-small" in log
        finally:
            stop_server(server)
        # Refreshed on start: what the upstream lists now, not what it listed before.
        up.models = ["llama3.2:3b", "phi4-mini"]
        (home / "run.yaml").write_text(config.replace(", auto_register: true}}", "}}"))
        server = start_server(home / "run.yaml", home)
        try:
            client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
            ids = {m.id for m in client.models.list()}
            assert "phi4-mini" in ids and "qwen2.5:0.5b" not in ids
            with pytest.raises(openai.NotFoundError):
                client.chat.completions.create(model="qwen2.5:0.5b", messages=HI)
        finally:
            stop_server(server)


def test_local_profile_registers_the_ollama_embedding_model_from_the_environment(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """OLLAMA_EMBEDDING_MODEL in the bundled local profile: served as an embedding model with
    the dimension its probe returned, usable as a vector store's embedding model."""
    home = tmp_path_factory.mktemp("ollama-embed")
    with OpenAIUpstream() as up:
        up.embedding_dimensions = {"mxbai-embed-large": 1024}
        env = {
            "OLLAMA_URL": up.url,
            "OLLAMA_EMBEDDING_MODEL": "mxbai-embed-large",
            "AWS_REGION": "",
            "AWS_DEFAULT_REGION": "",
        }
        server = start_server(LOCAL_PROFILE, home, env)
        try:
            stack = LlamaStackClient(base_url=server.url, max_retries=0)
            model = stack.models.retrieve("mxbai-embed-large")
            assert model.custom_metadata["model_type"] == "embedding"
            assert model.custom_metadata["embedding_dimension"] == 1024
            probes = [r for r in up.requests if r["path"].endswith("/embeddings")]
            assert len(probes) == 1  # one probe call at start
            client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
            store = client.vector_stores.create(
                name="kb", extra_body={"embedding_model": "mxbai-embed-large"}
            )
            assert store.id
        finally:
            stop_server(server)


BEDROCK_DISCOVERY = """
apis: [inspect, models, inference]
providers:
  inference:
    - provider_id: bedrock
      provider_type: remote::bedrock
      config:
        region_name: us-east-1
        endpoint_url: "FAKE"
        control_endpoint_url: "FAKE"
        discover_models: true
        discover_pattern: "llama|nova"
storage:
  records: {type: sqlite, path: "${env.LLAMDA_HOME}/r.sqlite3"}
  objects: {type: local, root: "${env.LLAMDA_HOME}/o"}
  vectors: {uri: "${env.LLAMDA_HOME}/v"}
routing: {max_retries: 0}
"""


def test_bedrock_discovers_the_regions_llama_models_and_profiles_once(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """ListFoundationModels + ListInferenceProfiles, filtered by the pattern, Llama first;
    models that Bedrock serves only through a profile are listed by their profile; the list
    is kept in Records, so the next start does not ask the control plane again."""
    home = tmp_path_factory.mktemp("bedrock-discovery")
    with FakeBedrockServer() as bedrock:
        (home / "run.yaml").write_text(BEDROCK_DISCOVERY.replace("FAKE", bedrock.endpoint))
        server = start_server(home / "run.yaml", home)
        try:
            client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
            ids = [m.id for m in client.models.list()]
            assert ids == [
                "meta.llama3-8b-instruct-v1:0",
                "us.meta.llama3-3-70b-instruct-v1:0",
                "us.meta.llama4-scout-17b-instruct-v1:0",
                "amazon.nova-lite-v1:0",
                "us.amazon.nova-lite-v1:0",
            ]
            reply = client.chat.completions.create(
                model="us.meta.llama4-scout-17b-instruct-v1:0", messages=HI
            )
            assert reply.choices[0].message.content
            fake = bedrock.fake
            assert len(fake.calls_for("converse", "us.meta.llama4-scout-17b-instruct-v1:0")) == 1
            assert len(fake.calls_for("list-foundation-models")) == 1
            assert len(fake.calls_for("list-inference-profiles")) == 1
        finally:
            stop_server(server)
        fake.foundation_models.clear()  # what the region lists now is not asked for again
        server = start_server(home / "run.yaml", home)
        try:
            client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
            assert "us.meta.llama4-scout-17b-instruct-v1:0" in {m.id for m in client.models.list()}
            assert len(fake.calls_for("list-foundation-models")) == 1
        finally:
            stop_server(server)


def test_bedrock_discovery_failure_is_a_log_line_and_the_server_starts(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    home = tmp_path_factory.mktemp("bedrock-denied")
    with FakeBedrockServer() as bedrock:
        bedrock.fake.script(
            "list-foundation-models", Reply(error=("AccessDeniedException", "not allowed"))
        )
        (home / "run.yaml").write_text(BEDROCK_DISCOVERY.replace("FAKE", bedrock.endpoint))
        server = start_server(home / "run.yaml", home)
        try:
            client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
            assert [m.id for m in client.models.list()] == []
            assert "model discovery failed: bedrock: not allowed" in log_text(server, "not allowed")
        finally:
            stop_server(server)


def test_a_hung_embedding_probe_does_not_cost_the_listed_models(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    home = tmp_path_factory.mktemp("half")
    with OpenAIUpstream() as up:
        up.models = ["m1", "hung-embed"]
        up.hang_models = {"hung-embed"}
        (home / "run.yaml").write_text(
            DISCOVERY.split("    - {provider_id: stuck")[0]
            .replace("UP", up.url)
            .replace("nomic-embed-text", "hung-embed")
            + "storage:"
            + DISCOVERY.split("storage:")[1]
        )
        server = start_server(home / "run.yaml", home)
        try:
            client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
            ids = {m.id for m in client.models.list()}
            assert "m1" in ids and "hung-embed" not in ids
            log = log_text(server, "hung-embed")
            assert "did not answer within" in log and "embedding model 'hung-embed'" in log
        finally:
            stop_server(server)
