"""OpenAI chat ⇄ Bedrock Converse, as pure functions (no I/O).

Notes on the mapping:
- system/developer messages → ``system``; tool messages → ``toolResult`` blocks in a user turn;
  consecutive turns of one role are merged (Converse wants alternating roles).
- ``response_format: json_schema`` is a forced tool whose input schema is the JSON schema; its
  input comes back as the message content. ``json_object`` adds a system instruction.
- ``tool_choice: none`` drops the tools unless the history holds tool blocks (Converse then
  requires a toolConfig), in which case the tools stay with ``auto``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from llamda.api.inference import (
    AssistantMessage,
    ChatCompletionRequest,
    ImagePart,
    NamedToolChoice,
    SystemMessage,
    TextPart,
    ToolMessage,
    UserMessage,
)
from llamda.errors import BadRequestError
from llamda.providers.inference.fields import upstream_fields

JSON_TOOL = "json_response"
_DATA_URL = re.compile(r"^data:image/(png|jpeg|jpg|gif|webp);base64,(.*)$", re.DOTALL)

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "content_filtered": "content_filter",
    "guardrail_intervened": "content_filter",
}


def _text(content: str | list[TextPart] | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.text for part in content)


def _image(part: ImagePart, index: int) -> dict[str, Any]:
    match = _DATA_URL.match(part.image_url.url)
    if not match:
        raise BadRequestError(
            "images must be base64 data URLs (data:image/png;base64,...) for Bedrock",
            param=f"messages[{index}].content",
        )
    fmt = "jpeg" if match.group(1) == "jpg" else match.group(1)
    try:
        data = base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequestError(
            "image data is not valid base64", param=f"messages[{index}].content"
        ) from None
    return {"image": {"format": fmt, "source": {"bytes": data}}}


def _user_blocks(message: UserMessage, index: int) -> list[dict[str, Any]]:
    if isinstance(message.content, str):
        return [{"text": message.content}]
    blocks: list[dict[str, Any]] = []
    for part in message.content:
        blocks.append({"text": part.text} if isinstance(part, TextPart) else _image(part, index))
    return blocks


def _assistant_blocks(message: AssistantMessage, index: int) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    text = _text(message.content)
    if text:
        blocks.append({"text": text})
    for call in message.tool_calls or []:
        try:
            arguments = json.loads(call.function.arguments or "{}")
        except ValueError:
            raise BadRequestError(
                "tool call arguments must be a JSON string", param=f"messages[{index}].tool_calls"
            ) from None
        blocks.append(
            {"toolUse": {"toolUseId": call.id, "name": call.function.name, "input": arguments}}
        )
    return blocks


def to_converse(request: ChatCompletionRequest, model: str) -> dict[str, Any]:
    """The Converse/ConverseStream request for an OpenAI chat request."""
    # The one field check (400 naming a field Converse cannot honour); images: data URLs only.
    upstream_fields(request, "remote::bedrock")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for i, message in enumerate(request.messages):
        if isinstance(message, SystemMessage):
            system.append({"text": _text(message.content)})
        elif isinstance(message, UserMessage):
            add("user", _user_blocks(message, i))
        elif isinstance(message, AssistantMessage):
            add("assistant", _assistant_blocks(message, i))
        elif isinstance(message, ToolMessage):
            result = {
                "toolUseId": message.tool_call_id,
                "content": [{"text": _text(message.content)}],
            }
            add("user", [{"toolResult": result}])
    if not turns or turns[0]["role"] != "user":
        raise BadRequestError("the conversation must start with a user message", param="messages")

    body: dict[str, Any] = {"modelId": model, "messages": turns}
    inference: dict[str, Any] = {}
    if request.token_limit:
        inference["maxTokens"] = request.token_limit
    if request.temperature is not None:
        inference["temperature"] = request.temperature
    if request.top_p is not None:
        inference["topP"] = request.top_p
    if request.stop_list:
        inference["stopSequences"] = request.stop_list[:4]
    if inference:
        body["inferenceConfig"] = inference

    tools = [
        {
            "toolSpec": {
                "name": t.function.name,
                "description": t.function.description or t.function.name,
                "inputSchema": {"json": t.function.parameters},
            }
        }
        for t in request.tools or []
    ]
    has_tool_blocks = any(
        "toolUse" in b or "toolResult" in b for turn in turns for b in turn["content"]
    )
    choice: dict[str, Any] | None = None
    fmt = request.response_format
    if fmt is not None and fmt.type == "json_schema" and fmt.json_schema is not None:
        schema = fmt.json_schema.schema_ or {"type": "object"}
        tools.append(
            {
                "toolSpec": {
                    "name": JSON_TOOL,
                    "description": fmt.json_schema.description or "Respond with this JSON.",
                    "inputSchema": {"json": schema},
                }
            }
        )
        choice = {"tool": {"name": JSON_TOOL}}
    elif fmt is not None and fmt.type == "json_object":
        system.append({"text": "Respond with one valid JSON object and nothing else."})
    if choice is None:
        if request.tool_choice == "none" and not has_tool_blocks:
            tools = []
        elif request.tool_choice == "required":
            choice = {"any": {}}
        elif isinstance(request.tool_choice, NamedToolChoice):
            choice = {"tool": {"name": request.tool_choice.name}}
        elif tools:
            choice = {"auto": {}}
    if tools:
        body["toolConfig"] = {"tools": tools, **({"toolChoice": choice} if choice else {})}
    if system:
        body["system"] = system
    return body


def from_converse_output(
    reply: dict[str, Any], json_mode: bool
) -> tuple[str | None, list[dict[str, Any]], str]:
    """(content, tool_calls, finish_reason) of a Converse reply."""
    blocks = reply.get("output", {}).get("message", {}).get("content", [])
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in blocks:
        if "text" in block:
            texts.append(block["text"])
        elif "toolUse" in block:
            use = block["toolUse"]
            if json_mode and use.get("name") == JSON_TOOL:
                texts.append(json.dumps(use.get("input", {})))
                continue
            calls.append(
                {
                    "id": use["toolUseId"],
                    "type": "function",
                    "function": {
                        "name": use["name"],
                        "arguments": json.dumps(use.get("input", {})),
                    },
                }
            )
    finish = STOP_REASONS.get(reply.get("stopReason", "end_turn"), "stop")
    if json_mode and finish == "tool_calls" and not calls:
        finish = "stop"
    return ("".join(texts) if texts or not calls else None), calls, finish


def usage_of(usage: dict[str, Any] | None) -> dict[str, int]:
    usage = usage or {}
    prompt, completion = int(usage.get("inputTokens", 0)), int(usage.get("outputTokens", 0))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": int(usage.get("totalTokens", prompt + completion)),
    }
