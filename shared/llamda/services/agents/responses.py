"""The Responses API service: validates a request into a plan (every 4xx before anything
streams), runs it (run.py: the agent loop over the guarded inference service), stores it, and
serves stored responses, their input items, background runs and their cancellation.

Composition as in the Llama Stack: the loop reaches Inference, Vector Stores, Safety (through
the inference choke point), Conversations and Prompts only through their services. State lives
in Records (tenant-scoped, expiring after ``agents.store_days``; see stored.py), so
``previous_response_id`` and conversations work across processes and Lambda invocations.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from llamda.api.responses import (
    CreateResponseRequest,
    FileSearchTool,
    FunctionTool,
    MCPTool,
)
from llamda.api.vector_stores import SearchRequest
from llamda.config import AgentsConfig
from llamda.errors import (
    BadRequestError,
    ConflictError,
    LlamdaError,
    NotFoundError,
)
from llamda.observability import logger
from llamda.services.agents import mcp
from llamda.services.agents.conversations import ConversationsService
from llamda.services.agents.convert import (
    FILE_SEARCH,
    check_calls_answered,
)
from llamda.services.agents.items import Item, ItemStore, normalize, public
from llamda.services.agents.prompts import PromptsService
from llamda.services.agents.run import MAX_MODEL_TOOLS, Plan, Run
from llamda.services.agents.stored import ResponseRecords, as_response, check_id, items_kind
from llamda.services.inference import InferenceService
from llamda.services.jobs import Job, JobRunner
from llamda.services.models import ModelsService
from llamda.services.vector_stores.service import VectorStoresService
from llamda.storage.records import Records

MAX_LIST_SCAN = 1000  # records read for one page of GET /v1/responses at most


class ResponsesService:
    def __init__(
        self,
        config: AgentsConfig,
        records: Records,
        items: ItemStore,
        models: ModelsService,
        inference: InferenceService,
        vector_stores: VectorStoresService,
        conversations: ConversationsService,
        prompts: PromptsService,
        shield_exists: Callable[[str], Awaitable[bool]],
        jobs: JobRunner,
    ):
        self._config = config
        self._shield_exists = shield_exists
        self._jobs = jobs
        self.stored = ResponseRecords(records, items)
        jobs.register("response", self._run_background)
        self._records = records
        self._items = items
        self._models = models
        self._inference = inference
        self._vector_stores = vector_stores
        self._conversations = conversations
        self._prompts = prompts

    # -- create ---------------------------------------------------------------------------

    async def create(self, request: CreateResponseRequest) -> dict[str, Any]:
        """Run the loop to its end (or queue it, ``background``); the Response object."""
        if request.background:
            return await self._enqueue(request)
        run = await self.start(request)
        async for _ in run.events():
            pass
        if run.failure is not None:
            raise run.failure
        return run.response()

    async def start(self, request: CreateResponseRequest) -> Run:
        """Validate everything a client can get wrong (4xx before anything streams)."""
        return Run(self, await self.validate(request))

    async def validate(self, request: CreateResponseRequest) -> Plan:
        """The request's plan, or the 4xx of the first thing a client got wrong in it."""
        for param, message in request.problems()[:1]:
            raise BadRequestError(f"{param}: {message}", param=param)
        return await self._plan(request)

    async def _plan(self, request: CreateResponseRequest) -> Plan:
        if request.model is None:
            raise BadRequestError("model is required", param="model", code="missing_required")
        model = await self._models.get(request.model)
        if model.model_type != "llm":
            raise BadRequestError(
                f"model {request.model!r} is not a chat model", param="model", code="invalid_model"
            )
        names = {t.name for t in request.tools or [] if isinstance(t, FunctionTool)}
        searching = any(isinstance(t, FileSearchTool) for t in request.tools or [])
        if len(names) + searching > MAX_MODEL_TOOLS:
            raise BadRequestError(
                f"at most {MAX_MODEL_TOOLS} function tools (file_search counts as one)",
                param="tools",
            )
        if FILE_SEARCH in names and searching:
            raise BadRequestError(
                f"a function tool cannot be called {FILE_SEARCH!r} next to the file_search tool",
                param="tools",
            )
        inputs, outputs = request.shield_ids
        for shield_id in dict.fromkeys([*inputs, *outputs]):
            if not await self._shield_exists(shield_id):
                raise NotFoundError(
                    f"shield {shield_id[:128]!r} not found", param="guardrails", code="not_found"
                )
        for index, tool in enumerate(request.tools or []):
            if isinstance(tool, FileSearchTool):
                for store_id in tool.vector_store_ids:
                    await self._vector_stores.stores.searchable(store_id)
            elif isinstance(tool, MCPTool):
                await mcp.check_server_url(tool, self._config.mcp, f"tools[{index}].server_url")
        system: list[str] = []
        if request.prompt is not None:
            version = _prompt_version(request.prompt.version)
            variables = {
                k: v if isinstance(v, str) else v.text
                for k, v in (request.prompt.variables or {}).items()
            }
            system.append(await self._prompts.render(request.prompt.id, version, variables))
        if request.instructions:
            system.append(request.instructions)
        context: list[Item] = []
        if request.previous_response_id:
            context = await self._chain(request.previous_response_id)
        conversation_id = request.conversation_id
        if conversation_id:
            context = await self._conversations.context(
                conversation_id, self._config.max_context_items
            )
        raw = request.input
        if isinstance(raw, str):
            inputs = [
                normalize_text("user", raw),
            ]
        else:
            inputs = [normalize(item) for item in raw]
        if not inputs:
            raise BadRequestError("input must not be empty", param="input")
        if len(context) + len(inputs) > self._config.max_context_items:
            raise BadRequestError(
                f"the context holds more than {self._config.max_context_items} items "
                "(agents.max_context_items): start a new conversation",
                param="previous_response_id" if request.previous_response_id else "conversation",
                code="context_too_long",
            )
        check_calls_answered(context + inputs)
        limit = self._config.max_tool_calls
        if request.max_tool_calls is not None:
            limit = min(limit, request.max_tool_calls)
        return Plan(
            request=request,
            model=model.id,
            system=system,
            context=context,
            inputs=inputs,
            conversation_id=conversation_id,
            max_tool_calls=limit,
        )

    # -- background responses ---------------------------------------------------------------

    def _expiry(self) -> int:
        return int(time.time() + self._config.store_days * 86400)

    async def _enqueue(self, request: CreateResponseRequest) -> dict[str, Any]:
        """Validate, store the response ``queued`` with its request, and queue its job."""
        run = await self.start(request)
        run.status = "queued"
        kind, expires = items_kind(run.id), self._expiry()
        stored = request.model_dump(mode="json", by_alias=True, exclude_none=True)
        await self._items.put(kind, "request", stored, expires_at=expires)
        for index, item in enumerate(run.plan.inputs):
            await self._items.put(kind, f"i{index:06d}", item, expires_at=expires)
        record = {**run.record(), "version": 0}
        await self.stored.put(record, expires_at=expires, if_absent=True)
        try:
            await self._jobs.submit("response", run.id)
        except Exception:
            # Not queued: nothing may stay behind looking as if it will run.
            await self.stored.delete(run.id)
            await self._items.delete_all(kind)
            raise
        return run.response()

    async def _run_background(self, job: Job) -> None:
        """The job of a background response: run (or continue) it, checkpointing after each
        step; stop when it was cancelled; a redelivered or duplicate job does nothing."""
        response_id = check_id(str(job["id"]))
        try:
            await self._continue(job, response_id)
        except Exception:
            if not job.get("last_attempt", True):
                raise  # the queue delivers it again
            # Its last chance: the response must not stay in_progress forever.
            logger.exception("background response failed", response_id=response_id)
            await self._mark_failed(
                response_id, {"code": "server_error", "message": "the response failed"}
            )

    async def _mark_failed(self, response_id: str, error: dict[str, Any]) -> None:
        for _ in range(3):
            record = await self.stored.get(response_id)
            if record is None or record.get("status") not in ("queued", "in_progress"):
                return
            record.update(status="failed", error=error)
            if await self.stored.put(
                record, expires_at=self._expiry(), if_version=int(record.get("version", 0))
            ):
                return

    async def _continue(self, job: Job, response_id: str) -> None:
        record = await self.stored.get(response_id)
        if record is None or record.get("status") not in ("queued", "in_progress"):
            return
        kind = items_kind(response_id)
        stored = await self._items.get(kind, "request")
        if stored is None:
            return
        request = CreateResponseRequest.model_validate(stored)
        try:
            plan = await self._plan(request)
        except LlamdaError as exc:  # e.g. its vector store was deleted meanwhile
            await self._mark_failed(
                response_id, {"code": exc.code or exc.error_type, "message": exc.message}
            )
            return
        plan.inputs = [item for _, item in await self._items.all(kind, prefix="i", limit=10**6)]
        output = [item for _, item in await self._items.all(kind, prefix="o", limit=10**6)]
        run = Run(self, plan, resume=record, output=output)
        run.status = "in_progress"
        if await run.checkpoint():
            async for _ in run.events():
                pass
        if run.status == "cancelled":
            logger.info(f"background response stopped: {response_id} was cancelled")
            return
        if run.suspended:
            await self._jobs.submit("response", response_id, attempt=int(job.get("attempt", 0)) + 1)

    async def cancel(self, response_id: str) -> dict[str, Any]:
        """Cancel a queued or running background response (it stops at its next step)."""
        for _ in range(5):
            record = await self.stored.get(response_id)
            if record is None:
                raise NotFoundError(f"response {response_id[:80]!r} not found", param="response_id")
            if not record.get("background"):
                raise BadRequestError(
                    "only background responses can be cancelled", param="response_id"
                )
            if record["status"] not in ("queued", "in_progress"):
                break  # already over: cancelling is a no-op
            record["status"] = "cancelled"
            version = int(record.get("version", 0))
            if await self.stored.put(record, expires_at=self._expiry(), if_version=version):
                break
        else:
            raise ConflictError("the response kept changing; retry the cancel")
        return await self.get(response_id)

    async def _chain(self, response_id: str) -> list[Item]:
        """The items that led to a response and its output: its previous chain, oldest
        first, each response's input then output."""
        chain: list[dict[str, Any]] = []
        current: str | None = response_id
        count = 0
        while current:
            record = await self.stored.get(current)
            if record is None:
                param = "previous_response_id"
                raise NotFoundError(f"response {current[:80]!r} not found", param=param)
            if record.get("conversation"):
                conversation = record["conversation"].get("id")
                raise BadRequestError(
                    f"response {current[:80]!r} belongs to conversation {conversation!r}: "
                    "continue it with conversation, not previous_response_id",
                    param="previous_response_id",
                )
            chain.append(record)
            count += int(record.get("n_input", 0)) + int(record.get("n_output", 0))
            if count > self._config.max_context_items:
                raise BadRequestError(
                    f"the previous responses hold more than {self._config.max_context_items} "
                    "items (agents.max_context_items): start a new conversation",
                    param="previous_response_id",
                    code="context_too_long",
                )
            current = record.get("previous_response_id")
        items: list[Item] = []
        limit = self._config.max_context_items + 1
        for record in reversed(chain):
            for prefix in ("i", "o"):  # its input, then its output
                stored = await self._items.all(items_kind(record["id"]), prefix=prefix, limit=limit)
                items.extend(item for _, item in stored)
        return items

    # -- stored responses -------------------------------------------------------------------

    async def _save(self, run: Run) -> None:
        record = run.record()
        expires = int(time.time() + self._config.store_days * 86400)
        kind = items_kind(record["id"])
        keyed = [(f"i{i:06d}", item) for i, item in enumerate(run.plan.inputs)]
        keyed += [(f"o{i:06d}", item) for i, item in enumerate(run.output)]
        await asyncio.gather(
            *(self._items.put(kind, key, item, expires_at=expires) for key, item in keyed)
        )
        # The record last: a response is visible only with all its items.
        await self.stored.put(record, expires_at=expires)

    async def _record(self, response_id: str) -> dict[str, Any]:
        record = await self.stored.get(response_id)
        if record is None:
            raise NotFoundError(f"response {response_id[:80]!r} not found", param="response_id")
        return public(record)

    async def get(self, response_id: str) -> dict[str, Any]:
        record = await self._record(response_id)
        output = await self._items.all(
            items_kind(response_id), prefix="o", limit=int(record.get("n_output", 0))
        )
        return as_response(record, [item for _, item in output])

    async def input_items(
        self, response_id: str, *, after: str | None, limit: int, order: str
    ) -> dict[str, Any]:
        await self._record(response_id)
        descending = order == "desc"
        cursor = None
        if after is not None:
            cursor = await self._key_of(response_id, after)
        page, more = await self._items.page(
            items_kind(response_id),
            after=cursor,
            limit=limit,
            descending=descending,
            prefix="i",
        )
        data = [item for _, item in page]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": more,
        }

    async def _key_of(self, response_id: str, item_id: str) -> str:
        items = await self._items.all(
            items_kind(response_id), prefix="i", limit=self._config.max_context_items + 1
        )
        for key, item in items:
            if item.get("id") == item_id:
                return key
        raise NotFoundError(f"item {item_id[:80]!r} not found", param="after")

    async def delete(self, response_id: str) -> dict[str, Any]:
        await self._record(response_id)
        await self.stored.delete(response_id)
        await self._items.delete_all(items_kind(response_id))
        return {"id": response_id, "object": "response", "deleted": True}

    async def list(
        self, *, after: str | None, limit: int, order: str, model: str | None
    ) -> dict[str, Any]:
        """A page of stored responses (``model``: only that model's). One page reads at most
        ``MAX_LIST_SCAN`` records: a filter that matches little answers a short page with
        ``has_more`` and ``last_id`` the last record read, where the next page goes on."""
        descending = order == "desc"
        found: list[dict[str, Any]] = []
        cursor, scanned, more = after, 0, False
        while scanned < MAX_LIST_SCAN:
            rows = await self.stored.list(
                after=cursor, limit=min(max(limit + 1, 100), MAX_LIST_SCAN), descending=descending
            )
            if not rows:
                break
            for row in rows:
                scanned += 1
                cursor = row["id"]
                if model is None or row.get("model") == model:
                    found.append(public(row))
                if len(found) > limit:
                    break
            if len(found) > limit:
                break
        else:
            more = True  # out of scan budget: the next page starts after ``cursor``
        more = more or len(found) > limit
        found = found[:limit]
        data = []
        for record in found:
            output = await self._items.all(
                items_kind(record["id"]), prefix="o", limit=int(record.get("n_output", 0))
            )
            data.append(as_response(record, [item for _, item in output]))
        last = data[-1]["id"] if data else None
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": cursor if more and len(found) < limit else last,
            "has_more": more,
        }

    # -- tools ------------------------------------------------------------------------------

    async def file_search(self, tool: FileSearchTool, queries: list[str]) -> list[dict[str, Any]]:
        """Search every store of the tool; the best ``max_num_results`` results overall."""
        k = tool.max_num_results or self._config.file_search_max_results
        results: list[dict[str, Any]] = []
        for store_id in tool.vector_store_ids:
            reply = await self._vector_stores.search(
                store_id,
                SearchRequest(
                    query=queries[:10],
                    filters=tool.filters,
                    max_num_results=k,
                    ranking_options=tool.ranking_options,
                ),
            )
            for hit in reply.data:
                results.append(
                    {
                        "file_id": hit.file_id,
                        "filename": hit.filename,
                        "score": hit.score,
                        "text": "\n".join(part.text for part in hit.content),
                        "attributes": hit.attributes,
                    }
                )
        results.sort(key=lambda r: r["score"], reverse=True)
        return results[:k]


def normalize_text(role: str, text: str) -> Item:
    from llamda.api.responses import MessageItem

    return normalize(MessageItem(role=role, content=text))  # type: ignore[arg-type]


def _prompt_version(version: str | None) -> int | None:
    if version is None:
        return None
    try:
        return int(version)
    except ValueError:
        raise BadRequestError(
            f"prompt.version must be a version number, got {version[:20]!r}",
            param="prompt.version",
        ) from None
