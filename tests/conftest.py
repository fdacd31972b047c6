"""Fixtures shared by every tier: a real moto server (S3, DynamoDB...) and a live local server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.fakes.bedrock import FakeBedrockServer

# The vector backends' real servers (PostgreSQL + pgvector, Chroma) as session fixtures.
pytest_plugins = ["tests.backends"]

ROOT = Path(__file__).resolve().parents[1]

# Tests never reach real AWS: fake credentials, one region, no instance metadata lookups.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
)
for _var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "LLAMDA_CONFIG", "LLAMDA_PROFILE"):
    os.environ.pop(_var, None)


def pytest_configure(config: pytest.Config) -> None:
    # Registered here, beside the fixtures that use it (pyproject's list holds the others).
    config.addinivalue_line(
        "markers",
        "backends: the vector-store suite on every vector backend but lancedb (tests/configs.py "
        "VECTOR_BACKENDS); run by .ci/run, left out of the quick loop",
    )


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A real moto server on a free port (HTTP, like the AWS endpoints it stands in for)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def records_table(endpoint: str) -> str:
    """A new Records table on the moto server (the template's key schema); its name."""
    import boto3

    table = f"records-{uuid.uuid4().hex[:8]}"
    boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1").create_table(
        TableName=table,
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return table


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]
    home: Path
    log: Path


def start_server(config: Path, home: Path, env: dict[str, str] | None = None) -> LiveServer:
    """``llamda serve`` as a user runs it, on a free port; waits until /v1/health answers."""
    port = free_port()
    log = home / "server.log"
    proc_env = {**os.environ, "LLAMDA_HOME": str(home), **(env or {})}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llamda.cli",
                "serve",
                "--config",
                str(config),
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=proc_env,
            cwd=home,
        )
    url = f"http://127.0.0.1:{port}"
    wait_until_serving(f"{url}/v1/health", process, log)
    return LiveServer(url, process, home, log)


def wait_until_serving(
    url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 30, ok: int | None = 200
) -> None:
    """Poll ``url`` until it answers (with ``ok``, or anything when None); fail with the
    process's log if it exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-4000:]}")
        try:
            status = httpx.get(url, timeout=2).status_code
            if ok is None or status == ok:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not start: {log.read_text()[-4000:]}")


def log_text(server: LiveServer, containing: str, timeout: float = 10) -> str:
    """The server's log once it contains ``containing`` (a request's last line is written just
    after its response is sent), or as it is when ``timeout`` runs out."""
    deadline = time.monotonic() + timeout
    text = server.log.read_text()
    while containing not in text and time.monotonic() < deadline:
        time.sleep(0.05)
        text = server.log.read_text()
    return text


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(10)
    except subprocess.TimeoutExpired:
        server.process.kill()


TEST_CONFIG = """
version: 1
profile: local
apis: [inspect, models, inference, safety, files, vector_io, agents, eval, batches]
providers:
  vector_io:
    - provider_id: lancedb
      provider_type: lancedb
  inference:
    - provider_id: fake-vllm
      provider_type: vllm
      config:
        url: http://127.0.0.1:9/v1
        api_key: sk-secret-never-shown
    - provider_id: fake-bedrock
      provider_type: bedrock
      config:
        region_name: us-east-1
        endpoint_url: ${env.FAKE_BEDROCK_URL}
models:
  - model_id: meta-llama/Llama-3.2-3B-Instruct
    provider_id: fake-vllm
  - model_id: amazon.titan-embed-text-v2:0
    provider_id: fake-bedrock
    model_type: embedding
    metadata: {embedding_dimension: 1024}
vector_stores:
  - vector_store_id: kb-declared
    provider_id: lancedb
    embedding_model: amazon.titan-embed-text-v2:0
    embedding_dimension: 1024
    name: Declared KB
storage:
  records: {type: sqlite, path: "${env.LLAMDA_HOME}/records.sqlite3"}
  objects: {type: local, root: "${env.LLAMDA_HOME}/objects"}
  vectors: {uri: "${env.LLAMDA_HOME}/lancedb"}
server:
  max_body_bytes: 65536
  max_file_bytes: 200000
routing: {max_retries: 1, backoff_base_seconds: 0.01, timeout_seconds: 5}
"""


@pytest.fixture(scope="session")
def live_server(
    tmp_path_factory: pytest.TempPathFactory, fake_bedrock: FakeBedrockServer
) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("live")
    config = home / "run.yaml"
    config.write_text(TEST_CONFIG)
    server = start_server(config, home, {"FAKE_BEDROCK_URL": fake_bedrock.endpoint})
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def fake_bedrock() -> Iterator[FakeBedrockServer]:
    """The wire-level fake Bedrock Runtime (tests/fakes/bedrock.py) on a free port."""
    with FakeBedrockServer() as server:
        yield server
