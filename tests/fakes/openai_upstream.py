"""A recording OpenAI-compatible upstream: answers /v1/chat/completions, /v1/completions and
/v1/embeddings with valid OpenAI objects (server-sent events when ``stream`` is true) and keeps
each request's headers and body, so tests can see what a remote provider really sent (auth,
extra headers, model mapping). Scripted statuses too.

Like a model, it answers from what it is sent: a chat request with ``tools`` gets a call of the
first tool whose arguments carry the last user message (``{"<first property>": text}``); a
completion continues its prompt as ``"<prompt> -> done"``; other chats answer "upstream ok" (with
``n`` > 1, ``n`` choices "upstream ok <index>"), streamed word by word when asked. A misbehaving
upstream (``ignore_tool_choice``) calls a tool even when told ``tool_choice: "none"``."""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class OpenAIUpstream:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.failures: deque[tuple[int, dict[str, str]]] = deque()
        # A careless upstream: its error messages quote the Authorization header it received.
        self.echo_auth_in_errors = False
        # A careless upstream: calls tools even when the request says tool_choice "none".
        self.ignore_tool_choice = False
        # Requests for these models get no answer until the fake stops (a hung upstream).
        self.hang_models: set[str] = set()
        # Requests for these models wait until ``gate`` is set (a slow upstream a test
        # releases when it has seen what it waits for).
        self.gate_models: set[str] = set()
        self.gate = threading.Event()
        # Requests for these models are answered with this error status.
        self.fail_models: dict[str, int] = {}
        self._stopping = threading.Event()
        # Streamed requests for these models get chunks until the reader goes away; each
        # closed connection is recorded in ``disconnects`` (what the client did to us).
        self.endless_stream_models: set[str] = set()
        # GET /v1/models lists these; ``hang_listing`` makes it never answer (a stuck server).
        self.models: list[str] = []
        self.hang_listing = False
        # Embedding models answering vectors of another length than the default 3.
        self.embedding_dimensions: dict[str, int] = {}
        self.disconnects: list[str] = []
        # An upstream that closes every connection right after its reply, without saying so
        # (no ``Connection: close``): a pooled connection a client reuses may be gone.
        self.close_after_reply = False
        # Streamed requests for these models send two events, then the connection drops before
        # the declared length (an upstream that dies mid-stream).
        self.cut_stream_models: set[str] = set()
        self.disconnected = threading.Event()
        # A scripted model: the reply text of a (non-streamed, n=1) chat, from its request
        # body (e.g. a judge that rates what the prompt holds); None: "upstream ok".
        self.chat_reply: Callable[[dict[str, Any]], str] | None = None
        # A model that reads a tool's result and answers (rather than calling a tool again).
        self.answer_after_tool = False
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                upstream.requests.append(
                    {
                        "port": self.client_address[1],
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": None,
                    }
                )
                if not self.path.endswith("/models"):
                    self._send(404, {"error": {"message": "not found", "type": "x"}})
                    return
                if upstream.hang_listing:
                    upstream._stopping.wait(120)
                    return
                data = [
                    {"id": m, "object": "model", "created": 1, "owned_by": "upstream"}
                    for m in upstream.models
                ]
                self._send(200, {"object": "list", "data": data})

            def do_POST(self) -> None:
                body = json.loads(
                    self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}"
                )
                upstream.requests.append(
                    {
                        "port": self.client_address[1],  # the client's end: one per connection
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                    }
                )
                model = body.get("model") if isinstance(body, dict) else None
                if model in upstream.hang_models:
                    upstream._stopping.wait(120)
                    return
                if model in upstream.gate_models:
                    upstream.gate.wait(60)
                if model in upstream.fail_models:
                    status = upstream.fail_models[model]
                    self._send(status, {"error": {"message": f"{model} refused", "type": "x"}})
                    return
                if model in upstream.endless_stream_models and body.get("stream"):
                    self._stream_until_gone(model)
                    return
                if model in upstream.cut_stream_models and body.get("stream"):
                    self._cut_stream(model)
                    return
                if upstream.failures:
                    status, headers = upstream.failures.popleft()
                    message = f"scripted {status}"
                    if upstream.echo_auth_in_errors:
                        message += f" (you sent {self.headers.get('authorization')!r})"
                    self._send(status, {"error": {"message": message, "type": "x"}}, headers)
                    return
                if self.path.endswith("/embeddings"):
                    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
                    size = upstream.embedding_dimensions.get(body["model"], 3)
                    vector = [0.1, 0.2, 0.3] if size == 3 else [0.5] * size
                    data = [
                        {"object": "embedding", "index": i, "embedding": vector}
                        for i, _ in enumerate(inputs)
                    ]
                    self._send(
                        200,
                        {
                            "object": "list",
                            "data": data,
                            "model": body["model"],
                            "usage": {"prompt_tokens": 1, "total_tokens": 1},
                        },
                    )
                    return
                if self.path.endswith("/completions") and not self.path.endswith(
                    "/chat/completions"
                ):
                    self._completion(body)
                    return
                after_tool = (
                    upstream.answer_after_tool
                    and (body.get("messages") or [{}])[-1].get("role") == "tool"
                )
                if (
                    body.get("tools")
                    and not after_tool
                    and (body.get("tool_choice") != "none" or upstream.ignore_tool_choice)
                ):
                    self._tool_call(body)
                    return
                self._chat(body)

            def _chat(self, body: dict[str, Any]) -> None:
                n = int(body.get("n") or 1)
                texts = ["upstream ok" if n == 1 else f"upstream ok {i}" for i in range(n)]
                if upstream.chat_reply is not None and n == 1:
                    texts = [upstream.chat_reply(body)]
                base = {"id": "chatcmpl-up", "created": 1, "model": body["model"]}
                usage = {"prompt_tokens": 3, "completion_tokens": 2 * n, "total_tokens": 3 + 2 * n}
                if body.get("stream"):
                    chunks = []
                    for i, text in enumerate(texts):
                        words = text.split(" ")
                        deltas = [{"role": "assistant", "content": ""}] + [
                            {"content": w if j == 0 else f" {w}"} for j, w in enumerate(words)
                        ]
                        chunks += [{"index": i, "delta": d, "finish_reason": None} for d in deltas]
                        chunks.append({"index": i, "delta": {}, "finish_reason": "stop"})
                    events = [
                        {**base, "object": "chat.completion.chunk", "choices": [c]} for c in chunks
                    ]
                    if (body.get("stream_options") or {}).get("include_usage"):
                        events.append(
                            {
                                **base,
                                "object": "chat.completion.chunk",
                                "choices": [],
                                "usage": usage,
                            }
                        )
                    self._sse(events)
                    return
                self._send(
                    200,
                    {
                        **base,
                        "object": "chat.completion",
                        "choices": [
                            {
                                "index": i,
                                "message": {"role": "assistant", "content": text},
                                "finish_reason": "stop",
                            }
                            for i, text in enumerate(texts)
                        ],
                        "usage": usage,
                    },
                )

            def _completion(self, body: dict[str, Any]) -> None:
                prompt = body["prompt"] if isinstance(body["prompt"], str) else body["prompt"][0]
                text = f"{prompt} -> done"
                base = {"id": "cmpl-up", "object": "text_completion", "created": 1}
                if body.get("stream"):
                    words = text.split(" ")
                    self._sse(
                        [
                            {
                                **base,
                                "model": body["model"],
                                "choices": [
                                    {
                                        "index": 0,
                                        "text": w if i == 0 else f" {w}",
                                        "finish_reason": "stop" if i == len(words) - 1 else None,
                                    }
                                ],
                            }
                            for i, w in enumerate(words)
                        ]
                    )
                    return
                self._send(
                    200,
                    {
                        **base,
                        "model": body["model"],
                        "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
                    },
                )

            def _tool_call(self, body: dict[str, Any]) -> None:
                function = body["tools"][0]["function"]
                properties = (function.get("parameters") or {}).get("properties") or {}
                said = next(
                    (
                        m["content"]
                        for m in reversed(body["messages"])
                        if m["role"] == "user" and isinstance(m.get("content"), str)
                    ),
                    "",
                )
                arguments = json.dumps({next(iter(properties), "input"): said})
                call = {"id": "call_up1", "type": "function"}
                base = {"id": "chatcmpl-up", "created": 1, "model": body["model"]}
                if body.get("stream"):
                    half = len(arguments) // 2
                    deltas = [
                        {
                            "role": "assistant",
                            "tool_calls": [
                                {
                                    "index": 0,
                                    **call,
                                    "function": {"name": function["name"], "arguments": ""},
                                }
                            ],
                        },
                        {"tool_calls": [{"index": 0, "function": {"arguments": arguments[:half]}}]},
                        {"tool_calls": [{"index": 0, "function": {"arguments": arguments[half:]}}]},
                    ]
                    chunks = [
                        {
                            **base,
                            "object": "chat.completion.chunk",
                            "choices": [{"index": 0, "delta": d, "finish_reason": None}],
                        }
                        for d in deltas
                    ]
                    chunks.append(
                        {
                            **base,
                            "object": "chat.completion.chunk",
                            "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
                        }
                    )
                    self._sse(chunks)
                    return
                message = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {**call, "function": {"name": function["name"], "arguments": arguments}}
                    ],
                }
                self._send(
                    200,
                    {
                        **base,
                        "object": "chat.completion",
                        "choices": [
                            {"index": 0, "message": message, "finish_reason": "tool_calls"}
                        ],
                        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
                    },
                )

            def _sse(self, events: list[dict[str, Any]]) -> None:
                data = b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events)
                data += b"data: [DONE]\n\n"
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                if upstream.close_after_reply:
                    self.close_connection = True

            def _cut_stream(self, model: str) -> None:
                event = {
                    "id": "chatcmpl-cut",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": model,
                    "choices": [{"index": 0, "delta": {"content": "half "}}],
                }
                data = f"data: {json.dumps(event)}\n\n".encode() * 2
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("content-length", str(len(data) * 10))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()
                self.close_connection = True

            def _stream_until_gone(self, model: str) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()  # no length: the body ends when the connection closes
                event = {
                    "id": "chatcmpl-endless",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": model,
                    "choices": [{"index": 0, "delta": {"content": "x" * 16384}}],
                }
                data = f"data: {json.dumps(event)}\n\n".encode()
                try:
                    for _ in range(20000):  # ~330 MB at most: far more than any socket buffers
                        if upstream._stopping.is_set():
                            return
                        self.wfile.write(data)
                        self.wfile.flush()
                except OSError:
                    upstream.disconnects.append(model)
                    upstream.disconnected.set()
                self.close_connection = True

            def _send(
                self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
                if upstream.close_after_reply:
                    self.close_connection = True

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> OpenAIUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self.gate.set()
        self._server.shutdown()
        self._server.server_close()
