"""aioboto3 clients, created once per process and event loop.

Lambda keeps the process warm between invocations, so clients live as long as the loop that
made them; Mangum reuses one loop, the local server has one loop. aioboto3 is imported only
when a client is first needed (it costs ~330 ms of cold start).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


class AioClients:
    """Lazily opened aioboto3 clients keyed by (service, region, endpoint)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._clients: dict[tuple[str, str | None, str | None], Any] = {}
        self._session: Any = None

    async def client(
        self, service: str, *, region_name: str | None = None, endpoint_url: str | None = None
    ) -> Any:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # Clients are bound to the loop that opened them; start over on a new loop.
            self._clients.clear()
            self._stack = contextlib.AsyncExitStack()
            self._loop = loop
        key = (service, region_name, endpoint_url)
        if key not in self._clients:
            if self._session is None:
                import aioboto3

                self._session = aioboto3.Session()
            assert self._stack is not None
            self._clients[key] = await self._stack.enter_async_context(
                self._session.client(service, region_name=region_name, endpoint_url=endpoint_url)
            )
        return self._clients[key]

    async def close(self) -> None:
        if self._stack is not None and self._loop is asyncio.get_running_loop():
            await self._stack.aclose()
        self._clients.clear()
        self._stack = None
        self._loop = None


clients = AioClients()


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError, else None."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("Error", {}).get("Code")
    return None
