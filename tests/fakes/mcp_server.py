"""A real MCP server (the ``mcp`` package's MCPServer) on localhost, streamable HTTP at ``/mcp``
and SSE at ``/sse``, with three tools: ``add``, ``boom`` (raises) and ``secret_tool``. It
answers only requests carrying ``Authorization: Bearer <token>`` and records every request's
headers, so tests can see what reached it."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError


def build_server() -> MCPServer:
    server = MCPServer("llamda-test-tools")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def boom(reason: str) -> str:
        """Always fails (a ToolError's message is what the server reports)."""
        raise ToolError(f"exploded: {reason}")

    @server.tool()
    def secret_tool() -> str:
        """A tool the tests do not allow."""
        return "should never be called"

    return server


class MCPTestServer:
    def __init__(self, token: str = "mcp-token-123") -> None:
        self.token = token
        self.seen_headers: list[dict[str, str]] = []
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        tools = build_server()
        mcp_app = tools.streamable_http_app(streamable_http_path="/mcp", host="127.0.0.1")
        sse_app = tools.sse_app(sse_path="/sse", message_path="/messages/", host="127.0.0.1")
        outer = self

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
                outer.seen_headers.append(headers)
                if headers.get("authorization") != f"Bearer {outer.token}":
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 401,
                            "headers": [(b"content-type", b"text/plain")],
                        }
                    )
                    await send({"type": "http.response.body", "body": b"unauthorized"})
                    return
            path = scope.get("path", "")
            target = sse_app if path.startswith(("/sse", "/messages")) else mcp_app
            await target(scope, receive, send)

        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> MCPTestServer:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
