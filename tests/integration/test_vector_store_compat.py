"""Vector stores where Llama Stack 0.7 and OpenAI behave so (issue 15, item 6), through the
openai SDK and llama-stack-client against a live local server: contextual chunking and
rewrite_query answered by the fake Bedrock (its replies are computed from what the model was
sent), search pages, file content with chunk metadata and embeddings, unknown file ids that
fail alone, Llama Stack's ranker options, and expired stores reaped by the maintenance loop."""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from llama_stack_client import BadRequestError as LsBadRequest
from llama_stack_client import LlamaStackClient

from tests.configs import backend_params, start_backend, with_backend
from tests.conftest import TEST_CONFIG, LiveServer, start_server, stop_server
from tests.fakes.bedrock import FakeBedrockServer, Reply, fake_embedding

EMBEDDING_MODEL = "amazon.titan-embed-text-v2:0"
CONTEXT_LLM = "compat-context-llm"  # provider model ids only this module's responders answer
REWRITE_LLM = "compat-rewrite-llm"


@pytest.fixture(scope="module", params=backend_params())
def server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    fake_bedrock: FakeBedrockServer,
) -> Iterator[LiveServer]:
    """The shared test config on each vector backend (tests/configs.py) plus two Bedrock chat
    models (the rewrite model is the one ``storage.vectors.query_rewrite_model`` names) and a
    fast maintenance loop."""
    start_backend(request, request.param)
    home = tmp_path_factory.mktemp(f"compat-{request.param}")
    models = (
        f"  - model_id: context-llm\n    provider_id: fake-bedrock\n"
        f"    provider_model_id: {CONTEXT_LLM}\n"
        f"  - model_id: rewrite-llm\n    provider_id: fake-bedrock\n"
        f"    provider_model_id: {REWRITE_LLM}\n"
    )
    config = (
        with_backend(TEST_CONFIG, request.param)
        .replace("models:\n", "models:\n" + models, 1)
        .replace(
            'vectors: {uri: "${env.LLAMDA_HOME}/lancedb"}',
            'vectors: {uri: "${env.LLAMDA_HOME}/lancedb", query_rewrite_model: rewrite-llm}',
        )
        .replace("server:\n", "server:\n  maintenance_interval_seconds: 0.2\n", 1)
    )
    assert "rewrite-llm}" in config and "maintenance_interval_seconds" in config
    (home / "run.yaml").write_text(config)
    live = start_server(home / "run.yaml", home, {"FAKE_BEDROCK_URL": fake_bedrock.endpoint})
    yield live
    stop_server(live)
    with fake_bedrock.fake.lock:
        for model in (CONTEXT_LLM, REWRITE_LLM):
            fake_bedrock.fake.responders.pop(model, None)


@pytest.fixture(scope="module")
def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def ls(server: LiveServer) -> LlamaStackClient:
    return LlamaStackClient(base_url=server.url, max_retries=0)


def upload(client: openai.OpenAI, name: str, text: str) -> str:
    return client.files.create(file=(name, io.BytesIO(text.encode())), purpose="assistants").id


def prompt_of(body: dict[str, Any]) -> str:
    """The user text a Converse request carries."""
    return " ".join(
        block.get("text", "")
        for message in body.get("messages", [])
        for block in message.get("content", [])
    )


# --- contextual chunking ---------------------------------------------------------------------


def situate(body: dict[str, Any]) -> Reply:
    """The context model: names the document's title (its first line, from <document>) and the
    chunk's first word (from <chunk>), so a test sees both reached the model and its answer
    was used."""
    prompt = prompt_of(body)
    document = re.search(r"<document>\s*(.*?)\s*</document>", prompt, re.S)
    chunk = re.search(r"<chunk>\s*(.*?)\s*</chunk>", prompt, re.S)
    if not document or not chunk:
        return Reply(text="no document")
    title = document.group(1).splitlines()[0].strip("# ")
    return Reply(text=f"From the guide {title}, the part on {chunk.group(1).split()[0]}")


def test_contextual_chunking_prepends_the_models_context(
    ls: LlamaStackClient, client: openai.OpenAI, fake_bedrock: FakeBedrockServer
) -> None:
    fake_bedrock.fake.respond(CONTEXT_LLM, situate)
    sections = [f"Section{i} " + " ".join(f"detail{i}x{j}" for j in range(120)) for i in range(3)]
    text = "# Quokka Handbook\n\n" + "\n\n".join(sections)
    file_id = upload(client, "quokka.md", text)
    vs = ls.vector_stores.create(name="ctx", extra_body={"embedding_model": EMBEDDING_MODEL})
    strategy = {
        "type": "contextual",
        "contextual": {
            "model_id": "context-llm",
            "max_chunk_size_tokens": 300,
            "chunk_overlap_tokens": 0,
        },
    }
    before = len(fake_bedrock.fake.calls_for("converse", CONTEXT_LLM))
    attached = ls.vector_stores.files.create(
        vector_store_id=vs.id,
        file_id=file_id,
        chunking_strategy=strategy,  # type: ignore[arg-type]
    )
    assert attached.status == "completed", attached.last_error
    assert attached.chunking_strategy.type == "contextual"  # type: ignore[union-attr]
    calls = fake_bedrock.fake.calls_for("converse", CONTEXT_LLM)[before:]
    content = ls.vector_stores.files.content(file_id=file_id, vector_store_id=vs.id).data
    assert len(content) == len(calls) > 1  # one call per chunk
    for part in content:
        # The model's answer (from the whole document's title and this chunk) leads the chunk.
        context, _, chunk = part.text.partition("\n\n")
        assert context == f"From the guide Quokka Handbook, the part on {chunk.split()[0]}"
    # Every call carried the whole document (its last section too), not only its chunk.
    assert all("Section2" in prompt_of(c["body"]) for c in calls)
    # The context is indexed: a word only the model wrote finds the chunks.
    hits = client.vector_stores.search(
        vector_store_id=vs.id, query="guide", extra_body={"search_mode": "keyword"}
    )
    assert hits.data and all(h.file_id == file_id for h in hits.data)


def test_contextual_chunking_needs_an_llm(client: openai.OpenAI, ls: LlamaStackClient) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.vector_stores.create(
            name="no-model",
            chunking_strategy={"type": "contextual", "contextual": {}},  # type: ignore[typeddict-item]
        )
    assert err.value.body["param"].endswith("model_id")  # type: ignore[index]
    assert "model_id is required" in err.value.body["message"]  # type: ignore[index]
    vs = ls.vector_stores.create(name="ctx-bad", extra_body={"embedding_model": EMBEDDING_MODEL})
    file_id = upload(client, "x.txt", "Some text.")
    with pytest.raises(LsBadRequest) as bad:  # an embedding model writes no context
        ls.vector_stores.files.create(
            vector_store_id=vs.id,
            file_id=file_id,
            chunking_strategy={"type": "contextual", "contextual": {"model_id": EMBEDDING_MODEL}},  # type: ignore[arg-type]
        )
    assert "not an LLM" in str(bad.value)
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.create(
            vector_store_id=vs.id,
            file_id=file_id,
            chunking_strategy={"type": "contextual", "contextual": {"model_id": "nope"}},  # type: ignore[typeddict-item]
        )
    assert client.vector_stores.files.list(vector_store_id=vs.id).data == []  # nothing attached


def test_contextual_chunking_is_bounded_per_file(
    ls: LlamaStackClient, client: openai.OpenAI, fake_bedrock: FakeBedrockServer
) -> None:
    """One model call per chunk: a file of over 500 chunks fails before any call."""
    fake_bedrock.fake.respond(CONTEXT_LLM, situate)
    # word1234 is 3 tokens: ~54k tokens, over 500 chunks of 100.
    big = upload(client, "big.txt", " ".join(f"word{1000 + i % 9000}" for i in range(18_000)))
    vs = ls.vector_stores.create(name="ctx-big", extra_body={"embedding_model": EMBEDDING_MODEL})
    before = len(fake_bedrock.fake.calls_for("converse", CONTEXT_LLM))
    attached = ls.vector_stores.files.create(
        vector_store_id=vs.id,
        file_id=big,
        chunking_strategy={  # type: ignore[arg-type]
            "type": "contextual",
            "contextual": {
                "model_id": "context-llm",
                "max_chunk_size_tokens": 100,
                "chunk_overlap_tokens": 0,
            },
        },
    )
    assert attached.status == "failed" and attached.last_error is not None
    assert "at most 500 chunks" in attached.last_error.message
    assert len(fake_bedrock.fake.calls_for("converse", CONTEXT_LLM)) == before


# --- rewrite_query ---------------------------------------------------------------------------

SYNONYMS = {"humped beasts": "camels crossing the desert sand"}


def rewrite(body: dict[str, Any]) -> Reply:
    """The rewrite model: a synonym for the query it was sent (unknown queries kept)."""
    query = re.search(r"\n\n(.*?)\n\nImproved query:", prompt_of(body), re.S)
    original = query.group(1).strip() if query else ""
    return Reply(text=SYNONYMS.get(original, original))


@pytest.fixture(scope="module")
def animals(client: openai.OpenAI) -> tuple[str, dict[str, str]]:
    vs = client.vector_stores.create(
        name="animals", extra_body={"embedding_model": EMBEDDING_MODEL}
    )
    docs = {
        "desert.txt": "Camels cross the hot desert sand with little water.",
        "ocean.txt": "Whales and dolphins swim in the salt water of the ocean.",
        "forest.txt": "Deer and foxes live in the green forest.",
        "arctic.txt": "Polar bears hunt seals on the arctic ice.",
        "plains.txt": "Bison graze on the open plains of grass.",
    }
    ids = {name: upload(client, name, text) for name, text in docs.items()}
    batch = client.vector_stores.file_batches.create(
        vector_store_id=vs.id, file_ids=list(ids.values())
    )
    assert batch.file_counts.completed == 5
    return vs.id, ids


def test_rewrite_query_uses_the_default_llm(
    client: openai.OpenAI, animals: tuple[str, dict[str, str]], fake_bedrock: FakeBedrockServer
) -> None:
    vs_id, ids = animals
    fake_bedrock.fake.respond(REWRITE_LLM, rewrite)
    before = len(fake_bedrock.fake.calls_for("converse", REWRITE_LLM))
    results = client.vector_stores.search(
        vector_store_id=vs_id, query="humped beasts", rewrite_query=True, max_num_results=1
    )
    calls = fake_bedrock.fake.calls_for("converse", REWRITE_LLM)[before:]
    assert len(calls) == 1 and "humped beasts" in prompt_of(calls[0]["body"])
    assert results.search_query == ["camels crossing the desert sand"]  # says what it searched
    assert results.data[0].file_id == ids["desert.txt"]
    plain = client.vector_stores.search(vector_store_id=vs_id, query="humped beasts")
    assert plain.search_query == ["humped beasts"]
    assert len(fake_bedrock.fake.calls_for("converse", REWRITE_LLM)) == before + 1


def test_a_failing_rewrite_model_leaves_the_query_as_sent(
    client: openai.OpenAI, animals: tuple[str, dict[str, str]], fake_bedrock: FakeBedrockServer
) -> None:
    vs_id, ids = animals
    down = Reply(error=("ServiceUnavailableException", "down"))
    fake_bedrock.fake.script(REWRITE_LLM, *[down] * 5)  # every retry fails
    results = client.vector_stores.search(
        vector_store_id=vs_id, query="camels desert", rewrite_query=True, max_num_results=1
    )
    assert fake_bedrock.fake.calls_for("converse", REWRITE_LLM)  # it was asked
    assert results.search_query == ["camels desert"]  # and the search went on without it
    assert results.data[0].file_id == ids["desert.txt"]
    fake_bedrock.fake.reset()


# --- pagination ------------------------------------------------------------------------------


def test_search_pages(client: openai.OpenAI, animals: tuple[str, dict[str, str]]) -> None:
    vs_id, _ = animals
    query = "animals live in water sand grass ice forest"
    everything = client.vector_stores.search(vector_store_id=vs_id, query=query)
    assert len(everything.data) == 5 and not everything.has_more
    assert everything.next_page is None
    seen: list[str] = []
    page = client.vector_stores.search(vector_store_id=vs_id, query=query, max_num_results=2)
    pages = 1
    while page.has_more:
        seen += [r.file_id for r in page.data]
        assert page.next_page
        page = client.vector_stores.search(
            vector_store_id=vs_id,
            query=query,
            max_num_results=2,
            extra_body={"page": page.next_page},
        )
        pages += 1
    seen += [r.file_id for r in page.data]
    assert pages == 3 and page.next_page is None
    assert seen == [r.file_id for r in everything.data]  # the same order, no gaps, no repeats
    first = client.vector_stores.search(vector_store_id=vs_id, query=query, max_num_results=2)
    with pytest.raises(openai.BadRequestError) as err:  # a token of another search
        client.vector_stores.search(
            vector_store_id=vs_id,
            query="something else",
            max_num_results=2,
            extra_body={"page": first.next_page},
        )
    assert err.value.body["param"] == "page"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        client.vector_stores.search(vector_store_id=vs_id, query=query, extra_body={"page": "!!"})


# --- file content ----------------------------------------------------------------------------


def test_file_content_with_chunk_metadata_and_embeddings(
    ls: LlamaStackClient, client: openai.OpenAI
) -> None:
    vs = client.vector_stores.create(
        name="content", extra_body={"embedding_model": EMBEDDING_MODEL}
    )
    file_id = upload(client, "tapir.txt", "Tapirs are shy forest animals.")
    client.vector_stores.files.create(
        vector_store_id=vs.id, file_id=file_id, attributes={"kind": "mammal"}
    )
    plain = ls.vector_stores.files.content(file_id=file_id, vector_store_id=vs.id).data
    assert [p.text for p in plain] == ["Tapirs are shy forest animals."]
    meta = plain[0].chunk_metadata
    assert meta is not None and meta.document_id == file_id and meta.source == "tapir.txt"
    assert meta.chunk_id == f"{file_id}#0" and meta.content_token_count
    assert plain[0].embedding is None and plain[0].metadata is None
    full = ls.vector_stores.files.content(
        file_id=file_id, vector_store_id=vs.id, include_embeddings=True, include_metadata=True
    ).data
    expected = fake_embedding("Tapirs are shy forest animals.", 1024)
    assert full[0].embedding == pytest.approx(expected, abs=1e-6)
    assert full[0].metadata == {"document_id": file_id, "filename": "tapir.txt", "kind": "mammal"}
    # The openai SDK reads the same page (its extra fields kept).
    parts = list(client.vector_stores.files.content(file_id=file_id, vector_store_id=vs.id))
    assert parts[0].text == plain[0].text
    assert parts[0].chunk_metadata["document_id"] == file_id  # type: ignore[attr-defined]


# --- unknown file ids ------------------------------------------------------------------------


def test_an_unknown_file_id_fails_alone(client: openai.OpenAI) -> None:
    good = upload(client, "okapi.txt", "Okapis are related to giraffes.")
    vs = client.vector_stores.create(
        name="partial",
        file_ids=[good, "file-doesnotexist"],
        extra_body={"embedding_model": EMBEDDING_MODEL},
    )
    assert vs.file_counts.completed == 1 and vs.file_counts.failed == 1
    missing = client.vector_stores.files.retrieve(
        file_id="file-doesnotexist", vector_store_id=vs.id
    )
    assert missing.status == "failed" and missing.last_error is not None
    assert missing.last_error.code == "invalid_file"
    assert "file-doesnotexist" in missing.last_error.message
    other = upload(client, "ibex.txt", "Ibexes climb steep cliffs.")
    batch = client.vector_stores.file_batches.create(
        vector_store_id=vs.id, file_ids=["file-alsomissing", other]
    )
    assert batch.status == "completed"
    assert batch.file_counts.completed == 1 and batch.file_counts.failed == 1
    hits = client.vector_stores.search(vector_store_id=vs.id, query="ibexes climb cliffs")
    assert hits.data[0].file_id == other
    failed = client.vector_stores.file_batches.list_files(
        batch_id=batch.id, vector_store_id=vs.id, filter="failed"
    )
    assert [f.id for f in failed.data] == ["file-alsomissing"]
    # Found by the schema fuzz: a batch goes on past an unknown id, so a chunking number that
    # is not a JSON integer must be refused up front, not coerced.
    for size in ("800", 800.0):
        with pytest.raises(openai.BadRequestError):
            client.vector_stores.file_batches.create(
                vector_store_id=vs.id,
                file_ids=["file-alsomissing"],
                chunking_strategy={
                    "type": "static",
                    "static": {"max_chunk_size_tokens": size, "chunk_overlap_tokens": 100},  # type: ignore[typeddict-item]
                },
            )


# --- ranking options -------------------------------------------------------------------------


def test_llama_stack_ranker_options(
    ls: LlamaStackClient, client: openai.OpenAI, animals: tuple[str, dict[str, str]]
) -> None:
    vs_id, _ = animals
    query = "whales swim in salt water"
    vector = client.vector_stores.search(vector_store_id=vs_id, query=query)
    weighted = ls.vector_stores.search(
        vector_store_id=vs_id,
        query=query,
        search_mode="hybrid",
        ranking_options={"ranker": "weighted", "weights": {"vector": 1.0, "keyword": 0.0}},
    )
    # All the weight on the vector score: the hybrid scores are the vector scores.
    assert weighted.data[0].file_id == vector.data[0].file_id
    assert weighted.data[0].score == pytest.approx(vector.data[0].score, abs=1e-5)
    with pytest.raises(LsBadRequest) as err:
        ls.vector_stores.search(
            vector_store_id=vs_id,
            query=query,
            ranking_options={"ranker": "neural", "model": "some-reranker"},
        )
    body = err.value.body["error"]  # type: ignore[index]
    assert body["code"] == "unsupported_ranker" and "some-reranker" in body["message"]
    assert body["param"] == "ranking_options.ranker"
    with pytest.raises(openai.BadRequestError) as no_model:
        client.vector_stores.search(
            vector_store_id=vs_id,
            query=query,
            ranking_options={"ranker": "neural"},  # type: ignore[typeddict-item]
        )
    assert no_model.value.body["param"] == "ranking_options.model"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        client.vector_stores.search(
            vector_store_id=vs_id,
            query=query,
            ranking_options={"ranker": "bogus"},  # type: ignore[typeddict-item]
        )


# --- expiry ----------------------------------------------------------------------------------


def age_store(home: Path, store_id: str, seconds: int) -> None:
    """Make a store's last activity ``seconds`` older, in the server's own Records (as if it
    had sat idle that long)."""
    from llamda.config import SqliteRecords
    from llamda.context import tenant_scope
    from llamda.storage.records import build_records

    async def age() -> None:
        records = build_records(SqliteRecords(type="sqlite", path=str(home / "records.sqlite3")))
        try:
            with tenant_scope("default"):
                record = await records.get("vector_stores", store_id)
                assert record is not None
                record["last_active_at"] -= seconds
                await records.put("vector_stores", store_id, record)
        finally:
            await records.close()

    asyncio.run(age())


def test_expired_stores_are_reaped_by_the_maintenance_loop(
    server: LiveServer, client: openai.OpenAI
) -> None:
    file_id = upload(client, "gnu.txt", "Gnus migrate across the Serengeti.")
    expiring = client.vector_stores.create(
        name="expiring",
        file_ids=[file_id],
        expires_after={"anchor": "last_active_at", "days": 1},
        extra_body={"embedding_model": EMBEDDING_MODEL},
    )
    live = client.vector_stores.create(
        name="live",
        expires_after={"anchor": "last_active_at", "days": 1},
        extra_body={"embedding_model": EMBEDDING_MODEL},
    )
    assert expiring.expires_at is not None
    age_store(server.home, expiring.id, 2 * 86_400)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            client.vector_stores.retrieve(expiring.id)
        except openai.NotFoundError:
            break
        time.sleep(0.1)
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.retrieve(expiring.id)
    # The loop that deleted it has seen the live store too: it stays, and the File stays.
    assert client.vector_stores.retrieve(live.id).status == "completed"
    assert client.files.retrieve(file_id).id == file_id
    assert expiring.id not in [s.id for s in client.vector_stores.list(limit=100)]


# --- the AWS path: attaches queued for the ingest function -----------------------------------


def test_queued_attaches_keep_contextual_chunking_and_fail_unknown_files_at_once(
    tmp_path: Path, fake_bedrock: FakeBedrockServer, moto_endpoint: str, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """With ``ingest_queue_url`` (AWS), a batch queues its known files only (an unknown id is
    ``failed`` at once), and the ingest function's job carries the contextual strategy."""
    import boto3

    from llamda.api.models import RegisterModelRequest
    from llamda.api.vector_stores import CreateVectorStoreRequest, StaticChunkingStrategy
    from llamda.config import load_config
    from llamda.stack import Stack
    from tests.configs import vector_config

    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    queue = sqs.create_queue(QueueName=f"ingest-{tmp_path.name[-8:]}")["QueueUrl"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    config = tmp_path / "run.yaml"
    config.write_text(
        vector_config(tmp_path, fake_bedrock.endpoint, vectors=f'ingest_queue_url: "{queue}"')
    )
    fake_bedrock.fake.respond(CONTEXT_LLM, situate)
    strategy = {
        "type": "contextual",
        "contextual": {
            "model_id": "context-llm",
            "max_chunk_size_tokens": 200,
            "chunk_overlap_tokens": 50,
        },
    }

    async def scenario() -> None:
        from pydantic import TypeAdapter

        from llamda.api.vector_stores import ChunkingStrategyParam

        stack = Stack(load_config(config))
        try:
            await stack.models.register(
                RegisterModelRequest(
                    model_id="context-llm",
                    provider_id="fake-bedrock",
                    provider_model_id=CONTEXT_LLM,
                    model_type="llm",
                )
            )
            svc = stack.vector_stores
            store = await svc.create(CreateVectorStoreRequest(name="queued"))
            file = await stack.files.create(
                b"# Capybara Notes\n\nCapybaras are the largest rodents.",
                "capy.md",
                "assistants",
                None,
            )
            chunking = TypeAdapter(ChunkingStrategyParam).validate_python(strategy)
            batch = await svc.create_batch(store.id, [file.id, "file-ghost"], {}, chunking)
            assert batch.file_counts.in_progress == 1 and batch.file_counts.failed == 1
            ghost = await svc.get_file(store.id, "file-ghost")
            assert ghost.status == "failed" and ghost.last_error is not None
            jobs = []
            while got := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get(
                "Messages", []
            ):
                jobs += [json.loads(m["Body"]) for m in got]
                for m in got:
                    sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
            assert [j["file_id"] for j in jobs] == [file.id]  # the unknown id was not queued
            done = await svc.run_job(jobs[0])
            assert done is not None and done.status == "completed", done
            assert not isinstance(done.chunking_strategy, StaticChunkingStrategy)
            (part,) = (await svc.file_content(store.id, file.id)).data
            assert part.text.startswith("From the guide Capybara Notes, the part on")
        finally:
            await stack.close()

    asyncio.run(scenario())


def test_the_maintenance_step_reaps_expired_stores_of_every_tenant(
    tmp_path: Path, fake_bedrock: FakeBedrockServer
) -> None:
    """What the scheduled function runs (``maintain``), over a local stack, with its clock
    moved on: each tenant's expired stores go; live ones, and ones whose expiry was lifted,
    stay."""
    from llamda.api.vector_stores import (
        CreateVectorStoreRequest,
        ExpiresAfter,
        UpdateVectorStoreRequest,
    )
    from llamda.config import load_config
    from llamda.context import tenant_scope
    from llamda.errors import NotFoundError
    from llamda.services.vector_stores.maintenance import Maintenance
    from llamda.stack import Stack
    from tests.configs import vector_config

    config = tmp_path / "run.yaml"
    config.write_text(vector_config(tmp_path, fake_bedrock.endpoint))
    day = 86_400

    async def scenario() -> None:
        stack = Stack(load_config(config))
        svc = stack.vector_stores
        try:
            made: dict[str, dict[str, str]] = {}
            for tenant in ("acme", "globex"):
                with tenant_scope(tenant):
                    one = ExpiresAfter(days=1)
                    made[tenant] = {
                        "short": (
                            await svc.create(CreateVectorStoreRequest(name="s", expires_after=one))
                        ).id,
                        "long": (
                            await svc.create(
                                CreateVectorStoreRequest(
                                    name="l", expires_after=ExpiresAfter(days=5)
                                )
                            )
                        ).id,
                        "lifted": (
                            await svc.create(CreateVectorStoreRequest(name="x", expires_after=one))
                        ).id,
                    }
                    await svc.update(
                        made[tenant]["lifted"],
                        UpdateVectorStoreRequest.model_validate({"expires_after": None}),
                    )
            later = Maintenance(stack.records, svc.stores, clock=lambda: time.time() + 2 * day)
            await later.run()
            for tenant, ids in made.items():
                with tenant_scope(tenant):
                    with pytest.raises(NotFoundError):
                        await svc.get(ids["short"])
                    assert (await svc.get(ids["long"])).status == "completed"
                    assert (await svc.get(ids["lifted"])).expires_at is None
            # A run now (the real clock) deletes nothing more.
            await svc.maintain()
            with tenant_scope("acme"):
                await svc.get(made["acme"]["long"])
        finally:
            await stack.close()

    asyncio.run(scenario())
