"""Bounded inputs through the live server: every oversize, overdeep or out-of-range value is a
400 in the OpenAI shape naming the field, in plain English; nothing is saved first, and a stored
record that cannot be answered never breaks a listing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from llamda.storage.records_sqlite import SqliteRecordStore
from tests.conftest import TEST_CONFIG, LiveServer, start_server, stop_server
from tests.fakes.bedrock import FakeBedrockServer

STORE = "kb-declared"  # declared in TEST_CONFIG: 1024 dimensions


@pytest.fixture(scope="module")
def server(
    fake_bedrock: FakeBedrockServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """TEST_CONFIG plus a safety provider (shields can be registered)."""
    home = tmp_path_factory.mktemp("bounds")
    config = TEST_CONFIG.replace(
        "providers:\n", "providers:\n  safety:\n    - {provider_id: rules, provider_type: rules}\n"
    )
    (home / "run.yaml").write_text(config)
    live = start_server(home / "run.yaml", home, {"FAKE_BEDROCK_URL": fake_bedrock.endpoint})
    yield live
    stop_server(live)


def deep(levels: int) -> dict[str, Any]:
    """``{"a": {"a": ... {}}}``: ``levels`` nested objects."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def post(server: LiveServer, path: str, body: Any) -> httpx.Response:
    """Bodies as raw JSON text, so NaN, Infinity and huge integers go over the wire as
    Python's json module (and many clients) write them."""
    return httpx.post(
        f"{server.url}{path}",
        content=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        timeout=30,
    )


def assert_400(reply: httpx.Response, param: str, fragment: str) -> None:
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param, error
    assert fragment in error["message"], error["message"]
    # English, not pydantic's union internals.
    for noise in ("function-after", "function-before", "ComparisonFilter", "CompoundFilter"):
        assert noise not in error["message"]


@pytest.mark.parametrize(
    ("kind", "path", "body", "listing"),
    [
        (
            "model",
            "/v1/models",
            {"model_id": "deep-meta", "provider_id": "fake-vllm", "metadata": deep(300)},
            "/v1/models",
        ),
        (
            "shield",
            "/v1/shields",
            {"shield_id": "deep-params", "provider_id": "rules", "params": deep(300)},
            "/v1/shields",
        ),
        (
            "store",
            "/v1/vector_stores",
            {"name": "deep-store", "metadata": {"k": deep(300)}},
            "/v1/vector_stores",
        ),
    ],
)
def test_deep_json_is_refused_and_never_saved(
    server: LiveServer, kind: str, path: str, body: dict[str, Any], listing: str
) -> None:
    field = "metadata" if kind != "shield" else "params"
    assert_400(post(server, path, body), field, "deeper than 32 levels")
    listed = httpx.get(f"{server.url}{listing}")
    assert listed.status_code == 200, listed.text
    assert "deep-" not in listed.text  # nothing of the refused request was saved
    if kind == "model":
        assert httpx.get(f"{server.url}/v1/models/deep-meta").status_code == 404


def test_metadata_at_the_limits_is_accepted(server: LiveServer) -> None:
    ok = post(
        server,
        "/v1/models",
        {"model_id": "deep-32", "provider_id": "fake-vllm", "metadata": deep(32)},
    )
    assert ok.status_code == 200, ok.text
    assert httpx.get(f"{server.url}/v1/models").status_code == 200
    big = {"model_id": "big", "provider_id": "fake-vllm", "metadata": {"x": "y" * 17_000}}
    assert_400(post(server, "/v1/models", big), "metadata", "larger than 16384 bytes")
    many = {"model_id": "many", "provider_id": "fake-vllm", "metadata": {"x": [{}] * 600}}
    # 600 empty objects are 0 keys: fine; 600 keys are not.
    assert post(server, "/v1/models", many).status_code == 200
    keys = {"model_id": "keys", "provider_id": "fake-vllm", "metadata": {"x": [{"k": 1}] * 600}}
    assert_400(post(server, "/v1/models", keys), "metadata", "more than 512 keys")


def test_an_unreadable_stored_record_never_breaks_the_listing(server: LiveServer) -> None:
    """A record saved before the bounds existed (300 levels deep) is left out of the list, its
    GET says what to do, and it can be deleted."""
    record = {
        "model_id": "legacy-deep",
        "provider_id": "fake-vllm",
        "provider_model_id": "legacy-deep",
        "model_type": "llm",
        "metadata": deep(300),
        "created": 1,
    }
    store = SqliteRecordStore(server.home / "records.sqlite3")
    asyncio.run(store.put("models", "legacy-deep", record))
    listed = httpx.get(f"{server.url}/v1/models")
    assert listed.status_code == 200, listed.text
    assert "legacy-deep" not in {m["id"] for m in listed.json()["data"]}
    got = httpx.get(f"{server.url}/v1/models/legacy-deep")
    assert got.status_code == 409 and got.json()["error"]["code"] == "model_unreadable"
    assert httpx.delete(f"{server.url}/v1/models/legacy-deep").status_code == 200


SEARCH = f"/v1/vector_stores/{STORE}/search"


def _nested_filter(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "eq", "key": "a", "value": 1}
    for _ in range(levels - 1):
        node = {"type": "and", "filters": [node]}
    return node


@pytest.mark.parametrize(
    ("path", "body", "param", "fragment"),
    [
        # Integers storage cannot hold.
        (
            "/v1/vector_stores",
            {"embedding_dimension": 2**31},
            "embedding_dimension",
            "less than or equal to 16384",
        ),
        (
            "/v1/models",
            {
                "model_id": "emb",
                "provider_id": "fake-bedrock",
                "model_type": "embedding",
                "metadata": {"embedding_dimension": 2**31},
            },
            "metadata.embedding_dimension",
            "from 1 to 16384",
        ),
        (
            "/v1/vector-io/insert",
            {
                "vector_store_id": STORE,
                "chunks": [
                    {
                        "content": "x",
                        "chunk_id": "c",
                        "chunk_metadata": {"content_token_count": 2**31},
                    }
                ],
            },
            "chunks[0].chunk_metadata.content_token_count",
            "less than or equal to 2147483647",
        ),
        (
            "/v1/vector-io/insert",
            {
                "vector_store_id": STORE,
                "ttl_seconds": 2**63,
                "chunks": [{"content": "x", "chunk_id": "c"}],
            },
            "ttl_seconds",
            "less than or equal to",
        ),
        # Non-finite numbers.
        (
            "/v1/vector-io/insert",
            {
                "vector_store_id": STORE,
                "chunks": [{"content": "x", "chunk_id": "c", "embedding": [float("nan")] * 1024}],
            },
            "chunks[0].embedding[0]",
            "finite",
        ),
        (
            "/v1/vector-io/insert",
            {
                "vector_store_id": STORE,
                "chunks": [{"content": "x", "chunk_id": "c", "metadata": {"w": float("inf")}}],
            },
            "chunks[0].metadata",
            "finite",
        ),
        (
            f"/v1/vector_stores/{STORE}/files",
            {"file_id": "file-x", "attributes": {"w": float("nan")}},
            "attributes.w",
            "finite",
        ),
        # Filters: values, nesting, shape.
        (
            SEARCH,
            {"query": "q", "filters": {"type": "eq", "key": "a", "value": 2**70}},
            "filters.value",
            "64 bits",
        ),
        (
            SEARCH,
            {"query": "q", "filters": {"type": "gt", "key": "a", "value": float("nan")}},
            "filters.value",
            "finite",
        ),
        (
            SEARCH,
            {"query": "q", "filters": {"type": "lt", "key": "a", "value": float("-inf")}},
            "filters.value",
            "finite",
        ),
        (
            SEARCH,
            {"query": "q", "filters": {"type": "in", "key": "a", "value": [1, 10**30]}},
            "filters.value",
            "64 bits",
        ),
        (SEARCH, {"query": "q", "filters": _nested_filter(9)}, "filters", "deeper than 8 levels"),
        (
            SEARCH,
            {"query": "q", "filters": {"type": "eq", "key": "a", "value": ["x"]}},
            "filters",
            "eq needs a string, number or boolean value",
        ),
        (
            SEARCH,
            {"query": "q", "filters": {"type": "and", "filters": [{"type": "eq", "key": "a"}]}},
            "filters.filters[0].value",
            "Field required",
        ),
        # Queries.
        (SEARCH, {"query": "q" * 9000}, "query", "longer than 8192 characters"),
        (SEARCH, {"query": ["ok", "q" * 9000]}, "query[1]", "longer than 8192 characters"),
        (SEARCH, {"query": 5}, "query", "a valid string or a valid list"),
        (
            "/v1/vector-io/query",
            {"vector_store_id": STORE, "query": "q" * 9000},
            "query",
            "longer than 8192",
        ),
        # vector-io params: typed and bounded.
        (
            "/v1/vector-io/query",
            {"vector_store_id": STORE, "query": "q", "params": {"reranker_params": "fast"}},
            "params.reranker_params",
            "valid dictionary",
        ),
        (
            "/v1/vector-io/query",
            {
                "vector_store_id": STORE,
                "query": "q",
                "params": {"reranker_type": "weighted", "reranker_params": {"alpha": 3}},
            },
            "params.reranker_params.alpha",
            "less than or equal to 1",
        ),
        (
            "/v1/vector-io/query",
            {"vector_store_id": STORE, "query": "q", "params": {"max_chunks": 0}},
            "params.max_chunks",
            "greater than or equal to 1",
        ),
        (
            "/v1/vector-io/query",
            {"vector_store_id": STORE, "query": "q", "params": {"max_chunks": 10**6}},
            "params.max_chunks",
            "less than or equal to 1000",
        ),
        # Free-form maps elsewhere.
        (
            "/v1/safety/run-shield",
            {"shield_id": "s", "messages": [{"role": "user", "content": "hi", "extra": deep(300)}]},
            "messages[0]",
            "deeper than 32 levels",
        ),
        (
            "/v1/chat/completions",
            {
                "model": "meta-llama/Llama-3.2-3B-Instruct",
                "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "function", "function": {"name": "f", "parameters": deep(300)}}],
            },
            "tools[0].function.parameters",
            "deeper than 32 levels",
        ),
        (
            "/v1/chat/completions",
            {
                "model": "meta-llama/Llama-3.2-3B-Instruct",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 2**40,
            },
            "max_tokens",
            "less than or equal to 2147483647",
        ),
    ],
)
def test_out_of_bounds_is_400_naming_the_field(
    server: LiveServer, path: str, body: dict[str, Any], param: str, fragment: str
) -> None:
    assert_400(post(server, path, body), param, fragment)


def test_bounded_params_still_work(server: LiveServer) -> None:
    """The typed params keep Llama Stack's query working (hybrid, weighted alpha)."""
    inserted = post(
        server,
        "/v1/vector-io/insert",
        {
            "vector_store_id": STORE,
            "chunks": [
                {
                    "content": "the bounded llama",
                    "chunk_id": "bounded-1",
                    "metadata": {"document_id": "d"},
                }
            ],
        },
    )
    assert inserted.status_code == 200, inserted.text
    reply = post(
        server,
        "/v1/vector-io/query",
        {
            "vector_store_id": STORE,
            "query": "llama",
            "params": {
                "max_chunks": 3,
                "mode": "hybrid",
                "reranker_type": "weighted",
                "reranker_params": {"alpha": 0.3},
                "score_threshold": -1,
            },
        },
    )
    assert reply.status_code == 200, reply.text
    assert [c["chunk_id"] for c in reply.json()["chunks"]] == ["bounded-1"]


def test_embeddings_requests_are_bounded_and_big_ones_are_batched(
    server: LiveServer, fake_bedrock: FakeBedrockServer
) -> None:
    """2048 inputs at most (OpenAI's limit), each and all of them bounded; a big request goes
    upstream in bounded batches and comes back whole, in order."""
    model = "amazon.titan-embed-text-v2:0"
    too_many = post(server, "/v1/embeddings", {"model": model, "input": ["x"] * 2049})
    assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "input"
    # The whole request's characters are bounded too (checked on the model: such a body is
    # over this server's body limit anyway, a 413).
    from pydantic import ValidationError

    from llamda.api.inference import EmbeddingsRequest

    with pytest.raises(ValidationError, match="at most"):
        EmbeddingsRequest.model_validate({"model": model, "input": ["z" * 99_000] * 21})
    with pytest.raises(ValidationError):  # one text
        EmbeddingsRequest.model_validate({"model": model, "input": "y" * 100_001})
    texts = [f"text number {i}" for i in range(300)]
    reply = post(server, "/v1/embeddings", {"model": model, "input": texts})
    assert reply.status_code == 200, reply.text
    data = reply.json()["data"]
    assert [d["index"] for d in data] == list(range(300))
    # Each vector is the one for its own text (the fake embeds deterministically by content).
    single = post(server, "/v1/embeddings", {"model": model, "input": texts[257]}).json()
    assert data[257]["embedding"] == single["data"][0]["embedding"]


LONE_SURROGATE_BODIES = [
    (
        "/v1/chat/completions",
        '{"model": "meta-llama/Llama-3.2-3B-Instruct",'
        ' "messages": [{"role": "user", "content": "hi \\ud800 there"}]}',
    ),
    ("/v1/vector_stores", '{"name": "kb-\\udfff"}'),
    ("/v1/models", '{"model_id": "m-\\ud83d", "provider_id": "fake-vllm"}'),
    ("/v1/moderations", '{"input": "\\udc00", "model": "rules"}'),
]


@pytest.mark.parametrize(("path", "body"), LONE_SURROGATE_BODIES)
def test_a_lone_surrogate_escape_is_a_400_and_nothing_is_saved(
    server: LiveServer, path: str, body: str
) -> None:
    """JSON lets ``\\ud800`` stand alone, but no UTF-8 text holds it: every JSON body with one
    is refused at the door (not a 500 when it reaches storage or an upstream)."""
    before = httpx.get(f"{server.url}{path}", timeout=30) if path != "/v1/moderations" else None
    reply = httpx.post(
        f"{server.url}{path}",
        content=body.encode(),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "surrogate" in error["message"]
    if before is not None and before.status_code == 200:
        after = httpx.get(f"{server.url}{path}", timeout=30)
        assert after.json() == before.json()


def test_a_surrogate_pair_is_text_and_goes_through(server: LiveServer) -> None:
    """An escaped pair (an emoji, as ``json.dumps`` writes it) is valid text: not refused."""
    reply = httpx.post(
        f"{server.url}/v1/vector_stores",
        content=json.dumps({"name": "kb-😀"}).encode(),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["name"] == "kb-😀"
