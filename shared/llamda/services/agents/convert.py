"""Responses items ⇄ chat messages: what the model is sent at each step of the loop."""

from __future__ import annotations

import json
from typing import Any

from llamda.errors import BadRequestError
from llamda.services.agents.items import Item

FILE_SEARCH = "file_search"
# What the model sees of one file_search call's results, at most.
MAX_RESULTS_CHARS = 32 * 1024

FILE_SEARCH_FUNCTION: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": FILE_SEARCH,
        "description": "Search the user's documents for passages relevant to the question. "
        "Call it before answering questions the documents may answer.",
        "parameters": {
            "type": "object",
            "properties": {
                "queries": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "One or more search queries.",
                }
            },
            "required": ["queries"],
        },
    },
}


def text_of(content: Any) -> str:
    """The text of a content value: a string, or parts with ``text``/``refusal``."""
    if isinstance(content, str):
        return content
    parts = []
    for part in content or []:
        if isinstance(part, dict):
            parts.append(str(part.get("text") or part.get("refusal") or ""))
    return "".join(parts)


def format_results(results: list[dict[str, Any]]) -> str:
    """File search results as the model reads them (numbered, with their source)."""
    if not results:
        return "No matching passages were found."
    out: list[str] = []
    used = 0
    for number, result in enumerate(results, 1):
        block = (
            f"[{number}] {result.get('filename') or result.get('file_id') or 'document'} "
            f"(score {float(result.get('score') or 0):.3f})\n{result.get('text', '')}\n"
        )
        if used + len(block) > MAX_RESULTS_CHARS:
            out.append(block[: max(0, MAX_RESULTS_CHARS - used)])
            break
        out.append(block)
        used += len(block)
    return "\n".join(out)


def _user_content(content: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type")
        if kind == "input_image":
            parts.append(
                {
                    "type": "image_url",
                    "image_url": {"url": part["image_url"], "detail": part.get("detail", "auto")},
                }
            )
        else:
            parts.append({"type": "text", "text": str(part.get("text") or part.get("refusal"))})
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def check_calls_answered(items: list[Item]) -> None:
    """Every function call in the context has its output, and every output its call (a model
    cannot be sent one without the other)."""
    calls: dict[str, int] = {}
    answered: set[str] = set()
    for index, item in enumerate(items):
        if item["type"] == "function_call":
            calls[item["call_id"]] = index
        elif item["type"] == "function_call_output":
            if item["call_id"] not in calls:
                raise BadRequestError(
                    f"function_call_output for call_id {item['call_id'][:80]!r} has no "
                    "function_call before it in this response's context (send "
                    "previous_response_id, or the function_call item)",
                    param="input",
                    code="invalid_value",
                )
            answered.add(item["call_id"])
    missing = [call_id for call_id in calls if call_id not in answered]
    if missing:
        raise BadRequestError(
            f"no function_call_output for call_id {missing[0][:80]!r}: answer every function "
            "call of the previous response",
            param="input",
            code="invalid_value",
        )


def _server_call(
    messages: list[dict[str, Any]],
    assistant: Any,
    call_id: str,
    name: str,
    arguments: str,
    result: str,
    offered: bool,
) -> None:
    """A server-side tool's call and result: a tool turn when the tool is offered in this
    request, else plain text (a provider refuses tool blocks for tools it was not given)."""
    if offered:
        message = assistant()
        message.setdefault("tool_calls", []).append(
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        )
        messages.append({"role": "tool", "tool_call_id": call_id, "content": result})
        return
    message = assistant()
    message["content"] = (message.get("content") or "") + f"(Called {name} with {arguments}.)"
    messages.append({"role": "user", "content": f"Result of {name}:\n{result}"})


def to_messages(
    items: list[Item], system: list[str], *, server_tools: set[str]
) -> list[dict[str, Any]]:
    """Chat messages for ``items`` (the context, in order), after the ``system`` texts;
    ``server_tools``: the server-side tools (file_search, MCP tools) offered in this request."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": text} for text in system if text
    ]

    def assistant() -> dict[str, Any]:
        """The assistant turn being built: text and calls of one turn share one message."""
        if messages and messages[-1]["role"] == "assistant":
            return messages[-1]
        message: dict[str, Any] = {"role": "assistant", "content": None}
        messages.append(message)
        return message

    for item in items:
        kind = item["type"]
        if kind == "message":
            role = item["role"]
            if role in ("system", "developer"):
                messages.append({"role": "system", "content": text_of(item["content"])})
            elif role == "user":
                messages.append({"role": "user", "content": _user_content(item["content"])})
            else:
                message = assistant()
                text = text_of(item["content"])
                message["content"] = (message.get("content") or "") + text
        elif kind == "function_call":
            message = assistant()
            message.setdefault("tool_calls", []).append(
                {
                    "id": item["call_id"],
                    "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]},
                }
            )
        elif kind == "function_call_output":
            output = item["output"]
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": item["call_id"],
                    "content": output if isinstance(output, str) else text_of(output),
                }
            )
        elif kind == "file_search_call":
            results = format_results(item.get("results") or [])
            if item.get("status") == "failed":
                results = f"The search failed: {item.get('error') or 'unknown error'}"
            arguments = json.dumps({"queries": item.get("queries") or []})
            offered = FILE_SEARCH in server_tools
            _server_call(messages, assistant, item["id"], FILE_SEARCH, arguments, results, offered)
        elif kind == "mcp_call":
            result = item.get("output") or ""
            if item.get("error"):
                result = f"Error: {item['error']}"
            offered = item["name"] in server_tools
            arguments = item.get("arguments") or "{}"
            _server_call(messages, assistant, item["id"], item["name"], arguments, result, offered)
        # mcp_list_tools items are for the client: the model sees the tools themselves.
    return messages
