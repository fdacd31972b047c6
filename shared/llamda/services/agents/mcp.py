"""MCP tools of the Responses API: the server_url allow-list (SSRF guard), listing a server's
tools and calling one, over streamable HTTP (or SSE for a URL ending in ``/sse``).

The ``mcp`` package is imported only here and only when a request uses an mcp tool. Each
operation opens its own short connection (no session outlives a call, so nothing crosses tasks
or invocations). A request's ``headers`` go to its server and nowhere else: they are never
stored, logged or returned, and they are scrubbed from every error message.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import json
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from llamda.api.responses import MCPTool
from llamda.config import MCPConfig
from llamda.errors import BadRequestError
from llamda.redact import scrub

MAX_OUTPUT_CHARS = 64 * 1024  # one tool result, as the model and the stored item see it
MAX_LISTED = 128  # tools of one server offered to the model (the chat API's limit)
MAX_SEEN = 1024  # tools read from one server at most (a server listing thousands is cut)
MAX_PAGES = 20
MAX_SCHEMA_BYTES = 64 * 1024  # as a function tool's parameters
MAX_DESCRIPTION_CHARS = 16 * 1024
REDACTED = "<redacted>"


class MCPFailure(Exception):
    """An MCP server could not be reached or answered with an error (the reason is safe to
    show: scrubbed of the request's header values)."""


ANY_PORT = -1


def _entry(entry: str) -> tuple[str, int | None]:
    """An allow-list entry: ``host`` (the scheme's default port only), ``host:port`` or
    ``host:*`` (any port); host may hold ``*`` globs; IPv6 in brackets."""
    entry = entry.strip().lower()
    port: str | None = None
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
    elif entry.count(":") == 1:
        host, _, port = entry.partition(":")
    else:
        host = entry
    if port is None:
        return host, None
    return host, ANY_PORT if port == "*" else int(port)


def _private(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return not ip.is_global or ip.is_multicast


async def check_server_url(tool: MCPTool, config: MCPConfig, param: str) -> None:
    """400 unless ``server_url`` is http(s), without credentials, on a host and port the
    allow-list names, and — unless the entry names the host literally — resolving to public
    addresses only (no loopback, private, link-local or metadata address through a wildcard).
    The address is checked when the request arrives; the connection resolves the name again
    (a DNS-rebinding window the allow-list, not this check, must close: list only hosts whose
    DNS you trust)."""
    parts = urlsplit(tool.server_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequestError("server_url must be an http(s) URL", param=param)
    if parts.username or parts.password:
        raise BadRequestError(
            "server_url must not carry credentials: send them in headers", param=param
        )
    host = parts.hostname.lower()
    default = 443 if parts.scheme == "https" else 80
    try:
        port = parts.port or default
    except ValueError:
        raise BadRequestError("server_url has an invalid port", param=param) from None
    matched: str | None = None
    for raw in config.allowed_servers:
        pattern, allowed_port = _entry(raw)
        port_ok = allowed_port == ANY_PORT or port == (
            default if allowed_port is None else allowed_port
        )
        if fnmatch.fnmatchcase(host, pattern) and port_ok:
            matched = pattern
            break
    if matched is None:
        raise BadRequestError(
            f"server_url host {host!r} is not allowed: list it in agents.mcp.allowed_servers",
            param=param,
            code="server_not_allowed",
        )
    if matched == host and "*" not in matched:
        return  # named literally: the operator chose this host, private or not
    try:
        infos = await asyncio.wait_for(
            asyncio.to_thread(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM), 5
        )
    except (OSError, TimeoutError):
        # Matched by a pattern only: an address that cannot be checked is not trusted.
        raise BadRequestError(
            f"server_url host {host!r} does not resolve", param=param, code="server_not_allowed"
        ) from None
    if any(_private(str(info[4][0])) for info in infos):
        raise BadRequestError(
            f"server_url host {host!r} resolves to a private or link-local address; only a "
            "host named literally in agents.mcp.allowed_servers may",
            param=param,
            code="server_not_allowed",
        )


def _reason(exc: BaseException, tool: MCPTool) -> str:
    """A failure's message without the request's header values."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return scrub(text, _secrets(tool))[:1000]


def _secrets(tool: MCPTool) -> list[str]:
    values = list((tool.headers or {}).values())
    if tool.authorization:
        values.append(tool.authorization)
    return values


@asynccontextmanager
async def _client(tool: MCPTool, seconds: float) -> AsyncIterator[Any]:
    import httpx2
    from mcp import Client
    from mcp.client.sse import sse_client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    headers = dict(tool.headers or {})
    if tool.authorization:
        headers["Authorization"] = f"Bearer {tool.authorization}"
    limits = httpx2.Timeout(seconds, read=seconds)
    if urlsplit(tool.server_url).path.rstrip("/").endswith("/sse"):
        transport = sse_client(
            tool.server_url, headers=headers, timeout=seconds, sse_read_timeout=seconds
        )
        async with Client(transport, mode="legacy", cache=None) as client:
            yield client
        return
    async with create_mcp_http_client(headers=headers, timeout=limits) as http:
        transport = streamable_http_client(tool.server_url, http_client=http)
        async with Client(transport, cache=None) as client:
            yield client


def _allowed(tool: MCPTool) -> set[str] | None:
    allowed = tool.allowed_tools
    if allowed is None:
        return None
    if isinstance(allowed, list):
        return set(allowed)
    return set(allowed.tool_names or [])


async def list_tools(tool: MCPTool, seconds: float) -> tuple[list[dict[str, Any]], list[str]]:
    """The server's tools (only ``allowed_tools``) that a model can be offered, as an
    ``mcp_list_tools`` item lists them, and the names of those left out (a name or schema the
    chat API refuses, or past ``MAX_LISTED``)."""
    wanted = _allowed(tool)
    tools: list[dict[str, Any]] = []
    skipped: list[str] = []
    try:
        async with asyncio.timeout(seconds), _client(tool, seconds) as client:
            cursor: str | None = None
            for _ in range(MAX_PAGES):
                page = await client.list_tools(cursor=cursor)
                for item in page.tools:
                    if wanted is not None and item.name not in wanted:
                        continue
                    listed = _offerable(item)
                    if listed is None or len(tools) >= MAX_LISTED:
                        skipped.append(str(item.name)[:128])
                    else:
                        tools.append(listed)
                cursor = page.next_cursor
                if not cursor or len(tools) + len(skipped) >= MAX_SEEN:
                    break
    except Exception as exc:  # any transport or protocol failure is the item's error
        raise MCPFailure(_reason(exc, tool)) from None
    return tools, skipped[:MAX_LISTED]


_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _offerable(item: Any) -> dict[str, Any] | None:
    """An MCP tool as a chat function, or None when the chat API would refuse it (MCP allows
    names such as ``files.read``; a schema must be a bounded JSON object schema)."""
    if not isinstance(item.name, str) or not _FUNCTION_NAME.match(item.name):
        return None
    schema = item.input_schema or {"type": "object", "properties": {}}
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        return None
    if len(json.dumps(schema)) > MAX_SCHEMA_BYTES:
        return None
    description = item.description if isinstance(item.description, str) else None
    return {
        "name": item.name,
        "description": description[:MAX_DESCRIPTION_CHARS] if description else None,
        "input_schema": schema,
        "annotations": (
            item.annotations.model_dump(exclude_none=True) if item.annotations else None
        ),
    }


async def call_tool(tool: MCPTool, name: str, arguments: str, seconds: float) -> str:
    """The tool's result as text; MCPFailure with the reason when the call or the tool fails."""
    try:
        parsed = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        raise MCPFailure("the arguments are not valid JSON") from None
    if not isinstance(parsed, dict):
        raise MCPFailure("the arguments must be a JSON object")
    try:
        async with asyncio.timeout(seconds), _client(tool, seconds) as client:
            result = await client.call_tool(name, parsed)
    except Exception as exc:
        raise MCPFailure(_reason(exc, tool)) from None
    texts = []
    for block in result.content or []:
        text = getattr(block, "text", None)
        texts.append(text if isinstance(text, str) else json.dumps(block.model_dump()))
    if not texts and result.structured_content is not None:
        texts.append(json.dumps(result.structured_content))
    output = "\n".join(texts)[:MAX_OUTPUT_CHARS]
    if result.is_error:
        raise MCPFailure(scrub(output, _secrets(tool)) or "the tool failed")
    return output


def public_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """A tool as stored and returned: header values and the authorization token redacted."""
    if tool.get("type") != "mcp":
        return tool
    out = dict(tool)
    if out.get("headers"):
        out["headers"] = dict.fromkeys(out["headers"], REDACTED)
    if out.get("authorization"):
        out["authorization"] = REDACTED
    return out
