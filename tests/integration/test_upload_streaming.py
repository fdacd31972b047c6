"""``POST /v1/files`` streams: the upload is counted as it arrives and copied to storage in
bounded memory (the server's peak RSS grows by far less than the file), and an upload past the
limit is a 413 that leaves no file, record or temporary object behind."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import LiveServer
from tests.fakes.bedrock import FakeBedrockServer
from tests.integration.servers import reset_peak_rss, server_with, status_kb

MAX_FILE_BYTES = 48 * 1024 * 1024
LARGE = 40 * 1024 * 1024


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, fake_bedrock: FakeBedrockServer
) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("uploads")
    with server_with(home, fake_bedrock, ingest="{}", max_file_bytes=MAX_FILE_BYTES) as live:
        yield live


@pytest.fixture(scope="module")
def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def stored_files(server: LiveServer) -> list[Path]:
    """Every file under the server's object store, temporary ones included."""
    return sorted(p for p in (server.home / "objects").rglob("*") if p.is_file())


def test_a_large_upload_is_stored_in_bounded_memory(
    server: LiveServer, client: openai.OpenAI
) -> None:
    client.files.create(file=("warm.txt", io.BytesIO(b"warm")), purpose="assistants")
    data = os.urandom(1024 * 1024) * (LARGE // (1024 * 1024))
    pid = server.process.pid
    rss_before = status_kb(pid, "VmRSS")
    reset_peak_rss(pid)
    created = client.files.create(file=("large.bin", io.BytesIO(data)), purpose="assistants")
    peak_growth = (status_kb(pid, "VmHWM") - rss_before) * 1024
    assert created.bytes == LARGE
    # Held whole (the old path) the upload cost about 4x its size; streamed, a few MiB.
    assert peak_growth < LARGE / 4, f"peak RSS grew {peak_growth / 2**20:.0f} MiB"
    assert client.files.content(created.id).content == data


def test_an_upload_past_the_limit_leaves_nothing(server: LiveServer, client: openai.OpenAI) -> None:
    before_ids = {f.id for f in client.files.list()}
    before_objects = stored_files(server)
    chunk = b"x" * (1024 * 1024)

    def body() -> Iterator[bytes]:  # chunked: no Content-Length to refuse it up front
        yield (
            b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="huge.txt"\r\n'
            b"Content-Type: text/plain\r\n\r\n"
        )
        for _ in range(MAX_FILE_BYTES // len(chunk) + 2):
            yield chunk
        yield b"\r\n--b--\r\n"

    try:
        reply = httpx.post(
            f"{server.url}/v1/files",
            content=body(),
            headers={"content-type": "multipart/form-data; boundary=b"},
            timeout=60,
        )
    except httpx.TransportError:
        reply = None  # the server may close the connection while the client still sends
    if reply is not None:
        assert reply.status_code == 413, reply.text
        assert reply.json()["error"]["type"] == "invalid_request_error"
    assert {f.id for f in client.files.list()} == before_ids
    assert stored_files(server) == before_objects
    assert httpx.get(f"{server.url}/v1/health").status_code == 200
