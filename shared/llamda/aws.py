"""Async AWS clients (aiobotocore), created once per process and event loop.

Lambda keeps the process warm between invocations, so clients live as long as the loop that
made them; Mangum reuses one loop, the local server has one loop. aiobotocore is imported only
when a client is first needed (it costs ~300 ms of cold start). The clients are aiobotocore's
own, as aioboto3 would hand out: going to aiobotocore directly skips importing boto3 (~80 ms),
whose resources and transfer helpers we do not use.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


class AioClients:
    """Lazily opened aiobotocore clients keyed by (service, region, endpoint)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._clients: dict[tuple[Any, ...], Any] = {}
        self._session: Any = None

    async def client(
        self,
        service: str,
        *,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        max_attempts: int | None = None,
        read_timeout: float | None = None,
    ) -> Any:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # Clients are bound to the loop that opened them; start over on a new loop.
            self._clients.clear()
            self._stack = contextlib.AsyncExitStack()
            self._loop = loop
        key = (service, region_name, endpoint_url, max_attempts, read_timeout)
        if key not in self._clients:
            if self._session is None:
                from aiobotocore.session import get_session

                self._session = get_session()
            assert self._stack is not None
            options: dict[str, Any] = {}
            if max_attempts is not None:
                options["retries"] = {"total_max_attempts": max_attempts, "mode": "standard"}
            if read_timeout is not None:
                options["read_timeout"] = read_timeout
            if service == "s3":
                # Presigned URLs signed with SigV4: botocore may presign with SigV2, which
                # regions opened since 2014 refuse.
                options["signature_version"] = "s3v4"
            from aiobotocore.config import AioConfig

            self._clients[key] = await self._stack.enter_async_context(
                self._session.create_client(
                    service,
                    region_name=region_name,
                    endpoint_url=endpoint_url,
                    config=AioConfig(**options) if options else None,
                )
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
