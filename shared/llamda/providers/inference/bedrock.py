"""Amazon Bedrock: Converse / ConverseStream for chat, InvokeModel for embeddings (aiobotocore)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from llamda.api.inference import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    Embedding,
    EmbeddingsRequest,
    EmbeddingsResponse,
    EmbeddingsUsage,
)
from llamda.aws import AioClients, clients, error_code
from llamda.errors import (
    ContentPolicyError,
    ContextWindowExceededError,
    PermissionDeniedError,
    UpstreamBadRequestError,
    UpstreamError,
    UpstreamRateLimitError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from llamda.providers.inference.base import new_id, now, unsupported
from llamda.providers.inference.bedrock_converse import (
    JSON_TOOL,
    STOP_REASONS,
    from_converse_output,
    to_converse,
    usage_of,
)
from llamda.providers.inference.config import BedrockConfig
from llamda.redact import mask_url

_UNAVAILABLE = {
    "servicenotavailableexception",
    "serviceunavailableexception",
    "modelnotreadyexception",
    "internalserverexception",
    "modelerrorexception",
    "modelstreamerrorexception",
}
_CONTEXT_HINTS = ("too long", "context window", "too many input tokens", "maximum context")

DISCOVERY_PAGES = 10  # of ListInferenceProfiles (100 each): bounded
TITAN_CONCURRENCY = 8  # concurrent InvokeModel calls per request (Titan embeds one text each)


def map_bedrock_error(
    provider_id: str, exc: Exception, endpoint: str | None = None
) -> UpstreamError:
    """botocore errors (and event-stream exceptions) as our errors, with Bedrock's message.
    A connection-level failure names the endpoint the provider used (``endpoint``,
    credentials and query values masked) rather than botocore's text, which quotes the whole
    request URL."""
    code = (error_code(exc) or type(exc).__name__).lower()
    if endpoint and _connection_failure(exc):
        where = f"{type(exc).__name__} (upstream unreachable at {mask_url(endpoint)})"
        if "timeout" in code:
            return UpstreamTimeoutError(f"{provider_id}: {where}")
        return UpstreamUnavailableError(f"{provider_id}: {where}")
    response = getattr(exc, "response", {}) or {}
    message = response.get("Error", {}).get("Message") or str(exc)
    text = f"{provider_id}: {message}"
    if code in {"throttlingexception", "servicequotaexceededexception", "toomanyrequestsexception"}:
        return UpstreamRateLimitError(text)
    if code == "modeltimeoutexception" or "timeout" in code:
        return UpstreamTimeoutError(text)
    if code in _UNAVAILABLE or "connection" in code:
        return UpstreamUnavailableError(text)
    if code == "accessdeniedexception":
        error = UpstreamBadRequestError(text, status_code=403, code="permission_denied")
        error.error_type = PermissionDeniedError.error_type
        return error
    if code == "resourcenotfoundexception":
        return UpstreamBadRequestError(text, status_code=404, code="model_not_found", param="model")
    if code == "validationexception":
        if any(h in message.lower() for h in _CONTEXT_HINTS):
            return ContextWindowExceededError(text)
        return UpstreamBadRequestError(text)
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if status == 429:
        return UpstreamRateLimitError(text)
    if status >= 500 or not status:
        return UpstreamUnavailableError(text)
    return UpstreamBadRequestError(text, status_code=status if 400 <= status < 500 else 400)


def _connection_failure(exc: Exception) -> bool:
    """botocore's transport errors (no answer from the endpoint at all)."""
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError

    return isinstance(exc, HTTPClientError | BotoConnectionError)


def _json_mode(request: ChatCompletionRequest) -> bool:
    return request.response_format is not None and request.response_format.type == "json_schema"


def _endpoint(client: Any) -> str | None:
    """The endpoint a botocore client calls (its region's, or the configured override)."""
    meta = getattr(client, "meta", None)
    return getattr(meta, "endpoint_url", None)


class BedrockProvider:
    def __init__(
        self, provider_id: str, provider_type: str, config: BedrockConfig, aio: AioClients = clients
    ):
        self.provider_id = provider_id
        self.provider_type = provider_type
        self._config = config
        self._aio = aio

    async def _client(self) -> Any:
        # max_attempts=1: the inference router is the only retry loop.
        return await self._aio.client(
            "bedrock-runtime",
            region_name=self._config.region_name,
            endpoint_url=self._config.endpoint_url,
            max_attempts=1,
            read_timeout=self._config.timeout_seconds,
        )

    async def chat(self, request: ChatCompletionRequest, model: str) -> ChatCompletion:
        body = to_converse(request, model)
        client = await self._client()
        try:
            reply = await client.converse(**body)
        except Exception as exc:
            raise map_bedrock_error(self.provider_id, exc, _endpoint(client)) from None
        if reply.get("stopReason") == "guardrail_intervened" and not reply.get("output"):
            raise ContentPolicyError(f"{self.provider_id}: a Bedrock guardrail intervened")
        content, calls, finish = from_converse_output(reply, _json_mode(request))
        return ChatCompletion.model_validate(
            {
                "id": new_id("chatcmpl"),
                "created": now(),
                "model": request.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": content,
                            "tool_calls": calls or None,
                        },
                        "finish_reason": finish,
                    }
                ],
                "usage": usage_of(reply.get("usage")),
            }
        )

    async def chat_stream(
        self, request: ChatCompletionRequest, model: str
    ) -> AsyncIterator[ChatCompletionChunk]:
        body = to_converse(request, model)
        json_mode = _json_mode(request)
        client = await self._client()
        try:
            reply = await client.converse_stream(**body)
        except Exception as exc:
            raise map_bedrock_error(self.provider_id, exc, _endpoint(client)) from None
        chunk_id, created = new_id("chatcmpl"), now()

        def chunk(
            delta: dict[str, Any] | None = None, finish: str | None = None, usage: Any = None
        ) -> ChatCompletionChunk:
            choices = (
                []
                if delta is None and finish is None
                else [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
            )
            return ChatCompletionChunk.model_validate(
                {
                    "id": chunk_id,
                    "created": created,
                    "model": request.model,
                    "choices": choices,
                    "usage": usage,
                }
            )

        tool_index: dict[int, int] = {}  # Converse block index → OpenAI tool_calls index
        json_blocks: set[int] = set()
        try:
            async for event in reply["stream"]:
                if "messageStart" in event:
                    yield chunk({"role": "assistant", "content": ""})
                elif "contentBlockStart" in event:
                    start = event["contentBlockStart"]
                    use = start.get("start", {}).get("toolUse")
                    if use is None:
                        continue
                    block = start.get("contentBlockIndex", 0)
                    if json_mode and use.get("name") == JSON_TOOL:
                        json_blocks.add(block)
                        continue
                    tool_index[block] = len(tool_index)
                    yield chunk(
                        {
                            "tool_calls": [
                                {
                                    "index": tool_index[block],
                                    "id": use["toolUseId"],
                                    "type": "function",
                                    "function": {"name": use["name"], "arguments": ""},
                                }
                            ]
                        }
                    )
                elif "contentBlockDelta" in event:
                    delta = event["contentBlockDelta"]
                    block = delta.get("contentBlockIndex", 0)
                    inner = delta.get("delta", {})
                    if "text" in inner:
                        yield chunk({"content": inner["text"]})
                    elif "toolUse" in inner:
                        piece = inner["toolUse"].get("input", "")
                        if block in json_blocks:
                            yield chunk({"content": piece})
                        elif block in tool_index:
                            yield chunk(
                                {
                                    "tool_calls": [
                                        {
                                            "index": tool_index[block],
                                            "function": {"arguments": piece},
                                        }
                                    ]
                                }
                            )
                elif "messageStop" in event:
                    reason = STOP_REASONS.get(
                        event["messageStop"].get("stopReason", "end_turn"), "stop"
                    )
                    if json_blocks and reason == "tool_calls" and not tool_index:
                        reason = "stop"
                    yield chunk({}, finish=reason)
                elif "metadata" in event:
                    yield chunk(usage=usage_of(event["metadata"].get("usage")))
        except UpstreamError:
            raise
        except Exception as exc:
            raise map_bedrock_error(self.provider_id, exc, _endpoint(client)) from None

    async def completion(self, request: CompletionRequest, model: str) -> Completion:
        raise unsupported(
            self.provider_type, "/v1/completions (Converse is chat only); use /v1/chat/completions"
        )

    async def completion_stream(
        self, request: CompletionRequest, model: str
    ) -> AsyncIterator[dict[str, Any]]:
        raise unsupported(
            self.provider_type, "/v1/completions (Converse is chat only); use /v1/chat/completions"
        )
        yield {}  # pragma: no cover - makes this an async generator

    async def embeddings(self, request: EmbeddingsRequest, model: str) -> EmbeddingsResponse:
        texts = request.texts
        client = await self._client()
        vectors: list[list[float]] = []
        tokens = 0

        async def invoke(body: dict[str, Any]) -> dict[str, Any]:
            reply = await client.invoke_model(
                modelId=model,
                body=json.dumps(body),
                contentType="application/json",
                accept="application/json",
            )
            return json.loads(await reply["body"].read())

        if "cohere" in model and request.dimensions:
            raise unsupported(self.provider_type, f"dimensions with {model}")
        try:
            if "cohere" in model:
                payload = await invoke({"texts": texts, "input_type": "search_document"})
                vectors = payload["embeddings"]
                if isinstance(vectors, dict):
                    vectors = vectors.get("float", [])
            else:
                # Titan embeds one text per call.
                extra = {"dimensions": request.dimensions} if request.dimensions else {}
                limit = asyncio.Semaphore(TITAN_CONCURRENCY)

                async def one(text: str) -> dict[str, Any]:
                    async with limit:
                        return await invoke({"inputText": text, "normalize": True, **extra})

                payloads = await asyncio.gather(*(one(t) for t in texts))
                vectors = [p["embedding"] for p in payloads]
                tokens = sum(int(p.get("inputTextTokenCount", 0)) for p in payloads)
        except UpstreamError:
            raise
        except Exception as exc:
            raise map_bedrock_error(self.provider_id, exc, _endpoint(client)) from None
        data = [
            Embedding(index=i, embedding=v)  # floats: the service encodes (base64) for the client
            for i, v in enumerate(vectors)
        ]
        return EmbeddingsResponse(
            data=data,
            model=request.model,
            usage=EmbeddingsUsage(prompt_tokens=tokens, total_tokens=tokens),
        )

    async def list_models(self) -> list[str]:
        """Model and inference-profile ids of the region this account can call on demand,
        matching ``discover_pattern``; Llama first (then Bedrock's order)."""
        import re

        client = await self._aio.client(
            "bedrock",
            region_name=self._config.region_name,
            endpoint_url=self._config.control_endpoint_url,
            max_attempts=1,
            read_timeout=10.0,
        )
        pattern = re.compile(self._config.discover_pattern, re.IGNORECASE)
        try:
            reply = await client.list_foundation_models(byOutputModality="TEXT")
            models = reply.get("modelSummaries", [])
            profiles: list[dict[str, Any]] = []
            token: str | None = None
            for _ in range(DISCOVERY_PAGES):
                page = await client.list_inference_profiles(
                    maxResults=100, **({"nextToken": token} if token else {})
                )
                profiles += page.get("inferenceProfileSummaries", [])
                token = page.get("nextToken")
                if not token:
                    break
        except Exception as exc:
            raise map_bedrock_error(self.provider_id, exc, _endpoint(client)) from None
        ids = [
            m["modelId"]
            for m in models
            if "ON_DEMAND" in m.get("inferenceTypesSupported", [])
            and m.get("modelLifecycle", {}).get("status", "ACTIVE") == "ACTIVE"
            and pattern.search(m.get("modelId", ""))
        ]
        ids += [
            p["inferenceProfileId"]
            for p in profiles
            if p.get("status", "ACTIVE") == "ACTIVE"
            and pattern.search(p.get("inferenceProfileId", ""))
        ]
        unique = list(dict.fromkeys(ids))
        return sorted(unique, key=lambda i: "llama" not in i.lower())  # stable: Llama first

    async def close(self) -> None:
        return None
