"""ASGI middleware: request ids, body size limit, and a last-resort 500 in the OpenAI shape."""

from __future__ import annotations

import functools
import json
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llamda.config import UPLOAD_PATHS
from llamda.context import (
    bind_provider_data,
    bind_request_id,
    current_principal,
    current_request_id,
)
from llamda.errors import (
    BadRequestError,
    LlamdaError,
    PayloadTooLargeError,
    PermissionDeniedError,
)
from llamda.observability import local_metrics, logger

REQUEST_ID_HEADER = b"x-request-id"
PROVIDER_DATA_HEADER = b"x-llamastack-provider-data"
MAX_PROVIDER_DATA = 8192
_SET_ON_EVERY_RESPONSE = frozenset({REQUEST_ID_HEADER, b"x-content-type-options"})


PROVIDER_DATA_PARAM = "X-LlamaStack-Provider-Data"
MAX_PROVIDER_DATA_VALUE = 512
_PRINTABLE = re.compile(rf"^[\x21-\x7e]{{1,{MAX_PROVIDER_DATA_VALUE}}}$")
# A JSON escape of a UTF-16 surrogate: only a body with one can parse to a lone surrogate.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def has_lone_surrogate(body: bytes) -> bool:
    """Whether a JSON ``body`` parses to text with an unpaired surrogate (``"\\ud800"``): valid
    JSON, but no UTF-8 text holds it, so storage and upstreams would fail on it. Bodies that
    are not JSON are left to the app's parser (it answers them with a 400 of its own)."""
    if not _SURROGATE_ESCAPE.search(body):
        return False
    try:
        json.dumps(json.loads(body), ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return True
    except (ValueError, RecursionError):
        return False
    return False


@functools.cache
def provider_data_keys() -> frozenset[str]:
    """The documented keys: ``<provider_type>_api_key`` of each remote inference type."""
    from llamda.providers.inference.config import provider_data_key
    from llamda.providers.registry import SPECS

    return frozenset(
        provider_data_key(spec.provider_type)
        for spec in SPECS.values()
        if spec.api == "inference" and "remote_openai" in spec.implementation
    )


def _bad_provider_data(message: str) -> BadRequestError:
    return BadRequestError(
        f"{PROVIDER_DATA_PARAM} {message}", param=PROVIDER_DATA_PARAM, code="invalid_provider_data"
    )


def parse_provider_data(raw: str | None) -> dict[str, str] | None:
    """The provider-data header, validated once here at the edge: a JSON object of at most
    a few documented ``<type>_api_key`` keys with printable-ASCII values of bounded length.
    Its values are secrets: never logged, and no error message repeats a key or a value."""
    if raw is None:
        return None
    if len(raw) > MAX_PROVIDER_DATA:
        raise _bad_provider_data(f"is larger than {MAX_PROVIDER_DATA} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # deep nesting fits in 8 kB
        data = None
    if not isinstance(data, dict):
        raise _bad_provider_data("must be a JSON object of string values")
    allowed = provider_data_keys()
    for key, value in data.items():
        if key not in allowed:
            # The unknown key is not repeated: a client may have put a secret there.
            raise _bad_provider_data(f"has an unknown key (allowed: {', '.join(sorted(allowed))})")
        if not isinstance(value, str) or not _PRINTABLE.match(value):
            raise _bad_provider_data(
                f"{key} must be a string of 1-{MAX_PROVIDER_DATA_VALUE} printable ASCII "
                "characters (no spaces or control characters)"
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
                *((k.encode(), v.encode()) for k, v in error.headers.items()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestContextMiddleware:
    """Binds the request id (client's ``x-request-id``, else API Gateway's, else new), echoes it
    on every response, logs one line per request, and turns a crash into an OpenAI-shaped 500."""

    def __init__(self, app: ASGIApp, local_metrics: bool = False):
        self.app = app
        self.local_metrics = local_metrics

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
                headers = [
                    h for h in message.get("headers", []) if h[0] not in _SET_ON_EVERY_RESPONSE
                ]
                message = {
                    **message,
                    "headers": [
                        *headers,
                        (REQUEST_ID_HEADER, request_id.encode()),
                        # No response is ever sniffed into HTML/script by a browser.
                        (b"x-content-type-options", b"nosniff"),
                    ],
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
                principal = current_principal()  # bound by the auth layer, when auth is on
                elapsed_ms = (time.perf_counter() - start) * 1000
                if self.local_metrics:
                    labels = {"method": str(scope.get("method")), "status": str(status["code"])}
                    local_metrics.add("http_requests", labels, 1)
                    local_metrics.add("http_request_ms", {"method": labels["method"]}, elapsed_ms)
                logger.info(
                    "request",
                    tenant=principal.tenant if principal else None,
                    key_id=principal.key_id if principal else None,
                    method=scope.get("method"),
                    path=scope.get("path"),
                    status=status["code"],
                    duration_ms=round(elapsed_ms, 2),
                )


LONE_SURROGATE = BadRequestError(
    "The request body is not valid Unicode text: it has an unpaired UTF-16 surrogate escape"
    " (\\ud800-\\udfff without its pair).",
    code="invalid_unicode",
)


class BodyLimitMiddleware:
    """Refuses bodies over ``max_bytes`` with a 413, by Content-Length or by counting, and JSON
    bodies that are not valid Unicode text with a 400."""

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
        if has_lone_surrogate(body):
            # One door for every JSON API (and every Lambda behind Mangum): refused before any
            # handler could store or forward half of it.
            await send_error(send, LONE_SURROGATE, request_id)
            return
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


_STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def _host_name(host: str) -> str:
    """``Host`` without its port, lower case (``[::1]:8321`` → ``[::1]``)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_allowed(host: str, patterns: tuple[str, ...]) -> bool:
    """``patterns``: exact names, ``*.example.com`` (any subdomain) or ``*`` (anything)."""
    name = _host_name(host)
    if not name:
        return False
    for pattern in patterns:
        pattern = pattern.lower()
        if pattern == "*" or pattern == name:
            return True
        if pattern.startswith("*.") and name.endswith(pattern[1:]):
            return True
    return False


class BrowserGuardMiddleware:
    """The local server's defences against web pages (``llamda serve`` only; the Lambda
    functions sit behind API Gateway and do not mount this).

    - DNS rebinding: the ``Host`` header must be an allowed name (loopback by default) → 400.
    - Cross-site requests: a state-changing request (POST/PUT/PATCH/DELETE) whose ``Origin`` is
      neither this server nor an allowed origin, or that a browser marks
      ``Sec-Fetch-Site: cross-site``, gets a 403. Content type does not matter (a multipart
      form is a "simple" request a page may send). Requests without ``Origin`` (SDKs, curl) pass.
    """

    def __init__(
        self, app: ASGIApp, allowed_hosts: tuple[str, ...], allowed_origins: tuple[str, ...]
    ):
        self.app = app
        self.allowed_hosts = allowed_hosts
        self.allowed_origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)

    def _origin_allowed(self, origin: str, host: str) -> bool:
        origin = origin.strip().rstrip("/").lower()
        if "*" in self.allowed_origins or origin in self.allowed_origins:
            return True
        # Same origin: the page was served by this very host:port.
        return origin in {f"http://{host.lower()}", f"https://{host.lower()}"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = current_request_id() or "unknown"
        host = _header(scope, b"host") or ""
        if not host_allowed(host, self.allowed_hosts):
            error = BadRequestError(
                "Invalid Host header: this server answers only to its configured names "
                "(server.allowed_hosts)",
                param="Host",
                code="invalid_host",
            )
            await send_error(send, error, request_id)
            return
        if scope.get("method") in _STATE_CHANGING:
            origin = _header(scope, b"origin")
            fetch_site = (_header(scope, b"sec-fetch-site") or "").strip().lower()
            origin_ok = origin is not None and self._origin_allowed(origin, host)
            refused = (origin is not None and not origin_ok) or (
                fetch_site == "cross-site" and not origin_ok
            )
            if refused:
                error = PermissionDeniedError(
                    "Cross-origin request refused: add the page's origin to "
                    "server.allowed_origins to allow it",
                    param="Origin",
                    code="cross_origin_refused",
                )
                await send_error(send, error, request_id)
                return
        await self.app(scope, receive, send)
