"""One response being produced (``Run``): the agent loop and its stream events.

``Run.events`` serves both shapes: it yields the Responses stream events, which the router
sends as server-sent events, or which ``create`` drains for the final object. Each step is one
streamed model call through the guarded inference service (shields judge every call, tool
outputs fed back included, with verdicts cached per message for the run); file_search and MCP
tools run here and are fed back; function calls end the response and go to the client. The loop
ends on a final message, ``max_tool_calls``, ``agents.max_steps`` or the deadline
(``incomplete`` with the reason). A background run checkpoints before every step.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from llamda.api.inference import ChatCompletionRequest
from llamda.api.responses import (
    CreateResponseRequest,
    FileSearchTool,
    FunctionTool,
    MCPTool,
    ToolChoiceFileSearch,
    ToolChoiceFunction,
)
from llamda.context import add_tokens, bind_deadline, request_deadline
from llamda.errors import BadRequestError, LlamdaError, UpstreamTimeoutError
from llamda.observability import logger, record_metrics
from llamda.services.agents import mcp
from llamda.services.agents.convert import FILE_SEARCH, FILE_SEARCH_FUNCTION, to_messages
from llamda.services.agents.items import Item, new_id
from llamda.services.agents.stored import as_response, items_kind, visible
from llamda.storage.records import EXPIRES

if TYPE_CHECKING:
    from llamda.services.agents.responses import ResponsesService

# Kept back from the deadline to store the response and answer.
FINISH_SECONDS = 0.5
MAX_MODEL_TOOLS = 128  # functions offered to the model in one call (the chat API's limit)


@dataclass
class Plan:
    """A validated request with everything the loop reads before it starts."""

    request: CreateResponseRequest
    model: str
    system: list[str]
    context: list[Item]  # earlier items (previous response chain or conversation)
    inputs: list[Item]  # this request's input, normalized
    conversation_id: str | None
    max_tool_calls: int


@dataclass
class Step:
    """What one model call produced so far."""

    text: str = ""
    message: Item | None = None  # the assistant message item, once text arrives
    message_index: int = -1
    calls: dict[int, dict[str, str]] = field(default_factory=dict)  # by the model's index
    live: dict[int, dict[str, Any]] = field(default_factory=dict)  # function calls opened
    finish: str | None = None
    blocked: bool = False


class Run:
    """One response being produced: its state, its events, and the loop."""

    def __init__(
        self,
        service: ResponsesService,
        plan: Plan,
        *,
        resume: dict[str, Any] | None = None,
        output: list[Item] | None = None,
    ):
        """A new run, or (``resume``: its stored record and output) a background response
        continued where its last checkpoint left it."""
        self.service = service
        self.plan = plan
        self.id = resume["id"] if resume else new_id("resp")
        self.created_at = int(resume["created_at"]) if resume else int(time.time())
        self.status = "in_progress"
        self.output: list[Item] = list(output or [])
        usage = (resume or {}).get("usage") or {}
        self.usage = {k: int(usage.get(k, 0)) for k in ("input_tokens", "output_tokens")}
        self.usage["total_tokens"] = self.usage["input_tokens"] + self.usage["output_tokens"]
        self.error: dict[str, Any] | None = None
        self.incomplete: dict[str, Any] | None = None
        self.failure: LlamdaError | None = None
        self.sequence = 0
        self.tool_calls = int((resume or {}).get("tool_calls", 0))
        self.steps = int((resume or {}).get("steps", 0))
        self.verdicts: set[tuple[str, str, str]] = set()
        # MCP tools the model may call: function name → (server, the tool's listing).
        self.mcp_functions: dict[str, tuple[MCPTool, dict[str, Any]]] = {}
        # A background run: its record's version and expiry (checkpoints are conditional on
        # the version, so a cancel or a duplicate worker stops it), items already saved.
        self.background = bool(resume) or bool(plan.request.background)
        self.version = int((resume or {}).get("version", 0))
        self.expires_at = (resume or {}).get(EXPIRES)
        self.saved_items = len(self.output)
        self.suspended = False  # out of invocation time: continues in a new job

    # -- the Response object ----------------------------------------------------------------

    def record(self) -> dict[str, Any]:
        request = self.plan.request
        fmt = request.text.format if request.text and request.text.format else None
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": self.status,
            "background": self.background,
            "error": self.error,
            "incomplete_details": self.incomplete,
            "instructions": request.instructions,
            "max_output_tokens": request.max_output_tokens,
            "max_tool_calls": request.max_tool_calls,
            "model": self.plan.model,
            "parallel_tool_calls": request.parallel_tool_calls is not False,
            "previous_response_id": request.previous_response_id,
            "conversation": (
                {"id": self.plan.conversation_id} if self.plan.conversation_id else None
            ),
            "prompt": request.prompt.model_dump(exclude_none=True) if request.prompt else None,
            "reasoning": None,
            "store": request.store is not False,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "text": {
                "format": (
                    fmt.model_dump(by_alias=True, exclude_none=True) if fmt else {"type": "text"}
                )
            },
            "tool_choice": (
                request.tool_choice.model_dump()
                if hasattr(request.tool_choice, "model_dump")
                else (request.tool_choice or "auto")
            ),
            "tools": [
                mcp.public_tool(t.model_dump(exclude_none=True)) for t in request.tools or []
            ],
            "truncation": request.truncation or "disabled",
            "usage": self._usage(),
            "user": request.user,
            "metadata": dict(request.metadata or {}),
            "include": list(request.include or []),
            "n_input": len(self.plan.inputs),
            "n_output": len(self.output),
            "steps": self.steps,
            "tool_calls": self.tool_calls,
        }

    async def checkpoint(self) -> bool:
        """Save a background run's progress (new output items, then its record, conditional
        on the version read); False when it was cancelled (or taken over) meanwhile."""
        items = self.service._items
        kind = items_kind(self.id)
        expires = self.expires_at or self.service._expiry()
        for index in range(self.saved_items, len(self.output)):
            await items.put(kind, f"o{index:06d}", self.output[index], expires_at=expires)
        self.saved_items = len(self.output)
        record = self.record()
        if await self.service.stored.put(record, expires_at=expires, if_version=self.version):
            self.version = record["version"]
            return True
        current = await self.service.stored.get(self.id)
        if current is not None and current.get("status") == "cancelled":
            self.status = "cancelled"
        return False

    def _usage(self) -> dict[str, Any]:
        return {
            **self.usage,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        }

    def response(self) -> dict[str, Any]:
        return as_response(self.record(), self.output)

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        self.sequence += 1
        return {"type": kind, "sequence_number": self.sequence - 1, **fields}

    # -- the loop ----------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """The Responses stream events, from ``response.created`` to the end."""
        config = self.service._config
        if self.background:  # its whole budget counts from its creation
            left = self.created_at + config.background_max_seconds - time.time()
            deadline = time.monotonic() + left
        else:
            deadline = time.monotonic() + config.deadline_seconds
        hard = request_deadline()
        # A background run out of its invocation's time (not of its budget) continues later.
        suspendable = self.background and hard is not None and hard < deadline
        if hard is not None:
            deadline = min(deadline, hard)
        deadline -= FINISH_SECONDS
        # Every model call of the loop (the router's retries and fallbacks) ends by then.
        bind_deadline(max(0.0, deadline - time.monotonic()))
        yield self._event("response.created", response=self.response())
        yield self._event("response.in_progress", response=self.response())
        request = self.plan.request
        try:
            for tool in request.tools or []:
                if isinstance(tool, MCPTool) and not self._listed_before(tool):
                    async for event in self._mcp_list(tool, deadline):
                        yield event
            while True:
                if self.background and not await self.checkpoint():
                    return  # cancelled: the record says so already
                if self.steps >= config.max_steps:
                    self._incomplete("max_steps")
                    break
                if time.monotonic() >= deadline:
                    self._incomplete("deadline")
                    break
                self.steps += 1
                step = Step()
                async for event in self._model_step(step, deadline):
                    yield event
                if step.blocked:
                    break
                if step.finish == "length":
                    self._incomplete("max_output_tokens")
                    break
                server = [
                    step.calls[i]
                    for i in sorted(step.calls)
                    if i not in step.live and self._server_side(step.calls[i]["name"])
                ]
                client = step.live
                if request.parallel_tool_calls is False:
                    server = server[:1] if not client else []
                if server and self.tool_calls + len(server) > self.plan.max_tool_calls:
                    self._incomplete("max_tool_calls")
                    break
                for call in server:
                    self.tool_calls += 1
                    if call["name"] in self.mcp_functions:
                        calls = self._mcp_call(call, deadline)
                    else:
                        calls = self._file_search(call)
                    async for event in calls:
                        yield event
                if client or not server:
                    self.status = "completed"
                    break
        except TimeoutError:
            self._incomplete("deadline")
        except UpstreamTimeoutError as exc:
            if exc.code == "deadline_exceeded" or time.monotonic() >= deadline:
                self._incomplete("deadline")
            else:
                self._fail(exc)
        except LlamdaError as exc:
            self._fail(exc)
        if suspendable and self.incomplete == {"reason": "deadline"}:
            # Keep what is finished; the step cut short runs again in the next invocation.
            self.status, self.incomplete, self.suspended = "in_progress", None, True
            self.output = [i for i in self.output if i.get("status") != "in_progress"]
            self.saved_items = min(self.saved_items, len(self.output))
        record_metrics(
            {"status": self.status},
            agent_steps=self.steps,
            agent_tool_calls=self.tool_calls,
        )
        await self._finish()
        if self.failure is not None:
            yield self._event(
                "error",
                code=self.failure.code or self.failure.error_type,
                message=self.failure.message,
                param=self.failure.param,
            )
        final = {
            "completed": "response.completed",
            "incomplete": "response.incomplete",
        }.get(self.status, "response.failed")
        yield self._event(final, response=self.response())

    def _searching(self) -> bool:
        return any(isinstance(t, FileSearchTool) for t in self.plan.request.tools or [])

    def _listed_before(self, tool: MCPTool) -> bool:
        """A continued run offers the tools its earlier invocation listed (no new listing)."""
        for item in self.output:
            if item["type"] == "mcp_list_tools" and item["server_label"] == tool.server_label:
                for listed in item.get("tools") or []:
                    self.mcp_functions.setdefault(listed["name"], (tool, listed))
                return True
        return False

    def _server_side(self, name: str) -> bool:
        """Whether a call of ``name`` runs here (file_search, an MCP tool)."""
        return name in self.mcp_functions or (name == FILE_SEARCH and self._searching())

    def _server_tool_names(self) -> set[str]:
        names = set(self.mcp_functions)
        if self._searching():
            names.add(FILE_SEARCH)
        return names

    def _incomplete(self, reason: str) -> None:
        self.status = "incomplete"
        self.incomplete = {"reason": reason}

    def _fail(self, exc: LlamdaError) -> None:
        self.status = "failed"
        self.failure = exc
        self.error = {"code": exc.code or exc.error_type, "message": exc.message}

    async def _finish(self) -> None:
        plan = self.plan
        if self.background:
            if not await self.checkpoint():
                return
            if self.suspended or not plan.conversation_id:
                return
            with contextlib.suppress(LlamdaError):
                await self.service._conversations.append(
                    plan.conversation_id, plan.inputs + self.output
                )
            return
        if self.failure is not None and not self.output:
            return  # nothing happened worth keeping; the client gets the error
        try:
            if plan.conversation_id:
                await self.service._conversations.append(
                    plan.conversation_id, plan.inputs + self.output
                )
            if plan.request.store is not False:
                await self.service._save(self)
        except LlamdaError as exc:
            logger.warning("response not stored", response_id=self.id, error=exc.message)
            if self.failure is None:
                self._fail(exc)

    def _chat_request(self) -> ChatCompletionRequest:
        plan, request = self.plan, self.plan.request
        searching = self._searching()
        messages = to_messages(
            plan.context + plan.inputs + self.output,
            plan.system,
            server_tools=self._server_tool_names(),
        )
        tools: list[dict[str, Any]] = []
        for tool in request.tools or []:
            if isinstance(tool, FunctionTool):
                function: dict[str, Any] = {"name": tool.name}
                if tool.description:
                    function["description"] = tool.description
                if tool.parameters is not None:
                    function["parameters"] = tool.parameters
                if tool.strict is not None:
                    function["strict"] = tool.strict
                tools.append({"type": "function", "function": function})
        if searching:
            tools.append(FILE_SEARCH_FUNCTION)
        for name, (_server, listed) in self.mcp_functions.items():
            function = {"name": name, "parameters": listed["input_schema"]}
            if listed.get("description"):
                function["description"] = str(listed["description"])[: 16 * 1024]
            tools.append({"type": "function", "function": function})
        body: dict[str, Any] = {
            "model": plan.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if tools:
            body["tools"] = tools
            choice = request.tool_choice
            if self.steps > 1 and choice not in (None, "auto", "none"):
                choice = "auto"  # a forced call was made: now the model may answer
            if isinstance(choice, ToolChoiceFunction):
                body["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
            elif isinstance(choice, ToolChoiceFileSearch):
                body["tool_choice"] = {"type": "function", "function": {"name": FILE_SEARCH}}
            elif choice is not None:
                body["tool_choice"] = choice
            if request.parallel_tool_calls is not None:
                body["parallel_tool_calls"] = request.parallel_tool_calls
        for name in ("temperature", "top_p", "user"):
            value = getattr(request, name)
            if value is not None:
                body[name] = value
        if request.max_output_tokens is not None:
            body["max_tokens"] = max(1, request.max_output_tokens - self.usage["output_tokens"])
        fmt = request.text.format if request.text else None
        if fmt is not None and fmt.type == "json_object":
            body["response_format"] = {"type": "json_object"}
        elif fmt is not None and fmt.type == "json_schema":
            schema = {"name": fmt.name, "schema": fmt.schema_}
            if fmt.strict is not None:
                schema["strict"] = fmt.strict
            body["response_format"] = {"type": "json_schema", "json_schema": schema}
        inputs, outputs = request.shield_ids
        body["guardrails"] = {"input": inputs, "output": outputs, "on_violation": "refuse"}
        try:
            chat = ChatCompletionRequest.model_validate(body)
        except ValidationError as exc:  # e.g. a tool an MCP server describes oddly
            problem = exc.errors()[0]
            where = ".".join(str(p) for p in problem["loc"])
            raise BadRequestError(
                f"this step cannot be sent to the model: {where}: {problem['msg']}"
            ) from None
        chat._verdicts = self.verdicts  # judged-clean messages are not judged again this run
        return chat

    async def _model_step(self, step: Step, deadline: float) -> AsyncIterator[dict[str, Any]]:
        """One streamed model call: text and function-call arguments streamed as they come
        (a function call's item opens as soon as its name is known); file_search calls are
        collected for the loop to run."""
        if (
            self.plan.request.max_output_tokens is not None
            and self.usage["output_tokens"] >= self.plan.request.max_output_tokens
        ):
            step.finish = "length"
            return
        served = await self.service._inference.chat_stream(self._chat_request())
        step.blocked = served.blocked_by is not None
        stream = aiter(served.value)
        try:
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        chunk = await anext(stream)
                except StopAsyncIteration:
                    break
                if chunk.usage is not None:
                    self._count(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                for choice in chunk.choices[:1]:
                    if choice.finish_reason:
                        step.finish = choice.finish_reason
                    if choice.delta.content:
                        for event in self._text(step, choice.delta.content):
                            yield event
                    for call in choice.delta.tool_calls or []:
                        for event in self._call_delta(step, call):
                            yield event
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
        if step.blocked and step.message is None:
            for event in self._text(step, "Blocked by a guardrail."):
                yield event
        for event in self._close_message(step):
            yield event
        for index in sorted(step.live):
            for event in self._close_call(step.live[index]):
                yield event

    def _text(self, step: Step, delta: str) -> Iterator[dict[str, Any]]:
        if step.message is None:
            step.message, step.message_index = self._new_message()
            yield self._event(
                "response.output_item.added", output_index=step.message_index, item=step.message
            )
            yield self._event(
                "response.content_part.added",
                item_id=step.message["id"],
                output_index=step.message_index,
                content_index=0,
                part=self._part(step.blocked),
            )
        step.text += delta
        if not step.blocked:
            yield self._event(
                "response.output_text.delta",
                item_id=step.message["id"],
                output_index=step.message_index,
                content_index=0,
                delta=delta,
                logprobs=[],
            )

    def _call_delta(self, step: Step, call: Any) -> Iterator[dict[str, Any]]:
        slot = step.calls.setdefault(call.index, {"call_id": "", "name": "", "arguments": ""})
        if call.id:
            slot["call_id"] = call.id
        function = call.function or {}
        slot["name"] += function.get("name") or ""
        piece = function.get("arguments") or ""
        slot["arguments"] += piece
        if not slot["name"] or self._server_side(slot["name"]):
            return  # not known yet, or a server-side call the loop runs
        live = step.live.get(call.index)
        if live is None:
            if self.plan.request.parallel_tool_calls is False and step.live:
                return  # one call per turn was asked for: later ones are dropped
            yield from self._close_message(step)
            live = step.live[call.index] = self._new_call(slot)
            yield self._event(
                "response.output_item.added",
                output_index=live["index"],
                item={**live["item"], "arguments": ""},
            )
            piece = slot["arguments"]  # whatever arrived before the name
        if piece:
            yield self._event(
                "response.function_call_arguments.delta",
                item_id=live["item"]["id"],
                output_index=live["index"],
                delta=piece,
            )

    def _count(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.usage["input_tokens"] += prompt_tokens
        self.usage["output_tokens"] += completion_tokens
        self.usage["total_tokens"] += prompt_tokens + completion_tokens
        add_tokens(prompt_tokens + completion_tokens)  # the caller's tokens-per-minute limit

    def _new_message(self) -> tuple[Item, int]:
        message: Item = {
            "type": "message",
            "id": new_id("msg"),
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        self.output.append(message)
        return message, len(self.output) - 1

    @staticmethod
    def _part(refusal: bool, text: str = "") -> dict[str, Any]:
        if refusal:
            return {"type": "refusal", "refusal": text}
        return {"type": "output_text", "text": text, "annotations": []}

    def _close_message(self, step: Step) -> Iterator[dict[str, Any]]:
        message, index = step.message, step.message_index
        if message is None or message["status"] != "in_progress":
            return
        part = self._part(step.blocked, step.text)
        if not step.blocked:
            yield self._event(
                "response.output_text.done",
                item_id=message["id"],
                output_index=index,
                content_index=0,
                text=step.text,
                logprobs=[],
            )
        else:
            yield self._event(
                "response.refusal.done",
                item_id=message["id"],
                output_index=index,
                content_index=0,
                refusal=step.text,
            )
        yield self._event(
            "response.content_part.done",
            item_id=message["id"],
            output_index=index,
            content_index=0,
            part=part,
        )
        message["content"] = [part]
        message["status"] = "completed" if step.finish != "length" else "incomplete"
        if step.blocked:
            self.status = "completed"
        yield self._event("response.output_item.done", output_index=index, item=message)

    def _new_call(self, slot: dict[str, str]) -> dict[str, Any]:
        item: Item = {
            "type": "function_call",
            "id": new_id("fc"),
            "call_id": slot["call_id"] or new_id("call"),
            "name": slot["name"],
            "arguments": "",
            "status": "in_progress",
        }
        self.output.append(item)
        return {"item": item, "index": len(self.output) - 1, "slot": slot}

    def _close_call(self, live: dict[str, Any]) -> Iterator[dict[str, Any]]:
        item, slot = live["item"], live["slot"]
        item["arguments"] = slot["arguments"] or "{}"
        if slot["call_id"]:
            item["call_id"] = slot["call_id"]
        yield self._event(
            "response.function_call_arguments.done",
            item_id=item["id"],
            output_index=live["index"],
            name=item["name"],
            arguments=item["arguments"],
        )
        item["status"] = "completed"
        record_metrics({"tool": "function"}, agent_tool_calls_by_type=1)
        yield self._event("response.output_item.done", output_index=live["index"], item=item)

    async def _mcp_list(self, tool: MCPTool, deadline: float) -> AsyncIterator[dict[str, Any]]:
        """List a server's tools once per response: an ``mcp_list_tools`` item (with the
        reason, when the server cannot be reached: its tools are then simply not offered)."""
        item: Item = {
            "type": "mcp_list_tools",
            "id": new_id("mcpl"),
            "server_label": tool.server_label,
            "tools": [],
        }
        self.output.append(item)
        index = len(self.output) - 1
        yield self._event("response.output_item.added", output_index=index, item=item)
        yield self._event(
            "response.mcp_list_tools.in_progress", item_id=item["id"], output_index=index
        )
        timeout = min(self.service._config.mcp.timeout_seconds, deadline - time.monotonic())
        try:
            item["tools"], skipped = await mcp.list_tools(tool, max(0.1, timeout))
            if skipped:  # named so the client knows why the model was not offered them
                item["skipped_tools"] = skipped
            outcome = "response.mcp_list_tools.completed"
        except mcp.MCPFailure as exc:
            record_metrics({"tool": "mcp"}, agent_tool_errors=1)
            item["error"] = str(exc)
            outcome = "response.mcp_list_tools.failed"
        taken = {t.name for t in self.plan.request.tools or [] if isinstance(t, FunctionTool)}
        taken |= {FILE_SEARCH} if self._searching() else set()
        for listed in item["tools"]:
            name = listed["name"]
            if name in taken or name in self.mcp_functions:
                continue  # the first tool of a name wins
            if len(taken) + len(self.mcp_functions) >= MAX_MODEL_TOOLS:
                item.setdefault("skipped_tools", []).append(name)  # the chat API's limit
                continue
            self.mcp_functions[name] = (tool, listed)
        yield self._event(outcome, item_id=item["id"], output_index=index)
        yield self._event("response.output_item.done", output_index=index, item=item)

    async def _mcp_call(
        self, call: dict[str, str], deadline: float
    ) -> AsyncIterator[dict[str, Any]]:
        tool, _ = self.mcp_functions[call["name"]]
        item: Item = {
            "type": "mcp_call",
            "id": new_id("mcp"),
            "server_label": tool.server_label,
            "name": call["name"],
            "arguments": call["arguments"] or "{}",
            "status": "in_progress",
            "output": None,
            "error": None,
        }
        self.output.append(item)
        index = len(self.output) - 1
        yield self._event("response.output_item.added", output_index=index, item=item)
        yield self._event("response.mcp_call.in_progress", item_id=item["id"], output_index=index)
        yield self._event(
            "response.mcp_call_arguments.done",
            item_id=item["id"],
            output_index=index,
            arguments=item["arguments"],
        )
        record_metrics({"tool": "mcp"}, agent_tool_calls_by_type=1)
        timeout = min(self.service._config.mcp.timeout_seconds, deadline - time.monotonic())
        try:
            item["output"] = await mcp.call_tool(
                tool, call["name"], item["arguments"], max(0.1, timeout)
            )
            item["status"] = "completed"
            outcome = "response.mcp_call.completed"
        except mcp.MCPFailure as exc:
            # Fed back to the model as the tool's error; the loop goes on.
            record_metrics({"tool": "mcp"}, agent_tool_errors=1)
            item["error"] = str(exc)
            item["status"] = "failed"
            outcome = "response.mcp_call.failed"
        yield self._event(outcome, item_id=item["id"], output_index=index)
        yield self._event("response.output_item.done", output_index=index, item=item)

    async def _file_search(self, call: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
        tool = next(t for t in self.plan.request.tools or [] if isinstance(t, FileSearchTool))
        queries = queries_of(call["arguments"])
        item: Item = {
            "type": "file_search_call",
            "id": new_id("fs"),
            "queries": queries,
            "status": "in_progress",
            "results": None,
        }
        self.output.append(item)
        index = len(self.output) - 1
        include = self.plan.request.include or []
        yield self._event("response.output_item.added", output_index=index, item=item)
        yield self._event(
            "response.file_search_call.in_progress", item_id=item["id"], output_index=index
        )
        yield self._event(
            "response.file_search_call.searching", item_id=item["id"], output_index=index
        )
        record_metrics({"tool": "file_search"}, agent_tool_calls_by_type=1)
        try:
            if not queries:
                raise BadRequestError("file_search needs at least one query")
            item["results"] = await self.service.file_search(tool, queries)
            item["status"] = "completed"
        except LlamdaError as exc:
            # Fed back to the model as the tool's output; the loop goes on.
            record_metrics({"tool": "file_search"}, agent_tool_errors=1)
            item["status"] = "failed"
            item["error"] = exc.message
        yield self._event(
            "response.file_search_call.completed", item_id=item["id"], output_index=index
        )
        yield self._event(
            "response.output_item.done", output_index=index, item=visible(item, include)
        )


def queries_of(arguments: str) -> list[str]:
    """The queries of a model's file_search call (``queries`` list or ``query`` string)."""
    try:
        data = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return []
    if not isinstance(data, dict):
        return []
    raw = data.get("queries", data.get("query", []))
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        return []
    return [q.strip()[:4096] for q in raw if isinstance(q, str) and q.strip()][:10]
