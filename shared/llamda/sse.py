"""Server-sent events for a served stream, which never strand its upstream connection.

The upstream stream is closed (``aclose``) however the response ends: finished, the client gone,
the client not reading for ``idle_seconds`` (a chunk that cannot be delivered for that long),
or the request's hard deadline (in Lambda: the invocation's, so a buffered stream still returns
a valid body before the function is killed).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
from pydantic import BaseModel
from starlette.responses import StreamingResponse
from starlette.types import Send

from llamda.context import add_tokens, request_deadline
from llamda.errors import LlamdaError, UpstreamTimeoutError
from llamda.observability import logger

CLOSE_GRACE_SECONDS = 5.0  # closing an upstream stream never holds the response longer


async def events(
    stream: AsyncIterator[Any], include_usage: bool, provider: str
) -> AsyncIterator[bytes]:
    """``data: {json}`` per chunk, then ``data: [DONE]``. An error after the first chunk is sent
    as an ``error`` event (the stream does not switch provider)."""
    deadline = request_deadline()
    iterator = aiter(stream)
    try:
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    chunk = await anext(iterator)
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise UpstreamTimeoutError(
                    "the request deadline was reached while streaming", code="deadline_exceeded"
                ) from None
            if isinstance(chunk, BaseModel):
                # One serialization, straight to JSON bytes (no dict in between).
                usage = getattr(chunk, "usage", None)
                if usage is not None:  # providers are always asked for it: the key pays
                    add_tokens(_tokens(usage.model_dump()))
                if not include_usage and not getattr(chunk, "choices", None):
                    continue  # the usage-only chunk
                body = chunk.model_dump_json(
                    exclude_none=True, exclude=None if include_usage else {"usage"}
                )
                yield b"data: " + body.encode() + b"\n\n"
                continue
            data = chunk
            usage = data.get("usage")
            if isinstance(usage, dict):
                add_tokens(_tokens(usage))
            if not include_usage:
                if not data.get("choices"):
                    continue  # the usage-only chunk
                data.pop("usage", None)
            yield f"data: {json.dumps(data)}\n\n".encode()
    except LlamdaError as exc:
        logger.warning("stream failed after it started", provider=provider, error=exc.message)
        yield f"data: {json.dumps(exc.to_dict())}\n\n".encode()
    finally:
        await _close(iterator)
    yield b"data: [DONE]\n\n"


def _tokens(usage: dict[str, Any]) -> int:
    """The tokens a usage report counts: its total, else prompt + completion."""
    return int(usage.get("total_tokens") or 0) or int(usage.get("prompt_tokens") or 0) + int(
        usage.get("completion_tokens") or 0
    )


async def _close(iterator: Any) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is None:
        return
    # Shielded: on a client disconnect this runs inside a cancelled task group.
    with anyio.move_on_after(CLOSE_GRACE_SECONDS, shield=True):
        await aclose()


class SSEResponse(StreamingResponse):
    """A StreamingResponse that ends the stream when a chunk cannot be delivered for
    ``idle_seconds`` (the client stopped reading) and always closes its body iterator (which
    closes the upstream stream), also when the client disconnects."""

    def __init__(
        self, content: AsyncIterator[bytes], idle_seconds: float, headers: Mapping[str, str]
    ):
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self.idle_seconds = idle_seconds

    async def stream_response(self, send: Send) -> None:
        try:
            start = {"status": self.status_code, "headers": self.raw_headers}
            await send({"type": "http.response.start", **start})
            async for chunk in self.body_iterator:
                try:
                    async with asyncio.timeout(self.idle_seconds):
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                except TimeoutError:
                    # The connection is dropped unfinished: the client learns it was cut off.
                    logger.warning("stream ended: client not reading", idle_s=self.idle_seconds)
                    return
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await _close(self.body_iterator)
