"""Vector store records change conditionally, and a model in use is named per tenant: the
service over a local stack (SQLite records, LanceDB in a temp dir, the fake Bedrock)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from llamda.api.models import RegisterModelRequest
from llamda.api.vector_stores import CreateVectorStoreRequest, UpdateVectorStoreRequest
from llamda.context import tenant_scope
from llamda.errors import ConflictError, NotFoundError
from tests.configs import vector_config
from tests.fakes.bedrock import FakeBedrockServer


def stack_for(home: Path, bedrock: str):  # type: ignore[no-untyped-def]
    from llamda.config import load_config
    from llamda.stack import Stack

    path = home / "run.yaml"
    path.write_text(vector_config(home, bedrock, titan=False))
    return Stack(load_config(path))


EMBEDDER = RegisterModelRequest(
    model_id="team-embedder",
    provider_id="fake-bedrock",
    provider_model_id="amazon.titan-embed-text-v2:0",
    model_type="embedding",
    metadata={"embedding_dimension": 1024},
)


def test_a_stale_touch_neither_overwrites_nor_resurrects_a_store(
    tmp_path: Path, fake_bedrock: FakeBedrockServer
) -> None:
    async def scenario() -> None:
        stack = stack_for(tmp_path, fake_bedrock.endpoint)
        stores = stack.vector_stores.stores
        await stack.models.register(EMBEDDER)
        created = await stack.vector_stores.create(
            CreateVectorStoreRequest(name="before", embedding_model="team-embedder")
        )
        stale = await stores.record(created.id)  # e.g. read by a search or an ingestion
        stale["last_active_at"] -= 3600  # an hour idle: the next touch writes
        await stack.vector_stores.update(created.id, UpdateVectorStoreRequest(name="after"))
        await stores.touch(dict(stale))
        assert (await stack.vector_stores.get(created.id)).name == "after"

        await stack.vector_stores.delete(created.id)
        await stores.touch(dict(stale))
        with pytest.raises(NotFoundError):
            await stack.vector_stores.get(created.id)
        await stack.close()

    asyncio.run(scenario())


def test_unregistering_a_model_names_only_the_callers_stores(
    tmp_path: Path, fake_bedrock: FakeBedrockServer
) -> None:
    async def scenario() -> None:
        stack = stack_for(tmp_path, fake_bedrock.endpoint)
        ids = {}
        for tenant in ("acme", "globex"):
            with tenant_scope(tenant):
                await stack.models.register(EMBEDDER)
                ids[tenant] = (
                    await stack.vector_stores.create(
                        CreateVectorStoreRequest(name=tenant, embedding_model="team-embedder")
                    )
                ).id
        with tenant_scope("acme"):
            with pytest.raises(ConflictError) as refused:
                await stack.models.unregister("team-embedder")
            assert ids["acme"] in refused.value.message
            assert ids["globex"] not in refused.value.message
            await stack.vector_stores.delete(ids["acme"])
            await stack.models.unregister("team-embedder")  # no store of acme's uses it
        with tenant_scope("globex"):
            assert (await stack.models.get("team-embedder")).id == "team-embedder"
        await stack.close()

    asyncio.run(scenario())
