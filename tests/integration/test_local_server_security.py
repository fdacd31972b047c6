"""`llamda serve` facing a browser: DNS rebinding (a foreign Host) is refused, state-changing
requests from another origin are refused (multipart included), SDK/curl requests without an
Origin pass, configured origins pass (with CORS), and file content is a download that is never
sniffed. The Lambda app (API Gateway in front) does not carry these checks."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import LiveServer, start_server, stop_server

CONFIG = """
apis: [inspect, models, files]
storage:
  records: {type: sqlite, path: "${env.LLAMDA_HOME}/r.sqlite3"}
  objects: {type: local, root: "${env.LLAMDA_HOME}/o"}
  vectors: {uri: "${env.LLAMDA_HOME}/v"}
server:
  allowed_origins: [http://ui.example:3000]
"""
UI = "http://ui.example:3000"
EVIL = "http://evil.example"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("browser")
    (home / "run.yaml").write_text(CONFIG)
    live = start_server(home / "run.yaml", home)
    yield live
    stop_server(live)


def _port(server: LiveServer) -> str:
    return server.url.rsplit(":", 1)[1]


def _upload(server: LiveServer, headers: dict[str, str], name: str = "a.txt") -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/files",
        files={"file": (name, b"hello", "text/plain")},
        data={"purpose": "assistants"},
        headers=headers,
    )


def _file_count(server: LiveServer) -> int:
    return len(httpx.get(f"{server.url}/v1/files").json()["data"])


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8321", "attacker.localhost.evil", "127.0.0.2", ""]
)
def test_foreign_host_is_400_in_openai_shape(server: LiveServer, host: str) -> None:
    reply = httpx.get(f"{server.url}/v1/models", headers={"Host": host})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "Host"
    assert error["code"] == "invalid_host" and reply.headers["x-request-id"]


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]", "LOCALHOST"])
def test_loopback_names_with_any_port_pass(server: LiveServer, host: str) -> None:
    for value in (host, f"{host}:{_port(server)}", f"{host}:1"):
        assert httpx.get(f"{server.url}/v1/health", headers={"Host": value}).status_code == 200


def test_cross_origin_upload_and_delete_are_refused(server: LiveServer) -> None:
    before = _file_count(server)
    for headers in (
        {"Origin": EVIL},
        {"Origin": "null"},  # sandboxed iframes, file:// pages
        {"Origin": f"http://localhost:{_port(server)}.evil.example"},
        {"Sec-Fetch-Site": "cross-site"},  # a browser that leaves Origin out
        {"Origin": EVIL, "Sec-Fetch-Site": "same-origin"},  # Origin decides when present
    ):
        reply = _upload(server, headers)
        assert reply.status_code == 403, (headers, reply.text)
        error = reply.json()["error"]
        assert error["type"] == "permission_error" and error["param"] == "Origin"
    assert _file_count(server) == before
    file_id = _upload(server, {}).json()["id"]
    refused = httpx.delete(f"{server.url}/v1/files/{file_id}", headers={"Origin": EVIL})
    assert refused.status_code == 403
    assert httpx.get(f"{server.url}/v1/files/{file_id}").status_code == 200


def test_sdk_same_origin_and_allowed_origins_pass(server: LiveServer) -> None:
    same = f"http://127.0.0.1:{_port(server)}"
    assert _upload(server, {}).status_code == 200  # SDKs and curl send no Origin
    assert _upload(server, {"Origin": same, "Sec-Fetch-Site": "same-origin"}).status_code == 200
    allowed = _upload(server, {"Origin": UI, "Sec-Fetch-Site": "cross-site"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == UI
    preflight = httpx.options(
        f"{server.url}/v1/files",
        headers={"Origin": UI, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == UI
    # Reads from another origin are not state-changing (and without CORS a page cannot read).
    read = httpx.get(f"{server.url}/v1/files", headers={"Origin": EVIL})
    assert read.status_code == 200 and "access-control-allow-origin" not in read.headers


def test_file_content_is_a_download_never_sniffed(server: LiveServer) -> None:
    name = 'evil"\r\n<script>.html'
    uploaded = httpx.post(
        f"{server.url}/v1/files",
        files={"file": (name, b"<script>alert(1)</script>", "text/html")},
        data={"purpose": "assistants"},
    )
    assert uploaded.status_code == 200, uploaded.text
    content = httpx.get(f"{server.url}/v1/files/{uploaded.json()['id']}/content")
    assert content.status_code == 200 and content.content == b"<script>alert(1)</script>"
    assert content.headers["x-content-type-options"] == "nosniff"
    disposition = content.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="')
    ascii_name = disposition.split('filename="', 1)[1].split('"', 1)[0]
    assert all(c.isalnum() or c in "._ -" for c in ascii_name), disposition
    assert "\r" not in disposition and "\n" not in disposition and "<" not in disposition
    assert "sandbox" in content.headers["content-security-policy"]
    # Every other response is never sniffed either.
    assert httpx.get(f"{server.url}/v1/files").headers["x-content-type-options"] == "nosniff"


def test_the_lambda_app_has_no_browser_checks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """API Gateway's Host is the execute-api name and web clients are expected there: the app
    the Lambda functions build (create_app) answers whatever Host and Origin."""
    from llamda.app import create_app
    from llamda.config import parse_config

    raw = {
        "apis": ["inspect", "models"],
        "storage": {
            "records": {"type": "sqlite", "path": str(tmp_path / "r.sqlite3")},
            "objects": {"type": "local", "root": str(tmp_path / "o")},
            "vectors": {"uri": str(tmp_path / "v")},
        },
    }
    app = create_app(parse_config(raw, "<test>"))

    async def calls() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://x.aws") as client:
            health = await client.get("/v1/health", headers={"Host": "abc.execute-api.aws"})
            post = await client.post(
                "/v1/models",
                json={},
                headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site"},
            )
            return health, post

    health, post = asyncio.run(calls())
    assert health.status_code == 200
    assert post.status_code == 400  # judged on its body, not refused as cross-origin
