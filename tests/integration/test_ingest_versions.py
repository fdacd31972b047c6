"""S3 ingestion is version-exact: a versioned moto S3 bucket, real S3 event notification
shapes (tests/e2e/harness.py), the ingest service over a local stack (SQLite records, LanceDB in
a temp dir, embeddings from the fake Bedrock)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.configs import vector_config
from tests.e2e.harness import s3_notification
from tests.fakes.bedrock import FakeBedrockServer


@pytest.fixture
def bucket(moto_endpoint: str) -> Iterator[tuple[Any, str]]:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    name = f"ingest-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    yield s3, name


class Harness:
    """The ingest service as the ingest function runs it, plus what a user would check."""

    def __init__(self, home: Path, bedrock: str, moto: str):
        from llamda.config import load_config
        from llamda.services.ingest import IngestService
        from llamda.stack import Stack

        path = home / "run.yaml"
        path.write_text(vector_config(home, bedrock))
        self.stack = Stack(load_config(path))
        self.service = IngestService(
            self.stack.files, self.stack.vector_stores, self.stack.records, moto
        )

    async def create_store(self) -> str:
        from llamda.api.vector_stores import CreateVectorStoreRequest

        created = await self.stack.vector_stores.create(CreateVectorStoreRequest(name="s3"))
        return created.id

    async def apply(self, message: dict[str, Any]) -> None:
        from llamda.services.ingest import s3_objects

        for obj in s3_objects(json.dumps(message)):
            await self.service.handle(obj)

    async def live_texts(self, store_id: str) -> list[str]:
        """The text of every chunk of every file of the store (what search can find)."""
        files = await self.stack.vector_stores.list_files(
            store_id, limit=100, after=None, order="asc", status=None
        )
        texts = []
        for file in files.data:
            content = await self.stack.vector_stores.file_content(store_id, file.id)
            texts += [part.text for part in content.data]
        return texts

    async def searched(self, store_id: str, query: str) -> list[str]:
        from llamda.api.vector_stores import SearchRequest

        found = await self.stack.vector_stores.search(
            store_id, SearchRequest(query=query, search_mode="keyword")
        )
        return [r.content[0].text for r in found.data]


def event(name: str, bucket: str, key: str, version_id: str, sequencer: str) -> dict[str, Any]:
    return s3_notification(name, bucket, key, version_id=version_id, sequencer=sequencer)


def put(s3: Any, bucket: str, key: str, text: str) -> str:
    return s3.put_object(Bucket=bucket, Key=key, Body=text.encode())["VersionId"]


def test_removing_old_versions_or_delete_markers_never_drops_the_live_document(
    tmp_path: Path,
    bucket: tuple[Any, str],
    fake_bedrock: FakeBedrockServer,
    moto_endpoint: str,
) -> None:
    s3, name = bucket

    async def scenario() -> None:
        h = Harness(tmp_path, fake_bedrock.endpoint, moto_endpoint)
        store = await h.create_store()
        key = f"ingest/default/{store}/herd.txt"
        v1 = put(s3, name, key, "Alpacas hum softly in the Andes.")
        await h.apply(event("ObjectCreated:Put", name, key, v1, "0A"))
        assert await h.live_texts(store) == ["Alpacas hum softly in the Andes."]
        v2 = put(s3, name, key, "Vicunas graze the high puna.")
        await h.apply(event("ObjectCreated:Put", name, key, v2, "0B"))
        assert await h.live_texts(store) == ["Vicunas graze the high puna."]

        # A non-current version is deleted for good: the live one stays.
        s3.delete_object(Bucket=name, Key=key, VersionId=v1)
        await h.apply(event("ObjectRemoved:Delete", name, key, v1, "0C"))
        assert await h.live_texts(store) == ["Vicunas graze the high puna."]
        assert await h.searched(store, "vicunas") == ["Vicunas graze the high puna."]

        # A plain delete in a versioned bucket creates a delete marker: nothing is live.
        marker = s3.delete_object(Bucket=name, Key=key)["VersionId"]
        await h.apply(event("ObjectRemoved:DeleteMarkerCreated", name, key, marker, "0D"))
        assert await h.live_texts(store) == []
        assert await h.searched(store, "vicunas") == []

        # Removing the delete marker brings v2 back.
        s3.delete_object(Bucket=name, Key=key, VersionId=marker)
        await h.apply(event("ObjectRemoved:Delete", name, key, marker, "0E"))
        assert await h.live_texts(store) == ["Vicunas graze the high puna."]

        # A late, older event changes nothing; a redelivered current one neither.
        await h.apply(event("ObjectCreated:Put", name, key, v1, "0A"))
        await h.apply(event("ObjectRemoved:Delete", name, key, marker, "0E"))
        assert await h.live_texts(store) == ["Vicunas graze the high puna."]
        files = await h.stack.files.list(limit=100, after=None, order="asc", purpose=None)
        assert len(files.data) == 1  # every displaced File was deleted too
        await h.stack.close()

    asyncio.run(scenario())


def test_concurrent_events_for_one_key_leave_one_document(
    tmp_path: Path,
    bucket: tuple[Any, str],
    fake_bedrock: FakeBedrockServer,
    moto_endpoint: str,
) -> None:
    s3, name = bucket

    async def scenario() -> None:
        h = Harness(tmp_path, fake_bedrock.endpoint, moto_endpoint)
        store = await h.create_store()
        key = f"ingest/default/{store}/notes/guanacos.md"
        v1 = put(s3, name, key, "Guanacos whistle to warn the herd.")
        v2 = put(s3, name, key, "Guanacos run fast across the steppe.")
        older = event("ObjectCreated:Put", name, key, v1, "FF")
        newer = event("ObjectCreated:Put", name, key, v2, "0100")  # longer: compares after padding
        # Both read the key's (empty) source record before either writes it.
        await asyncio.gather(h.apply(newer), h.apply(older))
        assert await h.live_texts(store) == ["Guanacos run fast across the steppe."]
        files = await h.stack.files.list(limit=100, after=None, order="asc", purpose=None)
        assert len(files.data) == 1

        # A removal racing a newer create: the create's version stays live.
        v3 = put(s3, name, key, "Guanacos drink rarely.")
        marker = s3.delete_object(Bucket=name, Key=key)["VersionId"]
        s3.delete_object(Bucket=name, Key=key, VersionId=marker)  # v3 current again
        await asyncio.gather(
            h.apply(event("ObjectCreated:Put", name, key, v3, "0101")),
            h.apply(event("ObjectRemoved:DeleteMarkerCreated", name, key, marker, "0102")),
        )
        assert await h.live_texts(store) == ["Guanacos drink rarely."]
        await h.stack.close()

    asyncio.run(scenario())
