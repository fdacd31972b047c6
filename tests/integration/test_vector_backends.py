"""Vector backends chosen per store: a stack with LanceDB and FAISS side by side (a live server,
the official SDKs), /v1/providers with each backend's health, a FAISS store whose object store
goes away (503 naming the provider, nothing lost once it is back) and survives a restart, old
stores staying on LanceDB, and the server answering while FAISS's keyword fallback ranks."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from llama_stack_client import LlamaStackClient

from tests.conftest import TEST_CONFIG, LiveServer, start_server, stop_server
from tests.fakes.bedrock import FakeBedrockServer

MODEL = "amazon.titan-embed-text-v2:0"
# Both backends, lancedb first (the default for stores that do not choose).
BOTH = TEST_CONFIG.replace(
    "  vector_io:\n    - provider_id: lancedb\n      provider_type: lancedb\n",
    "  vector_io:\n    - {provider_id: lancedb, provider_type: lancedb}\n"
    "    - {provider_id: faiss, provider_type: inline::faiss}\n",
)

pytestmark = pytest.mark.backends


@pytest.fixture
def server(tmp_path: Path, fake_bedrock: FakeBedrockServer) -> Iterator[LiveServer]:
    assert BOTH != TEST_CONFIG, "TEST_CONFIG's layout changed"
    (tmp_path / "run.yaml").write_text(BOTH)
    live = start_server(
        tmp_path / "run.yaml", tmp_path, {"FAKE_BEDROCK_URL": fake_bedrock.endpoint}
    )
    yield live
    stop_server(live)


def _client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def _store_with(client: openai.OpenAI, provider_id: str | None, text: str) -> str:
    body = {"embedding_model": MODEL} | ({"provider_id": provider_id} if provider_id else {})
    vs = client.vector_stores.create(name=f"on-{provider_id}", extra_body=body)
    file_id = client.files.create(
        file=("doc.txt", io.BytesIO(text.encode())), purpose="assistants"
    ).id
    attached = client.vector_stores.files.create(
        vector_store_id=vs.id, file_id=file_id, attributes={"topic": "animals", "year": 2024}
    )
    assert attached.status == "completed", attached.last_error
    return vs.id


def _faiss_objects(server: LiveServer) -> Path:
    return server.home / "objects" / "tenants" / "default" / "vector_io"


def test_stores_choose_their_backend(server: LiveServer) -> None:
    client = _client(server)
    on_faiss = _store_with(client, "faiss", "Alpacas hum when they are content.")
    on_default = _store_with(client, None, "Camels cross the desert.")
    # Each store's chunks went to its own backend: FAISS saved one object, LanceDB one table.
    saved = list(_faiss_objects(server).rglob("*.faiss"))
    assert [p.stem for p in saved] == [on_faiss]
    assert (server.home / "lancedb" / "tenants" / "default" / f"{on_default}.lance").is_dir()
    assert not (server.home / "lancedb" / "tenants" / "default" / f"{on_faiss}.lance").exists()

    for store, word in ((on_faiss, "Alpacas"), (on_default, "Camels")):
        for mode in ("vector", "keyword", "hybrid"):
            found = client.vector_stores.search(
                vector_store_id=store,
                query=word.lower(),
                extra_body={"search_mode": mode},
                filters={"type": "gte", "key": "year", "value": 2024},
            )
            assert [word in r.content[0].text for r in found.data] == [True], (store, mode)
        none = client.vector_stores.search(
            vector_store_id=store,
            query=word,
            filters={"type": "eq", "key": "topic", "value": "plants"},
        )
        assert none.data == []

    # Llama Stack's client passes the provider the same way (extra_body).
    ls = LlamaStackClient(base_url=server.url, max_retries=0)
    made = ls.vector_stores.create(
        name="ls", extra_body={"provider_id": "faiss", "embedding_model": MODEL}
    )
    ls.vector_io.insert(
        vector_store_id=made.id,
        chunks=[{"content": "Llamas spit.", "chunk_id": "c1", "metadata": {"document_id": "d"}}],
    )
    hits = ls.vector_io.query(vector_store_id=made.id, query="llamas", params={"mode": "keyword"})
    assert [c.chunk_id for c in hits.chunks] == ["c1"] and hits.chunks[0].embedding


def test_unknown_provider_is_a_400_naming_it(server: LiveServer) -> None:
    r = httpx.post(
        f"{server.url}/v1/vector_stores",
        json={"name": "x", "provider_id": "pgvector-nope", "embedding_model": MODEL},
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert "pgvector-nope" in error["message"] and error["param"] == "provider_id"
    assert "faiss" in error["message"]  # what is configured
    listed = httpx.get(f"{server.url}/v1/vector_stores").json()["data"]
    assert [s for s in listed if s["name"] == "x"] == []  # nothing was written


def test_providers_lists_each_backend_with_its_health(server: LiveServer) -> None:
    providers = httpx.get(f"{server.url}/v1/providers").json()["data"]
    vector = {p["provider_id"]: p for p in providers if p["api"] == "vector_io"}
    assert {k: v["provider_type"] for k, v in vector.items()} == {
        "lancedb": "inline::lancedb",
        "faiss": "inline::faiss",
    }
    assert vector["faiss"]["health"]["status"] == "OK"
    assert vector["lancedb"]["health"]["status"] == "OK"
    # The object store's root made unusable: FAISS's probe says so.
    objects = server.home / "objects"
    objects.mkdir(exist_ok=True)
    shutil.move(objects, server.home / "objects-away")
    objects.write_text("not a directory")
    try:
        one = httpx.get(f"{server.url}/v1/providers/faiss").json()
        assert one["health"]["status"] == "Error", one
    finally:
        objects.unlink()
        shutil.move(server.home / "objects-away", objects)
    assert httpx.get(f"{server.url}/v1/providers/faiss").json()["health"]["status"] == "OK"


def test_faiss_object_store_down_is_a_503_and_nothing_is_lost(
    server: LiveServer, fake_bedrock: FakeBedrockServer
) -> None:
    client = _client(server)
    store = _store_with(client, "faiss", "Alpacas hum when they are content.")
    saved = _faiss_objects(server)
    away = server.home / "vector_io-away"

    shutil.move(saved, away)  # the object store loses its FAISS folder: writes cannot land
    saved.write_text("in the way")
    try:
        r = httpx.post(
            f"{server.url}/v1/vector-io/insert",
            json={
                "vector_store_id": store,
                "chunks": [{"content": "Yaks climb.", "chunk_id": "y", "metadata": {}}],
            },
        )
        assert r.status_code == 503, r.text
        error = r.json()["error"]
        assert "'faiss'" in error["message"] and "unavailable" in error["message"]
        # The failed write dropped the loaded copy, so reads go to storage too: 503, not stale.
        r = httpx.post(f"{server.url}/v1/vector_stores/{store}/search", json={"query": "alpacas"})
        assert r.status_code == 503 and "'faiss'" in r.json()["error"]["message"]
        assert "/objects" not in r.text and str(server.home) not in r.text  # no paths leak
    finally:
        saved.unlink()
        shutil.move(away, saved)

    # Back: what was stored before is all there, and writes work again.
    found = client.vector_stores.search(vector_store_id=store, query="alpacas")
    assert [r.content[0].text for r in found.data] == ["Alpacas hum when they are content."]
    r = httpx.post(
        f"{server.url}/v1/vector-io/insert",
        json={
            "vector_store_id": store,
            "chunks": [{"content": "Yaks climb.", "chunk_id": "y", "metadata": {}}],
        },
    )
    assert r.status_code == 200, r.text

    # And a restart (a new process loads the store from the object store) keeps both.
    stop_server(server)
    again = start_server(
        server.home / "run.yaml", server.home, {"FAKE_BEDROCK_URL": fake_bedrock.endpoint}
    )
    try:
        client = _client(again)
        texts = {
            r.content[0].text
            for r in client.vector_stores.search(
                vector_store_id=store, query="animals", max_num_results=10
            ).data
        }
        assert texts == {"Alpacas hum when they are content.", "Yaks climb."}
    finally:
        stop_server(again)
        server.process = again.process  # the fixture's stop is then a no-op on a dead process


def test_stores_made_before_the_choice_stay_on_lancedb(
    tmp_path: Path, fake_bedrock: FakeBedrockServer
) -> None:
    """A store whose record has no provider_id (written before stores chose one) keeps being
    served by LanceDB after FAISS is configured first (the default for new stores)."""
    import asyncio

    from llamda.config import load_config
    from llamda.storage.records import build_records

    env = {"FAKE_BEDROCK_URL": fake_bedrock.endpoint}
    (tmp_path / "run.yaml").write_text(TEST_CONFIG)  # lancedb only, as before
    live = start_server(tmp_path / "run.yaml", tmp_path, env)
    try:
        old = _store_with(_client(live), None, "Alpacas hum when they are content.")
    finally:
        stop_server(live)

    async def as_before() -> None:  # the record as older versions wrote it
        config = load_config(tmp_path / "run.yaml", env={**env, "LLAMDA_HOME": str(tmp_path)})
        records = build_records(config.storage.records)
        record = await records.get("vector_stores", old)
        assert record is not None and record.pop("provider_id") == "lancedb"
        await records.put("vector_stores", old, record)
        await records.close()

    asyncio.run(as_before())
    faiss_first = BOTH.replace(
        "    - {provider_id: lancedb, provider_type: lancedb}\n"
        "    - {provider_id: faiss, provider_type: inline::faiss}\n",
        "    - {provider_id: faiss, provider_type: inline::faiss}\n"
        "    - {provider_id: lancedb, provider_type: lancedb}\n",
    )
    assert faiss_first != BOTH
    (tmp_path / "run.yaml").write_text(faiss_first)
    live = start_server(tmp_path / "run.yaml", tmp_path, env)
    try:
        client = _client(live)
        found = client.vector_stores.search(vector_store_id=old, query="alpacas")
        assert [r.content[0].text for r in found.data] == ["Alpacas hum when they are content."]
        new = _store_with(client, None, "Camels cross the desert.")
        assert [p.stem for p in _faiss_objects(live).rglob("*.faiss")] == [new]
    finally:
        stop_server(live)


def test_a_long_keyword_ranking_never_blocks_the_server(
    tmp_path: Path, fake_bedrock: FakeBedrockServer
) -> None:
    """FAISS has no full-text index, so keyword ranking is the service's BM25 over every row
    (O(store)); it runs in a worker thread. Ordering check on the server's log: health checks
    sent while a hybrid search is past its embedding call are answered before that search
    ends (were the ranking on the event loop, they would wait for it)."""
    import asyncio
    import random
    import threading
    import time

    from llamda.config import load_config
    from llamda.providers.vector_io.index import ChunkRow, IndexContext, build_index
    from llamda.storage.objects import build_objects

    env = {"FAKE_BEDROCK_URL": fake_bedrock.endpoint}
    (tmp_path / "run.yaml").write_text(BOTH)
    live = start_server(tmp_path / "run.yaml", tmp_path, env)
    try:
        store = (
            _client(live)
            .vector_stores.create(
                name="big", extra_body={"provider_id": "faiss", "embedding_model": MODEL}
            )
            .id
        )
    finally:
        stop_server(live)

    async def fill() -> None:  # 10,000 chunks of 300 words, written by the provider itself
        config = load_config(tmp_path / "run.yaml", env={**env, "LLAMDA_HOME": str(tmp_path)})
        entry = next(e for e in config.providers["vector_io"] if e.provider_id == "faiss")
        index = build_index(
            entry, IndexContext(config.storage.vectors, build_objects(config.storage.objects))
        )
        rng = random.Random(5)
        words = [f"w{i}" for i in range(3000)]
        rows = [
            ChunkRow(
                f"c{i}", "f", "f.txt", i, 300, " ".join(rng.choices(words, k=300)),
                [rng.random() for _ in range(1024)],
            )
            for i in range(10_000)
        ]  # fmt: skip
        await index.upsert(store, rows, 1024)
        await index.close()

    asyncio.run(fill())
    live = start_server(tmp_path / "run.yaml", tmp_path, env)
    try:
        client = _client(live)
        client.vector_stores.search(vector_store_id=store, query="w1")  # loads the store
        before = len(fake_bedrock.fake.calls)
        done = threading.Event()
        answer: dict[str, object] = {}

        def search() -> None:
            answer["r"] = httpx.post(
                f"{live.url}/v1/vector_stores/{store}/search",
                json={"query": "w7 w13 w2024 unique-probe", "search_mode": "hybrid"},
                timeout=120,
            )
            done.set()

        thread = threading.Thread(target=search)
        thread.start()
        while len(fake_bedrock.fake.calls) == before and not done.is_set():
            time.sleep(0.001)  # until its embedding call reaches the fake: it is in progress
        health = 0
        while not done.is_set():
            assert httpx.get(f"{live.url}/v1/health", timeout=120).status_code == 200
            health += 1
        thread.join()
        r = answer["r"]
        assert isinstance(r, httpx.Response) and r.status_code == 200, r
        assert r.json()["data"], "the search found nothing: it proves nothing"
        log = live.log.read_text().splitlines()
        # The search's embedding was served (the last one), then health checks, then its end.
        embedded = max(i for i, line in enumerate(log) if '"inference served"' in line)
        search = f'"path":"/v1/vector_stores/{store}/search"'
        ended = max(i for i, line in enumerate(log) if search in line)
        between = [line for line in log[embedded:ended] if '"path":"/v1/health"' in line]
        # Blocked, at most the one or two that slip in before the ranking starts get through.
        assert len(between) >= 10, (health, len(between))
    finally:
        stop_server(live)
