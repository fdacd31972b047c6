"""remote::pgvector and remote::chromadb against real servers (tests/backends.py starts them),
remote::weaviate against the wire-level fake of its REST + gRPC surface (no Weaviate runs here):
each backend's filter compiler keeps the protocol's semantics (``index.matches`` is the oracle),
values never act as query syntax, a file's chunks are replaced, attributes updated, expired rows
left out, and a server that is down is a 503 naming the provider with nothing lost once it is
back. The HTTP-level suite runs over the same servers in the backend matrix."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from llamda.api.vector_stores import ComparisonFilter, CompoundFilter
from llamda.config import VectorsConfig
from llamda.context import current_tenant
from llamda.errors import BadRequestError, NotFoundError, ServiceUnavailableError
from llamda.providers.vector_io.config import ChromaConfig, PgVectorConfig, WeaviateConfig
from llamda.providers.vector_io.index import ChunkRow, Filter, IndexContext, VectorIndex, matches
from tests.backends import ChromaServer, PostgresServer
from tests.fakes.weaviate_server import FakeWeaviate

pytestmark = pytest.mark.backends

DIM = 4
ATTRS: list[dict[str, Any]] = [
    {"kind": "report", "year": 2023, "score": 0.5, "public": True},
    {"kind": "memo", "year": 2024, "score": 2, "public": False},
    {"kind": "report", "year": "2024", "tag": "x' OR '1'='1"},  # a year that is a string
    {"kind": "Report", "score": -1.5},
    {"year": 2025, "public": True, "tag": "é"},
    {},
]


def _filters() -> list[Filter]:
    c = ComparisonFilter
    leaves: list[Filter] = [
        c(type="eq", key="kind", value="report"),
        c(type="ne", key="kind", value="report"),
        c(type="eq", key="year", value=2024),
        c(type="ne", key="year", value=2024),
        c(type="gt", key="year", value=2023),
        c(type="gte", key="score", value=0.5),
        c(type="lt", key="score", value=0),
        c(type="lte", key="year", value=2024.0),
        c(type="eq", key="public", value=True),
        c(type="ne", key="public", value=True),
        c(type="in", key="year", value=[2023, "2024"]),
        c(type="in", key="kind", value=["memo", "Report"]),
        c(type="nin", key="kind", value=["memo"]),
        c(type="nin", key="year", value=[2023, "x"]),
        c(type="eq", key="tag", value="x' OR '1'='1"),
        c(type="eq", key="tag", value="x"),
        c(type="eq", key="missing", value="report"),
        c(type="ne", key="missing", value=1),
    ]
    return [
        *leaves,
        CompoundFilter(type="and", filters=[leaves[0], leaves[4]]),
        CompoundFilter(type="or", filters=[leaves[2], leaves[8], leaves[14]]),
        CompoundFilter(
            type="and",
            filters=[CompoundFilter(type="or", filters=[leaves[1], leaves[9]]), leaves[3]],
        ),
        CompoundFilter(type="or", filters=[leaves[16]]),
    ]


STRING_ORDER = ComparisonFilter(type="gt", key="kind", value="memo")


def _row(i: int, file_id: str = "file-a", **extra: Any) -> ChunkRow:
    vector = [1.0 if j == i % DIM else 0.1 * (i + 1) for j in range(DIM)]
    return ChunkRow(
        chunk_id=f"{file_id}-{i}",
        file_id=file_id,
        filename=f"{file_id}.txt",
        chunk_index=i,
        token_count=3,
        text=f"chunk {i} of {file_id} about llamas",
        vector=vector,
        attributes=ATTRS[i % len(ATTRS)],
        **extra,
    )


def _pg_config(server: PostgresServer, **extra: Any) -> PgVectorConfig:
    return PgVectorConfig(
        host="127.0.0.1",
        port=server.port,
        db=server.database,
        user="llamda",
        password=server.password,
        sslmode="disable",
        table_prefix=f"t{uuid.uuid4().hex[:8]}_",
        pool_timeout_seconds=3,
        **extra,
    )


def _wv_config(server: FakeWeaviate, **extra: Any) -> WeaviateConfig:
    return WeaviateConfig(
        http_host="127.0.0.1",
        http_port=server.http_port,
        grpc_port=server.grpc_port,
        api_key=server.api_key,
        collection_prefix="W" + uuid.uuid4().hex[:8] + "_",
        connect_timeout_seconds=2,
        timeout_seconds=5,
        **extra,
    )


@pytest.fixture(params=["pgvector", "chromadb", "weaviate"])
def backend(
    request: pytest.FixtureRequest, tmp_path: Any
) -> Iterator[tuple[VectorIndex, PostgresServer | ChromaServer | FakeWeaviate]]:
    context = IndexContext(vectors=VectorsConfig(uri=str(tmp_path / "lancedb")))
    index: VectorIndex
    server: PostgresServer | ChromaServer | FakeWeaviate
    if request.param == "weaviate":
        from llamda.providers.vector_io.weaviate import WeaviateIndex

        server = request.getfixturevalue("weaviate_fake")
        index = WeaviateIndex("weaviate-test", _wv_config(server), context)
    elif request.param == "pgvector":
        from llamda.providers.vector_io.pgvector import PgVectorIndex

        server = request.getfixturevalue("postgres")
        index = PgVectorIndex("pg-test", _pg_config(server), context)
    else:
        from llamda.providers.vector_io.chroma import ChromaIndex

        server = request.getfixturevalue("chroma")
        config = ChromaConfig(
            url=server.url, timeout_seconds=5, collection_prefix="c" + uuid.uuid4().hex[:8] + "_"
        )
        index = ChromaIndex("chroma-test", config, context)
    yield index, server


def run[T](coro: Any) -> T:
    return asyncio.run(coro)  # type: ignore[no-any-return]


async def _ids(index: VectorIndex, store: str, filters: Filter | None) -> set[str]:
    hits = await index.search_vector(store, [1.0, 0.0, 0.0, 0.0], 100, filters=filters)
    return {hit.row["chunk_id"] for hit in hits}


def test_filters_keep_the_protocols_semantics(backend: tuple[VectorIndex, Any]) -> None:
    index, _ = backend
    rows = [_row(i) for i in range(len(ATTRS))]

    async def scenario() -> None:
        await index.create("vs_filters", DIM)
        await index.upsert_file("vs_filters", "file-a", rows, DIM)
        assert await _ids(index, "vs_filters", None) == {r.chunk_id for r in rows}
        for tree in _filters():
            want = {r.chunk_id for r in rows if matches(tree, r.attributes)}
            assert await _ids(index, "vs_filters", tree) == want, tree.model_dump()
        if index.provider_id == "pg-test":  # strings order by code point, as matches does
            want = {r.chunk_id for r in rows if matches(STRING_ORDER, r.attributes)}
            assert await _ids(index, "vs_filters", STRING_ORDER) == want
        else:  # Chroma and Weaviate refuse to order strings
            with pytest.raises(BadRequestError, match="gt on the string value of 'kind'"):
                await _ids(index, "vs_filters", STRING_ORDER)
        await index.close()

    run(scenario())


def test_rows_round_trip_and_files_are_replaced(backend: tuple[VectorIndex, Any]) -> None:
    index, _ = backend

    async def scenario() -> None:
        await index.create("vs_files", DIM)
        await index.upsert_file("vs_files", "file-a", [_row(i) for i in range(4)], DIM)
        await index.upsert_file("vs_files", "file-b", [_row(i, "file-b") for i in range(2)], DIM)
        assert await index.count("vs_files") == 6
        # The file is rewritten with fewer chunks: the others are gone, file-b untouched.
        await index.upsert_file("vs_files", "file-a", [_row(0), _row(5)], DIM)
        rows = await index.file_rows("vs_files", "file-a", vectors=True)
        assert sorted(r["chunk_id"] for r in rows) == ["file-a-0", "file-a-5"]
        first = next(r for r in rows if r["chunk_id"] == "file-a-0")
        assert first["attributes"] == ATTRS[0] and first["text"] == _row(0).text
        assert first["vector"] == pytest.approx(_row(0).vector)
        assert await index.count("vs_files") == 4
        # Attributes of a file change: filters see the new ones only (old keys stop matching).
        await index.update_file_attributes("vs_files", "file-a", {"kind": "memo"})
        report = ComparisonFilter(type="eq", key="kind", value="report")
        assert await _ids(index, "vs_files", report) == {"file-b-0"}
        year = ComparisonFilter(type="eq", key="year", value=2023)
        assert await _ids(index, "vs_files", year) == {"file-b-0"}
        await index.delete_chunks("vs_files", ["file-b-1", "unknown"])
        await index.delete_file("vs_files", "file-a")
        assert await _ids(index, "vs_files", None) == {"file-b-0"}
        # Vectors score by cosine similarity, best first.
        hits = await index.search_vector("vs_files", _row(0, "file-b").vector, 1)
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)
        await index.drop("vs_files")
        assert await index.count("vs_files") == 0
        assert await index.search_vector("vs_files", [1.0] * DIM, 3) == []
        await index.close()

    run(scenario())


def test_expired_rows_are_left_out(backend: tuple[VectorIndex, Any]) -> None:
    index, _ = backend

    async def scenario() -> None:
        await index.create("vs_ttl", DIM)
        rows = [_row(0, expires_at=1000), _row(1, expires_at=3000), _row(2)]
        await index.upsert("vs_ttl", rows, DIM)
        hits = await index.search_vector("vs_ttl", [1.0] * DIM, 10, alive_at=2000)
        assert {h.row["chunk_id"] for h in hits} == {"file-a-1", "file-a-2"}
        alive = await index.all_rows("vs_ttl", alive_at=2000)
        assert {r["chunk_id"]: r["expires_at"] for r in alive} == {
            "file-a-1": 3000,
            "file-a-2": None,
        }
        await index.close()

    run(scenario())


def test_pgvector_keyword_search_ranks_matching_words(postgres: PostgresServer) -> None:
    from llamda.providers.vector_io.pgvector import PgVectorIndex

    index = PgVectorIndex(
        "pg-kw", _pg_config(postgres), IndexContext(vectors=VectorsConfig(uri="unused"))
    )
    texts = ["llamas graze in the Andes", "alpacas and llamas", "a report on tax"]
    rows = [
        ChunkRow(f"k{i}", "f", "f.txt", i, 4, text, [1.0, 0.0, 0.0, float(i)], {"i": i})
        for i, text in enumerate(texts)
    ]

    async def scenario() -> None:
        await index.create("vs_kw", DIM)
        await index.upsert_file("vs_kw", "f", rows, DIM)
        hits = await index.search_keyword("vs_kw", "Llama grazing", 10)
        # Any of the words (stemmed) matches; the row with both ranks first; scores in 0..1.
        assert [h.row["chunk_id"] for h in hits] == ["k0", "k1"]
        assert all(0 < h.score < 1 for h in hits) and hits[0].score > hits[1].score
        only = ComparisonFilter(type="eq", key="i", value=1)
        assert [
            h.row["chunk_id"]
            for h in await index.search_keyword("vs_kw", "llamas", 10, filters=only)
        ] == ["k1"]
        # Query syntax is text, not tsquery operators or SQL.
        assert await index.search_keyword("vs_kw", "' | !tax & (x", 10) != []
        assert await index.search_keyword("vs_kw", "the and a", 10) == []
        await index.close()

    run(scenario())


def test_a_server_that_is_down_is_a_503_naming_the_provider_and_nothing_is_lost(
    backend: tuple[VectorIndex, PostgresServer | ChromaServer | FakeWeaviate],
) -> None:
    index, server = backend

    async def before() -> None:
        await index.create("vs_down", DIM)
        await index.upsert_file("vs_down", "file-a", [_row(i) for i in range(3)], DIM)
        await index.health()

    async def while_down() -> None:
        for call in (
            index.health(),
            index.search_vector("vs_down", [1.0] * DIM, 3),
            index.upsert_file("vs_down", "file-b", [_row(0, "file-b")], DIM),
            index.count("vs_down"),
        ):
            with pytest.raises(ServiceUnavailableError) as caught:
                await call
            assert index.provider_id in caught.value.message
            assert caught.value.status_code == 503

    async def after() -> None:
        await index.health()
        assert await _ids(index, "vs_down", None) == {f"file-a-{i}" for i in range(3)}
        await index.close()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(before())
        server.stop()
        try:
            loop.run_until_complete(while_down())
        finally:
            server.start()
        loop.run_until_complete(after())
    finally:
        loop.close()


def test_pgvector_builds_its_hnsw_index_late_when_asked(postgres: PostgresServer) -> None:
    from llamda.providers.vector_io.pgvector import PgVectorIndex, table_name

    config = _pg_config(postgres, hnsw_build_rows=8)
    index = PgVectorIndex("pg-late", config, IndexContext(vectors=VectorsConfig(uri="unused")))

    def indexes() -> list[str]:
        import psycopg

        table = table_name(config.table_prefix, current_tenant(), "vs_late")
        with psycopg.connect(postgres.dsn()) as conn:
            rows = conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE tablename = %s", [table]
            ).fetchall()
        return [r[0] for r in rows if "hnsw" in r[0]]

    async def scenario() -> list[str]:
        await index.create("vs_late", DIM)
        await index.upsert_file("vs_late", "f", [_row(i, "f") for i in range(6)], DIM)
        await index.maintain("vs_late")  # 6 rows < 8: exact search still
        assert indexes() == []
        exact = await _ids(index, "vs_late", None)
        await index.upsert_file("vs_late", "g", [_row(i, "g") for i in range(4)], DIM)
        await index.maintain("vs_late")
        built = indexes()
        hits = await index.search_vector("vs_late", _row(2, "g").vector, 1)
        assert hits[0].row["chunk_id"] in {"f-2", "g-2"} and len(exact) == 6
        await index.close()
        return built

    built = run(scenario())
    assert len(built) == 1 and "vector_cosine_ops" in built[0]


def test_a_store_dropped_by_another_process_is_a_404_not_a_500(
    backend: tuple[VectorIndex, Any],
) -> None:
    index, _ = backend
    other = type(index)(index.provider_id, index._config, index._context)  # type: ignore[attr-defined]

    async def scenario() -> None:
        await index.create("vs_gone", DIM)
        await index.upsert_file("vs_gone", "file-a", [_row(0)], DIM)
        assert await _ids(index, "vs_gone", None) == {"file-a-0"}  # handles cached
        await other.drop("vs_gone")
        with pytest.raises(NotFoundError):
            await index.search_vector("vs_gone", [1.0] * DIM, 3)
        with pytest.raises(NotFoundError):
            await index.upsert_file("vs_gone", "file-a", [_row(0)], DIM)
        assert await index.search_vector("vs_gone", [1.0] * DIM, 3) == []  # forgotten now
        await index.close()
        await other.close()

    run(scenario())


def test_pgvector_reads_its_password_from_ssm(
    postgres: PostgresServer,
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import boto3

    boto3.client("ssm", endpoint_url=moto_endpoint).put_parameter(
        Name="/llamda/pg-password", Value=postgres.password, Type="SecureString", Overwrite=True
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    context = IndexContext(vectors=VectorsConfig(uri="unused"))
    good = _pg_config(postgres).model_copy(
        update={"password": None, "password_parameter": "/llamda/pg-password"}
    )
    missing = good.model_copy(update={"password_parameter": "/llamda/absent"})
    from llamda.providers.vector_io.pgvector import PgVectorIndex

    async def scenario() -> None:
        index = PgVectorIndex("pg-ssm", good, context)
        await index.health()
        await index.close()
        broken = PgVectorIndex("pg-nossm", missing, context)
        with pytest.raises(ServiceUnavailableError, match="cannot read"):
            await broken.health()

    run(scenario())


def test_hostile_text_and_numbers_are_4xx_or_data_never_a_500(
    backend: tuple[VectorIndex, Any],
) -> None:
    index, _ = backend

    async def scenario() -> None:
        await index.create("vs_hostile", DIM)
        nul = ChunkRow("n", "f", "f\x00.txt", 0, 1, "before\x00after", [1.0, 0.0, 0.0, 0.0])
        await index.upsert_file("vs_hostile", "f", [nul], DIM)  # NUL cannot fail a file here
        [row] = await index.file_rows("vs_hostile", "f")
        assert row["text"].startswith("before") and row["text"].endswith("after")
        for bad in ([float("nan")] * DIM, [float("inf")] + [0.0] * (DIM - 1)):
            with pytest.raises(BadRequestError):
                await index.search_vector("vs_hostile", bad, 3)
        # A NUL in a filter value (the API lets it through): no match, or a 400 (pgvector).
        weird = ComparisonFilter(type="eq", key="k", value="a\x00b")
        with contextlib.suppress(BadRequestError):
            assert await index.search_vector("vs_hostile", [1.0] * DIM, 3, filters=weird) == []
        await index.close()

    run(scenario())


# --- the compilers against the common evaluator, on any filter tree (hypothesis) ------------------


@pytest.fixture(scope="module")
def pg_filter_table(postgres: PostgresServer) -> Iterator[str]:
    """tests/unit/test_vector_filters.py's mixed-type rows in a real pgvector table."""
    from llamda.providers.vector_io.pgvector import PgVectorIndex, table_name
    from tests.unit.test_vector_filters import _ROWS

    config = _pg_config(postgres)
    index = PgVectorIndex("pg-prop", config, IndexContext(vectors=VectorsConfig(uri="unused")))
    rows = [
        ChunkRow(f"c{i}", f"f{i}", "f", 0, 1, "t", [1.0, 0.0], attributes=attributes)
        for i, attributes in enumerate(_ROWS)
    ]

    async def build() -> None:
        await index.create("s", 2)
        await index.upsert("s", rows, 2)
        await index.close()

    run(build())
    yield table_name(config.table_prefix, current_tenant(), "s")


@pytest.fixture(scope="module")
def chroma_filter_collection(chroma: ChromaServer) -> Iterator[Any]:
    """The same rows in a real Chroma collection (written through the provider)."""
    import chromadb

    from llamda.providers.vector_io.chroma import ChromaIndex, collection_name
    from tests.unit.test_vector_filters import _ROWS

    config = ChromaConfig(url=chroma.url, collection_prefix="p" + uuid.uuid4().hex[:8] + "_")
    index = ChromaIndex("chroma-prop", config, IndexContext(vectors=VectorsConfig(uri="unused")))
    rows = [
        ChunkRow(f"c{i}", f"f{i}", "f", 0, 1, "t", [1.0, 0.0], attributes=attributes)
        for i, attributes in enumerate(_ROWS)
    ]

    async def build() -> None:
        await index.create("s", 2)
        await index.upsert("s", rows, 2)

    run(build())
    client = chromadb.HttpClient(host="127.0.0.1", port=chroma.port)
    yield client.get_collection(collection_name(config.collection_prefix, current_tenant(), "s"))


def _tree_property(check: Any) -> Any:
    from hypothesis import HealthCheck, given, settings

    from tests.unit.test_vector_filters import _TREE

    return settings(
        max_examples=120,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )(given(raw=_TREE)(check))


@_tree_property
def test_pgvector_sql_and_the_common_evaluator_agree(
    raw: dict[str, Any], postgres: PostgresServer, pg_filter_table: str
) -> None:
    """The parameterized SQL (run by PostgreSQL) and ``matches`` pick the same rows; every key
    and value is a bind parameter, none is in the SQL text."""
    import psycopg
    from psycopg import sql

    from llamda.providers.vector_io.pgvector import compile_filter
    from tests.unit.test_vector_filters import _ROWS, parse

    node = parse(raw)
    predicate, params = compile_filter(node)
    with psycopg.connect(postgres.dsn()) as conn:
        text = predicate.as_string(conn)
        assert text.count("%s") == len(params)
        query = sql.SQL("SELECT chunk_id FROM {} WHERE {}").format(
            sql.Identifier(pg_filter_table), predicate
        )
        by_sql = {r[0] for r in conn.execute(query, params).fetchall()}
    by_eval = {f"c{i}" for i, attributes in enumerate(_ROWS) if matches(node, attributes)}
    assert by_sql == by_eval, text


@_tree_property
def test_chroma_where_and_the_common_evaluator_agree(
    raw: dict[str, Any], chroma_filter_collection: Any
) -> None:
    """The Chroma ``where`` (run by a real Chroma) and ``matches`` pick the same rows, or the
    tree orders strings and is refused with a 400 naming it."""
    from llamda.providers.vector_io.chroma import compile_filter
    from tests.unit.test_vector_filters import _ROWS, parse

    node = parse(raw)
    try:
        where = compile_filter(node)
    except BadRequestError as exc:
        assert exc.code == "unsupported_filter" and "string value" in exc.message
        return
    by_chroma = set(chroma_filter_collection.get(where=where, include=[])["ids"])
    by_eval = {f"c{i}" for i, attributes in enumerate(_ROWS) if matches(node, attributes)}
    assert by_chroma == by_eval, where


def test_chroma_embedded_persistent_client_keeps_its_rows(tmp_path: Any) -> None:
    from llamda.providers.vector_io.chroma import ChromaIndex

    config = ChromaConfig(path=str(tmp_path / "chroma"))
    context = IndexContext(vectors=VectorsConfig(uri="unused"))

    async def write() -> None:
        index = ChromaIndex("chroma-local", config, context)
        await index.health()
        await index.create("vs_local", DIM)
        await index.upsert_file("vs_local", "file-a", [_row(i) for i in range(3)], DIM)
        year = ComparisonFilter(type="eq", key="year", value=2024)
        assert await _ids(index, "vs_local", year) == {"file-a-1"}
        await index.close()

    run(write())
    # Another process opens the same path (as the server after a restart).
    reader = (
        "import asyncio, sys\n"
        "from llamda.config import VectorsConfig\n"
        "from llamda.providers.vector_io.chroma import ChromaIndex\n"
        "from llamda.providers.vector_io.config import ChromaConfig\n"
        "from llamda.providers.vector_io.index import IndexContext\n"
        "index = ChromaIndex('c', ChromaConfig(path=sys.argv[1]),"
        " IndexContext(vectors=VectorsConfig(uri='unused')))\n"
        "rows = asyncio.run(index.all_rows('vs_local'))\n"
        "print(sorted(r['chunk_id'] for r in rows))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", reader, config.path or ""],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "['file-a-0', 'file-a-1', 'file-a-2']"


@pytest.mark.parametrize("kind", ["pgvector", "chromadb", "weaviate"])
def test_a_hung_server_is_a_503_and_ties_up_nothing_else(kind: str) -> None:
    """A server that accepts connections and never answers: each call ends in a 503 naming the
    provider (bounded timeouts), and while several hang the loop's default executor still
    serves others (Chroma's blocking client runs on threads of its own)."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    others: list[socket.socket] = []
    context = IndexContext(vectors=VectorsConfig(uri="unused"))
    index: VectorIndex
    if kind == "pgvector":
        from llamda.providers.vector_io.pgvector import PgVectorIndex

        config = PgVectorConfig(
            host="127.0.0.1", port=port, password="x", connect_timeout_seconds=2,
            pool_timeout_seconds=2, sslmode="disable",
        )  # fmt: skip
        index = PgVectorIndex("pg-hung", config, context)
    elif kind == "weaviate":  # both REST and gRPC ports accept and never answer
        from llamda.providers.vector_io.weaviate import WeaviateIndex

        grpc_listener = socket.socket()
        grpc_listener.bind(("127.0.0.1", 0))
        grpc_listener.listen(64)
        others.append(grpc_listener)
        config = WeaviateConfig(
            http_host="127.0.0.1", http_port=port, api_key="wv-hung-key",
            grpc_port=grpc_listener.getsockname()[1],
            connect_timeout_seconds=1, timeout_seconds=1,
        )  # fmt: skip
        index = WeaviateIndex("weaviate-hung", config, context)
    else:
        from llamda.providers.vector_io.chroma import ChromaIndex

        index = ChromaIndex(
            "chroma-hung", ChromaConfig(url=f"http://127.0.0.1:{port}", timeout_seconds=1), context
        )

    async def scenario() -> None:
        calls = [asyncio.ensure_future(index.health()) for _ in range(8)]
        # Ordering, not timing: the default executor answers while all eight are in flight.
        assert await asyncio.to_thread(lambda: "free") == "free"
        assert not all(call.done() for call in calls)
        for outcome in await asyncio.gather(*calls, return_exceptions=True):
            assert isinstance(outcome, ServiceUnavailableError), outcome
            assert index.provider_id in outcome.message
        await index.close()

    try:
        run(scenario())
    finally:
        listener.close()
        for other in others:
            other.close()


def test_pgvector_without_the_extension_and_the_right_to_create_it_says_so(
    postgres: PostgresServer,
) -> None:
    """A database without ``vector`` and a user who may not create it: a 503 that says what a
    superuser must run (never a 500); with the right, the extension is created."""
    import psycopg

    role, database = f"plain_{uuid.uuid4().hex[:6]}", f"noext_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'plain-pass'")
        conn.execute(f"CREATE DATABASE {database} OWNER {role}")
    context = IndexContext(vectors=VectorsConfig(uri="unused"))
    from llamda.providers.vector_io.pgvector import PgVectorIndex

    plain = _pg_config(postgres).model_copy(
        update={"user": role, "db": database, "password": SecretStr("plain-pass")}
    )
    superuser = _pg_config(postgres).model_copy(update={"db": database})

    async def scenario() -> None:
        index = PgVectorIndex("pg-plain", plain, context)
        await index.health()  # it answers: the database is there
        with pytest.raises(ServiceUnavailableError, match="CREATE EXTENSION vector") as caught:
            await index.create("vs_x", DIM)
        assert "'pg-plain'" in caught.value.message
        await index.close()
        admin = PgVectorIndex("pg-admin", superuser, context)
        await admin.create("vs_x", DIM)  # creates the extension
        assert await admin.count("vs_x") == 0
        await admin.close()

    run(scenario())


# --- remote::weaviate (against the wire-level fake) --------------------------------------------


@pytest.fixture(scope="module")
def weaviate_filter_index(weaviate_fake: FakeWeaviate) -> Iterator[tuple[Any, VectorIndex]]:
    """tests/unit/test_vector_filters.py's mixed-type rows in a Weaviate collection of the fake,
    written through the provider; one event loop for the module (one client)."""
    from llamda.providers.vector_io.weaviate import WeaviateIndex
    from tests.unit.test_vector_filters import _ROWS

    index = WeaviateIndex(
        "weaviate-prop", _wv_config(weaviate_fake), IndexContext(vectors=VectorsConfig(uri="x"))
    )
    rows = [
        ChunkRow(f"c{i}", f"f{i}", "f", 0, 1, "t", [1.0, 0.0], attributes=attributes)
        for i, attributes in enumerate(_ROWS)
    ]
    loop = asyncio.new_event_loop()

    async def build() -> None:
        await index.create("s", 2)
        await index.upsert("s", rows, 2)

    loop.run_until_complete(build())
    yield loop, index
    loop.run_until_complete(index.close())
    loop.close()


@_tree_property
def test_weaviate_filters_and_the_common_evaluator_agree(
    raw: dict[str, Any], weaviate_filter_index: tuple[Any, VectorIndex]
) -> None:
    """The compiled Weaviate filters (evaluated by the fake's Weaviate filter semantics: typed
    properties, NotEqual matching objects without the property, field tokenization) and
    ``matches`` pick the same rows, or the tree orders strings and is refused with a 400."""
    from tests.unit.test_vector_filters import _ROWS, parse

    loop, index = weaviate_filter_index
    node = parse(raw)
    try:
        hits = loop.run_until_complete(index.search_vector("s", [1.0, 0.0], 100, filters=node))
    except BadRequestError as exc:
        assert exc.code == "unsupported_filter" and "string value" in exc.message
        return
    by_weaviate = {h.row["chunk_id"] for h in hits}
    by_eval = {f"c{i}" for i, attributes in enumerate(_ROWS) if matches(node, attributes)}
    assert by_weaviate == by_eval, node.model_dump()


def test_weaviate_property_names_are_injective_and_in_its_alphabet() -> None:
    from llamda.providers.vector_io.weaviate import collection_name, prop_name

    keys = ["a", "A", "a_b", "a-b", "a__b", "a_0b", "_", "-", "Ab", "aB", "x" * 64]
    names = {prop_name("s", k) for k in keys}
    assert len(names) == len(keys)
    assert all(re.fullmatch(r"s_[a-z0-9_]+", n) for n in names)
    with pytest.raises(BadRequestError):
        prop_name("s", "a') OR 1=1")
    name = collection_name("Llamda_", "tenant", "vs_ABC-123!")
    assert re.fullmatch(r"Llamda_vs_abc_123__[0-9a-f]{12}", name)
    assert collection_name("Llamda_", "other", "vs_ABC-123!") != name


def test_weaviate_keyword_search_is_native_bm25(weaviate_fake: FakeWeaviate) -> None:
    from llamda.providers.vector_io.weaviate import WeaviateIndex

    index = WeaviateIndex(
        "weaviate-kw", _wv_config(weaviate_fake), IndexContext(vectors=VectorsConfig(uri="x"))
    )
    texts = ["llamas graze in the Andes", "alpacas and llamas", "a report on tax"]
    rows = [
        ChunkRow(f"k{i}", "f", "f.txt", i, 4, text, [1.0, 0.0, 0.0, float(i)], {"i": i})
        for i, text in enumerate(texts)
    ]

    async def scenario() -> None:
        await index.create("vs_kw", DIM)
        await index.upsert_file("vs_kw", "f", rows, DIM)
        before = len(weaviate_fake.calls)
        hits = await index.search_keyword("vs_kw", "llamas Andes", 10)
        assert "grpc Search" in weaviate_fake.calls[before:]  # the server ranks, not the service
        # Any of the words matches; the row with both ranks first; scores in 0..1.
        assert [h.row["chunk_id"] for h in hits] == ["k0", "k1"]
        assert all(0 < h.score < 1 for h in hits) and hits[0].score > hits[1].score
        only = ComparisonFilter(type="eq", key="i", value=1)
        found = await index.search_keyword("vs_kw", "llamas", 10, filters=only)
        assert [h.row["chunk_id"] for h in found] == ["k1"]
        assert await index.search_keyword("vs_kw", "the and a", 10) == []
        await index.close()

    run(scenario())


def test_weaviate_with_a_wrong_api_key_is_a_503_that_does_not_show_it(
    weaviate_fake: FakeWeaviate, caplog: pytest.LogCaptureFixture
) -> None:
    from llamda.providers.vector_io.weaviate import WeaviateIndex

    wrong = "wv-wrong-" + uuid.uuid4().hex
    config = _wv_config(weaviate_fake).model_copy(update={"api_key": SecretStr(wrong)})
    index = WeaviateIndex("weaviate-badkey", config, IndexContext(vectors=VectorsConfig(uri="x")))

    async def scenario() -> None:
        with pytest.raises(ServiceUnavailableError) as caught:
            await index.create("vs_key", DIM)
        assert "'weaviate-badkey'" in caught.value.message
        assert wrong not in caught.value.message
        await index.close()

    with caplog.at_level("DEBUG"):
        run(scenario())
    assert wrong not in caplog.text
    assert wrong not in repr(config) and wrong not in config.model_dump_json()


def test_weaviate_reads_its_api_key_from_ssm(
    weaviate_fake: FakeWeaviate, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    from llamda.providers.vector_io.weaviate import WeaviateIndex

    boto3.client("ssm", endpoint_url=moto_endpoint).put_parameter(
        Name="/llamda/wv-key", Value=weaviate_fake.api_key, Type="SecureString", Overwrite=True
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    context = IndexContext(vectors=VectorsConfig(uri="x"))
    good = _wv_config(weaviate_fake).model_copy(
        update={"api_key": None, "api_key_parameter": "/llamda/wv-key"}
    )
    missing = good.model_copy(update={"api_key_parameter": "/llamda/absent"})

    async def scenario() -> None:
        index = WeaviateIndex("wv-ssm", good, context)
        await index.health()
        await index.create("vs_ssm", DIM)
        assert await index.count("vs_ssm") == 0
        await index.close()
        with pytest.raises(ServiceUnavailableError, match="cannot read"):
            await WeaviateIndex("wv-nossm", missing, context).health()

    run(scenario())


def test_weaviate_upsert_file_never_leaves_the_file_empty(weaviate_fake: FakeWeaviate) -> None:
    """Rewriting a file: the new chunks are written before the old ones are deleted (what a
    reader can see between the two calls is old + new, never nothing)."""
    from llamda.providers.vector_io.weaviate import WeaviateIndex, collection_name

    config = _wv_config(weaviate_fake)
    index = WeaviateIndex("wv-order", config, IndexContext(vectors=VectorsConfig(uri="x")))

    async def scenario() -> list[str]:
        await index.create("vs_order", DIM)
        await index.upsert_file("vs_order", "f", [_row(i, "f") for i in range(3)], DIM)
        name = collection_name(config.collection_prefix, current_tenant(), "vs_order")
        sizes: list[int] = []
        real_delete = weaviate_fake.delete

        def spying_delete(request: Any) -> Any:
            sizes.append(len(weaviate_fake.collections[name].objects))
            return real_delete(request)

        weaviate_fake.delete = spying_delete  # type: ignore[method-assign]
        try:
            await index.upsert_file("vs_order", "f", [_row(7, "f")], DIM)
        finally:
            del weaviate_fake.delete
        rows = await index.file_rows("vs_order", "f")
        await index.close()
        assert sizes == [4]  # the old three and the new one when the delete ran
        return sorted(r["chunk_id"] for r in rows)

    assert run(scenario()) == ["f-7"]


def test_weaviate_refused_data_is_a_400_and_a_gone_collection_a_404(
    weaviate_fake: FakeWeaviate,
) -> None:
    """Objects the server refuses (a vector of another length: every object, or one of many)
    are a 400 without the server's text; a collection deleted behind our back is a 404."""
    from llamda.providers.vector_io.weaviate import WeaviateIndex, collection_name

    config = _wv_config(weaviate_fake)
    index = WeaviateIndex("wv-refused", config, IndexContext(vectors=VectorsConfig(uri="x")))
    short = ChunkRow("s", "f", "f.txt", 0, 1, "short", [1.0, 0.0])

    async def scenario() -> None:
        await index.create("vs_refused", DIM)
        await index.upsert_file("vs_refused", "f", [_row(0, "f")], DIM)
        for rows in ([short], [_row(1, "f"), short]):
            with pytest.raises(BadRequestError) as caught:
                await index.upsert("vs_refused", rows, DIM)
            assert "length" in caught.value.message and "Existing nodes" not in caught.value.message
        name = collection_name(config.collection_prefix, current_tenant(), "vs_refused")
        del weaviate_fake.collections[name]  # dropped by someone else
        with pytest.raises(NotFoundError):
            await index.upsert("vs_refused", [_row(2, "f")], DIM)
        await index.close()

    run(scenario())


def test_weaviate_a_big_file_is_not_cut_short_by_one_calls_budget(
    weaviate_fake: FakeWeaviate,
) -> None:
    """Each server call has its own timeout; a file of many batches on a slow server takes
    longer than one call's budget in all, and is written whole (not a 503 half way)."""
    from llamda.providers.vector_io.weaviate import WeaviateIndex

    config = _wv_config(weaviate_fake).model_copy(update={"timeout_seconds": 2.0})
    index = WeaviateIndex("wv-slow", config, IndexContext(vectors=VectorsConfig(uri="x")))
    rows = [_row(i, "big") for i in range(4000)]  # eight batches of 500

    async def scenario() -> int:
        await index.create("vs_big", DIM)
        # 0.6 s a call (well inside its 2 s), 4.8 s in all: over one call's 2 s + slack.
        weaviate_fake.latency["BatchObjects"] = 0.6
        try:
            await index.upsert_file("vs_big", "big", rows, DIM)
        finally:
            weaviate_fake.latency.clear()
        count = await index.count("vs_big")
        await index.close()
        return count

    assert run(scenario()) == len(rows)


def test_weaviate_files_past_the_servers_result_cap_are_read_and_deleted_whole(
    weaviate_fake: FakeWeaviate,
) -> None:
    """A server caps a query (limit + offset) and a batch delete at QUERY_MAXIMUM_RESULTS: a
    file with more chunks than that is still read whole (attribute updates rewrite every
    chunk), replaced whole and deleted whole."""
    from llamda.providers.vector_io.weaviate import WeaviateIndex

    cap = 1000
    config = _wv_config(weaviate_fake, query_maximum_results=cap)
    index = WeaviateIndex("wv-cap", config, IndexContext(vectors=VectorsConfig(uri="x")))
    rows = [_row(i, "big") for i in range(2600)]
    rows += [_row(i, "small") for i in range(3)]

    async def scenario() -> None:
        await index.create("vs_cap", DIM)
        await index.upsert_file("vs_cap", "big", rows[:-3], DIM)
        await index.upsert_file("vs_cap", "small", rows[-3:], DIM)
        got = await index.file_rows("vs_cap", "big", limit=1_000_000)
        assert sorted(r["chunk_index"] for r in got) == list(range(2600))
        await index.update_file_attributes("vs_cap", "big", {"kind": "memo"})
        memo = ComparisonFilter(type="eq", key="kind", value="memo")
        assert await index.count("vs_cap") == 2603
        hits = await index.search_vector("vs_cap", [1.0] * DIM, 3, filters=memo)
        assert {h.row["file_id"] for h in hits} == {"big"}
        assert all(r["attributes"] == {"kind": "memo"} for r in await index.file_rows(
            "vs_cap", "big", limit=1_000_000
        ))  # fmt: skip
        await index.upsert_file("vs_cap", "big", [_row(0, "big")], DIM)  # 2599 stale deleted
        assert await index.count("vs_cap") == 4
        await index.upsert_file("vs_cap", "big", rows[:-3], DIM)
        await index.delete_file("vs_cap", "big")
        assert await index.count("vs_cap") == 3
        await index.close()

    weaviate_fake.max_results = cap
    try:
        run(scenario())
    finally:
        weaviate_fake.max_results = 10_000


def test_the_weaviate_fake_is_strict_where_weaviate_is(weaviate_fake: FakeWeaviate) -> None:
    """The fake, driven by the official client: it computes what it answers (cosine distances
    from the stored vectors) and refuses what a Weaviate server refuses (an unknown property
    with auto-schema off, IsNull without indexNullState, a value of the wrong type), and its
    NotEqual matches objects without the property, as Weaviate's does."""
    import weaviate
    from weaviate import exceptions as wx
    from weaviate.classes.config import Configure, DataType, Property
    from weaviate.classes.data import DataObject
    from weaviate.classes.init import Auth
    from weaviate.classes.query import Filter, MetadataQuery

    async def scenario() -> None:
        client = weaviate.use_async_with_custom(
            "127.0.0.1", weaviate_fake.http_port, False,
            "127.0.0.1", weaviate_fake.grpc_port, False,
            auth_credentials=Auth.api_key(weaviate_fake.api_key or ""),
        )  # fmt: skip
        await client.connect()
        name = "Strict_" + uuid.uuid4().hex[:8]
        try:
            col = await client.collections.create(
                name,
                properties=[Property(name="t", data_type=DataType.TEXT)],
                vector_config=Configure.Vectors.self_provided(),
            )
            await col.data.insert_many(
                [
                    DataObject(properties={"t": "a"}, vector=[1.0, 0.0]),
                    DataObject(properties={}, vector=[0.6, 0.8]),
                ]
            )
            got = await col.query.near_vector(
                [1.0, 0.0], limit=5, return_metadata=MetadataQuery(distance=True)
            )
            distances = sorted(round(o.metadata.distance or 0, 6) for o in got.objects)
            assert distances == [0.0, 0.4]  # 1 - cos: 0 and 1 - 0.6
            ne = await col.query.fetch_objects(filters=Filter.by_property("t").not_equal("a"))
            assert len(ne.objects) == 1  # the object without "t"
            with pytest.raises(wx.WeaviateInsertManyAllFailedError, match="no such prop"):
                await col.data.insert_many([DataObject(properties={"u": 1}, vector=[1.0, 0.0])])
            with pytest.raises(wx.WeaviateQueryError, match="Nullstate"):
                await col.query.fetch_objects(filters=Filter.by_property("t").is_none(True))
            with pytest.raises(wx.WeaviateQueryError, match="cannot use"):
                await col.query.fetch_objects(filters=Filter.by_property("t").equal(5))
        finally:
            await client.collections.delete(name)
            await client.close()

    run(scenario())


def test_weaviate_tenants_with_the_same_store_id_never_meet(weaviate_fake: FakeWeaviate) -> None:
    """Collections are named from (tenant, store): one tenant's rows, counts and drops never
    touch another's store of the same id."""
    from llamda.context import tenant_scope
    from llamda.providers.vector_io.weaviate import WeaviateIndex

    index = WeaviateIndex(
        "wv-tenants", _wv_config(weaviate_fake), IndexContext(vectors=VectorsConfig(uri="x"))
    )

    async def scenario() -> None:
        with tenant_scope("acme"):
            await index.create("vs_same", DIM)
            await index.upsert_file("vs_same", "a", [_row(0, "a"), _row(1, "a")], DIM)
        with tenant_scope("globex"):
            await index.create("vs_same", DIM)
            await index.upsert_file("vs_same", "g", [_row(0, "g")], DIM)
            assert await _ids(index, "vs_same", None) == {"g-0"}
            found = await index.search_keyword("vs_same", "chunk llamas", 5)
            assert [h.row["chunk_id"] for h in found] == ["g-0"]
            await index.drop("vs_same")
        with tenant_scope("acme"):
            assert await index.count("vs_same") == 2
            assert await _ids(index, "vs_same", None) == {"a-0", "a-1"}
        await index.close()

    run(scenario())


def test_weaviate_waits_no_longer_than_the_requests_deadline(weaviate_fake: FakeWeaviate) -> None:
    """In Lambda the request has a hard deadline (the function's time left): a slow server is
    a 503 naming the provider when the deadline comes, not a search that outlives the function
    because each call's own timeout (5 s here, times the calls) is longer."""
    from llamda.context import bind_deadline
    from llamda.providers.vector_io.weaviate import WeaviateIndex

    index = WeaviateIndex(
        "weaviate-deadline", _wv_config(weaviate_fake), IndexContext(vectors=VectorsConfig(uri="x"))
    )

    async def scenario() -> None:
        await index.create("vs_deadline", DIM)
        await index.upsert_file("vs_deadline", "file-a", [_row(0)], DIM)
        weaviate_fake.latency["Search"] = 2.0  # within the 5 s per-call timeout
        try:
            bind_deadline(0.3)
            with pytest.raises(ServiceUnavailableError) as caught:
                await index.search_vector("vs_deadline", [1.0] * DIM, 3)
            assert "weaviate-deadline" in caught.value.message
            bind_deadline(None)  # no hard limit: the same slow search answers
            hits = await index.search_vector("vs_deadline", [1.0] * DIM, 3)
            assert [h.row["chunk_id"] for h in hits] == ["file-a-0"]
        finally:
            weaviate_fake.latency.clear()
            await index.close()

    run(scenario())


def test_weaviate_the_same_file_written_twice_at_once_is_never_left_empty(
    weaviate_fake: FakeWeaviate,
) -> None:
    """SQS delivers at least once: two ingestions of one file may run together. Chunk ids are
    the file's (``file#n``), so both write the same objects; neither may then delete what the
    other just wrote as "stale" (the file would be left empty)."""
    from llamda.providers.vector_io.weaviate import WeaviateIndex

    index = WeaviateIndex(
        "weaviate-twice", _wv_config(weaviate_fake), IndexContext(vectors=VectorsConfig(uri="x"))
    )
    rows = [_row(i) for i in range(3)]

    async def scenario() -> None:
        await index.create("vs_twice", DIM)
        for _ in range(5):
            await asyncio.gather(*(index.upsert_file("vs_twice", "file-a", rows, DIM)
                                   for _ in range(2)))  # fmt: skip
            got = {r["chunk_id"] for r in await index.file_rows("vs_twice", "file-a")}
            assert got == {r.chunk_id for r in rows}
        # A shorter rewrite still drops the chunks it no longer has.
        await index.upsert_file("vs_twice", "file-a", rows[:1], DIM)
        assert [r["chunk_id"] for r in await index.file_rows("vs_twice", "file-a")] == ["file-a-0"]
        await index.close()

    run(scenario())
