"""Run configs the in-process vector tests share: files + vector stores over the fake Bedrock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

_VECTOR_CONFIG = """
version: 1
apis: [models, inference, files, vector_io]
providers:
  inference:
    - {{provider_id: fake-bedrock, provider_type: bedrock,
       config: {{region_name: us-east-1, endpoint_url: "{bedrock}"}}}}
  vector_io:
    - {{provider_id: lancedb, provider_type: lancedb}}
{models}storage:
  records: {{type: sqlite, path: "{home}/records.sqlite3"}}
  objects: {{type: local, root: "{home}/objects"}}
  vectors: {{uri: "{home}/lancedb"{vectors}}}
"""
_TITAN = """models:
  - {model_id: "amazon.titan-embed-text-v2:0", provider_id: fake-bedrock, model_type: embedding,
     metadata: {embedding_dimension: 1024}}
"""


def vector_config(home: Path, bedrock: str, *, titan: bool = True, vectors: str = "") -> str:
    """The YAML: records, objects and LanceDB under ``home``; ``vectors`` adds settings to
    ``storage.vectors`` (e.g. ``"ann_index_min_rows: 256"``)."""
    return _VECTOR_CONFIG.format(
        home=home,
        bedrock=bedrock,
        models=_TITAN if titan else "",
        vectors=f", {vectors}" if vectors else "",
    )


# --- the backend matrix ---------------------------------------------------------------------------

# The vector backends the vector-store suite runs on: name → its ``providers.vector_io`` entry
# (YAML flow mapping; its provider_id is the name). lancedb runs in the default tier, every other
# in the ``backends`` tier (CI runs it; the quick loop leaves it out). Adding a backend is one
# line here (a server-backed one also needs its server started, e.g. by a session fixture that
# sets the env vars its entry names: ``${env.PG_URL}``).
VECTOR_BACKENDS: dict[str, str] = {
    "lancedb": "{provider_id: lancedb, provider_type: lancedb}",
    "faiss": "{provider_id: faiss, provider_type: inline::faiss}",
    "pgvector": "{provider_id: pgvector, provider_type: remote::pgvector, config: {host: 127.0.0.1,"
    " port: '${env.LLAMDA_TEST_PG_PORT}', db: llamda, user: llamda,"
    " password: '${env.LLAMDA_TEST_PG_PASSWORD}', sslmode: disable}}",
    "chromadb": "{provider_id: chromadb, provider_type: remote::chromadb,"
    " config: {url: '${env.LLAMDA_TEST_CHROMA_URL}'}}",
    # The wire-level fake (tests/fakes/weaviate_server.py): no Weaviate server runs here.
    "weaviate": "{provider_id: weaviate, provider_type: remote::weaviate, config: {http_host:"
    " 127.0.0.1, http_port: '${env.LLAMDA_TEST_WEAVIATE_HTTP_PORT}', grpc_port:"
    " '${env.LLAMDA_TEST_WEAVIATE_GRPC_PORT}', api_key: '${env.LLAMDA_TEST_WEAVIATE_API_KEY}'}}",
}
# A server-backed backend's server: the session fixture (tests/backends.py) that starts it and
# sets the env vars its entry names.
BACKEND_SERVERS: dict[str, str] = {
    "pgvector": "postgres",
    "chromadb": "chroma",
    "weaviate": "weaviate_fake",
}


def backend_params() -> list[Any]:
    """``params=`` of a fixture parametrized over the backends (all but lancedb marked)."""
    return [
        pytest.param(name, id=name, marks=() if name == "lancedb" else pytest.mark.backends)
        for name in VECTOR_BACKENDS
    ]


def with_backend(config: str, backend: str) -> str:
    """A run config (``tests.conftest.TEST_CONFIG``'s layout) whose only vector_io provider is
    ``backend``, which also holds the declared store."""
    lancedb = "  vector_io:\n    - provider_id: lancedb\n      provider_type: lancedb\n"
    declared = "    provider_id: lancedb\n    embedding_model:"
    assert lancedb in config and declared in config, "the config's layout changed"
    config = config.replace(lancedb, f"  vector_io:\n    - {VECTOR_BACKENDS[backend]}\n")
    return config.replace(declared, f"    provider_id: {backend}\n    embedding_model:")


def start_backend(request: pytest.FixtureRequest, backend: str) -> None:
    """Start the backend's server, if it has one, before a live server's config names it."""
    if backend in BACKEND_SERVERS:
        request.getfixturevalue(BACKEND_SERVERS[backend])
