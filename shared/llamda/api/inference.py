"""Inference API shapes: OpenAI chat completions, completions and embeddings.

Requests accept OpenAI's parameters and a few documented extras, each typed and bounded. An
unknown top-level field is a 400 naming it (nothing unvalidated reaches an upstream); unknown
keys inside nested objects (messages, tools...) are dropped. Which fields a provider type
receives is decided in providers/inference/fields.py. Responses are exactly OpenAI's objects so
the official SDK parses them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from llamda.api.bounds import INT32_MAX, MAX_EMBEDDING_DIMENSION, Int64, json_bounds

MAX_MESSAGES = 2048
MAX_STOP = 16
_SAMPLING_EXTRA = "vllm, fireworks, together, llama-cpp (extra_body)."
_LOGPROBS = "vllm, tgi, fireworks, together, openai."
# Llamda's own request fields: consumed by us, never sent to a provider.
# ``store`` and ``metadata`` are OpenAI's, but they concern our inference store, not a model.
LLAMDA_FIELDS = frozenset({"guardrails", "store", "metadata"})
# OpenAI's metadata: at most 16 pairs, keys <= 64 characters, values <= 512.
Metadata = Annotated[
    dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]],
    Field(max_length=16),
    json_bounds(max_bytes=16 * 1024),
]
MAX_CHOICES = 16
# JSON Schemas (tool parameters, response formats) may be larger than metadata.
Schema = Annotated[dict[str, Any], json_bounds(max_bytes=64 * 1024)]
TokenLimit = Annotated[int, Field(gt=0, le=INT32_MAX)]


class _Lenient(BaseModel):
    """Nested objects: unknown keys are dropped (clients echo back assistant messages with
    fields such as ``refusal``), so they never reach an upstream."""

    model_config = ConfigDict(extra="ignore")


class _Request(BaseModel):
    """Top-level requests: an unknown field is a 400 naming it, never forwarded."""

    model_config = ConfigDict(extra="forbid")


class TextPart(_Lenient):
    type: Literal["text"]
    text: str


class ImageURL(_Lenient):
    # Checked per provider (providers/inference/fields.py), where the allow-list is known.
    url: str = Field(
        description="A data: URL; http(s) only to hosts the provider's image_url_allow lists."
    )
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Lenient):
    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class FunctionCall(_Lenient):
    name: str
    arguments: str = "{}"


class ToolCall(_Lenient):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


# A participant's name (OpenAI's rule): no free text, so nothing for shields to miss in it.
ParticipantName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class SystemMessage(_Lenient):
    role: Literal["system", "developer"]
    content: str | list[TextPart]
    name: ParticipantName | None = None


class UserMessage(_Lenient):
    role: Literal["user"]
    content: str | list[ContentPart]
    name: ParticipantName | None = None


class AssistantMessage(_Lenient):
    role: Literal["assistant"]
    content: str | list[TextPart] | None = None
    tool_calls: list[ToolCall] | None = None
    name: ParticipantName | None = None


class ToolMessage(_Lenient):
    role: Literal["tool"]
    tool_call_id: str
    content: str | list[TextPart]


Message = Annotated[
    SystemMessage | UserMessage | AssistantMessage | ToolMessage, Field(discriminator="role")
]


class FunctionDef(_Lenient):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: Schema = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


class Tool(_Lenient):
    type: Literal["function"] = "function"
    function: FunctionDef


class NamedFunction(_Lenient):
    name: str


class NamedToolChoice(_Lenient):
    type: Literal["function"] = "function"
    function: NamedFunction

    @property
    def name(self) -> str:
        return self.function.name


class JSONSchemaFormat(_Lenient):
    name: str = "response"
    description: str | None = None
    schema_: Schema = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Lenient):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_needed(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("json_schema is required when type is json_schema")
        return self


class StreamOptions(_Lenient):
    include_usage: bool = False


class Guardrails(_Lenient):
    """Per-request shields (Llamda extension; send with the SDK's ``extra_body``)."""

    input: list[str] = Field(default_factory=list, max_length=8)
    output: list[str] = Field(default_factory=list, max_length=8)
    on_violation: Literal["error", "refuse"] | None = None


class ChatCompletionRequest(_Request):
    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_tokens: TokenLimit | None = None
    max_completion_tokens: TokenLimit | None = None
    stop: str | list[str] | None = Field(None, max_length=MAX_STOP)
    seed: Int64 | None = None
    user: str | None = Field(None, max_length=256)
    n: int | None = Field(
        None,
        ge=1,
        le=MAX_CHOICES,
        description="Choices to generate: n > 1 where the provider supports it (remote "
        "OpenAI-compatible ones; a 400 naming the provider elsewhere).",
    )
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    store: bool | None = Field(
        None,
        description="Keep this completion for GET /v1/chat/completions/{id} (default: the "
        "config's inference_store.enabled).",
    )
    metadata: Metadata | None = Field(None, description="Kept with a stored completion.")
    tools: list[Tool] | None = Field(None, max_length=128)
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    logprobs: bool | None = Field(None, description=_LOGPROBS)
    top_logprobs: int | None = Field(None, ge=0, le=20)
    top_k: int | None = Field(None, ge=1, le=1000, description=_SAMPLING_EXTRA)
    min_p: float | None = Field(None, ge=0, le=1, description=_SAMPLING_EXTRA)
    repetition_penalty: float | None = Field(None, gt=0, le=2, description=_SAMPLING_EXTRA)
    guardrails: Guardrails | None = None
    # Set by the agent loop: (shield, direction, text digest) judged clean earlier in the run,
    # so a long loop does not re-judge its whole history at every step. Never from a client.
    _verdicts: set[tuple[str, str, str]] | None = PrivateAttr(default=None)

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @model_validator(mode="after")
    def _tool_choice_needs_tools(self) -> ChatCompletionRequest:
        if isinstance(self.tool_choice, NamedToolChoice):
            names = {t.function.name for t in self.tools or []}
            if self.tool_choice.name not in names:
                raise ValueError(f"tool_choice names unknown tool {self.tool_choice.name!r}")
        elif self.tool_choice == "required" and not self.tools:
            raise ValueError("tool_choice 'required' needs tools")
        return self


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    refusal: str | None = None


FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: FinishReason | None = "stop"
    logprobs: Any | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage = Field(default_factory=Usage)
    system_fingerprint: str | None = None


class StoredChatCompletion(ChatCompletion):
    """A stored chat completion: the reply with its request's messages (Llama Stack's
    ``input_messages``) and ``metadata``."""

    input_messages: list[dict[str, Any]] = Field(default_factory=list)
    metadata: dict[str, str] = Field(default_factory=dict)


class ChatCompletionList(BaseModel):
    object: Literal["list"] = "list"
    data: list[StoredChatCompletion]
    first_id: str = ""
    last_id: str = ""
    has_more: bool = False


class StoredMessageList(BaseModel):
    """``GET /v1/chat/completions/{id}/messages``: the request's messages, each with an id."""

    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    first_id: str = ""
    last_id: str = ""
    has_more: bool = False


class ChatCompletionDeleted(BaseModel):
    id: str
    object: Literal["chat.completion.deleted"] = "chat.completion.deleted"
    deleted: bool = True


class UpdateChatCompletionRequest(_Request):
    """``POST /v1/chat/completions/{id}``: the metadata replaces the old (null clears it)."""

    metadata: Metadata | None


class ToolCallDelta(BaseModel):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: dict[str, str] | None = None


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: ChunkDelta = Field(default_factory=ChunkDelta)
    finish_reason: FinishReason | None = None
    logprobs: Any | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice] = Field(default_factory=list)
    usage: Usage | None = None


class CompletionRequest(_Request):
    model: str = Field(min_length=1)
    prompt: str | list[str]
    max_tokens: TokenLimit | None = 16
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    stop: str | list[str] | None = Field(None, max_length=MAX_STOP)
    seed: Int64 | None = None
    n: int | None = Field(None, ge=1, le=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    echo: bool | None = None
    user: str | None = Field(None, max_length=256)
    guardrails: Guardrails | None = None
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    logprobs: int | None = Field(None, ge=0, le=5, description=_LOGPROBS)
    top_k: int | None = Field(None, ge=1, le=1000, description=_SAMPLING_EXTRA)
    min_p: float | None = Field(None, ge=0, le=1, description=_SAMPLING_EXTRA)
    repetition_penalty: float | None = Field(None, gt=0, le=2, description=_SAMPLING_EXTRA)


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: Literal["stop", "length", "content_filter"] | None = "stop"
    logprobs: Any | None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


MAX_EMBEDDING_INPUTS = 2048  # OpenAI's limit per request
MAX_EMBEDDING_INPUT_CHARS = 100_000  # one text (well past any embedding model's context)
MAX_EMBEDDING_TOTAL_CHARS = 2_000_000  # a whole request
EmbeddingText = Annotated[str, Field(max_length=MAX_EMBEDDING_INPUT_CHARS)]
TokenIds = Annotated[list[Annotated[int, Field(ge=0, le=INT32_MAX)]], Field(max_length=8192)]


class EmbeddingsRequest(_Request):
    model: str = Field(min_length=1)
    input: (
        EmbeddingText
        | Annotated[list[EmbeddingText], Field(max_length=MAX_EMBEDDING_INPUTS)]
        | TokenIds
        | Annotated[list[TokenIds], Field(max_length=MAX_EMBEDDING_INPUTS)]
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, gt=0, le=MAX_EMBEDDING_DIMENSION)
    user: str | None = Field(None, max_length=256)

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        # OpenAI refuses an empty input too; an upstream would answer something else each.
        if isinstance(value, str | list) and len(value) == 0:
            raise ValueError("must not be empty: send a string or a non-empty list")
        return value

    @model_validator(mode="after")
    def _bounded_total(self) -> EmbeddingsRequest:
        texts = [self.input] if isinstance(self.input, str) else self.input
        total = sum(len(t) for t in texts if isinstance(t, str))
        if total > MAX_EMBEDDING_TOTAL_CHARS:
            raise ValueError(
                f"input: {total} characters in all; at most {MAX_EMBEDDING_TOTAL_CHARS} per "
                "request (split it)"
            )
        return self

    @property
    def texts(self) -> list[str]:
        if isinstance(self.input, str):
            return [self.input]
        if all(isinstance(i, str) for i in self.input):
            return list(self.input)  # type: ignore[arg-type]
        raise ValueError("token-id input is not supported; send strings")


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingsUsage(BaseModel):
    prompt_tokens: int = 0
    total_tokens: int = 0


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingsUsage = Field(default_factory=EmbeddingsUsage)
