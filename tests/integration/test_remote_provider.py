"""What the remote OpenAI-compatible provider sends upstream: keys (config, SSM, per-request
provider data), extra headers, model mapping; and how it treats the upstream's failures."""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import boto3
import openai
import pytest

from tests.conftest import LiveServer, start_server, stop_server
from tests.fakes.openai_upstream import OpenAIUpstream

CONFIG = """
apis: [inspect, models, inference]
providers:
  inference:
    - provider_id: together
      provider_type: together
      config: {url: "UP", api_key: config-key, extra_headers: {x-team: llamas}, model_map: {llama: meta-llama/Llama-3.3-70B-Instruct-Turbo}}
    - provider_id: fireworks
      provider_type: fireworks
      config: {url: "UP", api_key_parameter: /llamda/fireworks-key}
    - {provider_id: vllm, provider_type: vllm, config: {url: "http://127.0.0.1:9/v1"}}
models:
  - {model_id: llama, provider_id: together}
  - {model_id: down, provider_id: vllm}
  - {model_id: fw, provider_id: fireworks, provider_model_id: accounts/fireworks/models/llama-v3p1-8b-instruct}
  - {model_id: embed, provider_id: together, provider_model_id: togethercomputer/m2-bert, model_type: embedding, metadata: {embedding_dimension: 3}}
  - {model_id: embed-any, provider_id: together, model_type: embedding, metadata: {embedding_dimension: 3, supported_dimensions: any}}
storage:
  records: {type: sqlite, path: "${env.LLAMDA_HOME}/r.sqlite3"}
  objects: {type: local, root: "${env.LLAMDA_HOME}/o"}
  vectors: {uri: "${env.LLAMDA_HOME}/v"}
routing: {max_retries: 2, backoff_base_seconds: 0.01, backoff_max_seconds: 2}
"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[OpenAIUpstream]:
    with OpenAIUpstream() as up:
        yield up


@pytest.fixture(scope="module")
def server(
    upstream: OpenAIUpstream, moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    boto3.client("ssm", endpoint_url=moto_endpoint).put_parameter(
        Name="/llamda/fireworks-key", Value="ssm-secret-key", Type="SecureString"
    )
    home = tmp_path_factory.mktemp("remote")
    (home / "run.yaml").write_text(CONFIG.replace("UP", upstream.url))
    live = start_server(home / "run.yaml", home, {"AWS_ENDPOINT_URL": moto_endpoint})
    yield live
    stop_server(live)


@pytest.fixture
def client(server: LiveServer, upstream: OpenAIUpstream) -> openai.OpenAI:
    upstream.requests.clear()
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def test_config_key_extra_headers_and_model_map(
    client: openai.OpenAI, upstream: OpenAIUpstream
) -> None:
    reply = client.chat.completions.create(
        model="llama", messages=[{"role": "user", "content": "hi"}], temperature=0.5
    )
    assert reply.choices[0].message.content == "upstream ok"
    (sent,) = upstream.requests
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["authorization"] == "Bearer config-key"
    assert sent["headers"]["x-team"] == "llamas"
    assert sent["body"]["model"] == "meta-llama/Llama-3.3-70B-Instruct-Turbo"
    assert sent["body"]["temperature"] == 0.5 and sent["body"]["stream"] is False


def test_streams_reuse_their_upstream_connection(
    client: openai.OpenAI, upstream: OpenAIUpstream
) -> None:
    for _ in range(3):
        chunks = list(client.completions.create(model="llama", prompt="go", stream=True))
        assert "".join(c.choices[0].text for c in chunks if c.choices) == "go -> done"
    ports = {sent["port"] for sent in upstream.requests}
    assert len(upstream.requests) == 3 and len(ports) == 1  # one pooled connection, reused


def test_concurrent_calls_keep_their_upstream_connections(
    server: LiveServer, upstream: OpenAIUpstream
) -> None:
    """Connections opened for a burst of concurrent calls stay pooled: a second burst as wide
    as the first opens none (before, only 20 were kept and the rest reconnected every time)."""
    wide = 30
    gated = "meta-llama/Llama-3.3-70B-Instruct-Turbo"  # what `llama` is upstream

    def call() -> str | None:
        sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        reply = sdk.chat.completions.create(
            model="llama", messages=[{"role": "user", "content": "hi"}]
        )
        return reply.choices[0].message.content

    def burst() -> set[int]:
        upstream.requests.clear()
        upstream.gate.clear()
        upstream.gate_models.add(gated)
        try:
            with ThreadPoolExecutor(wide) as pool:
                futures = [pool.submit(call) for _ in range(wide)]
                # All of them in flight upstream at once (bounded wait, not a timing check).
                deadline = time.monotonic() + 60
                while len(upstream.requests) < wide and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert len(upstream.requests) == wide
                upstream.gate.set()
                assert [f.result(timeout=60) for f in futures] == ["upstream ok"] * wide
        finally:
            upstream.gate_models.discard(gated)
            upstream.gate.set()
        return {sent["port"] for sent in upstream.requests}

    first = burst()
    assert len(first) == wide  # one connection per concurrent call
    assert burst() <= first  # the same connections, reused


def test_plain_and_streamed_calls_send_the_http_clients_standard_headers(
    client: openai.OpenAI, upstream: OpenAIUpstream
) -> None:
    """Plain and streamed calls carry the same standard headers (our user agent, JSON, gzip
    accepted) and never a cookie."""
    client.chat.completions.create(model="llama", messages=[{"role": "user", "content": "hi"}])
    list(
        client.chat.completions.create(
            model="llama", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert len(upstream.requests) == 2
    for sent in upstream.requests:
        headers = sent["headers"]
        assert headers["user-agent"].startswith("llamda/")
        assert "gzip" in headers["accept-encoding"]
        assert headers["accept"] == "*/*"
        assert headers["content-type"] == "application/json"
        assert headers["authorization"] == "Bearer config-key"
        assert "cookie" not in headers


def test_an_http_proxy_from_the_environment_is_used(
    upstream: OpenAIUpstream, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """With HTTP_PROXY set, upstream calls go through the proxy (the fake upstream plays it:
    it sees the absolute-form request line a proxy gets), not straight to the upstream."""
    home = tmp_path_factory.mktemp("proxied")
    (home / "run.yaml").write_text(
        CONFIG.split("providers:")[0]
        + """providers:
  inference:
    - {provider_id: vllm, provider_type: vllm, config: {url: "http://upstream.invalid:8000/v1"}}
models:
  - {model_id: proxied, provider_id: vllm, provider_model_id: llama}
storage:
  records: {type: sqlite, path: "${env.LLAMDA_HOME}/r.sqlite3"}
  objects: {type: local, root: "${env.LLAMDA_HOME}/o"}
  vectors: {uri: "${env.LLAMDA_HOME}/v"}
"""
    )
    proxy = {"HTTP_PROXY": upstream.url, "http_proxy": upstream.url, "NO_PROXY": "", "no_proxy": ""}
    live = start_server(home / "run.yaml", home, proxy)
    try:
        upstream.requests.clear()
        sdk = openai.OpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0)
        reply = sdk.chat.completions.create(
            model="proxied", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.choices[0].message.content == "upstream ok"
    finally:
        stop_server(live)
    posts = [r for r in upstream.requests if r["body"] is not None]
    assert posts and posts[0]["path"] == "http://upstream.invalid:8000/v1/chat/completions"


def test_key_from_ssm(client: openai.OpenAI, upstream: OpenAIUpstream) -> None:
    client.chat.completions.create(model="fw", messages=[{"role": "user", "content": "hi"}])
    (sent,) = upstream.requests
    assert sent["headers"]["authorization"] == "Bearer ssm-secret-key"
    assert sent["body"]["model"] == "accounts/fireworks/models/llama-v3p1-8b-instruct"


def test_per_request_provider_data_wins_and_is_not_logged(
    server: LiveServer, client: openai.OpenAI, upstream: OpenAIUpstream
) -> None:
    secret = "tg-per-request-secret-123"
    client.chat.completions.create(
        model="llama",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"X-LlamaStack-Provider-Data": json.dumps({"together_api_key": secret})},
    )
    assert upstream.requests[0]["headers"]["authorization"] == f"Bearer {secret}"
    time.sleep(0.2)
    assert secret not in server.log.read_text()


def test_retry_after_is_honoured_then_success(
    client: openai.OpenAI, upstream: OpenAIUpstream
) -> None:
    upstream.failures.append((429, {"retry-after": "0.3"}))
    started = time.monotonic()
    reply = client.chat.completions.create(
        model="llama", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.choices[0].message.content == "upstream ok"
    assert time.monotonic() - started >= 0.3
    assert len(upstream.requests) == 2


def test_upstream_client_errors_are_not_retried(
    client: openai.OpenAI, upstream: OpenAIUpstream
) -> None:
    upstream.failures.append((401, {}))
    with pytest.raises(openai.AuthenticationError, match="scripted 401"):
        client.chat.completions.create(model="llama", messages=[{"role": "user", "content": "hi"}])
    assert len(upstream.requests) == 1


def _f32(values: list[float]) -> list[float]:
    return list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))


def test_embeddings_pass_through(client: openai.OpenAI, upstream: OpenAIUpstream) -> None:
    reply = client.embeddings.create(model="embed", input=["a", "b"], encoding_format="float")
    assert [d.embedding for d in reply.data] == [[0.1, 0.2, 0.3]] * 2
    assert upstream.requests[0]["body"]["model"] == "togethercomputer/m2-bert"


def test_base64_embeddings_from_an_upstream_that_only_sends_floats(
    client: openai.OpenAI, upstream: OpenAIUpstream
) -> None:
    """The openai SDK asks for base64 by default and decodes it itself: the server encodes
    (little-endian float32), whatever the upstream does with encoding_format."""
    raw = client.embeddings.with_raw_response.create(model="embed", input=["a", "b"], user="u-1")
    on_the_wire = raw.http_response.json()["data"][0]["embedding"]
    assert isinstance(on_the_wire, str)
    assert [d.embedding for d in raw.parse().data] == [_f32([0.1, 0.2, 0.3])] * 2
    sent = upstream.requests[0]["body"]
    assert sent["encoding_format"] == "float" and sent["user"] == "u-1"
    assert "dimensions" not in sent


def test_dimensions_the_model_does_not_declare_are_400(
    client: openai.OpenAI, upstream: OpenAIUpstream
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="embed", input="a", dimensions=2)
    assert err.value.body["param"] == "dimensions"  # type: ignore[index]
    assert err.value.code == "unsupported_dimensions"
    assert "embed" in err.value.message and "supported_dimensions" in err.value.message
    assert upstream.requests == []
    # Its own size is always fine: nothing to ask of the upstream.
    same = client.embeddings.create(model="embed", input="a", dimensions=3)
    assert len(same.data[0].embedding) == 3 and "dimensions" not in upstream.requests[0]["body"]


def test_declared_dimensions_go_upstream_and_are_checked(
    client: openai.OpenAI, upstream: OpenAIUpstream
) -> None:
    """``supported_dimensions: any``: passed on; an upstream that ignores it (this fake always
    answers 3 floats) is a 502, never vectors of another size."""
    with pytest.raises(openai.APIStatusError) as err:
        client.embeddings.create(model="embed-any", input="a", dimensions=2)
    assert err.value.status_code == 502 and "3-dimensional" in err.value.message
    assert upstream.requests[0]["body"]["dimensions"] == 2
    with pytest.raises(openai.BadRequestError, match="1 to 3"):
        client.embeddings.create(model="embed-any", input="a", dimensions=4)


def test_unreachable_upstream_is_503_with_a_message(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(model="down", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 503
    assert "vllm" in err.value.message and "ConnectError" in err.value.message


def test_bedrock_openai_endpoint_with_api_key_and_with_sigv4(
    upstream: OpenAIUpstream, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """bedrock-openai: a Bedrock API key as the bearer token; without one, SigV4 signing
    with the environment's credentials (service 'bedrock')."""
    home = tmp_path_factory.mktemp("bedrock-openai")
    config = f"""
apis: [inspect, models, inference]
providers:
  inference:
    - {{provider_id: keyed, provider_type: bedrock-openai, config: {{base_url: "{upstream.url}", api_key: br-key}}}}
    - {{provider_id: signed, provider_type: bedrock-openai, config: {{base_url: "{upstream.url}", region_name: us-west-2}}}}
models:
  - {{model_id: gpt-oss, provider_id: keyed, provider_model_id: openai.gpt-oss-20b-1:0}}
  - {{model_id: gpt-oss-signed, provider_id: signed, provider_model_id: openai.gpt-oss-20b-1:0}}
storage:
  records: {{type: sqlite, path: "{home}/r.sqlite3"}}
  objects: {{type: local, root: "{home}/o"}}
  vectors: {{uri: "{home}/v"}}
"""
    (home / "run.yaml").write_text(config)
    live = start_server(home / "run.yaml", home)
    try:
        client = openai.OpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0)
        upstream.requests.clear()
        assert (
            client.chat.completions.create(
                model="gpt-oss", messages=[{"role": "user", "content": "hi"}]
            )
            .choices[0]
            .message.content
            == "upstream ok"
        )
        client.chat.completions.create(
            model="gpt-oss-signed", messages=[{"role": "user", "content": "hi"}]
        )
        keyed, signed = upstream.requests
        assert keyed["headers"]["authorization"] == "Bearer br-key"
        assert keyed["body"]["model"] == "openai.gpt-oss-20b-1:0"
        auth = signed["headers"]["authorization"]
        assert (
            auth.startswith("AWS4-HMAC-SHA256 Credential=testing/")
            and "/us-west-2/bedrock/aws4_request" in auth
        )
        assert "x-amz-date" in signed["headers"]
    finally:
        stop_server(live)


def test_plain_calls_reuse_their_upstream_connection(
    client: openai.OpenAI, upstream: OpenAIUpstream
) -> None:
    """Back-to-back plain calls share one pooled connection. (The first may still land on a
    connection an earlier test left in the pool, which the pool may retire when idle.)"""
    for _ in range(4):
        client.chat.completions.create(model="llama", messages=[{"role": "user", "content": "hi"}])
    ports = [sent["port"] for sent in upstream.requests]
    assert len(ports) == 4 and ports[1] == ports[2] == ports[3], ports


def test_an_upstream_that_closes_its_connections_after_each_reply(
    client: openai.OpenAI, upstream: OpenAIUpstream
) -> None:
    """The upstream drops every connection after answering (without ``Connection: close``):
    the pooled connection is found dead and a new one opened, plain or streamed, no error."""
    upstream.close_after_reply = True
    try:
        for _ in range(3):
            reply = client.chat.completions.create(
                model="llama", messages=[{"role": "user", "content": "hi"}]
            )
            assert reply.choices[0].message.content == "upstream ok"
            time.sleep(0.05)  # the close reaches us (a client in a hurry may race it)
            chunks = list(client.completions.create(model="llama", prompt="go", stream=True))
            assert "".join(c.choices[0].text for c in chunks if c.choices) == "go -> done"
            time.sleep(0.05)
    finally:
        upstream.close_after_reply = False
    assert len({sent["port"] for sent in upstream.requests}) == 6  # a new connection each


def test_an_upstream_stream_cut_midway_is_an_error_event(
    client: openai.OpenAI, upstream: OpenAIUpstream
) -> None:
    """The upstream's connection drops before the stream's end: the client gets what came,
    then an error naming the provider (not a silently short answer), no upstream detail."""
    cut = "meta-llama/Llama-3.3-70B-Instruct-Turbo"
    upstream.cut_stream_models.add(cut)
    received: list[str] = []
    try:
        with pytest.raises(openai.APIError) as err:
            for chunk in client.chat.completions.create(
                model="llama", messages=[{"role": "user", "content": "hi"}], stream=True
            ):
                received.extend(c.delta.content or "" for c in chunk.choices)
    finally:
        upstream.cut_stream_models.discard(cut)
    assert "".join(received) == "half half "
    assert "together" in err.value.message and "RemoteProtocolError" in err.value.message


def test_one_provider_used_from_two_event_loops(upstream: OpenAIUpstream) -> None:
    """A provider is used from a second event loop (``asyncio.run`` per job, a worker thread
    with its own loop, Mangum's loop): each loop gets its own session; the first loop's,
    once that loop is closed, is dropped quietly (no aiohttp "unclosed session/connector"
    warning; asyncio itself still notes the sockets a closed loop left open)."""
    import asyncio
    import gc
    import threading
    import warnings

    from llamda.api.inference import ChatCompletionRequest
    from llamda.providers.inference.config import RemoteOpenAIConfig
    from llamda.providers.inference.remote_openai import RemoteOpenAIProvider

    # Held only here, so that dropping it lets what it held be collected.
    held = [RemoteOpenAIProvider("vllm", "vllm", RemoteOpenAIConfig(url=upstream.url, api_key="k"))]
    request = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}])

    async def call() -> str | None:
        return (await held[0].chat(request, "m")).choices[0].message.content

    upstream.requests.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert asyncio.run(call()) == "upstream ok"  # this loop is closed afterwards
        answers: list[str | None] = []
        worker = threading.Thread(target=lambda: answers.append(asyncio.run(call())))
        worker.start()
        worker.join(30)
        assert answers == ["upstream ok"]

        async def twice_then_close() -> list[str | None]:
            try:
                return [await call(), await call()]
            finally:
                await held[0].close()

        assert asyncio.run(twice_then_close()) == ["upstream ok"] * 2
        held.clear()  # what it still held is collected now: warnings, if any, come here
        gc.collect()
    unclosed = [str(w.message) for w in caught if "Unclosed" in str(w.message)]
    assert not unclosed, unclosed
    ports = [sent["port"] for sent in upstream.requests]
    assert len(ports) == 4 and ports[2] == ports[3]  # the third loop reused its connection
