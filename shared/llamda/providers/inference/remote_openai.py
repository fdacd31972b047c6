"""The remote OpenAI-compatible family: vLLM, TGI, Ollama, Fireworks, Together, OpenAI (and
Bedrock's OpenAI-compatible endpoint). One implementation over aiohttp (imported on the first
call, not with the app); types differ by defaults."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from llamda import __version__
from llamda.api.inference import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    EmbeddingsRequest,
    EmbeddingsResponse,
)
from llamda.aws import clients, error_code
from llamda.context import provider_data
from llamda.errors import (
    AuthenticationError,
    ContentPolicyError,
    ContextWindowExceededError,
    PermissionDeniedError,
    ServiceUnavailableError,
    UpstreamBadRequestError,
    UpstreamError,
    UpstreamRateLimitError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from llamda.providers.inference.config import (
    BedrockOpenAIConfig,
    RemoteOpenAIConfig,
    provider_data_key,
)
from llamda.providers.inference.fields import upstream_fields
from llamda.redact import mask_url

if TYPE_CHECKING:
    import aiohttp
    from aiohttp import ClientResponse

_CONTEXT_HINTS = (
    "context length",
    "context window",
    "maximum context",
    "too many tokens",
    "context_length",
)
_POLICY_HINTS = ("content policy", "content_policy", "safety system", "flagged")


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    try:
        return float(value) if value else None
    except ValueError:
        return None


def map_http_error(
    provider_id: str, status: int, headers: Mapping[str, str], reason: str, body: bytes
) -> UpstreamError:
    """An upstream HTTP error as our error, keeping the provider's message."""
    try:
        payload = json.loads(body)
        err = payload.get("error", payload) if isinstance(payload, dict) else {}
        message = err.get("message") if isinstance(err, dict) else str(err)
        message = message or body.decode(errors="replace")[:500]
    except ValueError:
        message = body.decode(errors="replace")[:500] or reason
    text = f"{provider_id}: {message}"
    lowered = message.lower()
    if status == 429:
        return UpstreamRateLimitError(text, retry_after=_retry_after(headers))
    if status in (408, 504):
        return UpstreamTimeoutError(text)
    if status >= 500:
        return UpstreamUnavailableError(text, status_code=503, retry_after=_retry_after(headers))
    if status == 401:
        error: UpstreamError = UpstreamBadRequestError(
            text, status_code=401, code="invalid_api_key"
        )
        error.error_type = AuthenticationError.error_type
        return error
    if status == 403:
        error = UpstreamBadRequestError(text, status_code=403, code="permission_denied")
        error.error_type = PermissionDeniedError.error_type
        return error
    if status == 404:
        return UpstreamBadRequestError(text, status_code=404, code="model_not_found", param="model")
    if any(h in lowered for h in _CONTEXT_HINTS):
        return ContextWindowExceededError(text)
    if any(h in lowered for h in _POLICY_HINTS):
        return ContentPolicyError(text)
    return UpstreamBadRequestError(
        text, status_code=400 if status < 400 or status > 499 else status
    )


def _failures() -> tuple[type[BaseException], ...]:
    """What a failed exchange with the upstream raises (aiohttp imported by then)."""
    import aiohttp
    from aiohttp.http_exceptions import HttpProcessingError

    return (aiohttp.ClientError, HttpProcessingError, TimeoutError)


def _failure_name(exc: BaseException) -> str:
    """A transport failure's kind, named as before the move to aiohttp (httpx's names: logs,
    alarms and clients may match on them)."""
    import aiohttp
    from aiohttp.http_exceptions import HttpProcessingError

    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "ConnectTimeout"
    if isinstance(exc, TimeoutError):
        return "ReadTimeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "ConnectError"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return "RemoteProtocolError"  # the upstream closed the connection mid-reply
    if isinstance(exc, aiohttp.ClientResponseError | HttpProcessingError):
        return "RemoteProtocolError"  # not HTTP, or broken HTTP
    if isinstance(exc, aiohttp.ClientOSError):
        return "ReadError"
    return type(exc).__name__


def _upstream_failure(provider_id: str, url: str, exc: BaseException) -> UpstreamError:
    """A connection-level failure, named by its kind and the provider's configured URL
    (credentials and query values masked): the client library's own text can quote the
    request (headers: an API key), so it is never used."""
    name = _failure_name(exc)
    if isinstance(exc, TimeoutError):
        return UpstreamTimeoutError(f"{provider_id}: timed out ({name}) at {mask_url(url)}")
    return UpstreamUnavailableError(
        f"{provider_id}: {name} (upstream unreachable at {mask_url(url)})"
    )


MAX_CONNECTIONS = 100  # to one upstream, per process; all of them kept alive when idle
KEEPALIVE_SECONDS = 5.0  # an idle pooled connection closes after this (as httpx's default)
DNS_CACHE_SECONDS = 10.0
CONNECT_SECONDS = 10.0  # opening a connection (TCP + TLS); the router's deadline bounds it too
MAX_LINE_BYTES = 4 * 1024 * 1024  # one SSE line; longer is a broken upstream, not a chunk
DRAIN_SECONDS = 0.5  # after [DONE]; an upstream that keeps the body open is cut off
USER_AGENT = f"llamda/{__version__}"


def _split_userinfo(url: str) -> tuple[str, str | None]:
    """The URL without ``user:pass@``, and those as a Basic ``Authorization`` value."""
    import base64
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.netloc.rpartition("@")[2]
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return urlunsplit(parts._replace(netloc=host)), f"Basic {token}"


def _dumps(body: dict[str, Any]) -> bytes:
    # As httpx sent JSON bodies: compact, UTF-8, no NaN (an upstream would refuse it).
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


class _Reply:
    """An upstream reply read in full: what error mapping and parsing need."""

    __slots__ = ("content", "headers", "reason", "status")

    def __init__(self, status: int, headers: Mapping[str, str], reason: str, content: bytes):
        self.status = status
        self.headers = headers
        self.reason = reason
        self.content = content


class RemoteOpenAIProvider:
    """Talks to ``{url}/chat/completions``, ``/completions`` and ``/embeddings`` over aiohttp.

    One ``aiohttp.ClientSession`` per event loop (a session and its connections belong to the
    loop that made it): made on the first call, closed by ``close``. The local server and
    Mangum keep one loop; a worker thread or a job runner with its own loop gets its own."""

    def __init__(self, provider_id: str, provider_type: str, config: RemoteOpenAIConfig):
        self.provider_id = provider_id
        self.provider_type = provider_type
        self._config = config
        self._base = config.url.rstrip("/")  # as configured: errors show it, masked
        # Credentials in the URL (``http://user:pass@host``) go as Basic auth when no key is
        # set (a key wins); never in the request line.
        self._url, self._basic = _split_userinfo(self._base)
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
        self._stored_key: str | None = None

    # -- plumbing ---------------------------------------------------------------------------

    def _sign(self, method: str, url: str, body: bytes, headers: dict[str, str]) -> None:
        """Adds request signing headers (Bedrock SigV4); none by default."""

    def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            session = self._sessions[loop] = self._new_session()
            self._forget_closed_loops()
        return session

    def _new_session(self) -> aiohttp.ClientSession:
        import aiohttp  # lazily: a handler that never calls a model does not load it

        # Every connection a burst opened stays pooled: keeping fewer than may be open at
        # once means a busy server reconnects (and, over HTTPS, handshakes) all the time.
        connector = aiohttp.TCPConnector(
            limit=MAX_CONNECTIONS,
            limit_per_host=0,
            keepalive_timeout=KEEPALIVE_SECONDS,
            ttl_dns_cache=DNS_CACHE_SECONDS,
        )
        timeout = aiohttp.ClientTimeout(
            total=None,  # the router's per-attempt deadline bounds the whole call
            connect=self._config.timeout_seconds,  # a free connection, then connecting
            sock_connect=CONNECT_SECONDS,
            sock_read=self._config.timeout_seconds,  # between two reads: a stream may be long
        )
        return aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            headers={"user-agent": USER_AGENT},
            # Proxies (and only then the environment) as httpx honoured them: HTTP(S)_PROXY,
            # NO_PROXY. Reading the environment on every request costs CPU, so only when set.
            trust_env=bool(urllib.request.getproxies()),
            cookie_jar=aiohttp.DummyCookieJar(),  # an upstream's cookies are not replayed
            read_bufsize=2**16,
            raise_for_status=False,
        )

    def _forget_closed_loops(self) -> None:
        """Drop sessions of loops that are gone (e.g. ``asyncio.run`` per job): their sockets
        cannot be closed on a closed loop any more, only released."""
        for loop in [lp for lp in self._sessions if lp.is_closed()]:
            session = self._sessions.pop(loop)
            connector = session.connector
            session.detach()  # marks it closed: no "unclosed session" warning later
            if connector is not None:
                connector._close()

    async def _open(self, method: str, path: str, body: dict[str, Any] | None) -> ClientResponse:
        """Send a request; the response's body is not read yet (the caller releases it)."""
        session = self._session()
        url = f"{self._url}{path}"
        headers = await self._headers()
        data = _dumps(body) if body is not None else None
        self._sign(method, url, data or b"", headers)
        return await session.request(
            method,
            url,
            data=data,
            headers=headers,
            allow_redirects=False,  # as before: a redirect is not followed with our key
            max_line_size=MAX_LINE_BYTES,
        )

    async def _api_key(self) -> str | None:
        # Validated at the edge (middleware): a known key, printable ASCII, bounded.
        per_request = provider_data().get(provider_data_key(self.provider_type))
        if per_request:
            return per_request
        if self._config.api_key is not None:
            return self._config.api_key.get_secret_value()
        if self._config.api_key_parameter:
            if self._stored_key is None:
                self._stored_key = await read_secret(self._config.api_key_parameter)
            return self._stored_key
        return None

    async def _headers(self) -> dict[str, str]:
        # Lower-cased: a configured "Authorization" is replaced by the key, not sent twice.
        headers = {"content-type": "application/json"}
        headers.update((k.lower(), v) for k, v in self._config.extra_headers.items())
        key = await self._api_key()
        if key:
            headers["authorization"] = f"Bearer {key}"
        elif self._basic and "authorization" not in headers:
            headers["authorization"] = self._basic
        return headers

    def _model(self, model: str) -> str:
        return self._config.model_map.get(model, model)

    def _body(self, request: Any, model: str, **overrides: Any) -> dict[str, Any]:
        """Only the allow-listed fields of this provider type (fields.py), checked."""
        if isinstance(request, EmbeddingsRequest):
            body = request.model_dump(exclude_none=True)
        else:
            body = upstream_fields(request, self.provider_type, self._config.image_url_allow)
        body.update(model=self._model(model), **overrides)
        if not body.get("stream"):
            body.pop("stream_options", None)  # servers refuse it on a non-streamed request
        return body

    async def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> _Reply:
        """One request to the upstream, its body read; transport failures and error statuses
        mapped."""

        try:
            response = await self._open(method, path, body)
            try:
                content = await response.read()
            finally:
                response.release()
        except _failures() as exc:
            raise _upstream_failure(self.provider_id, self._base, exc) from None
        reply = _Reply(response.status, response.headers, response.reason or "", content)
        if reply.status >= 400:
            raise map_http_error(
                self.provider_id, reply.status, reply.headers, reply.reason, content
            )
        return reply

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        reply = await self._send("POST", path, body)
        try:
            return json.loads(reply.content)
        except ValueError:
            raise UpstreamUnavailableError(f"{self.provider_id}: reply is not JSON") from None

    async def _stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The upstream's server-sent events, each parsed as its line arrives."""

        try:
            response = await self._open("POST", path, body)
            try:
                if response.status >= 400:
                    content = await response.read()
                    raise map_http_error(
                        self.provider_id,
                        response.status,
                        response.headers,
                        response.reason or "",
                        content,
                    )
                reader = response.content
                while line := await reader.readline(max_line_length=MAX_LINE_BYTES):
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        await _drain(reader)
                        return
                    try:
                        event = json.loads(data)
                    except ValueError:
                        raise UpstreamUnavailableError(
                            f"{self.provider_id}: bad stream event"
                        ) from None
                    if isinstance(event, dict) and "error" in event:
                        err = event["error"]
                        message = err.get("message") if isinstance(err, dict) else str(err)
                        raise UpstreamUnavailableError(f"{self.provider_id}: {message}")
                    yield event
            finally:
                # Back to the pool when the body was read to its end; closed otherwise (a
                # reader that went away mid-stream must not leave the upstream generating).
                response.release()
        except _failures() as exc:
            raise _upstream_failure(self.provider_id, self._base, exc) from None

    # -- the Protocol -----------------------------------------------------------------------

    async def chat(self, request: ChatCompletionRequest, model: str) -> ChatCompletion:
        response = await self._send(
            "POST", "/chat/completions", self._body(request, model, stream=False)
        )
        try:
            # Parsed and validated in one pass from the bytes (no dict in between); a reply
            # without usage gets zeros (the model's default).
            return ChatCompletion.model_validate_json(response.content)
        except ValidationError as exc:
            if exc.errors()[0]["type"] == "json_invalid":
                raise UpstreamUnavailableError(f"{self.provider_id}: reply is not JSON") from None
            raise

    async def chat_stream(
        self, request: ChatCompletionRequest, model: str
    ) -> AsyncIterator[ChatCompletionChunk]:
        body = self._body(request, model, stream=True, stream_options={"include_usage": True})
        async for event in self._stream("/chat/completions", body):
            yield ChatCompletionChunk.model_validate(event)

    async def completion(self, request: CompletionRequest, model: str) -> Completion:
        reply = await self._post("/completions", self._body(request, model, stream=False))
        return Completion.model_validate(reply)

    async def completion_stream(
        self, request: CompletionRequest, model: str
    ) -> AsyncIterator[dict[str, Any]]:
        body = self._body(request, model, stream=True, stream_options={"include_usage": True})
        async for event in self._stream("/completions", body):
            yield event

    async def embeddings(self, request: EmbeddingsRequest, model: str) -> EmbeddingsResponse:
        reply = await self._post("/embeddings", self._body(request, model))
        return EmbeddingsResponse.model_validate(reply)

    async def list_models(self) -> list[str]:
        """The upstream's model ids (``GET /models``, OpenAI's list shape)."""
        response = await self._send("GET", "/models")
        try:
            data = json.loads(response.content).get("data")
        except (ValueError, AttributeError):
            raise UpstreamUnavailableError(f"{self.provider_id}: model list is not JSON") from None
        if not isinstance(data, list):
            raise UpstreamUnavailableError(f"{self.provider_id}: model list has no data")
        return [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]

    async def close(self) -> None:
        """Close this loop's session (its pooled connections); forget the others'."""
        loop = asyncio.get_running_loop()
        session = self._sessions.pop(loop, None)
        self._forget_closed_loops()
        if session is not None:
            await session.close()


async def read_secret(name: str) -> str:
    """An API key from Secrets Manager (an ARN) or SSM Parameter Store (a name or an ARN). An
    ARN is read in its own region, and in any partition (GovCloud, China)."""
    parts = name.split(":")
    arn = name.startswith("arn:") and len(parts) >= 6
    # Both services answer for their own region only, whatever the ARN says.
    region = parts[3] if arn and parts[3] else None
    try:
        if arn and parts[2] == "secretsmanager":
            sm = await clients.client("secretsmanager", region_name=region)
            return (await sm.get_secret_value(SecretId=name))["SecretString"]
        ssm = await clients.client("ssm", region_name=region)
        reply = await ssm.get_parameter(Name=name, WithDecryption=True)
        return reply["Parameter"]["Value"]
    except Exception as exc:
        code = error_code(exc)
        # The deployment is misconfigured: a 503 for the client, not its mistake.
        raise ServiceUnavailableError(
            f"cannot read the provider API key from {name!r}: {code or type(exc).__name__}"
        ) from None


class SigV4Signer:
    """Signs requests with the AWS credentials of the environment (service ``bedrock``)."""

    def __init__(self, region: str):
        import boto3

        self._region = region
        self._credentials = boto3.Session().get_credentials()

    def sign(self, method: str, url: str, body: bytes, headers: dict[str, str]) -> None:
        from botocore.auth import SigV4Auth as BotoSigV4
        from botocore.awsrequest import AWSRequest

        if self._credentials is None:
            raise UpstreamBadRequestError(
                "no AWS credentials to sign Bedrock requests", status_code=401
            )
        aws = AWSRequest(
            method=method,
            url=url,
            data=body,
            headers={"content-type": headers.get("content-type", "application/json")},
        )
        BotoSigV4(self._credentials.get_frozen_credentials(), "bedrock", self._region).add_auth(aws)
        headers.update(aws.headers.items())


class BedrockOpenAIProvider(RemoteOpenAIProvider):
    """Bedrock's OpenAI-compatible Chat Completions endpoint: a Bedrock API key as the bearer
    token, or SigV4 with the environment's AWS credentials when no key is configured."""

    def __init__(self, provider_id: str, provider_type: str, config: BedrockOpenAIConfig):
        import os

        self._region = (
            config.region_name
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or "us-east-1"
        )
        url = config.base_url or f"https://bedrock-runtime.{self._region}.amazonaws.com/openai/v1"
        remote = RemoteOpenAIConfig(
            url=url,
            api_key=config.api_key,
            timeout_seconds=config.timeout_seconds,
            image_url_allow=config.image_url_allow,
        )
        super().__init__(provider_id, provider_type, remote)
        self._signer = None if config.api_key is not None else SigV4Signer(self._region)

    def _sign(self, method: str, url: str, body: bytes, headers: dict[str, str]) -> None:
        if self._signer is not None:
            self._signer.sign(method, url, body, headers)


async def _drain(reader: aiohttp.StreamReader) -> None:
    """Read a finished stream to its end (briefly), so its connection goes back to the pool
    instead of being closed: otherwise every streamed call opens a new connection (and, over
    HTTPS, pays a new handshake)."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(DRAIN_SECONDS):
            while await reader.readany():
                pass
