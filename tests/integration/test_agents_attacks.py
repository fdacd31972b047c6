"""The agents API attacked as a hostile client, a careless client and an AWS engineer would.

A live server (auth on, two tenants), the fake Bedrock for a scripted model and a real MCP
server. Tests marked ``xfail(strict=True)`` with a ``FINDING`` reason reproduce open bugs: they
fail today (and so pass as xfail); once the bug is fixed they pass, and strict xfail turns that
into a failure so the marker is removed with the fix. Unmarked tests are regression guards for
attacks that are already refused.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, start_server, stop_server
from tests.e2e.harness import api_gateway_event, response_json
from tests.fakes.bedrock import FakeBedrockServer, Reply
from tests.fakes.mcp_server import MCPTestServer
from tests.integration.agents_server import create_key
from tests.integration.test_responses_lambda import MODEL as LAMBDA_MODEL
from tests.integration.test_responses_lambda import create, function, invoke
from tests.integration.test_responses_mcp import CONFIG, MODEL, TOKEN, mcp_tool

__all__ = ["function"]  # the Lambda tests' fixture: a function on moto DynamoDB and SQS

AUTH = "server: {auth: true}\n"


@pytest.fixture(scope="module")
def tools_server() -> Iterator[MCPTestServer]:
    with MCPTestServer(TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, fake_bedrock: FakeBedrockServer) -> Path:
    home = tmp_path_factory.mktemp("attacks")
    config = CONFIG.format(bedrock=fake_bedrock.endpoint, model=MODEL, home=home) + AUTH
    (home / "run.yaml").write_text(config)
    return home


@pytest.fixture(scope="module")
def keys(home: Path) -> dict[str, str]:
    return {tenant: create_key(home, tenant) for tenant in ("acme", "globex")}


@pytest.fixture(scope="module")
def server(home: Path, keys: dict[str, str]) -> Iterator[LiveServer]:
    live = start_server(home / "run.yaml", home)
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def acme(server: LiveServer, keys: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{server.url}/v1",
        headers={"Authorization": f"Bearer {keys['acme']}"},
        timeout=60,  # an MCP round trip on a loaded 2-core machine can pass httpx's default 5 s
    ) as client:
        yield client


@pytest.fixture(scope="module")
def globex(server: LiveServer, keys: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{server.url}/v1",
        headers={"Authorization": f"Bearer {keys['globex']}"},
        timeout=60,
    ) as client:
        yield client


@pytest.fixture(autouse=True)
def _fresh(fake_bedrock: FakeBedrockServer) -> Iterator[None]:
    fake_bedrock.fake.reset()
    yield
    fake_bedrock.fake.reset()


def finished(client: httpx.Client, response_id: str) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body = client.get(f"/responses/{response_id}").json()
        if body["status"] not in ("queued", "in_progress"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"{response_id} never finished")


def stored_bytes(home: Path) -> bytes:
    """Everything the server keeps at rest: Records (SQLite, with its WAL) and objects."""
    return b"".join(p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file())


# -- secrets at rest ------------------------------------------------------------------------


def test_mcp_credentials_are_never_stored(
    acme: httpx.Client,
    fake_bedrock: FakeBedrockServer,
    tools_server: MCPTestServer,
    home: Path,
) -> None:
    """Background runs would have to keep the credentials: refused. A foreground run keeps
    nothing of them at rest (Records and objects, byte for byte)."""
    bearer = mcp_tool(tools_server.url)
    del bearer["headers"]
    bearer["authorization"] = TOKEN
    for tool in (mcp_tool(tools_server.url), bearer):
        queued = acme.post(
            "/responses",
            json={"model": "agent", "input": "1 + 2?", "tools": [tool], "background": True},
        )
        assert queued.status_code == 400, queued.text
    fake_bedrock.fake.script(MODEL, Reply(tool={"name": "add", "input": {"a": 1, "b": 2}}))
    created = acme.post(
        "/responses",
        json={"model": "agent", "input": "1 + 2?", "tools": [mcp_tool(tools_server.url)]},
    )
    assert created.status_code == 200, created.text
    assert created.json()["output"][1]["output"] == "3"
    assert TOKEN not in created.text
    assert TOKEN.encode() not in stored_bytes(home)


def test_an_authorization_token_never_reaches_an_error_item(
    acme: httpx.Client, tools_server: MCPTestServer, home: Path
) -> None:
    secret = "zq-SECRET-value-7781"
    tool = mcp_tool(tools_server.url)
    del tool["headers"]
    tool["authorization"] = f"{secret}\n"  # careless client: a trailing newline from a file
    created = acme.post("/responses", json={"model": "agent", "input": "hi", "tools": [tool]})
    assert created.status_code < 500, created.text
    assert secret not in created.text
    if created.status_code == 200:
        fetched = acme.get(f"/responses/{created.json()['id']}")
        assert secret not in fetched.text
    assert secret.encode() not in stored_bytes(home)


# -- tenancy --------------------------------------------------------------------------------


def test_another_tenant_cannot_read_continue_cancel_or_delete_a_response(
    acme: httpx.Client, globex: httpx.Client, fake_bedrock: FakeBedrockServer
) -> None:
    fake_bedrock.fake.script(MODEL, Reply(text="hello acme"))
    created = acme.post(
        "/responses", json={"model": "agent", "input": "secret plan", "background": True}
    )
    assert created.status_code == 200, created.text
    response_id = created.json()["id"]
    finished(acme, response_id)
    assert globex.get(f"/responses/{response_id}").status_code == 404
    assert globex.get(f"/responses/{response_id}/input_items").status_code == 404
    assert globex.post(f"/responses/{response_id}/cancel").status_code == 404
    assert globex.delete(f"/responses/{response_id}").status_code == 404
    chained = globex.post(
        "/responses",
        json={"model": "agent", "input": "go on", "previous_response_id": response_id},
    )
    assert chained.status_code == 404, chained.text
    assert response_id not in globex.get("/responses", params={"limit": 100}).text
    assert acme.get(f"/responses/{response_id}").status_code == 200  # still there for acme


# -- SSRF -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:1/mcp",
        "http://[::ffff:127.0.0.1]/mcp",
        "http://[::1]/mcp",
        "http://0.0.0.0/mcp",
        "http://2130706433/mcp",  # 127.0.0.1 as a decimal number
        "http://0177.0.0.1/mcp",  # octal
        "http://127.1/mcp",
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1@169.254.169.254/mcp",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
    ],
)
def test_ssrf_server_urls_are_400(acme: httpx.Client, url: str) -> None:
    tool = {"type": "mcp", "server_label": "x", "server_url": url, "require_approval": "never"}
    reply = acme.post("/responses", json={"model": "agent", "input": "hi", "tools": [tool]})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"].startswith("tools[0]")


# -- malformed input never a 5xx --------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"after": "\u0000"},
        {"after": "resp_" + "f" * 100},
        {"after": "\U0001f600" * 30},
        {"after": "zzz", "order": "asc"},
        {"model": "\u0000"},
    ],
)
def test_list_cursors_are_never_5xx(acme: httpx.Client, params: dict[str, str]) -> None:
    reply = acme.get("/responses", params=params)
    assert reply.status_code < 500, reply.text


def test_input_items_cursor_and_ids_are_never_5xx(
    acme: httpx.Client, fake_bedrock: FakeBedrockServer
) -> None:
    fake_bedrock.fake.script(MODEL, Reply(text="ok"))
    response_id = acme.post("/responses", json={"model": "agent", "input": "x"}).json()["id"]
    for after in ("\u0000", "msg_nope", "x" * 128):
        reply = acme.get(f"/responses/{response_id}/input_items", params={"after": after})
        assert reply.status_code in (400, 404, 422), reply.text
    for bad in ("..%2F..%2Fetc", "resp_\u00e9", "a" * 300, "resp_x%00"):
        assert acme.get(f"/responses/{bad}").status_code in (400, 404, 422)


# -- background jobs ------------------------------------------------------------------------


def test_a_refused_background_job_leaves_no_queued_orphan(
    tmp_path: Path, fake_bedrock: FakeBedrockServer
) -> None:
    home = tmp_path
    (home / "run.yaml").write_text(
        CONFIG.format(bedrock=fake_bedrock.endpoint, model=MODEL, home=home)
    )
    # A Lambda without jobs.queue_url: the runner refuses to start a task it would lose.
    live = start_server(home / "run.yaml", home, env={"AWS_LAMBDA_FUNCTION_NAME": "agents"})
    try:
        with httpx.Client(base_url=f"{live.url}/v1") as client:
            queued = client.post(
                "/responses", json={"model": "agent", "input": "hi", "background": True}
            )
            assert queued.status_code == 503, queued.text
            listed = client.get("/responses", params={"limit": 100}).json()["data"]
            assert [r["status"] for r in listed] == []
    finally:
        stop_server(live)


# -- DynamoDB's 400 KB item limit -------------------------------------------------------------


def test_long_instructions_are_stored_in_dynamodb(
    function: Path, fake_bedrock: FakeBedrockServer
) -> None:
    fake_bedrock.fake.script(LAMBDA_MODEL, Reply(text="ok"))
    instructions = "Follow the house style. " * 20_000  # 460 KB, well under the body limit
    body = {"model": "agent", "input": "hi", "instructions": instructions}
    [created] = invoke(function, [create(body)])
    assert created["statusCode"] == 200, str(created)[:2000]
    response_id = response_json(created)["id"]
    [fetched] = invoke(
        function, [api_gateway_event("GET", f"/v1/responses/{response_id}", tenant="acme")]
    )
    assert response_json(fetched)["instructions"] == instructions


def test_another_tenants_conversation_or_prompt_never_reaches_the_model(
    acme: httpx.Client, globex: httpx.Client, fake_bedrock: FakeBedrockServer
) -> None:
    conv = acme.post("/conversations", json={"items": [{"role": "user", "content": "SECRET-C"}]})
    assert conv.status_code == 200, conv.text
    prompt = acme.post("/prompts", json={"prompt": "SECRET-P {{x}}", "variables": ["x"]})
    assert prompt.status_code == 200, prompt.text
    fake_bedrock.fake.script(MODEL, Reply(text="ok"))
    for extra in (
        {"conversation": conv.json()["id"]},
        {"conversation": {"id": conv.json()["id"]}},
        {"prompt": {"id": prompt.json()["prompt_id"], "variables": {"x": "y"}}},
        {"prompt": {"id": prompt.json()["prompt_id"], "version": "1", "variables": {"x": "y"}}},
    ):
        reply = globex.post("/responses", json={"model": "agent", "input": "hi", **extra})
        assert reply.status_code == 404, reply.text
        assert "SECRET" not in reply.text
    assert not any("SECRET" in str(call["body"]) for call in fake_bedrock.fake.calls)
    # The conversation did not gain globex's input either.
    items = acme.get(f"/conversations/{conv.json()['id']}/items").json()["data"]
    assert len(items) == 1


# -- unbounded work from a hostile MCP server ---------------------------------------------------


def serve_tools(names: list[str]) -> Iterator[str]:
    """An MCP server (no auth) listing one tool per name, all on one page."""
    import threading

    import uvicorn
    from mcp.server.mcpserver import MCPServer

    from tests.conftest import free_port

    tools = MCPServer("hostile")
    for name in names:
        tools.add_tool(lambda: "x", name=name, description="a tool " * 20)
    port = free_port()
    app = tools.streamable_http_app(streamable_http_path="/mcp", host="127.0.0.1")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/mcp"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def flood_server() -> Iterator[str]:
    yield from serve_tools([f"t{index}" for index in range(2000)])


@pytest.fixture(scope="module")
def dotted_server() -> Iterator[str]:
    # MCP allows dots and 128 characters in tool names; chat function names do not.
    yield from serve_tools(["files.read", "x" * 100])


def test_a_flood_of_mcp_tools_is_not_a_5xx_and_is_capped(
    acme: httpx.Client, fake_bedrock: FakeBedrockServer, flood_server: str
) -> None:
    fake_bedrock.fake.script(MODEL, Reply(text="ok"))
    tool = {"type": "mcp", "server_label": "flood", "server_url": flood_server}
    reply = acme.post("/responses", json={"model": "agent", "input": "hi", "tools": [tool]})
    assert reply.status_code < 500, reply.text[:2000]
    listing = reply.json()["output"][0]
    assert listing["type"] == "mcp_list_tools"
    assert len(listing["tools"]) <= 512


def test_function_tools_plus_mcp_tools_over_the_chat_limit_are_not_a_5xx(
    acme: httpx.Client, fake_bedrock: FakeBedrockServer, tools_server: MCPTestServer
) -> None:
    fake_bedrock.fake.script(MODEL, Reply(text="ok"))
    functions = [{"type": "function", "name": f"f{i}"} for i in range(127)]
    body = {"model": "agent", "input": "hi", "tools": [*functions, mcp_tool(tools_server.url)]}
    reply = acme.post("/responses", json=body)
    assert reply.status_code < 500, reply.text[:2000]


def test_mcp_tool_names_the_chat_api_refuses_are_not_a_5xx(
    acme: httpx.Client, fake_bedrock: FakeBedrockServer, dotted_server: str
) -> None:
    fake_bedrock.fake.script(MODEL, Reply(text="ok"))
    tool = {"type": "mcp", "server_label": "dotted", "server_url": dotted_server}
    reply = acme.post("/responses", json={"model": "agent", "input": "hi", "tools": [tool]})
    assert reply.status_code < 500, reply.text[:2000]


def test_a_background_run_with_unusable_mcp_tools_completes_without_them(
    acme: httpx.Client,
    fake_bedrock: FakeBedrockServer,
    dotted_server: str,
) -> None:
    fake_bedrock.fake.script(MODEL, Reply(text="ok"))
    tool = {"type": "mcp", "server_label": "dotted", "server_url": dotted_server}
    queued = acme.post(
        "/responses", json={"model": "agent", "input": "hi", "tools": [tool], "background": True}
    )
    assert queued.status_code == 200, queued.text
    response_id = queued.json()["id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done = acme.get(f"/responses/{response_id}").json()
        if done["status"] not in ("queued", "in_progress"):
            break
        time.sleep(0.1)
    assert done["status"] == "completed", done
    assert done["output"][0]["skipped_tools"]  # named: the client sees why


# -- secrets in errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "credentials",
    [
        {"headers": {"Authorization": "Bearer SECRETX-4411\n"}},  # a newline: invalid value
        {"headers": {"X-Api-Key\n": "SECRETX-4411"}},  # an invalid header name
        {"authorization": "SECRETX-4411" * 700},  # too long
        {"authorization": ["SECRETX-4411"]},  # wrong type
        {"headers": {"Authorization": "Bearer SECRETX-4411"}, "require_approval": "always"},
        {"headers": {"Authorization": "Bearer SECRETX-4411"}, "server_label": "bad label"},
    ],
)
def test_invalid_mcp_credentials_are_never_echoed(
    acme: httpx.Client, server: LiveServer, credentials: dict
) -> None:
    tool = {"type": "mcp", "server_label": "calc", "server_url": "http://127.0.0.1:9/mcp"}
    reply = acme.post(
        "/responses", json={"model": "agent", "input": "hi", "tools": [{**tool, **credentials}]}
    )
    assert 400 <= reply.status_code < 500, reply.text
    assert "SECRETX" not in reply.text
    assert "SECRETX" not in server.log.read_text()


def test_a_streamed_run_with_unusable_mcp_tools_ends_with_a_terminal_event(
    acme: httpx.Client, fake_bedrock: FakeBedrockServer, dotted_server: str
) -> None:
    fake_bedrock.fake.script(MODEL, Reply(text="ok"))
    tool = {"type": "mcp", "server_label": "dotted", "server_url": dotted_server}
    body = {"model": "agent", "input": "hi", "tools": [tool], "stream": True}
    kinds: list[str] = []
    try:
        with acme.stream("POST", "/responses", json=body) as reply:
            assert reply.status_code == 200
            for line in reply.iter_lines():
                if line.startswith("event: "):
                    kinds.append(line[len("event: ") :])
    except httpx.HTTPError:
        pass  # a cut stream: what the assertion below is about
    # Tools the chat API refuses are left out (named on the listing): the run completes.
    assert kinds and kinds[-1] == "response.completed", kinds
