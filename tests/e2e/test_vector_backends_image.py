"""The image functions on your own vector databases (#17): VectorFunction and IngestFunction from
the task root built from functions/Dockerfile, with the aws profile and the template's backend
variables, against the real PostgreSQL + pgvector and `chroma run` servers (tests/backends.py:
Chroma through the image's HTTP-only chromadb-client) and the wire-level fake Weaviate. The
password and the API key come from moto's SSM and Secrets Manager, as the template names them.

Marked ``e2e`` and ``backends``: CI runs it (scripts/test runs every tier); the quick loop
leaves both out."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.backends import ChromaServer, PostgresServer
from tests.e2e.harness import (
    Artifact,
    api_gateway_event,
    base_python,
    lambda_env,
    response_json,
    s3_notification,
    sqs_event,
)
from tests.fakes.bedrock import FakeBedrockServer

pytestmark = [pytest.mark.e2e, pytest.mark.backends]
INGEST_BUCKET = "llamda-ingest"
BACKEND_CLIENTS = ("psycopg", "psycopg_pool", "chromadb", "weaviate", "grpc")


@pytest.fixture(scope="module")
def secrets(moto_endpoint: str, postgres: PostgresServer, weaviate_fake: Any) -> dict[str, str]:
    """The pgvector password in SSM (a SecureString, by name) and the Weaviate key in Secrets
    Manager (by ARN): the two forms the template's parameters take."""
    ssm = boto3.client("ssm", endpoint_url=moto_endpoint, region_name="us-east-1")
    ssm.put_parameter(
        Name="/llamda/pg-password", Value=postgres.password, Type="SecureString", Overwrite=True
    )
    sm = boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name="us-east-1")
    arn = sm.create_secret(Name="llamda/weaviate-key", SecretString=weaviate_fake.api_key)["ARN"]
    return {"pg": "/llamda/pg-password", "weaviate": arn}


@pytest.fixture
def env(
    aws_env: dict[str, str],
    fake_bedrock: FakeBedrockServer,
    postgres: PostgresServer,
    chroma: ChromaServer,
    weaviate_fake: Any,
    secrets: dict[str, str],
) -> dict[str, str]:
    """What the template sets with PgVector*, ChromaUrl and Weaviate* given (no password or key
    in the environment: only where to read them)."""
    fake_bedrock.fake.reset()
    return {
        **aws_env,
        "BEDROCK_ENDPOINT_URL": fake_bedrock.endpoint,
        "PGVECTOR_HOST": "127.0.0.1",
        "PGVECTOR_PORT": str(postgres.port),
        "PGVECTOR_DB": postgres.database,
        "PGVECTOR_USER": "llamda",
        "PGVECTOR_PASSWORD_PARAMETER": secrets["pg"],
        "PGVECTOR_SSLMODE": "disable",  # the test cluster has no certificate
        "CHROMA_URL": chroma.url,
        "WEAVIATE_HTTP_HOST": "127.0.0.1",
        "WEAVIATE_HTTP_PORT": str(weaviate_fake.http_port),
        "WEAVIATE_GRPC_PORT": str(weaviate_fake.grpc_port),
        "WEAVIATE_SECURE": "false",
        "WEAVIATE_API_KEY_PARAMETER": secrets["weaviate"],
    }


def call(fn: Artifact, env: dict[str, str], *events: dict[str, Any]) -> list[dict[str, Any]]:
    return fn.invoke(list(events), lambda_env(fn, env))["results"]


def proxy(method: str, path: str, body: Any = None) -> dict[str, Any]:
    resource = "/v1/vector_stores/{proxy+}" if path.count("/") > 2 else "/v1/vector_stores"
    if path.startswith("/v1/vector-io"):
        resource = "/v1/vector-io/{proxy+}"
    return api_gateway_event(method, path, resource=resource, body=body)


def stored_rows(
    backend: str, store: str, postgres: PostgresServer, chroma: ChromaServer, weaviate: Any
) -> int:
    """The chunks the backend itself holds for ``store`` (asked of the server, not of us)."""
    if backend == "pgvector":
        import psycopg
        from psycopg import sql

        from llamda.providers.vector_io.pgvector import table_name

        with psycopg.connect(postgres.dsn()) as conn:
            table = sql.Identifier(table_name("llamda_", "default", store))
            (count,) = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()  # type: ignore[misc]
            return int(count)
    if backend == "chromadb":
        import chromadb

        from llamda.providers.vector_io.chroma import collection_name

        client = chromadb.HttpClient(host="127.0.0.1", port=chroma.port)
        return client.get_collection(collection_name("llamda_", "default", store)).count()
    from llamda.providers.vector_io.weaviate import collection_name as weaviate_name

    return len(weaviate.collections[weaviate_name("Llamda_", "default", store)].objects)


@pytest.mark.parametrize("backend", ["pgvector", "chromadb", "weaviate"])
def test_image_functions_create_fill_and_search_a_store_on_a_remote_backend(
    image_artifacts: dict[str, Artifact],
    env: dict[str, str],
    moto_endpoint: str,
    postgres: PostgresServer,
    chroma: ChromaServer,
    weaviate_fake: Any,
    backend: str,
) -> None:
    vector, ingest = image_artifacts["VectorFunction"], image_artifacts["IngestFunction"]
    (created,) = call(
        vector,
        env,
        proxy("POST", "/v1/vector_stores", {"name": f"on-{backend}", "provider_id": backend}),
    )
    assert created["statusCode"] == 200, created["body"]
    store = response_json(created)["id"]
    chunks = [
        {"chunk_id": "a", "content": "Vicuñas graze in the high Andes.", "metadata": {"k": 1}},
        {"chunk_id": "b", "content": "Reindeer pull sleds in Lapland.", "metadata": {"k": 2}},
    ]
    inserted, queried = call(
        vector,
        env,
        proxy("POST", "/v1/vector-io/insert", {"vector_store_id": store, "chunks": chunks}),
        proxy(
            "POST", "/v1/vector-io/query", {"vector_store_id": store, "query": "sleds in Lapland"}
        ),
    )
    assert inserted["statusCode"] == 200, inserted["body"]
    assert queried["statusCode"] == 200, queried["body"]
    assert response_json(queried)["chunks"][0]["chunk_id"] == "b"

    # A document through the ingest path (S3 → SQS → IngestFunction), with attributes to filter.
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    key = f"ingest/default/{store}/guides/guanacos.md"
    data = b"# Guanacos\n\nGuanacos whistle to warn the herd."
    s3.put_object(
        Bucket=INGEST_BUCKET,
        Key=key,
        Body=data,
        Metadata={"attributes": json.dumps({"team": "field", "year": 2024})},
    )
    etag = s3.head_object(Bucket=INGEST_BUCKET, Key=key)["ETag"].strip('"')
    event = s3_notification("ObjectCreated:Put", INGEST_BUCKET, key, etag=etag, size=len(data))
    (result,) = ingest.invoke([sqs_event([json.dumps(event)])], lambda_env(ingest, env))["results"]
    assert result == {"batchItemFailures": []}

    searched, filtered, none = call(
        vector,
        env,
        proxy("POST", f"/v1/vector_stores/{store}/search", {"query": "guanacos whistle"}),
        proxy(
            "POST",
            f"/v1/vector_stores/{store}/search",
            {"query": "animals", "filters": {"type": "gte", "key": "year", "value": 2024}},
        ),
        proxy(
            "POST",
            f"/v1/vector_stores/{store}/search",
            {"query": "animals", "filters": {"type": "eq", "key": "team", "value": "office"}},
        ),
    )
    top = response_json(searched)["data"][0]
    assert top["filename"] == "guanacos.md" and "whistle" in top["content"][0]["text"]
    assert [r["filename"] for r in response_json(filtered)["data"]] == ["guanacos.md"]
    assert response_json(none)["data"] == []

    # The rows are in the backend (two inserted chunks, one document's), not in LanceDB on S3.
    assert stored_rows(backend, store, postgres, chroma, weaviate_fake) == 3
    lance = (
        boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
        .list_objects_v2(Bucket="llamda-data", Prefix="lancedb/")
        .get("Contents", [])
    )
    assert not any(f"/{store}.lance/" in o["Key"] for o in lance)


def test_vector_function_cold_start_imports_no_backend_client(
    image_artifacts: dict[str, Artifact], env: dict[str, str]
) -> None:
    """With every remote backend configured, a cold VectorFunction serving LanceDB requests
    imports none of their clients (psycopg, chromadb, weaviate, grpc): only a store on that
    backend pays for its client."""
    fn = image_artifacts["VectorFunction"]
    report = fn.invoke(
        [
            proxy("POST", "/v1/vector_stores", {"name": "lance-only"}),
            proxy("GET", "/v1/vector_stores"),
        ],
        lambda_env(fn, env),
    )
    created, listed = report["results"]
    assert created["statusCode"] == 200, created["body"]
    assert listed["statusCode"] == 200, listed["body"]
    loaded = report["modules_at_end"]
    # The providers themselves are built (their modules are light)...
    assert "llamda.providers.vector_io.pgvector" in loaded
    # ...their clients are not imported.
    heavy = [m for m in loaded if m.split(".")[0] in BACKEND_CLIENTS]
    assert heavy == []


def test_image_chroma_client_is_http_only_and_says_so_for_a_path(
    image_dir: Path, tmp_path: Path
) -> None:
    """The image has the HTTP-only chromadb-client (not the full package's server); a `path`
    config there (outside the aws profile, which refuses it at load) is a 503 that says why,
    not the client's RuntimeError (a 500)."""
    script = f"""
import asyncio, json, sys
sys.path[:0] = [{str(image_dir)!r}]
from chromadb.config import is_thin_client
from llamda.config import VectorsConfig
from llamda.errors import ServiceUnavailableError
from llamda.providers.vector_io.chroma import ChromaIndex
from llamda.providers.vector_io.config import ChromaConfig
from llamda.providers.vector_io.index import IndexContext

index = ChromaIndex(
    "c", ChromaConfig(path={str(tmp_path / "chroma")!r}), IndexContext(VectorsConfig(uri="/tmp/v"))
)
try:
    asyncio.run(index.create("vs_1", 3))
    outcome = "created"
except ServiceUnavailableError as exc:
    outcome = str(exc)
print(json.dumps({{"thin": is_thin_client, "outcome": outcome}}))
"""
    proc = subprocess.run(
        [base_python(), "-I", "-S", "-B", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "ANONYMIZED_TELEMETRY": "False"},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["thin"] is True
    assert "HTTP-only chromadb-client" in report["outcome"], report
