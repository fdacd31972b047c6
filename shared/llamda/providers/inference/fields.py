"""Which request fields go upstream, per provider type: one allow-list, one check.

The request models (api/inference.py) refuse unknown top-level fields (400 naming the field);
this module decides which of the known, validated fields a provider type receives. A field the
type cannot honour is a 400 naming it (never silently dropped), except best-effort hints that
no provider promises to honour (``seed``, ``user``, ``parallel_tool_calls``), which are
dropped where unsupported. Image inputs are ``data:`` URLs, or http(s) URLs whose host the
provider's ``image_url_allow`` lists: a self-hosted upstream never fetches an arbitrary URL
(e.g. cloud metadata at 169.254.169.254) on a client's behalf.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

from llamda.api.inference import (
    LLAMDA_FIELDS,
    ChatCompletionRequest,
    CompletionRequest,
    ImagePart,
    UserMessage,
)
from llamda.errors import BadRequestError, UnsupportedError

Kind = Literal["chat", "completion"]

# OpenAI's chat/completions parameters that every provider type accepts.
_CHAT = frozenset(
    {
        "model",
        "messages",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "seed",
        "user",
        "n",
        "stream",
        "stream_options",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "frequency_penalty",
        "presence_penalty",
    }
)
_COMPLETION = frozenset(
    {
        "model",
        "prompt",
        "max_tokens",
        "temperature",
        "top_p",
        "stop",
        "seed",
        "user",
        "n",
        "stream",
        "stream_options",
        "echo",
        "frequency_penalty",
        "presence_penalty",
    }
)
# Documented extras per provider type (send them with the SDK's ``extra_body``).
_SAMPLING = frozenset({"top_k", "min_p", "repetition_penalty"})
EXTRAS: dict[str, frozenset[str]] = {
    "remote::vllm": _SAMPLING | {"logprobs", "top_logprobs"},
    "remote::fireworks": _SAMPLING | {"logprobs", "top_logprobs"},
    "remote::together": _SAMPLING | {"logprobs"},
    "remote::tgi": frozenset({"logprobs", "top_logprobs"}),
    "remote::openai": frozenset({"logprobs", "top_logprobs"}),
    "remote::ollama": frozenset(),
    "remote::bedrock-openai": frozenset(),
    "inline::llama-cpp": _SAMPLING,
    "remote::bedrock": frozenset(),
}
# Standard parameters a provider type cannot honour (a 400 there).
UNSUPPORTED: dict[str, frozenset[str]] = {
    "remote::bedrock": frozenset({"frequency_penalty", "presence_penalty"}),
}
# Provider types that make one choice per request: ``n`` > 1 is a 400 there, never a silent
# single choice (Converse and llama.cpp have no such parameter; Ollama and TGI ignore it).
SINGLE_CHOICE = frozenset({"remote::bedrock", "inline::llama-cpp", "remote::ollama", "remote::tgi"})
# Hints no provider promises to honour: dropped, not refused, where unsupported.
_HINTS = frozenset({"seed", "user", "parallel_tool_calls"})


def allowed_fields(provider_type: str, kind: Kind) -> frozenset[str]:
    base = _CHAT if kind == "chat" else _COMPLETION
    extras = EXTRAS.get(provider_type, frozenset())
    return (base | extras) - UNSUPPORTED.get(provider_type, frozenset())


def upstream_fields(
    request: ChatCompletionRequest | CompletionRequest,
    provider_type: str,
    image_url_allow: Sequence[str] = (),
) -> dict[str, Any]:
    """The request's fields this provider type receives (JSON-ready, ``None`` left out), after
    checking that it can honour each one and that every image URL may be fetched."""
    kind: Kind = "chat" if isinstance(request, ChatCompletionRequest) else "completion"
    allowed = allowed_fields(provider_type, kind)
    if (request.n or 1) > 1 and provider_type in SINGLE_CHOICE:
        raise UnsupportedError(
            f"n={request.n}: provider type '{provider_type}' (model '{request.model}') makes "
            "one choice per request; send n=1, or use a model on a provider that supports n",
            param="n",
            code="unsupported_parameter",
        )
    body = request.model_dump(exclude_none=True, by_alias=True)
    out: dict[str, Any] = {}
    for name, value in body.items():
        if name in LLAMDA_FIELDS:
            continue  # ours (e.g. guardrails), consumed before the provider is called
        if name not in allowed:
            if name in _HINTS:
                continue
            raise UnsupportedError(
                f"'{name}' is not supported by provider type '{provider_type}' "
                f"(model '{request.model}')",
                param=name,
                code="unsupported_parameter",
            )
        out[name] = value
    if isinstance(request, ChatCompletionRequest):
        check_image_urls(request, image_url_allow)
    return out


def _host_allowed(host: str, patterns: Sequence[str]) -> bool:
    host = host.lower().rstrip(".")
    for pattern in patterns:
        pattern = pattern.lower()
        if pattern == host or (pattern.startswith("*.") and host.endswith(pattern[1:])):
            return True
    return False


def check_image_urls(request: ChatCompletionRequest, allow: Sequence[str]) -> None:
    """``data:`` URLs always; http(s) only to a host ``allow`` lists (``name`` or
    ``*.domain``); a URL with credentials, backslashes or odd characters never."""
    for i, message in enumerate(request.messages):
        if not isinstance(message, UserMessage) or isinstance(message.content, str):
            continue
        for j, part in enumerate(message.content):
            if not isinstance(part, ImagePart):
                continue
            url = part.image_url.url
            if url.startswith("data:"):
                continue
            param = f"messages[{i}].content[{j}].image_url.url"
            try:
                parts = urlsplit(url)
                host = parts.hostname or ""
            except ValueError:
                parts, host = None, ""
            clean = (
                parts is not None
                and parts.scheme in ("http", "https")
                and "@" not in parts.netloc
                and not any(c in url for c in "\\ \t\r\n")
                and host
            )
            if not clean or not _host_allowed(host, allow):
                raise BadRequestError(
                    "images must be data URLs (data:image/png;base64,...); an http(s) image "
                    "URL is fetched only from hosts in the provider's image_url_allow list",
                    param=param,
                    code="image_url_not_allowed",
                )
