"""Uploads API (a large File in parts): the openai SDK against the live local server, the
service's expiry and tenancy with an injected clock on real stores, and the S3 assembly
(server-side copy and re-cut multipart) against a moto server."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import openai
import pytest

from llamda.api.uploads import CreateUploadRequest
from llamda.context import set_tenant
from llamda.errors import BadRequestError, NotFoundError
from llamda.services.files import FilesService
from llamda.services.uploads import UploadsService
from llamda.storage.objects import PART_BYTES, S3_MIN_PART
from llamda.storage.objects_local import LocalObjectStore
from llamda.storage.objects_s3 import S3ObjectStore
from llamda.storage.records_sqlite import SqliteRecordStore
from tests.conftest import TEST_CONFIG, LiveServer, start_server, stop_server
from tests.fakes.bedrock import FakeBedrockServer
from tests.integration.servers import reset_peak_rss, status_kb

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def live_server(
    tmp_path_factory: pytest.TempPathFactory, fake_bedrock: FakeBedrockServer
) -> Iterator[LiveServer]:
    """The shared test server's config (auth off) with room for 4 MiB parts: the shared one
    allows 200 kB uploads."""
    home = tmp_path_factory.mktemp("uploads")
    config = TEST_CONFIG.replace(
        "max_file_bytes: 200000", f"max_file_bytes: {8 * MiB}\n  max_upload_bytes: {64 * MiB}"
    )
    assert "max_upload_bytes" in config
    (home / "run.yaml").write_text(config)
    server = start_server(home / "run.yaml", home, {"FAKE_BEDROCK_URL": fake_bedrock.endpoint})
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def client(live_server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server.url}/v1", api_key="unused", max_retries=0)


def _start(client: openai.OpenAI, size: int, name: str = "big.bin") -> str:
    upload = client.uploads.create(
        bytes=size, filename=name, mime_type="application/octet-stream", purpose="assistants"
    )
    assert upload.status == "pending" and upload.id.startswith("upload_")
    assert upload.expires_at - upload.created_at == 3600
    return upload.id


def _parts_on_disk(live_server: LiveServer, upload_id: str) -> list[Path]:
    root = live_server.home / "objects"
    return [p for p in root.rglob("*") if p.is_file() and upload_id in p.as_posix()]


def test_parts_complete_into_a_file(client: openai.OpenAI, live_server: LiveServer) -> None:
    chunks = [os.urandom(3 * MiB), os.urandom(MiB + 7), b"tail"]
    upload_id = _start(client, sum(map(len, chunks)), "data.bin")
    parts = [client.uploads.parts.create(upload_id, data=chunk) for chunk in chunks]
    assert all(p.upload_id == upload_id and p.object == "upload.part" for p in parts)
    assert _parts_on_disk(live_server, upload_id)
    # The File is the parts in part_ids order, not in arrival order.
    order = [2, 0, 1]
    done = client.uploads.complete(upload_id, part_ids=[parts[i].id for i in order])
    assert done.status == "completed" and done.file is not None
    expected = b"".join(chunks[i] for i in order)
    assert done.file.bytes == len(expected) and done.file.filename == "data.bin"
    assert client.files.retrieve(done.file.id).bytes == len(expected)
    assert client.files.content(done.file.id).read() == expected
    # The parts are deleted; the Upload is closed.
    assert _parts_on_disk(live_server, upload_id) == []
    with pytest.raises(openai.BadRequestError):
        client.uploads.complete(upload_id, part_ids=[p.id for p in parts])
    with pytest.raises(openai.BadRequestError):
        client.uploads.parts.create(upload_id, data=b"more")


def test_total_must_match_declared_bytes(client: openai.OpenAI) -> None:
    upload_id = _start(client, 10)
    part = client.uploads.parts.create(upload_id, data=b"12345")
    with pytest.raises(openai.BadRequestError) as short:
        client.uploads.complete(upload_id, part_ids=[part.id])
    assert "10" in short.value.message
    # More than declared is refused at the part; the refused part does not count.
    with pytest.raises(openai.BadRequestError):
        client.uploads.parts.create(upload_id, data=b"123456")
    rest = client.uploads.parts.create(upload_id, data=b"67890")
    # A part id twice, or one that is not this Upload's, is a 400.
    with pytest.raises(openai.BadRequestError):
        client.uploads.complete(upload_id, part_ids=[part.id, part.id])
    with pytest.raises(openai.BadRequestError):
        client.uploads.complete(upload_id, part_ids=[part.id, "part_0123abcd"])
    done = client.uploads.complete(upload_id, part_ids=[part.id, rest.id])
    assert client.files.content(done.file.id).read() == b"1234567890"  # type: ignore[union-attr]


def test_declared_size_over_the_limit(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.uploads.create(
            bytes=64 * MiB + 1, filename="x", mime_type="text/plain", purpose="assistants"
        )
    assert err.value.body["param"] == "bytes"  # type: ignore[index]
    # The media type becomes a response header: only a media type gets in.
    with pytest.raises(openai.BadRequestError):
        client.uploads.create(
            bytes=1, filename="x", mime_type="text/html\r\nx-evil: 1", purpose="assistants"
        )
    # A size is a number, not a boolean or a string.
    for size in (False, "12"):
        reply = httpx.post(
            str(client.base_url) + "uploads",
            json={"bytes": size, "filename": "x", "mime_type": "a/b", "purpose": "assistants"},
        )
        assert reply.status_code == 400 and "integer" in reply.json()["error"]["message"]
        assert reply.json()["error"]["param"] == "bytes"
    # Part ids are ours: anything else is refused before storage sees it.
    upload_id = _start(client, 1)
    with pytest.raises(openai.BadRequestError):
        client.uploads.complete(upload_id, part_ids=["../../files/x"])


def test_unknown_and_cancelled_uploads(client: openai.OpenAI, live_server: LiveServer) -> None:
    with pytest.raises(openai.NotFoundError):
        client.uploads.parts.create("upload_0123abcd", data=b"x")
    with pytest.raises(openai.NotFoundError):
        client.uploads.complete("upload_0123abcd", part_ids=[])
    with pytest.raises(openai.NotFoundError):
        client.uploads.cancel("upload_0123abcd")
    upload_id = _start(client, 4)
    part = client.uploads.parts.create(upload_id, data=b"abcd")
    assert _parts_on_disk(live_server, upload_id)
    assert client.uploads.cancel(upload_id).status == "cancelled"
    assert _parts_on_disk(live_server, upload_id) == []
    with pytest.raises(openai.BadRequestError):
        client.uploads.complete(upload_id, part_ids=[part.id])
    with pytest.raises(openai.BadRequestError):
        client.uploads.parts.create(upload_id, data=b"abcd")
    with pytest.raises(openai.BadRequestError):
        client.uploads.cancel(upload_id)


def test_part_over_4_mib_is_413(client: openai.OpenAI) -> None:
    upload_id = _start(client, 5 * MiB)
    with pytest.raises(openai.APIStatusError) as err:
        client.uploads.parts.create(upload_id, data=b"\0" * (4 * MiB + 1))
    assert err.value.status_code == 413
    # Exactly 4 MiB is a part.
    assert client.uploads.parts.create(upload_id, data=b"\0" * (4 * MiB)).id


def test_a_large_upload_is_assembled_and_served_in_bounded_memory(
    client: openai.OpenAI, live_server: LiveServer
) -> None:
    """48 MiB in 4 MiB parts: neither completing nor downloading holds the File in memory."""
    part = os.urandom(4 * MiB)
    count = 12
    upload_id = _start(client, count * len(part))
    part_ids = [client.uploads.parts.create(upload_id, data=part).id for _ in range(count)]
    pid = live_server.process.pid
    rss_before = status_kb(pid, "VmRSS")
    reset_peak_rss(pid)
    done = client.uploads.complete(upload_id, part_ids=part_ids)
    assembled = (status_kb(pid, "VmHWM") - rss_before) * 1024
    assert done.file is not None and done.file.bytes == count * len(part)
    assert assembled < 12 * MiB, f"completing grew the peak RSS by {assembled / MiB:.0f} MiB"
    rss_before = status_kb(pid, "VmRSS")
    reset_peak_rss(pid)
    digest = hashlib.sha256()
    with httpx.stream("GET", f"{live_server.url}/v1/files/{done.file.id}/content") as reply:
        assert reply.headers["content-length"] == str(count * len(part))
        for piece in reply.iter_bytes():
            digest.update(piece)
    served = (status_kb(pid, "VmHWM") - rss_before) * 1024
    assert digest.hexdigest() == hashlib.sha256(part * count).hexdigest()
    assert served < 12 * MiB, f"serving grew the peak RSS by {served / MiB:.0f} MiB"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _service(tmp_path: Path, objects: object, clock: Clock) -> UploadsService:
    records = SqliteRecordStore(tmp_path / "records.sqlite3")
    files = FilesService(records, objects)  # type: ignore[arg-type]
    return UploadsService(records, objects, files, 64 * MiB, clock=clock)  # type: ignore[arg-type]


def test_expired_and_other_tenants_uploads(tmp_path: Path) -> None:
    clock = Clock()
    service = _service(tmp_path, LocalObjectStore(tmp_path / "objects"), clock)
    request = CreateUploadRequest(
        filename="a.txt", purpose="assistants", bytes=2, mime_type="text/plain"
    )

    async def scenario() -> None:
        set_tenant("alice")
        upload = await service.create(request)
        part = await service.add_part(upload.id, io.BytesIO(b"hi"))
        set_tenant("bob")
        with pytest.raises(NotFoundError):
            await service.add_part(upload.id, io.BytesIO(b"hi"))
        with pytest.raises(NotFoundError):
            await service.complete(upload.id, [part.id])
        with pytest.raises(NotFoundError):
            await service.cancel(upload.id)
        set_tenant("alice")
        clock.now += 3600
        with pytest.raises(BadRequestError, match="expired"):
            await service.add_part(upload.id, io.BytesIO(b"hi"))
        with pytest.raises(BadRequestError, match="expired"):
            await service.complete(upload.id, [part.id])
        clock.now -= 1
        done = await service.complete(upload.id, [part.id])
        assert done.file is not None and done.file.bytes == 2

    asyncio.run(scenario())


def test_a_lost_completion_can_be_retried_later(tmp_path: Path) -> None:
    """A completing function killed mid-way (timeout) leaves its claim: a retry is refused
    while the claim is fresh and accepted once it is stale."""
    clock = Clock()
    records = SqliteRecordStore(tmp_path / "records.sqlite3")
    objects = LocalObjectStore(tmp_path / "objects")
    service = UploadsService(records, objects, FilesService(records, objects), MiB, clock=clock)

    async def scenario() -> None:
        set_tenant("alice")
        upload = await service.create(
            CreateUploadRequest(filename="a", purpose="assistants", bytes=3, mime_type="a/b")
        )
        part = await service.add_part(upload.id, io.BytesIO(b"abc"))
        # What a killed completion leaves behind: the claim, no File.
        record = await records.get("uploads", upload.id)
        assert record is not None
        await records.put(
            "uploads", upload.id, {**record, "status": "completing", "completing_at": clock.now}
        )
        with pytest.raises(BadRequestError, match="completing"):
            await service.complete(upload.id, [part.id])
        with pytest.raises(BadRequestError, match="completing"):
            await service.add_part(upload.id, io.BytesIO(b"x"))
        clock.now += 901
        done = await service.complete(upload.id, [part.id])
        assert done.status == "completed" and done.file is not None

    asyncio.run(scenario())


@pytest.fixture
def s3_store(moto_endpoint: str) -> S3ObjectStore:
    bucket = f"uploads-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=bucket)
    return S3ObjectStore(bucket, "objects", "us-east-1", moto_endpoint)


def _multipart_parts(store: S3ObjectStore, moto_endpoint: str, key: str) -> int:
    """How many parts S3 says the object was assembled from (0: a single PutObject)."""
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    head = s3.head_object(Bucket=store._bucket, Key=f"objects/tenants/t1/{key}", PartNumber=1)
    return int(head.get("PartsCount", 0))


def test_s3_assembles_large_parts_by_server_side_copy(
    s3_store: S3ObjectStore, moto_endpoint: str
) -> None:
    chunks = [os.urandom(S3_MIN_PART + 1), os.urandom(S3_MIN_PART), b"last"]

    async def scenario() -> bytes:
        set_tenant("t1")
        for i, chunk in enumerate(chunks):
            await s3_store.put(f"uploads/u/{i}", chunk)
        size = await s3_store.put_parts("files/f", [f"uploads/u/{i}" for i in range(3)])
        assert size == sum(map(len, chunks))
        return await s3_store.get("files/f")

    assert asyncio.run(scenario()) == b"".join(chunks)
    assert _multipart_parts(s3_store, moto_endpoint, "files/f") == 3


def test_s3_upload_of_4_mib_parts_is_recut_into_a_multipart_file(
    s3_store: S3ObjectStore, moto_endpoint: str, tmp_path: Path
) -> None:
    """The whole Uploads flow on S3: API-sized parts (below S3's 5 MiB minimum) are streamed
    into PART_BYTES parts of a real multipart upload."""
    service = _service(tmp_path, s3_store, Clock())
    chunks = [os.urandom(4 * MiB) for _ in range(4)] + [b"end"]
    total = sum(map(len, chunks))
    assert total > 2 * PART_BYTES

    async def scenario() -> tuple[str, bytes]:
        set_tenant("t1")
        upload = await service.create(
            CreateUploadRequest(
                filename="big.bin", purpose="assistants", bytes=total, mime_type="x/y"
            )
        )
        parts = [await service.add_part(upload.id, io.BytesIO(c)) for c in chunks]
        done = await service.complete(upload.id, [p.id for p in parts])
        assert done.file is not None and done.file.bytes == total
        assert await s3_store.list(f"uploads/{upload.id}") == []  # parts deleted
        return done.file.id, await s3_store.get(f"files/{done.file.id}")

    file_id, content = asyncio.run(scenario())
    assert content == b"".join(chunks)
    assert _multipart_parts(s3_store, moto_endpoint, f"files/{file_id}") == 3


@pytest.fixture(scope="module")
def s3_server(
    tmp_path_factory: pytest.TempPathFactory, fake_bedrock: FakeBedrockServer, moto_endpoint: str
) -> Iterator[LiveServer]:
    """The test server with its objects in S3 (moto) and contents over 1000 bytes redirected."""
    bucket = f"files-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=bucket)
    home = tmp_path_factory.mktemp("redirect")
    local = 'objects: {type: local, root: "${env.LLAMDA_HOME}/objects"}'
    s3 = (
        f"objects: {{type: s3, bucket: {bucket}, prefix: objects, region_name: us-east-1, "
        f"endpoint_url: {moto_endpoint}}}"
    )
    config = TEST_CONFIG.replace(local, s3).replace(
        "max_file_bytes: 200000", "max_file_bytes: 200000\n  content_redirect_bytes: 1000"
    )
    assert bucket in config and "content_redirect_bytes" in config
    (home / "run.yaml").write_text(config)
    server = start_server(home / "run.yaml", home, {"FAKE_BEDROCK_URL": fake_bedrock.endpoint})
    yield server
    stop_server(server)


def test_large_file_content_is_a_presigned_s3_redirect(
    s3_server: LiveServer, moto_endpoint: str
) -> None:
    client = openai.OpenAI(base_url=f"{s3_server.url}/v1", api_key="sk-x", max_retries=0)
    small = client.files.create(file=("s.txt", b"tiny", "text/plain"), purpose="assistants")
    payload = os.urandom(5000)
    big = client.files.create(file=("b <1>.bin", payload, "x/y"), purpose="assistants")
    with httpx.Client(base_url=s3_server.url) as http:
        direct = http.get(f"/v1/files/{small.id}/content")
        assert direct.status_code == 200 and direct.content == b"tiny"
        moved = http.get(f"/v1/files/{big.id}/content")
        assert moved.status_code == 307 and moved.headers["cache-control"] == "no-store"
        location = moved.headers["location"]
        assert location.startswith(moto_endpoint) and "X-Amz-Expires=300" in location
        assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in location
        assert big.id in location and "sk-x" not in location
        assert http.get("/v1/files/file-0123abcd/content").status_code == 404
    # Fetched without our credentials: S3 answers the bytes, as a download.
    fetched = httpx.get(location)
    assert fetched.status_code == 200 and fetched.content == payload
    assert fetched.headers["content-disposition"].startswith('attachment; filename="b _1_.bin"')
    assert fetched.headers["content-type"] == "x/y"
    # The SDK follows the redirect (and does not send its key to S3: another origin).
    assert client.files.content(big.id).read() == payload
    assert client.files.content(small.id).read() == b"tiny"
