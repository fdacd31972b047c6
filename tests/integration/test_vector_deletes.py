"""Deletes stick and nothing is orphaned, against a live local server (LanceDB in a local dir,
records in SQLite, embeddings from the fake Bedrock).

The races are made deterministic with a held embedding call: each test registers its own
embedding model, holds the fake Bedrock's first answer for it, waits until the call has
arrived (so ingestion or search is mid-way), deletes, then releases the call."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_CONFIG, LiveServer, start_server, stop_server
from tests.fakes.bedrock import FakeBedrockServer, Reply

CONFIG = TEST_CONFIG.replace(
    'vectors: {uri: "${env.LLAMDA_HOME}/lancedb"}',
    'vectors: {uri: "${env.LLAMDA_HOME}/lancedb", ann_index_min_rows: 256}',
).replace(
    "max_file_bytes: 200000",
    "max_file_bytes: 400000\n  maintenance_interval_seconds: 0",
)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, fake_bedrock: FakeBedrockServer
) -> Iterator[LiveServer]:
    assert "ann_index_min_rows: 256" in CONFIG and "maintenance_interval_seconds: 0" in CONFIG
    home = tmp_path_factory.mktemp("deletes")
    config = home / "run.yaml"
    config.write_text(CONFIG)
    live = start_server(config, home, {"FAKE_BEDROCK_URL": fake_bedrock.endpoint})
    yield live
    stop_server(live)


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/v1", timeout=60) as client:
        yield client


class Gate:
    """An embedding model of its own whose next fake Bedrock answer can be held."""

    def __init__(self, http: httpx.Client, fake: FakeBedrockServer):
        self.fake = fake.fake
        suffix = uuid.uuid4().hex[:8]
        self.model = f"gate-{suffix}"
        self.provider_model = f"amazon.titan-embed-gate-{suffix}"
        reply = http.post(
            "/models",
            json={
                "model_id": self.model,
                "provider_id": "fake-bedrock",
                "provider_model_id": self.provider_model,
                "model_type": "embedding",
                "metadata": {"embedding_dimension": 1024},
            },
        )
        assert reply.status_code == 200, reply.text
        self.held = threading.Event()

    def calls(self) -> int:
        return len(self.fake.calls_for("invoke", self.provider_model))

    def hold_next(self) -> int:
        """Hold the next embedding call; returns the call count to pass to ``wait_arrived``."""
        self.held = threading.Event()
        self.fake.script(self.provider_model, Reply(hold=self.held))
        return self.calls()

    def wait_arrived(self, before: int) -> None:
        deadline = time.monotonic() + 30
        while self.calls() <= before:
            assert time.monotonic() < deadline, "the embedding call never arrived"
            time.sleep(0.02)

    def release(self) -> None:
        self.held.set()


@pytest.fixture
def gate(http: httpx.Client, fake_bedrock: FakeBedrockServer) -> Iterator[Gate]:
    gate = Gate(http, fake_bedrock)
    yield gate
    gate.release()  # never leave a server thread waiting


def new_store(http: httpx.Client, model: str) -> str:
    reply = http.post(
        "/vector_stores",
        json={"name": "race", "embedding_model": model, "embedding_dimension": 1024},
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["id"]


def upload(http: httpx.Client, text: str, name: str = "doc.txt") -> str:
    reply = http.post(
        "/files",
        files={"file": (name, text.encode(), "text/plain")},
        data={"purpose": "assistants"},
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["id"]


def search_file_ids(http: httpx.Client, store_id: str, query: str) -> list[str]:
    reply = http.post(
        f"/vector_stores/{store_id}/search",
        json={"query": query, "search_mode": "keyword", "max_num_results": 50},
    )
    assert reply.status_code == 200, reply.text
    return [hit["file_id"] for hit in reply.json()["data"]]


def content(http: httpx.Client, store_id: str, file_id: str) -> list[dict[str, Any]]:
    reply = http.get(f"/vector_stores/{store_id}/files/{file_id}/content")
    assert reply.status_code == 200, reply.text
    return reply.json()["data"]


def tables(home: Path) -> list[str]:
    root = home / "lancedb" / "tenants" / "default"
    return [p.name for p in root.iterdir()] if root.exists() else []


def in_background(fn: Callable[[], httpx.Response]) -> tuple[ThreadPoolExecutor, Future[Any]]:
    pool = ThreadPoolExecutor(1)
    return pool, pool.submit(fn)


def test_deleting_a_store_while_a_file_is_ingested_wins(
    http: httpx.Client, gate: Gate, server: LiveServer
) -> None:
    store_id = new_store(http, gate.model)
    file_id = upload(http, "Okapis live in the rainforest of the Congo basin.")
    before = gate.hold_next()
    pool, attach = in_background(
        lambda: http.post(f"/vector_stores/{store_id}/files", json={"file_id": file_id})
    )
    gate.wait_arrived(before)  # ingestion is mid-way: parsed, now embedding
    assert http.delete(f"/vector_stores/{store_id}").status_code == 200
    gate.release()
    reply = attach.result()
    pool.shutdown()
    assert reply.status_code < 500, reply.text
    assert http.get(f"/vector_stores/{store_id}").status_code == 404
    assert store_id not in [s["id"] for s in http.get("/vector_stores").json()["data"]]
    # Ingestion neither re-created the dropped table nor left a record behind.
    assert not [t for t in tables(server.home) if t.startswith(store_id)]
    listed = http.get(f"/vector_stores/{store_id}/files")
    assert listed.status_code == 404
    assert (
        http.post(f"/vector_stores/{store_id}/search", json={"query": "okapis"}).status_code == 404
    )


def test_detaching_a_file_while_it_is_ingested_wins(http: httpx.Client, gate: Gate) -> None:
    store_id = new_store(http, gate.model)
    file_id = upload(http, "Narwhals have a long spiral tusk and live in Arctic waters.")
    before = gate.hold_next()
    pool, attach = in_background(
        lambda: http.post(f"/vector_stores/{store_id}/files", json={"file_id": file_id})
    )
    gate.wait_arrived(before)
    assert http.delete(f"/vector_stores/{store_id}/files/{file_id}").status_code == 200
    gate.release()
    reply = attach.result()
    pool.shutdown()
    assert reply.status_code < 500, reply.text
    assert http.get(f"/vector_stores/{store_id}/files/{file_id}").status_code == 404
    assert search_file_ids(http, store_id, "narwhals tusk arctic") == []
    store = http.get(f"/vector_stores/{store_id}").json()
    assert store["file_counts"]["total"] == 0


def test_deleting_a_file_while_it_is_ingested_leaves_no_chunks(
    http: httpx.Client, gate: Gate
) -> None:
    store_id = new_store(http, gate.model)
    file_id = upload(http, "Axolotls regrow their limbs in the lakes of Mexico City.")
    before = gate.hold_next()
    pool, attach = in_background(
        lambda: http.post(f"/vector_stores/{store_id}/files", json={"file_id": file_id})
    )
    gate.wait_arrived(before)  # the bytes were read already
    assert http.delete(f"/files/{file_id}").status_code == 200
    gate.release()
    reply = attach.result()
    pool.shutdown()
    assert reply.status_code < 500, reply.text
    assert search_file_ids(http, store_id, "axolotls regrow limbs") == []
    assert http.get(f"/vector_stores/{store_id}/files/{file_id}").status_code == 404


def test_deleting_a_file_removes_its_chunks_from_every_store(
    http: httpx.Client, gate: Gate
) -> None:
    stores = [new_store(http, gate.model) for _ in range(2)]
    file_id = upload(http, "Pangolins are covered in keratin scales and eat ants.")
    kept = upload(http, "Pangolins are shy; this note stays.", "kept.txt")
    for store_id in stores:
        for fid in (file_id, kept):
            reply = http.post(f"/vector_stores/{store_id}/files", json={"file_id": fid})
            assert reply.json()["status"] == "completed", reply.text
        assert file_id in search_file_ids(http, store_id, "pangolins")
    assert http.delete(f"/files/{file_id}").status_code == 200
    for store_id in stores:
        assert search_file_ids(http, store_id, "pangolins") == [kept]
        assert http.get(f"/vector_stores/{store_id}/files/{file_id}").status_code == 404
        assert http.get(f"/vector_stores/{store_id}").json()["file_counts"]["total"] == 1


def test_concurrent_attaches_of_one_file_ingest_it_once(http: httpx.Client, gate: Gate) -> None:
    store_id = new_store(http, gate.model)
    text = " ".join(f"Quokka fact number {i} is about the island of Rottnest." for i in range(60))
    file_id = upload(http, text)
    body = {
        "file_id": file_id,
        "chunking_strategy": {
            "type": "static",
            "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0},
        },
    }
    once = new_store(http, gate.model)  # the same file attached once, for comparison
    assert http.post(f"/vector_stores/{once}/files", json=body).json()["status"] == "completed"
    expected = [p["text"] for p in content(http, once, file_id)]
    assert len(expected) > 1

    before = gate.hold_next()
    with ThreadPoolExecutor(4) as pool:
        attaches = [
            pool.submit(http.post, f"/vector_stores/{store_id}/files", json=body) for _ in range(4)
        ]
        gate.wait_arrived(before)  # one attach is ingesting (held)
        # The others answer while it is held: they did not ingest a second copy.
        deadline = time.monotonic() + 30
        while sum(a.done() for a in attaches) < 3:
            assert time.monotonic() < deadline, "the other attaches waited for the held one"
            time.sleep(0.02)
        gate.release()
        replies = [a.result() for a in attaches]
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
    assert sorted(r.json()["status"] for r in replies).count("completed") == 1
    assert [p["text"] for p in content(http, store_id, file_id)] == expected
    assert http.get(f"/vector_stores/{store_id}").json()["file_counts"]["completed"] == 1


def test_a_search_racing_a_store_delete_answers_404(http: httpx.Client, gate: Gate) -> None:
    store_id = new_store(http, gate.model)
    file_id = upload(http, "Tapirs use their short trunks to grab leaves.")
    assert (
        http.post(f"/vector_stores/{store_id}/files", json={"file_id": file_id}).status_code == 200
    )
    before = gate.hold_next()
    pool, search = in_background(
        lambda: http.post(f"/vector_stores/{store_id}/search", json={"query": "tapirs trunks"})
    )
    gate.wait_arrived(before)  # the query is being embedded; the store is found
    assert http.delete(f"/vector_stores/{store_id}").status_code == 200
    gate.release()
    reply = search.result()
    pool.shutdown()
    assert reply.status_code == 404, reply.text
    assert reply.json()["error"]["code"] == "vector_store_not_found"


def test_unregistering_an_embedding_model_in_use_is_a_conflict(
    http: httpx.Client, gate: Gate
) -> None:
    store_id = new_store(http, gate.model)
    reply = http.delete(f"/models/{gate.model}")
    assert reply.status_code == 409, reply.text
    error = reply.json()["error"]
    assert error["code"] == "model_in_use" and store_id in error["message"]
    assert http.get(f"/models/{gate.model}").status_code == 200
    assert http.delete(f"/vector_stores/{store_id}").status_code == 200
    assert http.delete(f"/models/{gate.model}").status_code == 200


# --- maintenance: no request builds the ANN index ------------------------------------------

STATIC_100 = {"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0}}


def big_document() -> str:
    """Enough text for 300+ chunks of 100 tokens (the server's threshold is 256 rows)."""
    sentences = [f"Note {i} is about zq{i}a and zq{i}b." for i in range(2600)]
    return " ".join(sentences)


def vector_indices(home: Path, store_id: str) -> list[str]:
    from llamda.providers.vector_io.lancedb import import_lancedb

    db = import_lancedb().connect(str(home / "lancedb" / "tenants" / "default"))
    return [index.name for index in db.open_table(store_id).list_indices()]


def top_hit(http: httpx.Client, store_id: str) -> tuple[str, float]:
    """The best chunk for words only one chunk has (an approximate index finds it too)."""
    reply = http.post(
        f"/vector_stores/{store_id}/search",
        json={"query": "zq1234a zq1234b zq1235a zq1235b", "max_num_results": 1},
    )
    assert reply.status_code == 200, reply.text
    (hit,) = reply.json()["data"]
    assert "zq1234a" in hit["content"][0]["text"]
    return hit["content"][0]["text"], hit["score"]


def attach_big(http: httpx.Client) -> str:
    store_id = new_store(http, "amazon.titan-embed-text-v2:0")
    file_id = upload(http, big_document(), "big.txt")
    reply = http.post(
        f"/vector_stores/{store_id}/files",
        json={"file_id": file_id, "chunking_strategy": STATIC_100},
    )
    assert reply.status_code == 200 and reply.json()["status"] == "completed", reply.text
    assert len(content(http, store_id, file_id)) >= 256
    return store_id


def test_crossing_the_ann_threshold_builds_no_index_until_maintenance(
    http: httpx.Client,
    server: LiveServer,
    fake_bedrock: FakeBedrockServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    from llamda.config import load_config
    from llamda.stack import Stack

    store_id = attach_big(http)
    assert "vector_idx" not in vector_indices(server.home, store_id)  # the request built none
    flat_text, flat_score = top_hit(http, store_id)

    # The scheduled maintenance function's work: another process, the same storage.
    monkeypatch.setenv("LLAMDA_HOME", str(server.home))
    monkeypatch.setenv("FAKE_BEDROCK_URL", fake_bedrock.endpoint)

    async def maintain() -> int:
        stack = Stack(load_config(server.home / "run.yaml"))
        try:
            return await stack.vector_stores.maintain()
        finally:
            await stack.close()

    assert asyncio.run(maintain()) >= 1
    assert "vector_idx" in vector_indices(server.home, store_id)
    indexed_text, indexed_score = top_hit(http, store_id)
    assert indexed_text == flat_text
    assert indexed_score == pytest.approx(flat_score, abs=0.05)  # quantized vectors
    assert asyncio.run(maintain()) == 0  # nothing written since: nothing to do


def test_the_local_server_runs_maintenance_in_the_background(
    tmp_path: Path, fake_bedrock: FakeBedrockServer
) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(
        CONFIG.replace("maintenance_interval_seconds: 0", "maintenance_interval_seconds: 0.2")
    )
    live = start_server(config, tmp_path, {"FAKE_BEDROCK_URL": fake_bedrock.endpoint})
    try:
        with httpx.Client(base_url=f"{live.url}/v1", timeout=60) as http:
            store_id = attach_big(http)
            flat_text, _ = top_hit(http, store_id)
            deadline = time.monotonic() + 60
            while "vector_idx" not in vector_indices(tmp_path, store_id):
                assert time.monotonic() < deadline, "the background maintenance never ran"
                time.sleep(0.2)
            assert top_hit(http, store_id)[0] == flat_text
    finally:
        stop_server(live)
