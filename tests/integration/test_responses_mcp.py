"""MCP tools in the Responses loop, against a real MCP server (the ``mcp`` package, streamable
HTTP and SSE on localhost): tools listed and called server-side, a failing tool fed back, an
unreachable server reported, the allow-list enforced, and the headers never kept."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import LiveServer, free_port, start_server, stop_server
from tests.fakes.bedrock import FakeBedrockServer, Reply
from tests.fakes.mcp_server import MCPTestServer

MODEL = "meta.llama3-1-70b-instruct-v1:0"
TOKEN = "mcp-token-123"
CONFIG = """
version: 1
apis: [inspect, models, inference, agents]
providers:
  inference:
    - {{provider_id: fake-bedrock, provider_type: bedrock,
       config: {{region_name: us-east-1, endpoint_url: "{bedrock}"}}}}
  vector_io:
    - {{provider_id: lancedb, provider_type: lancedb}}
models:
  - {{model_id: agent, provider_id: fake-bedrock, provider_model_id: "{model}"}}
storage:
  records: {{type: sqlite, path: "{home}/records.sqlite3"}}
  objects: {{type: local, root: "{home}/objects"}}
  vectors: {{uri: "{home}/lancedb"}}
routing: {{max_retries: 0}}
agents:
  mcp: {{allowed_servers: ["127.0.0.1:*", "local*"], timeout_seconds: 5}}
"""


@pytest.fixture(scope="module")
def tools_server() -> Iterator[MCPTestServer]:
    with MCPTestServer(TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, fake_bedrock: FakeBedrockServer
) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("mcp")
    (home / "run.yaml").write_text(
        CONFIG.format(bedrock=fake_bedrock.endpoint, model=MODEL, home=home)
    )
    live = start_server(home / "run.yaml", home)
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def oai(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(autouse=True)
def _fresh(fake_bedrock: FakeBedrockServer) -> Iterator[None]:
    fake_bedrock.fake.reset()
    yield
    fake_bedrock.fake.reset()


def mcp_tool(url: str, token: str = TOKEN, **extra: object) -> dict:
    return {
        "type": "mcp",
        "server_label": "calc",
        "server_url": url,
        "headers": {"Authorization": f"Bearer {token}"},
        "allowed_tools": ["add", "boom"],
        "require_approval": "never",
        **extra,
    }


def test_tools_are_listed_and_called_and_headers_never_kept(
    oai: openai.OpenAI,
    fake_bedrock: FakeBedrockServer,
    tools_server: MCPTestServer,
    server: LiveServer,
) -> None:
    fake_bedrock.fake.script(MODEL, Reply(tool={"name": "add", "input": {"a": 2, "b": 3}}))
    response = oai.responses.create(
        model="agent", input="What is 2 + 3?", tools=[mcp_tool(tools_server.url)]
    )
    assert response.status == "completed"
    listing, call, message = response.output
    assert listing.type == "mcp_list_tools" and listing.server_label == "calc"
    assert sorted(t.name for t in listing.tools) == ["add", "boom"]  # allowed_tools applied
    assert call.type == "mcp_call" and call.name == "add" and call.output == "5"
    assert json.loads(call.arguments) == {"a": 2, "b": 3}
    assert message.content[0].text == "You said: 5"  # the result went back to the model
    offered = [
        t["toolSpec"]["name"] for t in fake_bedrock.fake.calls[0]["body"]["toolConfig"]["tools"]
    ]
    assert sorted(offered) == ["add", "boom"]
    # The server got the header; nothing we store or return holds it.
    assert any(h.get("authorization") == f"Bearer {TOKEN}" for h in tools_server.seen_headers)
    stored = httpx.get(f"{server.url}/v1/responses/{response.id}").text
    assert TOKEN not in stored and TOKEN not in response.model_dump_json()
    assert json.loads(stored)["tools"][0]["headers"] == {"Authorization": "<redacted>"}
    listed = httpx.get(f"{server.url}/v1/responses", params={"limit": 100}).text
    assert TOKEN not in listed
    assert TOKEN not in server.log.read_text()


def test_a_failing_tool_is_fed_back_as_an_error(
    oai: openai.OpenAI, fake_bedrock: FakeBedrockServer, tools_server: MCPTestServer
) -> None:
    fake_bedrock.fake.script(MODEL, Reply(tool={"name": "boom", "input": {"reason": "disk full"}}))
    response = oai.responses.create(
        model="agent", input="Try it", tools=[mcp_tool(tools_server.url)]
    )
    assert response.status == "completed"
    call = response.output[1]
    assert (
        call.type == "mcp_call" and call.status == "failed" and "exploded: disk full" in call.error
    )
    assert "exploded: disk full" in response.output_text


def test_sse_transport(
    oai: openai.OpenAI, fake_bedrock: FakeBedrockServer, tools_server: MCPTestServer
) -> None:
    fake_bedrock.fake.script(MODEL, Reply(tool={"name": "add", "input": {"a": 40, "b": 2}}))
    url = tools_server.url.replace("/mcp", "/sse")
    response = oai.responses.create(model="agent", input="40+2?", tools=[mcp_tool(url)])
    assert response.output[1].output == "42"


def test_streaming_mcp_events(
    oai: openai.OpenAI, fake_bedrock: FakeBedrockServer, tools_server: MCPTestServer
) -> None:
    fake_bedrock.fake.script(MODEL, Reply(tool={"name": "add", "input": {"a": 1, "b": 1}}))
    events = list(
        oai.responses.create(
            model="agent", input="1+1", tools=[mcp_tool(tools_server.url)], stream=True
        )
    )
    types = [e.type for e in events]
    for kind in (
        "response.mcp_list_tools.in_progress",
        "response.mcp_list_tools.completed",
        "response.mcp_call.in_progress",
        "response.mcp_call.completed",
    ):
        assert kind in types
    assert types.index("response.mcp_list_tools.completed") < types.index(
        "response.mcp_call.in_progress"
    )
    assert types[-1] == "response.completed"


def test_an_unreachable_or_refusing_server_is_a_failed_listing(
    oai: openai.OpenAI, tools_server: MCPTestServer
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/mcp"
    response = oai.responses.create(model="agent", input="hello", tools=[mcp_tool(closed)])
    assert response.status == "completed"
    listing = response.output[0]
    assert listing.type == "mcp_list_tools" and listing.error and listing.tools == []
    assert response.output_text == "You said: hello"  # answered without the tools
    wrong = "wrong-secret-value-987"
    refused = oai.responses.create(
        model="agent", input="hi", tools=[mcp_tool(tools_server.url, token=wrong)]
    )
    assert refused.output[0].error and wrong not in refused.model_dump_json()


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/mcp",  # not in the allow-list
        "http://localhost/mcp",  # a wildcard entry resolving to loopback
        "http://169.254.169.254/latest/meta-data",  # instance metadata
        "file:///etc/passwd",
        "http://user:pw@127.0.0.1/mcp",  # credentials in the URL
    ],
)
def test_server_urls_outside_the_allow_list_are_400(oai: openai.OpenAI, url: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        oai.responses.create(model="agent", input="x", tools=[mcp_tool(url)])
    assert err.value.body["param"] == "tools[0].server_url"


def test_approval_requests_are_refused(oai: openai.OpenAI, tools_server: MCPTestServer) -> None:
    with pytest.raises(openai.BadRequestError):
        oai.responses.create(
            model="agent", input="x", tools=[mcp_tool(tools_server.url, require_approval="always")]
        )
