"""The remote OpenAI-compatible family: vLLM, TGI, Ollama, Fireworks, Together, OpenAI (and
Bedrock's OpenAI-compatible endpoint). One implementation over httpx; types differ by defaults."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import httpx
from pydantic import ValidationError

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

_CONTEXT_HINTS = (
    "context length",
    "context window",
    "maximum context",
    "too many tokens",
    "context_length",
)
_POLICY_HINTS = ("content policy", "content_policy", "safety system", "flagged")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value else None
    except ValueError:
        return None


def map_http_error(provider_id: str, response: httpx.Response, body: bytes) -> UpstreamError:
    """An upstream HTTP error as our error, keeping the provider's message."""
    try:
        payload = json.loads(body)
        err = payload.get("error", payload) if isinstance(payload, dict) else {}
        message = err.get("message") if isinstance(err, dict) else str(err)
        message = message or body.decode(errors="replace")[:500]
    except ValueError:
        message = body.decode(errors="replace")[:500] or response.reason_phrase
    text = f"{provider_id}: {message}"
    status = response.status_code
    lowered = message.lower()
    if status == 429:
        return UpstreamRateLimitError(text, retry_after=_retry_after(response))
    if status in (408, 504):
        return UpstreamTimeoutError(text)
    if status >= 500:
        return UpstreamUnavailableError(text, status_code=503, retry_after=_retry_after(response))
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


def _transport_error(provider_id: str, url: str, exc: httpx.HTTPError) -> UpstreamUnavailableError:
    """A connection-level failure, named by its type and the provider's configured URL
    (credentials and query values masked): httpx's own text can quote header values (an API
    key), so it is never used."""
    return UpstreamUnavailableError(
        f"{provider_id}: {type(exc).__name__} (upstream unreachable at {mask_url(url)})"
    )


MAX_CONNECTIONS = 100  # to one upstream, per process (idle ones close after httpx's 5 s)
DRAIN_SECONDS = 0.5  # after [DONE]; an upstream that keeps the body open is cut off


class RemoteOpenAIProvider:
    """Talks to ``{url}/chat/completions``, ``/completions`` and ``/embeddings``."""

    def __init__(self, provider_id: str, provider_type: str, config: RemoteOpenAIConfig):
        self.provider_id = provider_id
        self.provider_type = provider_type
        self._config = config
        self._base = config.url.rstrip("/")
        self._timeout = httpx.Timeout(config.timeout_seconds, connect=10.0)
        self._client: httpx.AsyncClient | None = None
        self._transport: httpx.AsyncHTTPTransport | None = None  # the direct path's pool
        self._direct = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stored_key: str | None = None

    # -- plumbing ---------------------------------------------------------------------------

    def _auth(self) -> httpx.Auth | None:
        return None

    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            # Every connection a burst opened stays pooled: keeping fewer than may be open at
            # once means a busy server reconnects (and, over HTTPS, handshakes) all the time.
            limits = httpx.Limits(
                max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS
            )
            # No transport= here: the client would then ignore proxies from the environment.
            self._client = httpx.AsyncClient(
                timeout=self._timeout, limits=limits, auth=self._auth()
            )
            self._loop = loop
            # Straight to a connection pool when the client would add nothing to a call (no
            # auth flow to run, no proxy from the environment to route through): the client's
            # per-request machinery (cookies, auth, hooks, URL merging) costs more CPU than
            # the HTTP exchange itself. Same headers, timeouts and errors either way.
            self._direct = self._client.auth is None and not urllib.request.getproxies()
            if self._direct:
                self._transport = httpx.AsyncHTTPTransport(limits=limits)
        return self._client

    async def _open(self, method: str, url: str, body: dict[str, Any] | None) -> httpx.Response:
        """Send a request; the response's body is not read yet (the caller closes it)."""
        client = self._http()
        headers = await self._headers()
        if not self._direct:
            request = client.build_request(method, url, json=body, headers=headers)
            return await client.send(request, stream=True)
        merged = client.headers.copy()
        merged.update(headers)  # case-insensitive, as the client merges them
        request = httpx.Request(
            method,
            url,
            json=body,
            headers=merged,
            extensions={"timeout": self._timeout.as_dict()},
        )
        assert self._transport is not None  # made with the client in _http
        response = await self._transport.handle_async_request(request)
        response.request = request
        return response

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
        headers = {"content-type": "application/json", **self._config.extra_headers}
        key = await self._api_key()
        if key:
            headers["authorization"] = f"Bearer {key}"
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

    async def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One request to the upstream, its body read; transport failures and error statuses
        mapped."""
        try:
            response = await self._open(method, f"{self._base}{path}", body)
            try:
                await response.aread()
            finally:
                await response.aclose()
        except httpx.TimeoutException as exc:
            raise UpstreamTimeoutError(
                f"{self.provider_id}: timed out ({type(exc).__name__}) at {mask_url(self._base)}"
            ) from None
        except httpx.HTTPError as exc:
            raise _transport_error(self.provider_id, self._base, exc) from None
        if response.status_code >= 400:
            raise map_http_error(self.provider_id, response, response.content)
        return response

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self._send("POST", path, body)
        try:
            return response.json()
        except ValueError:
            raise UpstreamUnavailableError(f"{self.provider_id}: reply is not JSON") from None

    async def _stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        try:
            async with contextlib.aclosing(
                await self._open("POST", f"{self._base}{path}", body)
            ) as response:
                if response.status_code >= 400:
                    raise map_http_error(self.provider_id, response, await response.aread())
                lines = response.aiter_lines()
                async for line in lines:
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        await _drain(lines)
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
        except httpx.TimeoutException:
            raise UpstreamTimeoutError(
                f"{self.provider_id}: timed out at {mask_url(self._base)}"
            ) from None
        except httpx.HTTPError as exc:
            raise _transport_error(self.provider_id, self._base, exc) from None

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
            data = response.json().get("data")
        except (ValueError, AttributeError):
            raise UpstreamUnavailableError(f"{self.provider_id}: model list is not JSON") from None
        if not isinstance(data, list):
            raise UpstreamUnavailableError(f"{self.provider_id}: model list has no data")
        return [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]

    async def close(self) -> None:
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await self._client.aclose()
            if self._transport is not None:
                await self._transport.aclose()
                self._transport = None
        self._client = None


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


class SigV4Auth(httpx.Auth):
    """Signs requests with the AWS credentials of the environment (service ``bedrock``)."""

    requires_request_body = True

    def __init__(self, region: str):
        import boto3

        self._region = region
        self._credentials = boto3.Session().get_credentials()

    def auth_flow(self, request: httpx.Request):  # type: ignore[no-untyped-def]
        from botocore.auth import SigV4Auth as BotoSigV4
        from botocore.awsrequest import AWSRequest

        if self._credentials is None:
            raise UpstreamBadRequestError(
                "no AWS credentials to sign Bedrock requests", status_code=401
            )
        aws = AWSRequest(
            method=request.method,
            url=str(request.url),
            data=request.content,
            headers={"content-type": request.headers.get("content-type", "application/json")},
        )
        BotoSigV4(self._credentials.get_frozen_credentials(), "bedrock", self._region).add_auth(aws)
        for name, value in aws.headers.items():
            request.headers[name] = value
        yield request


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

    def _auth(self) -> httpx.Auth | None:
        return None if self._config.api_key is not None else SigV4Auth(self._region)


async def _drain(lines: AsyncIterator[str]) -> None:
    """Read a finished stream to its end (briefly), so its connection goes back to the pool
    instead of being closed: otherwise every streamed call opens a new connection (and, over
    HTTPS, pays a new handshake)."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(DRAIN_SECONDS):
            async for _ in lines:
                pass
