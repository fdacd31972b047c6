"""Vector stores and vector-io with the openai SDK and llama-stack-client against the live
local server (LanceDB in a local dir, embeddings from the fake Bedrock's Titan)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import httpx
import openai
import pytest
from llama_stack_client import LlamaStackClient

from tests.configs import backend_params, start_backend, with_backend
from tests.conftest import TEST_CONFIG, LiveServer, start_server, stop_server
from tests.fakes.bedrock import FakeBedrockServer, fake_embedding
from tests.pdf import make_pdf

EMBEDDING_MODEL = "amazon.titan-embed-text-v2:0"

DOCS = {
    "llamas.md": (
        "# Llamas\n\nLlamas are domesticated camelids from the Andes. They carry packs "
        "and their wool is soft.",
        {"animal": "llama", "year": 2021, "public": True},
    ),
    "ocean.txt": (
        "The ocean covers most of the planet. Whales and dolphins swim in salt water.",
        {"animal": "whale", "year": 2019, "public": False},
    ),
    "desert.html": (
        "<html><head><script>var hidden='cactus';</script></head><body><h1>Deserts"
        "</h1><p>Camels cross the hot desert sand with little water.</p></body></html>",
        {"animal": "camel", "year": 2023, "public": True},
    ),
}


@pytest.fixture(scope="module", params=backend_params())
def live_server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    fake_bedrock: FakeBedrockServer,
) -> Iterator[LiveServer]:
    """This module's server: the suite runs once per vector backend (tests/configs.py)."""
    start_backend(request, request.param)
    home = tmp_path_factory.mktemp(f"vectors-{request.param}")
    config = home / "run.yaml"
    config.write_text(with_backend(TEST_CONFIG, request.param))
    server = start_server(config, home, {"FAKE_BEDROCK_URL": fake_bedrock.endpoint})
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def client(live_server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server.url}/v1", api_key="unused", max_retries=0)


def upload(client: openai.OpenAI, name: str, data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return client.files.create(file=(name, io.BytesIO(raw)), purpose="assistants").id


@pytest.fixture(scope="module")
def store(client: openai.OpenAI) -> tuple[str, dict[str, str]]:
    """A store with three documents, each with attributes."""
    vs = client.vector_stores.create(
        name="animals", extra_body={"embedding_model": EMBEDDING_MODEL}
    )
    ids = {}
    for name, (text, attributes) in DOCS.items():
        file_id = upload(client, name, text)
        attached = client.vector_stores.files.create(
            vector_store_id=vs.id, file_id=file_id, attributes=attributes
        )
        assert attached.status == "completed", attached.last_error
        ids[name] = file_id
    return vs.id, ids


def test_create_with_file_ids_counts_and_usage(client: openai.OpenAI) -> None:
    ids = [upload(client, f"doc{i}.txt", f"document number {i} about alpacas") for i in range(3)]
    vs = client.vector_stores.create(name="with-files", file_ids=ids)
    assert vs.file_counts.total == 3 and vs.file_counts.completed == 3
    assert vs.usage_bytes > 0 and vs.status == "completed"
    listed = client.vector_stores.files.list(vector_store_id=vs.id)
    assert sorted(f.id for f in listed.data) == sorted(ids)
    fetched = client.vector_stores.retrieve(vs.id)
    assert fetched.usage_bytes == vs.usage_bytes
    assert vs.id in [s.id for s in client.vector_stores.list(limit=100)]
    updated = client.vector_stores.update(vs.id, name="renamed", metadata={"team": "ml"})
    assert updated.name == "renamed" and updated.metadata == {"team": "ml"}
    assert client.vector_stores.delete(vs.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.retrieve(vs.id)


def test_search_vector_finds_the_right_document(client: openai.OpenAI, store) -> None:
    vs_id, ids = store
    results = client.vector_stores.search(vector_store_id=vs_id, query="whales dolphins salt water")
    assert results.data[0].file_id == ids["ocean.txt"]
    assert results.data[0].filename == "ocean.txt"
    assert "Whales" in results.data[0].content[0].text
    assert results.data[0].attributes["animal"] == "whale"
    assert 0 < results.data[0].score <= 1
    assert [r.score for r in results.data] == sorted((r.score for r in results.data), reverse=True)
    # The score is the cosine similarity of the fake's deterministic embeddings.
    q = fake_embedding("whales dolphins salt water", 1024)
    d = fake_embedding(DOCS["ocean.txt"][0], 1024)
    assert results.data[0].score == pytest.approx(
        sum(a * b for a, b in zip(q, d, strict=True)), abs=1e-3
    )


def test_html_scripts_are_not_indexed(client: openai.OpenAI, store) -> None:
    vs_id, ids = store
    content = client.vector_stores.files.content(file_id=ids["desert.html"], vector_store_id=vs_id)
    text = " ".join(part.text for part in content)
    assert "Camels cross" in text and "cactus" not in text


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"type": "eq", "key": "animal", "value": "camel"}, {"desert.html"}),
        ({"type": "ne", "key": "animal", "value": "camel"}, {"llamas.md", "ocean.txt"}),
        ({"type": "gt", "key": "year", "value": 2020}, {"llamas.md", "desert.html"}),
        ({"type": "lte", "key": "year", "value": 2021}, {"llamas.md", "ocean.txt"}),
        ({"type": "in", "key": "animal", "value": ["whale", "llama"]}, {"llamas.md", "ocean.txt"}),
        ({"type": "nin", "key": "year", "value": [2019, 2023]}, {"llamas.md"}),
        ({"type": "eq", "key": "public", "value": False}, {"ocean.txt"}),
        (
            {
                "type": "and",
                "filters": [
                    {"type": "eq", "key": "public", "value": True},
                    {"type": "lt", "key": "year", "value": 2022},
                ],
            },
            {"llamas.md"},
        ),
        (
            {
                "type": "or",
                "filters": [
                    {"type": "eq", "key": "animal", "value": "whale"},
                    {"type": "gte", "key": "year", "value": 2023},
                ],
            },
            {"ocean.txt", "desert.html"},
        ),
        # A number compared with a string attribute never matches (and is no error).
        ({"type": "gt", "key": "animal", "value": 3}, set()),
        ({"type": "eq", "key": "missing", "value": "x"}, set()),
    ],
)
def test_search_filters_run_in_lancedb(client: openai.OpenAI, store, filters, expected) -> None:
    vs_id, ids = store
    results = client.vector_stores.search(
        vector_store_id=vs_id, query="animals", filters=filters, max_num_results=10
    )
    names = {name for name, fid in ids.items() if fid in {r.file_id for r in results.data}}
    assert names == expected


def test_keyword_and_hybrid_search(client: openai.OpenAI, store) -> None:
    vs_id, ids = store
    keyword = client.vector_stores.search(
        vector_store_id=vs_id, query="camels", extra_body={"search_mode": "keyword"}
    )
    assert [r.file_id for r in keyword.data] == [ids["desert.html"]]  # BM25 with stemming
    hybrid = client.vector_stores.search(
        vector_store_id=vs_id,
        query="soft wool from the Andes",
        extra_body={"search_mode": "hybrid"},
        ranking_options={"score_threshold": 0.0},
    )
    assert hybrid.data[0].file_id == ids["llamas.md"]
    assert all(0 < r.score <= 1 for r in hybrid.data)
    weighted = client.vector_stores.search(
        vector_store_id=vs_id,
        query="soft wool from the Andes",
        extra_body={
            "search_mode": "hybrid",
            "ranking_options": {"ranker": "weighted", "alpha": 0.2},
        },
    )
    assert weighted.data[0].file_id == ids["llamas.md"]
    # A threshold above every score leaves nothing.
    none = client.vector_stores.search(
        vector_store_id=vs_id, query="whales", ranking_options={"score_threshold": 0.999}
    )
    assert none.data == []


def test_multi_query_and_max_results(client: openai.OpenAI, store) -> None:
    vs_id, ids = store
    results = client.vector_stores.search(
        vector_store_id=vs_id,
        query=["whales in the ocean", "camels in the desert"],
        max_num_results=2,
    )
    assert {r.file_id for r in results.data} == {ids["ocean.txt"], ids["desert.html"]}
    assert results.search_query == ["whales in the ocean", "camels in the desert"]


def test_file_attributes_update_and_delete_removes_chunks(client: openai.OpenAI) -> None:
    vs = client.vector_stores.create(name="temp")
    file_id = upload(client, "zebra.txt", "Zebras have black and white stripes.")
    client.vector_stores.files.create(vector_store_id=vs.id, file_id=file_id, attributes={"k": "a"})
    updated = client.vector_stores.files.update(
        file_id=file_id, vector_store_id=vs.id, attributes={"k": "b"}
    )
    assert updated.attributes == {"k": "b"}
    hits = client.vector_stores.search(
        vector_store_id=vs.id, query="zebras", filters={"type": "eq", "key": "k", "value": "b"}
    )
    assert [h.file_id for h in hits.data] == [file_id] and hits.data[0].attributes == {"k": "b"}
    assert client.vector_stores.files.delete(file_id=file_id, vector_store_id=vs.id).deleted
    assert client.vector_stores.search(vector_store_id=vs.id, query="zebras").data == []
    assert client.vector_stores.retrieve(vs.id).file_counts.total == 0
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.retrieve(file_id=file_id, vector_store_id=vs.id)


def test_reattach_replaces_chunks_without_duplicates(client: openai.OpenAI) -> None:
    vs = client.vector_stores.create(name="again")
    file_id = upload(client, "long.txt", " ".join(f"word{i}" for i in range(3000)))
    strategy = {
        "type": "static",
        "static": {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 50},
    }
    first = client.vector_stores.files.create(
        vector_store_id=vs.id, file_id=file_id, chunking_strategy=strategy
    )
    again = client.vector_stores.files.create(
        vector_store_id=vs.id, file_id=file_id, chunking_strategy=strategy
    )
    assert first.status == again.status == "completed", (first.last_error, again.last_error)
    assert first.chunking_strategy.static.max_chunk_size_tokens == 200
    parts = list(client.vector_stores.files.content(file_id=file_id, vector_store_id=vs.id))
    # word1234 is 3 WordPiece tokens here; windows of 200 stepping 150 over ~12k tokens.
    assert len(parts) == len({p.text for p in parts}) > 20
    assert client.vector_stores.retrieve(vs.id).file_counts.total == 1


def test_pdf_and_corrupt_files(client: openai.OpenAI) -> None:
    vs = client.vector_stores.create(name="pdfs")
    good = upload(client, "guide.pdf", make_pdf(["Alpacas hum when they are content."]))
    bad = upload(client, "broken.pdf", b"%PDF-1.7 this is not really a pdf")
    binary = upload(client, "image.png", b"\x89PNG\r\n\x1a\n\x00\x00")
    batch = client.vector_stores.file_batches.create(
        vector_store_id=vs.id, file_ids=[good, bad, binary]
    )
    assert batch.status == "completed"
    assert batch.file_counts.completed == 1 and batch.file_counts.failed == 2
    failed = client.vector_stores.files.list(vector_store_id=vs.id, filter="failed").data
    errors = {f.id: f.last_error for f in failed}
    assert errors[bad].code == "invalid_file" and "PDF" in errors[bad].message
    assert errors[binary].code == "unsupported_file"
    hits = client.vector_stores.search(vector_store_id=vs.id, query="alpacas hum")
    assert [h.file_id for h in hits.data] == [good]
    listed = client.vector_stores.file_batches.list_files(batch_id=batch.id, vector_store_id=vs.id)
    assert {f.id for f in listed.data} == {good, bad, binary}
    assert (
        client.vector_stores.file_batches.retrieve(
            batch_id=batch.id, vector_store_id=vs.id
        ).file_counts.total
        == 3
    )
    cancelled = client.vector_stores.file_batches.cancel(batch_id=batch.id, vector_store_id=vs.id)
    assert cancelled.status == "completed"  # finished batches stay as they are


def test_csv_and_json_files(client: openai.OpenAI) -> None:
    vs = client.vector_stores.create(name="data")
    csv_id = upload(client, "prices.csv", "item,price\nhay bale,12\nsaddle,300\n")
    json_id = upload(client, "config.json", json.dumps({"herd": {"name": "andes", "size": 12}}))
    for fid in (csv_id, json_id):
        assert (
            client.vector_stores.files.create(vector_store_id=vs.id, file_id=fid).status
            == "completed"
        )
    hits = client.vector_stores.search(
        vector_store_id=vs.id, query="saddle price", max_num_results=1
    )
    assert hits.data[0].file_id == csv_id and "price: 300" in hits.data[0].content[0].text


def test_bad_input(client: openai.OpenAI, live_server: LiveServer, store) -> None:
    vs_id, _ = store
    with pytest.raises(openai.NotFoundError) as err:
        client.vector_stores.retrieve("vs_doesnotexist")
    assert err.value.body["code"] == "vector_store_not_found"
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.create(vector_store_id=vs_id, file_id="file-000000000000")
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.search(vector_store_id="vs_nope", query="x")
    with pytest.raises(openai.BadRequestError):
        client.vector_stores.search(vector_store_id=vs_id, query="")
    with pytest.raises(openai.BadRequestError):
        client.vector_stores.search(vector_store_id=vs_id, query=[])
    with pytest.raises(openai.BadRequestError):
        client.vector_stores.search(
            vector_store_id=vs_id, query="x", filters={"type": "gt", "key": "year", "value": [1]}
        )
    with pytest.raises(openai.BadRequestError):
        client.vector_stores.search(
            vector_store_id=vs_id, query="x", filters={"type": "in", "key": "year", "value": 3}
        )
    with pytest.raises(openai.BadRequestError):
        client.vector_stores.search(
            vector_store_id=vs_id, query="x", filters={"type": "eq", "key": "a'; DROP", "value": 1}
        )
    with pytest.raises(openai.BadRequestError):
        client.vector_stores.search(vector_store_id=vs_id, query="x", max_num_results=51)
    with pytest.raises(openai.BadRequestError):
        client.vector_stores.create(
            extra_body={"embedding_model": "meta-llama/Llama-3.2-3B-Instruct"}
        )
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.create(extra_body={"embedding_model": "no-such-model"})
    with pytest.raises(openai.BadRequestError):
        client.vector_stores.create(
            chunking_strategy={
                "type": "static",
                "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 90},
            }
        )
    # SQL quotes in values are data, not syntax.
    quoted = client.vector_stores.search(
        vector_store_id=vs_id,
        query="x",
        filters={"type": "eq", "key": "animal", "value": "o'brien"},
    )
    assert quoted.data == []
    r = httpx.post(f"{live_server.url}/v1/vector_stores/{vs_id}/search", content=b"{not json")
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.get(f"{live_server.url}/v1/vector_stores/..%2F..%2Fetc")
    assert r.status_code in (400, 404)


def test_llama_stack_client_vector_io(live_server: LiveServer) -> None:
    client = LlamaStackClient(base_url=live_server.url, max_retries=0)
    vs = client.vector_stores.create(name="ls", extra_body={"embedding_model": EMBEDDING_MODEL})
    texts = ["Guanacos are wild relatives of llamas.", "Penguins live in the southern hemisphere."]
    client.vector_io.insert(
        vector_store_id=vs.id,
        chunks=[
            {
                "chunk_id": f"c{i}",
                "content": text,
                "metadata": {"document_id": f"doc{i}", "topic": "animals"},
                "chunk_metadata": {"document_id": f"doc{i}"},
                "embedding": fake_embedding(text, 1024),
                "embedding_dimension": 1024,
                "embedding_model": EMBEDDING_MODEL,
            }
            for i, text in enumerate(texts)
        ],
    )
    # A chunk without an embedding is embedded by the store's model.
    client.vector_io.insert(
        vector_store_id=vs.id,
        chunks=[
            {
                "chunk_id": "c2",
                "content": {"type": "text", "text": "Condors soar over the Andes."},
                "metadata": {"document_id": "doc2"},
                "chunk_metadata": {},
            }
        ],  # type: ignore[typeddict-item]
    )
    result = client.vector_io.query(vector_store_id=vs.id, query="wild relatives of llamas")
    assert result.chunks[0].chunk_id == "c0" and len(result.chunks) == 3
    assert result.chunks[0].embedding_dimension == 1024 and len(result.chunks[0].embedding) == 1024
    assert result.chunks[0].metadata["topic"] == "animals"
    assert result.scores == sorted(result.scores, reverse=True)
    limited = client.vector_io.query(
        vector_store_id=vs.id, query="condors", params={"max_chunks": 1, "mode": "keyword"}
    )
    assert [c.chunk_id for c in limited.chunks] == ["c2"]
    # Re-inserting a chunk id replaces it (no duplicate).
    client.vector_io.insert(
        vector_store_id=vs.id,
        chunks=[
            {
                "chunk_id": "c2",
                "content": "Condors are vultures.",
                "metadata": {},
                "chunk_metadata": {},
            }
        ],  # type: ignore[typeddict-item]
    )
    everything = client.vector_io.query(
        vector_store_id=vs.id, query="condors", params={"max_chunks": 10}
    )
    assert [c.chunk_id for c in everything.chunks].count("c2") == 1
    assert len(everything.chunks) == 3
    listed = client.vector_stores.list()
    assert vs.id in [s.id for s in listed]
    # A wrong embedding size is a 400, and nothing is written.
    from llama_stack_client import BadRequestError

    with pytest.raises(BadRequestError):
        client.vector_io.insert(
            vector_store_id=vs.id,
            chunks=[
                {
                    "chunk_id": "bad",
                    "content": "x",
                    "embedding": [0.1, 0.2],
                    "metadata": {},
                    "chunk_metadata": {},
                    "embedding_dimension": 2,
                    "embedding_model": "m",
                }
            ],
        )
    assert (
        len(
            client.vector_io.query(
                vector_store_id=vs.id, query="x", params={"max_chunks": 10}
            ).chunks
        )
        == 3
    )


def test_vector_io_ttl_expires_chunks(live_server: LiveServer) -> None:
    import time

    client = LlamaStackClient(base_url=live_server.url, max_retries=0)
    vs = client.vector_stores.create(name="ttl", extra_body={"embedding_model": EMBEDDING_MODEL})
    client.vector_io.insert(
        vector_store_id=vs.id,
        chunks=[
            {"chunk_id": "keep", "content": "Tapirs are shy.", "metadata": {}, "chunk_metadata": {}}
        ],  # type: ignore[list-item]
    )
    client.vector_io.insert(
        vector_store_id=vs.id,
        ttl_seconds=1,
        chunks=[
            {
                "chunk_id": "brief",
                "content": "Tapirs swim well.",
                "metadata": {},
                "chunk_metadata": {},
            }
        ],  # type: ignore[list-item]
    )

    def ids() -> set[str]:
        found = client.vector_io.query(vector_store_id=vs.id, query="tapirs").chunks
        return {c.chunk_id for c in found}

    assert ids() == {"keep", "brief"}
    time.sleep(2.1)
    assert ids() == {"keep"}


def test_store_declared_in_the_run_config(client: openai.OpenAI) -> None:
    vs = client.vector_stores.retrieve("kb-declared")
    assert vs.name == "Declared KB" and vs.file_counts.total == 0
    file_id = upload(client, "okapi.txt", "Okapis are related to giraffes.")
    client.vector_stores.files.create(vector_store_id="kb-declared", file_id=file_id)
    hits = client.vector_stores.search(vector_store_id="kb-declared", query="giraffe relatives")
    assert hits.data[0].file_id == file_id
    assert "kb-declared" in [s.id for s in client.vector_stores.list(limit=100)]
