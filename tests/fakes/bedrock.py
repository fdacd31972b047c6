"""A wire-level fake of the Amazon Bedrock Runtime API, for real boto3/aioboto3 clients.

Built from the public API reference: Converse (POST /model/{modelId}/converse), ConverseStream
(POST /model/{modelId}/converse-stream, ``application/vnd.amazon.eventstream`` binary frames:
prelude, headers, CRC32s), InvokeModel for Titan/Cohere embeddings and ApplyGuardrail; and the control plane's
ListFoundationModels (GET /foundation-models) and ListInferenceProfiles (GET
/inference-profiles, paged), served on the same port (the provider's ``control_endpoint_url``). Errors
use the rest-json protocol (``x-amzn-ErrorType`` + ``{"message"}``).

Replies are scripted per model (``fake.script(model, ...)``) or computed from the request body
(``fake.respond(model, fn)``, e.g. the content-judging shields of ``tests/fakes/guards.py``);
unscripted chat echoes the last user text. Every request is recorded in ``fake.calls``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import struct
import threading
import time
import zlib
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

ERROR_STATUS = {
    "ThrottlingException": 429,
    "ValidationException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ModelNotReadyException": 429,
    "ServiceUnavailableException": 503,
    "ModelTimeoutException": 408,
    "InternalServerException": 500,
    "ModelErrorException": 424,
}


def encode_event(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude (total length, headers length), prelude CRC,
    headers (name, type 7 = string, value), payload, message CRC."""
    raw_headers = b""
    for name, value in headers.items():
        n, v = name.encode(), value.encode()
        raw_headers += struct.pack(">B", len(n)) + n + b"\x07" + struct.pack(">H", len(v)) + v
    total = 4 + 4 + 4 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(raw_headers))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + raw_headers + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event(event_type: str, body: dict[str, Any]) -> bytes:
    return encode_event(
        {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
        json.dumps(body).encode(),
    )


def exception_event(exception_type: str, message: str) -> bytes:
    return encode_event(
        {
            ":exception-type": exception_type,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        json.dumps({"message": message}).encode(),
    )


def fake_embedding(text: str, dimensions: int) -> list[float]:
    """Deterministic and meaningful enough for retrieval tests: hashed bag of words, unit norm."""
    vector = [0.0] * dimensions
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        digest = hashlib.sha256(word.encode()).digest()
        index = int.from_bytes(digest[:4], "big") % dimensions
        vector[index] += 1.0 if digest[4] % 2 else -1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def sample_for_schema(schema: dict[str, Any]) -> Any:
    """A value that satisfies a (simple) JSON schema, as a model in tool mode would produce."""
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object" or "properties" in schema:
        return {k: sample_for_schema(v) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        return [sample_for_schema(schema.get("items", {"type": "string"}))]
    return {"string": "sample", "integer": 1, "number": 1.5, "boolean": True}.get(kind, "sample")


@dataclass
class Reply:
    """One scripted reply. ``error`` = (code, message); ``stream_error`` breaks a stream after
    ``stream_error_after`` text deltas; ``delay`` waits before answering, ``hold`` until set."""

    text: str | None = None
    tool: dict[str, Any] | None = None
    # More tool uses in the same turn (parallel calls), after ``tool``.
    tools: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str | None = None
    error: tuple[str, str] | None = None
    stream_error: tuple[str, str] | None = None
    stream_error_after: int = 1
    delay: float = 0.0
    usage: dict[str, int] | None = None
    guardrail: dict[str, Any] | None = None
    # Held until the test sets it: the test knows the call arrived (``calls``) and can act
    # while the caller waits — orderings without timing.
    hold: threading.Event | None = None


def _foundation(model_id: str, provider: str, inference: str, output: str = "TEXT") -> dict:
    """A ListFoundationModels summary as the API reference describes it."""
    return {
        "modelArn": f"arn:aws:bedrock:us-east-1::foundation-model/{model_id}",
        "modelId": model_id,
        "modelName": model_id.split(".", 1)[-1],
        "providerName": provider,
        "inputModalities": ["TEXT"],
        "outputModalities": [output],
        "responseStreamingSupported": output == "TEXT",
        "customizationsSupported": [],
        "inferenceTypesSupported": [inference],
        "modelLifecycle": {"status": "ACTIVE"},
    }


def _profile(profile_id: str) -> dict[str, Any]:
    """A ListInferenceProfiles summary (a system-defined cross-region profile)."""
    return {
        "inferenceProfileName": profile_id,
        "inferenceProfileArn": f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/{profile_id}",
        "inferenceProfileId": profile_id,
        "models": [{"modelArn": f"arn:aws:bedrock:us-east-1::foundation-model/{profile_id[3:]}"}],
        "status": "ACTIVE",
        "type": "SYSTEM_DEFINED",
    }


# A region as Bedrock lists it: some models on demand, newer ones through profiles only.
FOUNDATION = [
    _foundation("amazon.nova-lite-v1:0", "Amazon", "ON_DEMAND"),
    _foundation("meta.llama3-8b-instruct-v1:0", "Meta", "ON_DEMAND"),
    _foundation("meta.llama3-3-70b-instruct-v1:0", "Meta", "INFERENCE_PROFILE"),
    _foundation("mistral.mistral-large-2402-v1:0", "Mistral AI", "ON_DEMAND"),
]
PROFILES = [
    _profile("us.amazon.nova-lite-v1:0"),
    _profile("us.meta.llama3-3-70b-instruct-v1:0"),
    _profile("us.meta.llama4-scout-17b-instruct-v1:0"),
]


@dataclass
class FakeBedrock:
    calls: list[dict[str, Any]] = field(default_factory=list)
    scripts: dict[str, deque[Reply]] = field(default_factory=lambda: defaultdict(deque))
    responders: dict[str, Callable[[dict[str, Any]], Reply]] = field(default_factory=dict)
    token_delay: float = 0.0
    # The control plane (service ``bedrock``): ListFoundationModels / ListInferenceProfiles.
    foundation_models: list[dict[str, Any]] = field(default_factory=lambda: list(FOUNDATION))
    inference_profiles: list[dict[str, Any]] = field(default_factory=lambda: list(PROFILES))
    lock: threading.Lock = field(default_factory=threading.Lock)
    endpoint: str = ""

    def script(self, model: str, *replies: Reply) -> None:
        with self.lock:
            self.scripts[model].extend(replies)

    def respond(self, model: str, responder: Callable[[dict[str, Any]], Reply]) -> None:
        """Answer ``model`` from each request's body (after any scripted replies)."""
        with self.lock:
            self.responders[model] = responder

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()
            self.scripts.clear()
            self.responders.clear()

    def next_reply(self, key: str, body: dict[str, Any] | None = None) -> Reply | None:
        with self.lock:
            queue = self.scripts.get(key)
            if queue:
                return queue.popleft()
            responder = self.responders.get(key)
        return responder(body or {}) if responder else None

    def calls_for(self, op: str, model: str | None = None) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["op"] == op and (model is None or c["model"] == model)]


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages", [])):
        if message.get("role") != "user":
            continue
        texts = [b["text"] for b in message.get("content", []) if "text" in b]
        results = [
            c.get("text", "")
            for b in message.get("content", [])
            if "toolResult" in b
            for c in b["toolResult"].get("content", [])
        ]
        if texts or results:
            return " ".join(texts + results)
    return ""


_TOOL_USE_IDS = itertools.count(1)


def tool_use_problem(body: dict[str, Any]) -> str | None:
    """What Bedrock's validation says of tool blocks: toolConfig must be defined when messages
    carry toolUse/toolResult, and each toolResult answers a toolUse of the turn before it."""
    messages = body.get("messages") or []
    has_tool_blocks = any(
        "toolUse" in block or "toolResult" in block
        for message in messages
        for block in message.get("content", [])
    )
    if has_tool_blocks and not body.get("toolConfig"):
        return (
            "The toolConfig field must be defined when using toolUse and toolResult content blocks."
        )
    for before, message in zip([None, *messages], messages, strict=False):
        results = [
            b["toolResult"]["toolUseId"] for b in message.get("content", []) if "toolResult" in b
        ]
        if not results:
            continue
        uses = {
            b["toolUse"]["toolUseId"] for b in (before or {}).get("content", []) if "toolUse" in b
        }
        if not set(results) <= uses:
            return (
                "The number of toolResult blocks at messages.N.content exceeds the number of "
                "toolUse blocks of previous turn."
            )
    return None


def _words(body: dict[str, Any]) -> int:
    count = 0
    for message in body.get("messages", []):
        for block in message.get("content", []):
            count += len(str(block.get("text", "")).split())
    for block in body.get("system", []):
        count += len(block.get("text", "").split())
    return max(count, 1)


def _plan(body: dict[str, Any], reply: Reply | None) -> dict[str, Any]:
    """What the model "says": text and/or a tool use, a stop reason and usage."""
    tool_config = body.get("toolConfig") or {}
    forced = (tool_config.get("toolChoice") or {}).get("tool", {}).get("name")
    tool = reply.tool if reply else None
    text = reply.text if reply else None
    if reply is None or (text is None and tool is None):
        if forced:
            spec = next(
                t["toolSpec"] for t in tool_config["tools"] if t["toolSpec"]["name"] == forced
            )
            tool = {"name": forced, "input": sample_for_schema(spec["inputSchema"]["json"])}
        else:
            text = f"You said: {_last_user_text(body)}"
    max_tokens = (body.get("inferenceConfig") or {}).get("maxTokens")
    stop = (
        reply.stop_reason
        if reply and reply.stop_reason
        else ("tool_use" if tool or (reply and reply.tools) else "end_turn")
    )
    if text is not None and max_tokens and len(text.split()) > max_tokens:
        text = " ".join(text.split()[:max_tokens])
        stop = "max_tokens"
    output_tokens = len((text or "").split()) + sum(
        len(json.dumps(t["input"]).split()) for t in [tool, *(reply.tools if reply else [])] if t
    )
    usage = (reply.usage if reply and reply.usage else None) or {
        "inputTokens": _words(body),
        "outputTokens": output_tokens,
        "totalTokens": _words(body) + output_tokens,
    }
    uses = [t for t in [tool, *(reply.tools if reply else [])] if t]
    for use in uses:
        use.setdefault("id", f"tooluse_{next(_TOOL_USE_IDS):04d}")
    return {"text": text, "tools": uses, "stop": stop, "usage": usage}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeBedrock

    def log_message(self, *args: Any) -> None:  # quiet
        return

    def _json(self, status: int, body: dict[str, Any], error_type: str | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("x-amzn-requestid", "fake-" + hashlib.md5(data).hexdigest()[:12])
        if error_type:
            self.send_header("x-amzn-errortype", f"{error_type}:http://internal.amazon.com/coral/")
        self.end_headers()
        self.wfile.write(data)

    def _error(self, code: str, message: str) -> None:
        self._json(ERROR_STATUS.get(code, 400), {"message": message}, code)

    def do_GET(self) -> None:
        """The control plane's list calls (rest-json, query parameters)."""
        from urllib.parse import parse_qs, urlsplit

        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path == "/foundation-models":
            op = "list-foundation-models"
        elif parts.path == "/inference-profiles":
            op = "list-inference-profiles"
        else:
            self._error("ResourceNotFoundException", f"unknown path {self.path}")
            return
        with self.fake.lock:
            self.fake.calls.append({"op": op, "model": None, "body": query, "headers": {}})
        reply = self.fake.next_reply(op, query)
        if reply and reply.error:
            self._error(*reply.error)
            return
        if op == "list-foundation-models":
            wanted = query.get("byOutputModality")
            models = [
                m
                for m in self.fake.foundation_models
                if wanted is None or wanted in m["outputModalities"]
            ]
            self._json(200, {"modelSummaries": models})
            return
        start = int(query.get("nextToken") or 0)
        size = int(query.get("maxResults") or 1000)
        page = self.fake.inference_profiles[start : start + size]
        body: dict[str, Any] = {"inferenceProfileSummaries": page}
        if start + size < len(self.fake.inference_profiles):
            body["nextToken"] = str(start + size)
        self._json(200, body)

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._error("ValidationException", "body is not JSON")
            return
        match = re.match(r"^/model/([^/]+)/(converse|converse-stream|invoke)$", self.path)
        guard = re.match(r"^/guardrail/([^/]+)/version/([^/]+)/apply$", self.path)
        if match:
            model, op = unquote(match.group(1)), match.group(2)
        elif guard:
            model, op = f"{unquote(guard.group(1))}:{unquote(guard.group(2))}", "apply-guardrail"
        else:
            self._error("ResourceNotFoundException", f"unknown path {self.path}")
            return
        with self.fake.lock:
            self.fake.calls.append(
                {"op": op, "model": model, "body": body, "headers": dict(self.headers)}
            )
        reply = self.fake.next_reply(model, body)
        if reply and reply.delay:
            time.sleep(reply.delay)
        if reply and reply.hold is not None:
            reply.hold.wait(60)
        if reply and reply.error:
            self._error(*reply.error)
            return
        if op == "converse":
            self._converse(body, reply)
        elif op == "converse-stream":
            self._converse_stream(body, reply)
        elif op == "invoke":
            self._invoke(model, body)
        else:
            self._apply_guardrail(body, reply)

    def _converse(self, body: dict[str, Any], reply: Reply | None) -> None:
        if not body.get("messages"):
            self._error("ValidationException", "messages is required")
            return
        problem = tool_use_problem(body)
        if problem:
            self._error("ValidationException", problem)
            return
        plan = _plan(body, reply)
        content: list[dict[str, Any]] = []
        if plan["text"] is not None:
            content.append({"text": plan["text"]})
        for tool in plan["tools"]:
            content.append(
                {"toolUse": {"toolUseId": tool["id"], "name": tool["name"], "input": tool["input"]}}
            )
        self._json(
            200,
            {
                "output": {"message": {"role": "assistant", "content": content}},
                "stopReason": plan["stop"],
                "usage": plan["usage"],
                "metrics": {"latencyMs": 1},
            },
        )

    def _converse_stream(self, body: dict[str, Any], reply: Reply | None) -> None:
        problem = tool_use_problem(body)
        if problem:
            self._error("ValidationException", problem)
            return
        plan = _plan(body, reply)
        self.send_response(200)
        self.send_header("content-type", "application/vnd.amazon.eventstream")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("x-amzn-requestid", "fake-stream")
        self.end_headers()

        def send(frame: bytes) -> None:
            self.wfile.write(f"{len(frame):x}\r\n".encode() + frame + b"\r\n")
            self.wfile.flush()
            if self.fake.token_delay:
                time.sleep(self.fake.token_delay)

        send(event("messageStart", {"role": "assistant"}))
        index = 0
        if plan["text"] is not None:
            words = plan["text"].split(" ")
            for i, word in enumerate(words):
                if reply and reply.stream_error and i == reply.stream_error_after:
                    send(exception_event(reply.stream_error[0], reply.stream_error[1]))
                    self.wfile.write(b"0\r\n\r\n")
                    return
                piece = word if i == 0 else f" {word}"
                send(
                    event(
                        "contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": piece}}
                    )
                )
            send(event("contentBlockStop", {"contentBlockIndex": index}))
            index += 1
        for tool in plan["tools"]:
            start = {"toolUse": {"toolUseId": tool["id"], "name": tool["name"]}}
            send(event("contentBlockStart", {"contentBlockIndex": index, "start": start}))
            encoded = json.dumps(tool["input"])
            for part in (encoded[: len(encoded) // 2], encoded[len(encoded) // 2 :]):
                send(
                    event(
                        "contentBlockDelta",
                        {"contentBlockIndex": index, "delta": {"toolUse": {"input": part}}},
                    )
                )
            send(event("contentBlockStop", {"contentBlockIndex": index}))
            index += 1
        send(event("messageStop", {"stopReason": plan["stop"]}))
        send(event("metadata", {"usage": plan["usage"], "metrics": {"latencyMs": 1}}))
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _invoke(self, model: str, body: dict[str, Any]) -> None:
        if "cohere" in model:
            texts = body.get("texts")
            if not isinstance(texts, list):
                self._error("ValidationException", "texts is required")
                return
            self._json(
                200,
                {
                    "id": "fake",
                    "embeddings": [fake_embedding(t, 1024) for t in texts],
                    "texts": texts,
                },
            )
            return
        text = body.get("inputText")
        if not isinstance(text, str) or not text:
            self._error("ValidationException", "inputText is required")
            return
        dimensions = body.get("dimensions", 1024)
        if dimensions not in (256, 512, 1024):
            self._error("ValidationException", "dimensions must be 256, 512 or 1024")
            return
        self._json(
            200,
            {
                "embedding": fake_embedding(text, dimensions),
                "inputTextTokenCount": len(text.split()),
            },
        )

    def _apply_guardrail(self, body: dict[str, Any], reply: Reply | None) -> None:
        if reply and reply.guardrail is not None:
            self._json(200, reply.guardrail)
            return
        self._json(
            200,
            {
                "usage": {"topicPolicyUnits": 1, "contentPolicyUnits": 1},
                "action": "NONE",
                "outputs": [],
                "assessments": [{}],
            },
        )


class FakeBedrockServer:
    """The fake on a free localhost port, in a thread."""

    def __init__(self) -> None:
        self.fake = FakeBedrock()
        handler = type("Handler", (_Handler,), {"fake": self.fake})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.fake.endpoint = self.endpoint
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeBedrockServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
