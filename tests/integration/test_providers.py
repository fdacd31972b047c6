"""/v1/providers as Llama Stack clients read it: the provider of every served API (files and
agents included) with its health, under Llama Stack's provider type names."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from llama_stack_client import LlamaStackClient

from tests.conftest import ROOT, LiveServer, start_server, stop_server

LOCAL_PROFILE = ROOT / "shared" / "llamda" / "profiles" / "local.yaml"
# Llama Stack has no provider for inspect (the stack itself); models are the inference
# providers' (a routing table).
PROVIDER_API = {"models": "inference", "eval": "scoring"}


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The bundled local profile, as `llamda serve` runs it on a fresh LLAMDA_HOME (the test
    environment has AWS_DEFAULT_REGION, so Bedrock is switched on)."""
    home = tmp_path_factory.mktemp("providers")
    server = start_server(LOCAL_PROFILE, home)
    yield server
    stop_server(server)


def test_every_served_api_lists_its_provider_with_health(local: LiveServer) -> None:
    client = LlamaStackClient(base_url=local.url, max_retries=0)
    served = yaml.safe_load(LOCAL_PROFILE.read_text())["apis"]
    listed = client.providers.list()
    by_api: dict[str, list[str]] = {}
    for provider in listed:
        by_api.setdefault(provider.api, []).append(provider.provider_type)
    for api in served:
        if api != "inspect":
            assert by_api.get(PROVIDER_API.get(api, api)), f"{api} lists no provider: {by_api}"
    assert by_api["files"] == ["inline::localfs"]
    assert by_api["agents"] == ["inline::builtin"]
    assert by_api["vector_io"] == ["inline::lancedb"]
    assert by_api["safety"] == ["inline::rules"]
    assert by_api["inference"] == ["inline::sentence-transformers", "remote::bedrock"]
    for provider in listed:
        got = client.providers.retrieve(provider.provider_id)
        assert (got.api, got.provider_type) == (provider.api, provider.provider_type)
        assert got.health["status"] == "OK", (got.provider_id, got.health)
    files = client.providers.retrieve("localfs")
    assert files.config == {"root": str(local.home / "objects")}
    agents = client.providers.retrieve("builtin")
    assert agents.config["persistence"]["type"] == "sqlite"


def test_inspect_routes_name_the_providers_behind_each_api(local: LiveServer) -> None:
    client = LlamaStackClient(base_url=local.url, max_retries=0)
    routes = {(r.route, r.method): r.provider_types for r in client.routes.list()}
    assert routes[("/v1/files", "POST")] == ["inline::localfs"]
    assert routes[("/v1/vector_stores", "POST")] == ["inline::lancedb"]
    assert routes[("/v1/chat/completions", "POST")] == [
        "inline::sentence-transformers",
        "remote::bedrock",
    ]
    assert routes[("/v1/moderations", "POST")] == ["inline::rules"]


BROKEN = """
apis: [inspect, files, agents, vector_io]
providers:
  vector_io:
    - {provider_id: lancedb, provider_type: lancedb}
storage:
  records: {type: sqlite, path: "${env.LLAMDA_HOME}/records.sqlite3"}
  objects: {type: local, root: "${env.LLAMDA_HOME}/not-a-dir/objects"}
  vectors: {uri: "${env.LLAMDA_HOME}/not-a-dir/lancedb"}
"""


def test_health_says_error_when_storage_is_unusable(tmp_path: Path) -> None:
    """Health is probed, not assumed: objects and tables under a regular file cannot work."""
    (tmp_path / "run.yaml").write_text(BROKEN)
    (tmp_path / "not-a-dir").write_text("a file where a directory should be")
    server = start_server(tmp_path / "run.yaml", tmp_path)
    try:
        client = LlamaStackClient(base_url=server.url, max_retries=0)
        health = {p.provider_id: p.health for p in client.providers.list()}
        assert health["localfs"]["status"] == "Error"
        assert health["lancedb"]["status"] == "Error"
        assert health["builtin"]["status"] == "OK"
        # The probe's failure is named by type only: no path of the server in the answer.
        assert str(tmp_path) not in str(health)
    finally:
        stop_server(server)
