"""Files API with the openai SDK and llama-stack-client against the live local server."""

from __future__ import annotations

import io

import httpx
import openai
import pytest
from llama_stack_client import LlamaStackClient

from tests.conftest import LiveServer


@pytest.fixture(scope="module")
def client(live_server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server.url}/v1", api_key="unused", max_retries=0)


def test_upload_retrieve_content_delete(client: openai.OpenAI, live_server: LiveServer) -> None:
    payload = b"llamas are camelids\n" * 100
    created = client.files.create(
        file=("notes.txt", io.BytesIO(payload), "text/plain"), purpose="assistants"
    )
    assert created.id.startswith("file-") and created.bytes == len(payload)
    assert created.filename == "notes.txt" and created.purpose == "assistants"
    assert client.files.retrieve(created.id).bytes == len(payload)
    content = client.files.content(created.id)
    assert content.read() == payload
    assert content.response.headers["content-type"].startswith("text/plain")
    deleted = client.files.delete(created.id)
    assert deleted.deleted is True
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.files.content(created.id)
    # The bytes are gone from storage too.
    assert not list((live_server.home / "objects").rglob(created.id))


def test_list_pagination_order_and_purpose(client: openai.OpenAI) -> None:
    ids = [
        client.files.create(
            file=(f"f{i}.txt", io.BytesIO(b"x"), "text/plain"),
            purpose="batch" if i % 2 else "user_data",
        ).id
        for i in range(5)
    ]
    page = client.files.list(limit=2, order="asc", purpose="user_data")
    user_data = [i for n, i in enumerate(ids) if n % 2 == 0]
    listed = [f.id for f in page.data]
    assert listed == sorted(listed) and set(listed) <= set(user_data)
    newest = client.files.list(limit=3, order="desc").data
    assert [f.id for f in newest] == sorted([f.id for f in newest], reverse=True)
    assert newest[0].id == ids[-1]
    everything = [f.id for f in client.files.list(order="asc", purpose="batch")]  # SDK auto-pages
    assert [i for i in ids if i in everything] == [ids[1], ids[3]]


def test_filename_is_metadata_only(client: openai.OpenAI, live_server: LiveServer) -> None:
    created = client.files.create(
        file=("../../etc/passwd", io.BytesIO(b"root:x"), "text/plain"), purpose="assistants"
    )
    assert created.filename == "../../etc/passwd"
    stored = list((live_server.home / "objects").rglob(created.id))
    assert len(stored) == 1 and stored[0].parent.name == "files"
    assert not (live_server.home.parent / "etc").exists()


def test_upload_size_limit(client: openai.OpenAI) -> None:
    # TEST_CONFIG: max_body_bytes 64 kB for JSON, max_file_bytes 200 kB for uploads.
    ok = client.files.create(file=("big.bin", io.BytesIO(b"\0" * 150_000)), purpose="assistants")
    assert ok.bytes == 150_000
    with pytest.raises(openai.APIStatusError) as err:
        client.files.create(file=("huge.bin", io.BytesIO(b"\0" * 250_000)), purpose="assistants")
    assert err.value.status_code == 413


def test_bad_requests(live_server: LiveServer) -> None:
    url = f"{live_server.url}/v1/files"
    assert (
        httpx.post(url, files={"file": ("a.txt", b"x")}, data={"purpose": "nonsense"}).status_code
        == 400
    )
    assert httpx.post(url, data={"purpose": "assistants"}).status_code == 400
    assert httpx.get(f"{url}/file-deadbeef").status_code == 404
    assert httpx.get(f"{url}/..%2F..%2Fetc%2Fpasswd").status_code in (400, 404)
    assert httpx.get(url, params={"after": "nope"}).status_code == 400
    assert httpx.get(url, params={"limit": 0}).status_code == 400


def test_llama_stack_client_files(live_server: LiveServer) -> None:
    lsc = LlamaStackClient(base_url=live_server.url, max_retries=0)
    created = lsc.files.create(
        file=("a.md", io.BytesIO(b"# hi"), "text/markdown"), purpose="assistants"
    )
    assert lsc.files.retrieve(created.id).filename == "a.md"
    assert created.id in {f.id for f in lsc.files.list()}
    lsc.files.delete(created.id)
