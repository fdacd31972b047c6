"""remote::weaviate against a real Weaviate, when there is one: ``WEAVIATE_URL`` (e.g.
``http://localhost:8080``), optionally ``WEAVIATE_GRPC_PORT`` (default 50051) and
``WEAVIATE_API_KEY``. No Weaviate runs on the machines that build Llamda (its embedded mode
downloads a binary), so everywhere else the ``remote::weaviate`` tier runs against the wire-level
fake (tests/fakes/weaviate_server.py) and this test is skipped, saying so. It checks what the fake
could get wrong: filters against the common evaluator, a file replaced, BM25, counts, TTL."""

from __future__ import annotations

import asyncio
import os
import uuid
import warnings
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis.errors import NonInteractiveExampleWarning

from llamda.api.vector_stores import ComparisonFilter
from llamda.config import VectorsConfig
from llamda.errors import BadRequestError
from llamda.providers.vector_io.config import WeaviateConfig
from llamda.providers.vector_io.index import ChunkRow, IndexContext, matches

pytestmark = [
    pytest.mark.backends,
    pytest.mark.skipif(
        not os.environ.get("WEAVIATE_URL"),
        reason="no real Weaviate: set WEAVIATE_URL (and WEAVIATE_GRPC_PORT, WEAVIATE_API_KEY) "
        "to run it; the remote::weaviate tier runs against the wire-level fake meanwhile",
    ),
]


def _config() -> WeaviateConfig:
    url = urlsplit(os.environ["WEAVIATE_URL"])
    secure = url.scheme == "https"
    return WeaviateConfig(
        http_host=url.hostname or "localhost",
        http_port=url.port or (443 if secure else 8080),
        http_secure=secure,
        grpc_port=int(os.environ.get("WEAVIATE_GRPC_PORT") or 50051),
        api_key=os.environ.get("WEAVIATE_API_KEY") or None,
        collection_prefix="Lt" + uuid.uuid4().hex[:8] + "_",
    )


def test_a_real_weaviate_keeps_the_protocols_semantics() -> None:
    from llamda.providers.vector_io.weaviate import WeaviateIndex
    from tests.integration.test_vector_backends_remote import STRING_ORDER, _filters
    from tests.unit.test_vector_filters import _ROWS

    index = WeaviateIndex("weaviate-real", _config(), IndexContext(VectorsConfig(uri="x")))
    attrs: list[dict[str, Any]] = [*_ROWS, {"kind": "report", "year": 2023, "public": True}]
    rows = [
        ChunkRow(f"c{i}", "f", "f.txt", i, 3, f"chunk {i} about llamas", [1.0, 0.1 * i, 0.0],
                 attributes=a, expires_at=1000 if i == 0 else None)
        for i, a in enumerate(attrs)
    ]  # fmt: skip

    async def ids(filters: Any) -> set[str]:
        hits = await index.search_vector("vs_real", [1.0, 0.0, 0.0], 100, filters=filters)
        return {h.row["chunk_id"] for h in hits}

    async def scenario() -> None:
        await index.health()
        await index.create("vs_real", 3)
        try:
            await index.upsert_file("vs_real", "f", rows, 3)
            assert await index.count("vs_real") == len(rows)
            from tests.unit.test_vector_filters import _TREE, parse

            with warnings.catch_warnings():  # 40 random trees, outside @given on purpose
                warnings.simplefilter("ignore", NonInteractiveExampleWarning)
                trees = [*_filters(), *(parse(_TREE.example()) for _ in range(40))]
            for tree in trees:
                try:
                    got = await ids(tree)
                except BadRequestError as exc:
                    assert exc.code == "unsupported_filter"
                    continue
                assert got == {r.chunk_id for r in rows if matches(tree, r.attributes)}, tree
            with pytest.raises(BadRequestError):
                await ids(STRING_ORDER)
            hits = await index.search_keyword("vs_real", "chunk 3", 3)
            assert hits and hits[0].row["chunk_id"] == "c3" and 0 < hits[0].score < 1
            alive = await index.search_vector("vs_real", [1.0, 0.0, 0.0], 100, alive_at=2000)
            assert "c0" not in {h.row["chunk_id"] for h in alive}
            await index.upsert_file("vs_real", "f", rows[:2], 3)
            assert await index.count("vs_real") == 2
            await index.update_file_attributes("vs_real", "f", {"kind": "memo"})
            memo = ComparisonFilter(type="eq", key="kind", value="memo")
            assert await ids(memo) == {"c0", "c1"}
        finally:
            await index.drop("vs_real")
            await index.close()

    asyncio.run(scenario())
