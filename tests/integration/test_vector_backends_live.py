"""remote::pgvector, remote::chromadb and remote::weaviate (its wire-level fake) behind the live
server, as a user reaches them (openai
SDK, httpx): a store chooses its provider at creation; when the backend's server goes down the
store's requests are 503s naming the provider while the rest of the API keeps answering; once
it is back the old chunks are all there. The pg password is never shown or logged."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.backends import ChromaServer, PostgresServer
from tests.conftest import LiveServer, start_server, stop_server
from tests.fakes.bedrock import FakeBedrockServer
from tests.fakes.weaviate_server import FakeWeaviate

pytestmark = pytest.mark.backends

EMBEDDING_MODEL = "amazon.titan-embed-text-v2:0"
PASSWORD_ENV = "LLAMDA_TEST_PG_PASSWORD"
WEAVIATE_KEY_ENV = "LLAMDA_TEST_WV_KEY"

CONFIG = """
version: 1
apis: [inspect, models, inference, files, vector_io]
providers:
  inference:
    - {{provider_id: fake-bedrock, provider_type: bedrock,
       config: {{region_name: us-east-1, endpoint_url: "{bedrock}"}}}}
  vector_io:
    - {{provider_id: lancedb, provider_type: inline::lancedb}}
    - provider_id: pg
      provider_type: remote::pgvector
      config: {{host: 127.0.0.1, port: {pg_port}, db: {pg_db}, user: llamda,
                password: "${{env.{password_env}}}", sslmode: disable,
                pool_timeout_seconds: 3, connect_timeout_seconds: 2}}
    - provider_id: chroma
      provider_type: remote::chromadb
      config: {{url: "{chroma_url}", timeout_seconds: 5}}
    - provider_id: wv
      provider_type: remote::weaviate
      config: {{http_host: 127.0.0.1, http_port: {wv_http}, grpc_port: {wv_grpc},
                api_key: "${{env.{wv_key_env}}}", connect_timeout_seconds: 2,
                timeout_seconds: 5}}
models:
  - {{model_id: "{model}", provider_id: fake-bedrock, model_type: embedding,
     metadata: {{embedding_dimension: 1024}}}}
storage:
  records: {{type: sqlite, path: "{home}/records.sqlite3"}}
  objects: {{type: local, root: "{home}/objects"}}
  vectors: {{uri: "{home}/lancedb"}}
"""


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    fake_bedrock: FakeBedrockServer,
    postgres: PostgresServer,
    chroma: ChromaServer,
    weaviate_fake: FakeWeaviate,
) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("remote-backends")
    config = home / "run.yaml"
    config.write_text(
        CONFIG.format(
            bedrock=fake_bedrock.endpoint,
            pg_port=postgres.port,
            pg_db=postgres.database,
            password_env=PASSWORD_ENV,
            chroma_url=chroma.url,
            wv_http=weaviate_fake.http_port,
            wv_grpc=weaviate_fake.grpc_port,
            wv_key_env=WEAVIATE_KEY_ENV,
            model=EMBEDDING_MODEL,
            home=home,
        )
    )
    live = start_server(
        config,
        home,
        {PASSWORD_ENV: postgres.password, WEAVIATE_KEY_ENV: weaviate_fake.api_key or ""},
    )
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def _store(client: openai.OpenAI, provider_id: str) -> tuple[str, list[str]]:
    vs = client.vector_stores.create(
        name=f"on {provider_id}",
        extra_body={"provider_id": provider_id, "embedding_model": EMBEDDING_MODEL},
    )
    texts = {
        "llamas.txt": ("Llamas are camelids from the Andes; they carry packs.", {"year": 2021}),
        "ocean.txt": ("Whales and dolphins swim in the salt water of the ocean.", {"year": 2019}),
    }
    ids = []
    for name, (text, attributes) in texts.items():
        file_id = client.files.create(
            file=(name, io.BytesIO(text.encode())), purpose="assistants"
        ).id
        attached = client.vector_stores.files.create(
            vector_store_id=vs.id, file_id=file_id, attributes=attributes
        )
        assert attached.status == "completed", attached.last_error
        ids.append(file_id)
    return vs.id, ids


def _search(client: openai.OpenAI, store_id: str, **extra: object) -> list[tuple[str, str]]:
    page = client.vector_stores.search(
        vector_store_id=store_id, query="llamas in the Andes", **extra
    )  # type: ignore[arg-type]
    return [(r.file_id, r.content[0].text) for r in page.data]


@pytest.mark.parametrize("provider_id", ["pg", "chroma", "wv"])
def test_a_store_lives_on_the_provider_it_chose(
    client: openai.OpenAI,
    provider_id: str,
    postgres: PostgresServer,
    weaviate_fake: FakeWeaviate,
) -> None:
    store_id, (llamas, ocean) = _store(client, provider_id)
    found = _search(client, store_id)
    assert found and found[0][0] == llamas
    filtered = _search(
        client, store_id, filters={"type": "lt", "key": "year", "value": 2020}, max_num_results=5
    )
    assert [f for f, _ in filtered] == [ocean]
    hybrid = client.vector_stores.search(
        vector_store_id=store_id, query="whales", extra_body={"search_mode": "hybrid"}
    )
    assert hybrid.data[0].file_id == ocean
    if provider_id == "pg":  # its rows are in PostgreSQL, not LanceDB
        import psycopg

        with psycopg.connect(postgres.dsn()) as conn:
            tables = conn.execute(
                "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'llamda_%'"
            ).fetchone()
        assert tables is not None and tables[0] >= 2  # the stores table and this store's
    if provider_id == "wv":  # its rows are in (the fake) Weaviate
        assert "grpc Search" in weaviate_fake.calls
        assert sum(len(c.objects) for c in weaviate_fake.collections.values()) >= 2
    client.vector_stores.files.delete(vector_store_id=store_id, file_id=llamas)
    assert {f for f, _ in _search(client, store_id)} == {ocean}


@pytest.mark.parametrize("provider_id", ["pg", "chroma", "wv"])
def test_a_backend_that_is_down_is_a_503_naming_it_and_nothing_is_lost(
    client: openai.OpenAI,
    server: LiveServer,
    provider_id: str,
    postgres: PostgresServer,
    chroma: ChromaServer,
    weaviate_fake: FakeWeaviate,
) -> None:
    backends = {"pg": postgres, "chroma": chroma, "wv": weaviate_fake}
    backend: PostgresServer | ChromaServer | FakeWeaviate = backends[provider_id]
    store_id, _ = _store(client, provider_id)
    before = _search(client, store_id)
    assert before
    backend.stop()
    try:
        with pytest.raises(openai.InternalServerError) as caught:
            _search(client, store_id)
        assert caught.value.status_code == 503
        error = caught.value.body
        assert isinstance(error, dict) and f"'{provider_id}'" in error["message"]
        # The rest of the API answers meanwhile, and the provider list says what is down.
        assert httpx.get(f"{server.url}/v1/health", timeout=10).status_code == 200
        providers = httpx.get(f"{server.url}/v1/providers", timeout=30)
        assert providers.status_code == 200
        ours = [p for p in providers.json()["data"] if p["provider_id"] == provider_id]
        assert ours and ours[0]["health"]["status"] != "OK"
        assert postgres.password not in caught.value.response.text + providers.text
        assert weaviate_fake.api_key
        assert weaviate_fake.api_key not in caught.value.response.text + providers.text
    finally:
        backend.start()
    assert _search(client, store_id) == before


def test_the_pg_password_is_never_shown_or_logged(
    client: openai.OpenAI,
    server: LiveServer,
    postgres: PostgresServer,
) -> None:
    providers = httpx.get(f"{server.url}/v1/providers", timeout=30)
    assert providers.status_code == 200
    pg = next(p for p in providers.json()["data"] if p["provider_id"] == "pg")
    assert pg["provider_type"] == "remote::pgvector"
    assert pg["health"]["status"] == "OK"
    one = httpx.get(f"{server.url}/v1/providers/pg", timeout=30)
    for text in (providers.text, one.text, Path(server.log).read_text()):
        assert postgres.password not in text


def test_the_weaviate_api_key_is_never_shown_or_logged(
    client: openai.OpenAI, server: LiveServer, weaviate_fake: FakeWeaviate
) -> None:
    providers = httpx.get(f"{server.url}/v1/providers", timeout=30)
    assert providers.status_code == 200
    wv = next(p for p in providers.json()["data"] if p["provider_id"] == "wv")
    assert wv["provider_type"] == "remote::weaviate"
    assert wv["health"]["status"] == "OK"  # the key reached the server (it wants one)
    one = httpx.get(f"{server.url}/v1/providers/wv", timeout=30)
    assert weaviate_fake.api_key
    for text in (providers.text, one.text, Path(server.log).read_text()):
        assert weaviate_fake.api_key not in text
