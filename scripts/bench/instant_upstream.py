"""An instant OpenAI-compatible upstream for the benchmarks: a raw ASGI app under uvicorn that
lists one model and answers chat completions at once, plain or streamed (`stream: true`), and
embeddings (one constant DIM-wide vector per input).

It plays a scripted agent model: a request with `tools` whose last message is the user's gets a
call of its first tool (`finish_reason: tool_calls`); any other request (no tools, or a tool
result last) gets the text reply "ok". Plain requests without tools or streaming skip JSON
parsing and get a constant body (scripts/bench/overhead.py measures that path).

    python scripts/bench/instant_upstream.py PORT [DELAY_MS]

With DELAY_MS, every chat completion answers after that long (as a real model would; the
throughput benchmark uses 20 ms), without holding the event loop.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

MODEL = "bench-model"
USAGE = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
DIM = 8
DELAY_SECONDS = 0.0  # set from the command line
VECTOR = [DIM**-0.5] * DIM
# Arguments every benchmark tool accepts (a file_search-style tool reads `query`/`queries`).
ARGUMENTS = json.dumps({"query": "bench", "queries": ["bench"]})


def _completion(message: dict[str, Any], finish: str) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1,
            "model": MODEL,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": USAGE,
        }
    ).encode()


REPLY = _completion({"role": "assistant", "content": "ok"}, "stop")
MODELS = json.dumps(
    {
        "object": "list",
        "data": [{"id": MODEL, "object": "model", "created": 1, "owned_by": "bench"}],
    }
).encode()


def _tool_call(request: dict[str, Any]) -> dict[str, Any] | None:
    """The call this model makes, if it makes one: the first tool, on a user turn."""
    tools = request.get("tools") or []
    messages = request.get("messages") or []
    if not tools or not messages or messages[-1].get("role") != "user":
        return None
    name = (tools[0].get("function") or {}).get("name", "tool")
    return {
        "index": 0,
        "id": "call_bench",
        "type": "function",
        "function": {"name": name, "arguments": ARGUMENTS},
    }


def _chunk(delta: dict[str, Any], finish: str | None, usage: bool = False) -> bytes:
    body: dict[str, Any] = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": MODEL,
        "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage:
        body["usage"] = USAGE
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _stream(request: dict[str, Any], call: dict[str, Any] | None) -> bytes:
    """The whole SSE body at once (the model is instant): role, content or call, finish,
    usage when asked, [DONE]."""
    parts = [_chunk({"role": "assistant", "content": ""}, None)]
    if call is None:
        parts += [_chunk({"content": "ok"}, None), _chunk({}, "stop")]
    else:
        parts += [_chunk({"tool_calls": [call]}, None), _chunk({}, "tool_calls")]
    if (request.get("stream_options") or {}).get("include_usage"):
        parts.append(_chunk({}, None, usage=True))
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


def _embeddings(request: dict[str, Any]) -> bytes:
    """The same unit vector for every input (DIM wide): searches match every chunk."""
    inputs = request.get("input")
    count = len(inputs) if isinstance(inputs, list) else 1
    data = [{"object": "embedding", "index": i, "embedding": VECTOR} for i in range(count)]
    return json.dumps({"object": "list", "data": data, "model": MODEL, "usage": USAGE}).encode()


def answer(path: str, raw: bytes) -> tuple[bytes, bytes]:
    """(content type, body) for a request."""
    if path.endswith("/models"):
        return b"application/json", MODELS
    if path.endswith("/embeddings"):
        return b"application/json", _embeddings(json.loads(raw))
    if b'"tools"' not in raw and b'"stream"' not in raw:
        return b"application/json", REPLY
    request = json.loads(raw)
    call = _tool_call(request)
    if request.get("stream"):
        return b"text/event-stream", _stream(request, call)
    if call is None:
        return b"application/json", REPLY
    plain = {k: v for k, v in call.items() if k != "index"}  # no index outside a stream
    message = {"role": "assistant", "content": None, "tool_calls": [plain]}
    return b"application/json", _completion(message, "tool_calls")


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    content_type, body = answer(scope["path"], b"".join(chunks))
    if DELAY_SECONDS and scope["path"].endswith("/chat/completions"):
        await asyncio.sleep(DELAY_SECONDS)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", content_type)],
        }
    )
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    import uvicorn

    DELAY_SECONDS = float(sys.argv[2]) / 1000 if len(sys.argv) > 2 else 0.0
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="error",
        access_log=False,
        backlog=4096,
    )
