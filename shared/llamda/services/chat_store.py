"""Stored chat completions: OpenAI's ``store`` and Llama Stack's inference store.

The chat router hands each reply here after ``stack.inference`` (guardrails included) made it;
the agents loop calls the inference service directly and so never stores chat completions
(OpenAI keeps Responses apart). A stored completion gets an id of ours, ``chatcmpl-`` and the
creation-ordered hex of ``items.new_id``, whose hex is its record key: key order is creation
order, and listing is a range read. The whole completion (reply, the request's messages,
metadata) is one ItemStore item, kept in the object store when it is too big for a record, and
it expires ``ttl_days`` after it was made. A stream is stored once it ended normally, as the
client received it; a stream cut short (an upstream error, a client gone, a deadline) is not
stored at all.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from llamda.api.inference import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionDeleted,
    ChatCompletionList,
    ChatCompletionRequest,
    StoredChatCompletion,
    StoredMessageList,
)
from llamda.config import InferenceStoreConfig
from llamda.context import current_tenant, tenant_scope
from llamda.errors import BadRequestError, NotFoundError
from llamda.observability import logger
from llamda.services.agents.items import Item, ItemStore, new_id
from llamda.services.inference import Served

KIND = "chat_completions"
DAY = 86400
COMPLETION_ID = re.compile(r"^chatcmpl-([0-9a-f]{32})$")
_MESSAGE_ID = re.compile(r"^(chatcmpl-[0-9a-f]{32})-(\d{1,6})$")
# Fields of the stored item that are ours, not the completion's.
_PRIVATE = ("request_model",)


def _missing(completion_id: str) -> NotFoundError:
    return NotFoundError(
        f"No chat completion found with id {completion_id[:128]!r}",
        param="completion_id",
        code="chat_completion_not_found",
    )


def _key(completion_id: str) -> str:
    """The record key of one of our ids; 404 for any other id (never looked up)."""
    match = COMPLETION_ID.match(completion_id)
    if match is None:
        raise _missing(completion_id)
    return match.group(1)


def _public(item: Item) -> StoredChatCompletion:
    return StoredChatCompletion.model_validate({k: v for k, v in item.items() if k not in _PRIVATE})


def _text(content: Any) -> str | None:
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    return content


def assemble(chunks: list[ChatCompletionChunk], completion_id: str) -> ChatCompletion:
    """The completion a client rebuilt from these chunks: text, refusal and tool calls joined
    per choice, the last finish_reason, the usage chunk's usage."""
    choices: dict[int, dict[str, Any]] = {}
    usage = None
    for chunk in chunks:
        usage = chunk.usage or usage
        for c in chunk.choices:
            choice = choices.setdefault(
                c.index, {"content": [], "calls": {}, "finish_reason": None, "logprobs": None}
            )
            if c.delta.content:
                choice["content"].append(c.delta.content)
            for call in c.delta.tool_calls or []:
                held = choice["calls"].setdefault(call.index, {"id": "", "name": [], "args": []})
                held["id"] = call.id or held["id"]
                function = call.function or {}
                held["name"].append(function.get("name") or "")
                held["args"].append(function.get("arguments") or "")
            choice["finish_reason"] = c.finish_reason or choice["finish_reason"]
    first = chunks[0] if chunks else None
    return ChatCompletion.model_validate(
        {
            "id": completion_id,
            "created": first.created if first else int(time.time()),
            "model": first.model if first else "",
            "choices": [
                {
                    "index": index,
                    "message": {
                        "role": "assistant",
                        "content": (
                            "".join(c["content"]) if c["content"] or not c["calls"] else None
                        ),
                        "tool_calls": [
                            {
                                "id": call["id"],
                                "type": "function",
                                "function": {
                                    "name": "".join(call["name"]),
                                    "arguments": "".join(call["args"]),
                                },
                            }
                            for _, call in sorted(c["calls"].items())
                        ]
                        or None,
                    },
                    "finish_reason": c["finish_reason"],
                }
                for index, c in sorted(choices.items())
            ],
            "usage": usage.model_dump() if usage else {},
        }
    )


class ChatStore:
    """Keeps chat completions a request asked to store (or all, when the config says so)."""

    # Most stored completions one filtered list request reads (bounds its time; see page).
    max_scanned = 1000

    def __init__(self, items: ItemStore, config: InferenceStoreConfig):
        self._items = items
        self._config = config

    def wanted(self, request: ChatCompletionRequest) -> bool:
        return self._config.enabled if request.store is None else request.store

    # -- storing ----------------------------------------------------------------------------

    async def chat(
        self, request: ChatCompletionRequest, served: Served[ChatCompletion]
    ) -> Served[ChatCompletion]:
        """The reply, stored (with an id of ours) when the request wants it stored."""
        if self.wanted(request):
            served.value.id = new_id("chatcmpl").replace("_", "-", 1)
            await self._save(request, served.value)
        return served

    def chat_stream(
        self,
        request: ChatCompletionRequest,
        served: Served[AsyncIterator[ChatCompletionChunk]],
    ) -> Served[AsyncIterator[ChatCompletionChunk]]:
        """The stream, recorded as it passes and stored once it ended normally."""
        if self.wanted(request):
            completion_id = new_id("chatcmpl").replace("_", "-", 1)
            served.value = self._recorded(request, served.value, completion_id, current_tenant())
        return served

    async def _recorded(
        self,
        request: ChatCompletionRequest,
        stream: AsyncIterator[ChatCompletionChunk],
        completion_id: str,
        tenant: str,
    ) -> AsyncIterator[ChatCompletionChunk]:
        chunks: list[ChatCompletionChunk] = []
        try:
            async for chunk in stream:
                chunk.id = completion_id  # every chunk names the id the client can retrieve
                chunks.append(chunk)
                yield chunk
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
        # Only reached when the stream ended normally; stored before the client's [DONE], so
        # a list right after the stream sees it. The response phase may run outside the
        # request's context: the tenant is the one that asked.
        with tenant_scope(tenant):
            await self._save(request, assemble(chunks, completion_id))

    async def _save(self, request: ChatCompletionRequest, completion: ChatCompletion) -> None:
        key = _key(completion.id)
        expires_at = math.ceil(time.time() + self._config.ttl_days * DAY)
        item = {
            **completion.model_dump(mode="json"),
            "input_messages": [
                m.model_dump(mode="json", exclude_none=True, by_alias=True)
                for m in request.messages
            ],
            "metadata": request.metadata or {},
            "request_model": request.model,
        }
        try:
            await self._items.put(KIND, key, item, expires_at=expires_at)
        except Exception as exc:  # the reply is made and paid for: answer it all the same
            logger.warning(
                "chat completion not stored", completion_id=completion.id, error=type(exc).__name__
            )

    # -- reading ----------------------------------------------------------------------------

    async def _item(self, completion_id: str) -> tuple[str, Item]:
        key = _key(completion_id)
        item = await self._items.get(KIND, key)
        if item is None or item.get("id") != completion_id:
            raise _missing(completion_id)
        return key, item

    async def get(self, completion_id: str) -> StoredChatCompletion:
        return _public((await self._item(completion_id))[1])

    async def list(
        self,
        *,
        after: str | None,
        limit: int,
        order: str,
        model: str | None,
        metadata: dict[str, str],
    ) -> ChatCompletionList:
        after_key = None
        if after is not None:
            match = COMPLETION_ID.match(after)
            if match is None:
                raise BadRequestError(
                    f"after: {after[:128]!r} is not a chat completion id", param="after"
                )
            after_key = match.group(1)
        keep: Callable[[Item], bool] | None = None
        if model or metadata:

            def keep(item: Item) -> bool:
                if model and model not in (item.get("model"), item.get("request_model")):
                    return False
                held = item.get("metadata") or {}
                return all(held.get(k) == v for k, v in metadata.items())

        found = await self._items.filtered_page(
            KIND,
            after=after_key,
            limit=limit,
            descending=order == "desc",
            keep=keep,
            max_scanned=self.max_scanned,
        )
        data = [_public(item) for _, item in found.items]
        last_id = data[-1].id if data else ""
        if found.last_scanned is not None:
            # The scan stopped at its bound: last_id says where to continue (``after``), also
            # when this page is empty.
            last_id = f"chatcmpl-{found.last_scanned}"
        return ChatCompletionList(
            data=data,
            first_id=data[0].id if data else "",
            last_id=last_id,
            has_more=found.has_more,
        )

    async def messages(
        self, completion_id: str, *, after: str | None, limit: int, order: str
    ) -> StoredMessageList:
        """The request's messages, each with an id (``<completion id>-<index>``)."""
        _, item = await self._item(completion_id)
        messages = []
        for index, message in enumerate(item.get("input_messages") or []):
            content = message.get("content")
            messages.append(
                {
                    **message,
                    "id": f"{completion_id}-{index}",
                    "content": _text(content),
                    "content_parts": content if isinstance(content, list) else None,
                }
            )
        if order == "desc":
            messages.reverse()
        start = 0
        if after is not None:
            match = _MESSAGE_ID.match(after)
            ids = [m["id"] for m in messages]
            if match is None or match.group(1) != completion_id or after not in ids:
                raise BadRequestError(
                    f"after: {after[:128]!r} is not a message of this chat completion",
                    param="after",
                )
            start = ids.index(after) + 1
        page = messages[start : start + limit]
        return StoredMessageList(
            data=page,
            first_id=page[0]["id"] if page else "",
            last_id=page[-1]["id"] if page else "",
            has_more=start + limit < len(messages),
        )

    # -- changing ---------------------------------------------------------------------------

    async def update(
        self, completion_id: str, metadata: dict[str, str] | None
    ) -> StoredChatCompletion:
        key, _ = await self._item(completion_id)

        def change(item: Item) -> None:
            item["metadata"] = metadata or {}

        # Not a plain put: a completion deleted meanwhile must not come back.
        updated = await self._items.update(KIND, key, change)
        if updated is None:
            raise _missing(completion_id)
        return _public(updated)

    async def delete(self, completion_id: str) -> ChatCompletionDeleted:
        key, _ = await self._item(completion_id)
        if not await self._items.delete(KIND, key):
            raise _missing(completion_id)
        return ChatCompletionDeleted(id=completion_id)
