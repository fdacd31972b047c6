"""ASGI middleware: request ids, body size limit, and a last-resort 500 in the OpenAI shape."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llamda.config import UPLOAD_PATHS
from llamda.context import bind_provider_data, bind_request_id, current_request_id
from llamda.errors import BadRequestError, LlamdaError, PayloadTooLargeError
from llamda.observability import logger

REQUEST_ID_HEADER = b"x-request-id"
PROVIDER_DATA_HEADER = b"x-llamastack-provider-data"
MAX_PROVIDER_DATA = 8192


def parse_provider_data(raw: str | None) -> dict[str, str] | None:
    """The provider-data header: a JSON object of string credentials. Its values are secrets:
    they are never logged, and an error message never repeats them."""
    if raw is None:
        return None
    if len(raw) > MAX_PROVIDER_DATA:
        raise BadRequestError(
            "X-LlamaStack-Provider-Data is too large", param="X-LlamaStack-Provider-Data"
        )
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise BadRequestError(
            "X-LlamaStack-Provider-Data must be a JSON object of string values",
            param="X-LlamaStack-Provider-Data",
            code="invalid_provider_data",
        )
    return data


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


async def send_error(send: Send, error: LlamdaError, request_id: str) -> None:
    body = json.dumps(error.to_dict()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status_code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (REQUEST_ID_HEADER, request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestContextMiddleware:
    """Binds the request id (client's ``x-request-id``, else API Gateway's, else new), echoes it
    on every response, logs one line per request, and turns a crash into an OpenAI-shaped 500."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            bind_provider_data(parse_provider_data(_header(scope, PROVIDER_DATA_HEADER)))
        except BadRequestError as exc:
            await send_error(send, exc, bind_request_id(_header(scope, REQUEST_ID_HEADER)))
            return
        event = scope.get("aws.event") or {}
        gateway_id = (event.get("requestContext") or {}).get("requestId")
        request_id = bind_request_id(_header(scope, REQUEST_ID_HEADER) or gateway_id)
        status: dict[str, Any] = {"code": 500, "started": False}
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
                headers = [h for h in message.get("headers", []) if h[0] != REQUEST_ID_HEADER]
                message = {
                    **message,
                    "headers": [*headers, (REQUEST_ID_HEADER, request_id.encode())],
                }
            await send(message)

        with logger.append_context_keys(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            except Exception:
                logger.exception("unhandled error")
                if status["started"]:
                    raise
                error = LlamdaError(f"Internal server error (request id {request_id})")
                await send_error(send, error, request_id)
            finally:
                logger.info(
                    "request",
                    method=scope.get("method"),
                    path=scope.get("path"),
                    status=status["code"],
                    duration_ms=round((time.perf_counter() - start) * 1000, 2),
                )


class BodyLimitMiddleware:
    """Refuses bodies over ``max_bytes`` with a 413, by Content-Length or by counting."""

    def __init__(self, app: ASGIApp, max_bytes: int, upload_bytes: int | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = upload_bytes or max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_bytes if scope.get("path") in UPLOAD_PATHS else self.max_bytes
        too_large = PayloadTooLargeError(f"request body is larger than {limit} bytes")
        request_id = current_request_id() or "unknown"
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await send_error(send, too_large, request_id)
            return
        if scope.get("path") in UPLOAD_PATHS:
            await self._stream_counted(scope, receive, send, limit, too_large, request_id)
            return
        # Read the body up front (it is bounded) so an oversize chunked body is refused before
        # the app sees any of it.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await send_error(send, too_large, request_id)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _stream_counted(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        limit: int,
        too_large: PayloadTooLargeError,
        request_id: str,
    ) -> None:
        """Uploads pass through as they arrive (never held whole in memory), counted: past
        ``limit`` the app's read fails, whatever it answers is dropped, and the client gets
        the 413. The upload endpoint stores nothing before its body is fully read."""
        size = 0
        exceeded = started = False

        async def counting() -> Message:
            nonlocal size, exceeded
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limit:
                    exceeded = True
                    raise too_large
            return message

        async def unless_exceeded(message: Message) -> None:
            nonlocal started
            if not exceeded:
                started = started or message["type"] == "http.response.start"
                await send(message)

        try:
            await self.app(scope, counting, unless_exceeded)
        except Exception:
            if not exceeded or started:
                raise
        if exceeded and not started:
            await send_error(send, too_large, request_id)
