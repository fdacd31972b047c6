"""Documents are read in a worker process per file, within per-file limits: a hostile file never
freezes the server (``/v1/health`` answers while it is being read) and fails the FILE (status
failed, a clear ``last_error``), never the request. A live server with small limits."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import LiveServer
from tests.fakes.bedrock import FakeBedrockServer
from tests.hostile_docs import nested_json, nested_pdf, shared_stream_pdf
from tests.integration.servers import (
    alive,
    descendants,
    reset_peak_rss,
    server_with,
    status_kb,
)

EMBEDDING_MODEL = "amazon.titan-embed-text-v2:0"
MAX_SECONDS = 4
INGEST = (
    f"{{max_seconds: {MAX_SECONDS}, max_pages: 50, max_decoded_bytes: 8000000, max_tokens: 20000}}"
)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, fake_bedrock: FakeBedrockServer
) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("workers")
    with server_with(home, fake_bedrock, ingest=INGEST, max_file_bytes=20_000_000) as live:
        yield live


@pytest.fixture(scope="module")
def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def upload(client: openai.OpenAI, name: str, data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return client.files.create(file=(name, io.BytesIO(raw)), purpose="assistants").id


@pytest.fixture(scope="module")
def store_id(client: openai.OpenAI) -> str:
    """A store, and one ordinary file read (the server loads its parsers on first use)."""
    vs = client.vector_stores.create(
        name="hostile", extra_body={"embedding_model": EMBEDDING_MODEL}
    )
    file_id = upload(client, "ok.txt", "Llamas hum when they are calm.")
    attached = client.vector_stores.files.create(vector_store_id=vs.id, file_id=file_id)
    assert attached.status == "completed", attached.last_error
    return vs.id


def attach_while_checking_health(
    server: LiveServer, client: openai.OpenAI, store_id: str, name: str, data: bytes
) -> Any:
    """Attach a hostile file; once its worker process runs, ``/v1/health`` must answer while
    that worker and the attach request are both still running (an ordering check)."""
    file_id = upload(client, name, data)
    before = descendants(server.process.pid)
    with ThreadPoolExecutor(1) as pool:
        attach = pool.submit(
            client.vector_stores.files.create, vector_store_id=store_id, file_id=file_id
        )
        workers: set[int] = set()
        while not workers and not attach.done():
            workers = descendants(server.process.pid) - before
            time.sleep(0.002)
        assert workers, "the file was read without a worker process"
        health = httpx.get(f"{server.url}/v1/health", timeout=60)
        assert health.status_code == 200
        assert any(alive(pid) for pid in workers), "health answered only after the worker ended"
        assert not attach.done(), "health answered only after the attach"
        result = attach.result(timeout=120)
    assert not any(alive(pid) for pid in workers)  # killed or finished: none left behind
    return result


def test_pdf_whose_stream_is_shared_by_every_page_never_freezes_the_server(
    server: LiveServer, client: openai.OpenAI, store_id: str
) -> None:
    # As reproduced: 8 pages sharing a 0.5 MB stream (17 s); twice the pages, so that a fast
    # machine still needs longer than the limit.
    pdf = shared_stream_pdf(pages=16, stream_bytes=400_000)
    assert len(pdf) < 6_000  # 5 kB that decode to 6.4 MB of page content
    result = attach_while_checking_health(server, client, store_id, "bomb.pdf", pdf)
    assert result.status == "failed"
    assert result.last_error.code == "invalid_file"
    assert f"longer than {MAX_SECONDS} s" in result.last_error.message
    assert "storage.vectors.ingest.max_seconds" in result.last_error.message


def test_html_tag_soup_never_freezes_the_server(
    server: LiveServer, client: openai.OpenAI, store_id: str
) -> None:
    # "<a" * 40000 was quadratic in the stdlib parser; deep nesting is slow in lexbor too.
    html = b"<a" * 40_000 + b"<div>" * 60_000 + b"llamas"  # seconds in lexbor, not milliseconds
    result = attach_while_checking_health(server, client, store_id, "soup.html", html)
    assert result.status == "failed"
    assert "storage.vectors.ingest.max_seconds" in result.last_error.message


def test_the_80kb_tag_soup_alone_is_read_quickly(client: openai.OpenAI, store_id: str) -> None:
    file_id = upload(client, "a.html", b"<a" * 40_000)
    result = client.vector_stores.files.create(
        vector_store_id=store_id, file_id=file_id, timeout=MAX_SECONDS * 3
    )
    assert result.status == "failed" and "no text found" in result.last_error.message


def test_deeply_nested_json_or_pdf_fails_the_file_and_the_batch_returns(
    client: openai.OpenAI, store_id: str
) -> None:
    deep = upload(client, "deep.json", nested_json(2_000))
    fine = upload(client, "fine.json", '{"llama": "hums"}')
    single = client.vector_stores.files.create(vector_store_id=store_id, file_id=deep)
    assert single.status == "failed"
    assert single.last_error.code == "invalid_file"
    assert "nested too deeply" in single.last_error.message
    batch = client.vector_stores.file_batches.create(
        vector_store_id=store_id, file_ids=[deep, fine]
    )
    assert batch.id.startswith("vsfb_")
    assert (batch.file_counts.failed, batch.file_counts.completed) == (1, 1)
    failed = client.vector_stores.files.retrieve(vector_store_id=store_id, file_id=deep)
    assert failed.status == "failed" and "nested too deeply" in failed.last_error.message
    pdf = upload(client, "deep.pdf", nested_pdf(5_000))
    result = client.vector_stores.files.create(vector_store_id=store_id, file_id=pdf)
    assert result.status == "failed" and "nested too deeply" in result.last_error.message


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("many.txt", b"llama " * 30_000, "more than 20,000 tokens"),
        ("pages.pdf", shared_stream_pdf(pages=60, stream_bytes=1_000), "more than 50 pages"),
        ("big.txt", b"alpaca\n" * 1_300_000, "more than 8,000,000 bytes"),
    ],
)
def test_a_file_past_a_limit_fails_with_a_clear_message(
    client: openai.OpenAI, store_id: str, name: str, data: bytes, message: str
) -> None:
    file_id = upload(client, name, data)
    result = client.vector_stores.files.create(vector_store_id=store_id, file_id=file_id)
    assert result.status == "failed"
    assert result.last_error.code == "invalid_file"
    assert message in result.last_error.message and "per-file limit" in result.last_error.message
    assert client.vector_stores.files.content(file_id=file_id, vector_store_id=store_id).data == []


def test_a_large_text_is_tokenized_outside_the_server(
    server: LiveServer, client: openai.OpenAI, store_id: str
) -> None:
    """Tokenizing 7 MB in the server cost it about a gigabyte (and kept it); in the worker,
    the server's peak grows by little more than the file it reads."""
    data = b"alpaca llama vicuna guanaco\n" * 250_000
    file_id = upload(client, "large.txt", data)
    pid = server.process.pid
    rss_before = status_kb(pid, "VmRSS")
    reset_peak_rss(pid)
    result = client.vector_stores.files.create(vector_store_id=store_id, file_id=file_id)
    peak_growth = (status_kb(pid, "VmHWM") - rss_before) * 1024
    assert result.status == "failed" and "tokens" in result.last_error.message
    assert peak_growth < 4 * len(data), f"peak RSS grew {peak_growth / 2**20:.0f} MiB"
