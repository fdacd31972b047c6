"""Responses API shapes (OpenAI): the create request, its items and tools, and the Response.

Input items are accepted as OpenAI's SDK sends them (a bare ``{"role", "content"}`` message is a
``message`` item) and normalized to one dict shape, the shape stored and returned: every item
has a ``type`` and an ``id``. Only the ``function`` and ``file_search`` tools run here; any other
tool type is a 400 naming it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from llamda.api.bounds import json_bounds
from llamda.api.inference import ParticipantName, Schema
from llamda.api.vector_stores import Filter, RankingOptions, check_filter_shape

MAX_INPUT_ITEMS = 2048
MAX_TEXT_CHARS = 4 * 1024 * 1024  # one text part; the body limit bounds the total anyway
Metadata = Annotated[
    dict[str, Annotated[str, Field(max_length=512)]],
    Field(max_length=16),
    json_bounds(max_bytes=16 * 1024),
]
ItemId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]
CallId = Annotated[str, Field(min_length=1, max_length=256)]
Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]


class _Lenient(BaseModel):
    """Nested objects: unknown keys are dropped (clients echo output items back as input)."""

    model_config = ConfigDict(extra="ignore")


# -- content parts ----------------------------------------------------------------------------


class InputText(_Lenient):
    type: Literal["input_text"]
    text: Text


class InputImage(_Lenient):
    type: Literal["input_image"]
    image_url: str | None = Field(
        None, description="A data: URL (http(s) only where the model's provider allows it)."
    )
    file_id: str | None = None
    detail: Literal["auto", "low", "high"] = "auto"

    @model_validator(mode="after")
    def _has_image(self) -> InputImage:
        if self.image_url is None:
            raise ValueError("input_image needs image_url (file_id images are not supported)")
        return self


class OutputText(_Lenient):
    type: Literal["output_text"]
    text: Text
    annotations: list[dict[str, Any]] = Field(default_factory=list, max_length=1024)


class Refusal(_Lenient):
    type: Literal["refusal"]
    refusal: Text


ContentPart = Annotated[InputText | InputImage | OutputText | Refusal, Field(discriminator="type")]


# -- input items ------------------------------------------------------------------------------


class MessageItem(_Lenient):
    type: Literal["message"] = "message"
    id: ItemId | None = None
    role: Literal["user", "assistant", "system", "developer"]
    content: Text | Annotated[list[ContentPart], Field(max_length=256)]
    status: Literal["in_progress", "completed", "incomplete"] | None = None
    name: ParticipantName | None = None


class FunctionCallItem(_Lenient):
    type: Literal["function_call"]
    id: ItemId | None = None
    call_id: CallId
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    arguments: Text = "{}"
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class FunctionCallOutputItem(_Lenient):
    type: Literal["function_call_output"]
    id: ItemId | None = None
    call_id: CallId
    output: Text | list[InputText]
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class FileSearchResult(_Lenient):
    file_id: str = ""
    filename: str = ""
    score: float = Field(0.0, strict=True, allow_inf_nan=False)  # not `false`, not NaN
    text: Text = ""
    attributes: dict[str, Any] = Field(default_factory=dict)


class FileSearchCallItem(_Lenient):
    type: Literal["file_search_call"]
    id: ItemId
    queries: list[Annotated[str, Field(max_length=4096)]] = Field(default_factory=list)
    status: Literal["in_progress", "searching", "completed", "incomplete", "failed"] = "completed"
    results: list[FileSearchResult] | None = Field(None, max_length=64)


def _item_tag(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("type") or "message")
    return str(getattr(value, "type", "message"))


InputItem = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")]
    | Annotated[FileSearchCallItem, Tag("file_search_call")],
    Discriminator(
        _item_tag,
        custom_error_type="invalid_item",
        custom_error_message="item type must be one of message, function_call, "
        "function_call_output, file_search_call",
    ),
]


# -- tools ------------------------------------------------------------------------------------


class FunctionTool(_Lenient):
    type: Literal["function"]
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = Field(None, max_length=16 * 1024)
    parameters: Schema | None = None
    strict: bool | None = None

    @field_validator("parameters")
    @classmethod
    def _object_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return value
        kind = value.get("type", "object")
        if kind != "object":
            raise ValueError("parameters must be a JSON Schema of type 'object'")
        properties = value.get("properties", {})
        if not isinstance(properties, dict):
            raise ValueError("parameters.properties must be an object")
        required = value.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise ValueError("parameters.required must be a list of property names")
        return value


class FileSearchTool(_Lenient):
    type: Literal["file_search"]
    vector_store_ids: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        min_length=1, max_length=16
    )
    max_num_results: int | None = Field(None, ge=1, le=50)
    filters: Annotated[Filter | None, BeforeValidator(check_filter_shape)] = None
    ranking_options: RankingOptions | None = None


class MCPAllowedTools(_Lenient):
    tool_names: list[Annotated[str, Field(max_length=128)]] | None = Field(None, max_length=256)


HeaderName = Annotated[str, Field(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")]
HeaderValue = Annotated[str, Field(max_length=8192, pattern=r"^[\t\x20-\x7e\x80-\xff]*$")]


class MCPTool(_Lenient):
    """A remote MCP server's tools, listed and called here (streamable HTTP; SSE when the URL
    ends in ``/sse``). ``headers`` and ``authorization`` are used for the calls only: never
    stored or returned."""

    type: Literal["mcp"]
    server_label: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    server_url: str = Field(min_length=8, max_length=2048)
    server_description: str | None = Field(None, max_length=4096)
    allowed_tools: (
        Annotated[list[Annotated[str, Field(max_length=128)]], Field(max_length=256)]
        | MCPAllowedTools
        | None
    ) = None
    headers: dict[HeaderName, HeaderValue] | None = Field(None, max_length=32)
    authorization: str | None = Field(None, max_length=8192)
    require_approval: Literal["never"] | None = Field(
        None,
        description="Only 'never' (tools are called without approval); approval requests are "
        "not supported.",
    )


_TOOL_TYPES = ("function", "file_search", "mcp")
# Tool types of the OpenAI API that no release serves yet.
LATER_TOOL_TYPES = (
    "web_search",
    "web_search_preview",
    "code_interpreter",
    "computer_use_preview",
    "image_generation",
    "local_shell",
    "custom",
)


def _tool_tag(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in _TOOL_TYPES else None


ResponseTool = Annotated[
    Annotated[FunctionTool, Tag("function")]
    | Annotated[FileSearchTool, Tag("file_search")]
    | Annotated[MCPTool, Tag("mcp")],
    Discriminator(
        _tool_tag,
        custom_error_type="unsupported_tool",
        custom_error_message="tool type is not supported: use 'function', 'file_search' or "
        "'mcp' (the hosted tools are not served)",
    ),
]


class ToolChoiceFunction(_Lenient):
    type: Literal["function"]
    name: str


class ToolChoiceFileSearch(_Lenient):
    type: Literal["file_search"]


ToolChoice = (
    Literal["auto", "none", "required"]
    | Annotated[ToolChoiceFunction | ToolChoiceFileSearch, Field(discriminator="type")]
)


# -- text format ------------------------------------------------------------------------------


class TextFormatText(_Lenient):
    type: Literal["text"]


class TextFormatJSONObject(_Lenient):
    type: Literal["json_object"]


class TextFormatJSONSchema(_Lenient):
    type: Literal["json_schema"]
    name: str = Field("response", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = Field(None, max_length=16 * 1024)
    schema_: Schema = Field(alias="schema")
    strict: bool | None = None

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class TextConfig(_Lenient):
    format: (
        Annotated[
            TextFormatText | TextFormatJSONObject | TextFormatJSONSchema,
            Field(discriminator="type"),
        ]
        | None
    ) = None


# -- prompt and guardrails --------------------------------------------------------------------


class PromptReference(_Lenient):
    id: str = Field(min_length=1, max_length=128)
    version: str | None = Field(None, max_length=32)
    variables: (
        dict[
            Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")],
            Annotated[str, Field(max_length=MAX_TEXT_CHARS)] | InputText,
        ]
        | None
    ) = Field(None, max_length=64)


class GuardrailSpec(_Lenient):
    type: str = Field(min_length=1, max_length=128, description="A shield id.")


class GuardrailsExtension(_Lenient):
    """Llamda's chat shape: input and output shields separately."""

    input: list[str] = Field(default_factory=list, max_length=8)
    output: list[str] = Field(default_factory=list, max_length=8)


# -- the request ------------------------------------------------------------------------------


class CreateResponseRequest(BaseModel):
    """``POST /v1/responses``. Unknown top-level fields are a 400 naming them."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(
        None, min_length=1, description="Required unless a prompt or previous response gives it."
    )
    input: Text | Annotated[list[InputItem], Field(max_length=MAX_INPUT_ITEMS)]
    instructions: Text | None = None
    tools: list[ResponseTool] | None = Field(None, max_length=128)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tool_calls: int | None = Field(None, ge=1, le=512)
    previous_response_id: str | None = Field(None, max_length=128)
    conversation: (
        Annotated[str, Field(max_length=128)]
        | Annotated[dict[str, Annotated[str, Field(max_length=128)]], Field(max_length=1)]
        | None
    ) = None
    store: bool | None = True
    stream: bool | None = False
    background: bool | None = None
    max_output_tokens: int | None = Field(None, ge=1, le=2**31 - 1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    text: TextConfig | None = None
    include: list[Literal["file_search_call.results", "message.output_text.logprobs"]] | None = (
        Field(None, max_length=8)
    )
    metadata: Metadata | None = None
    prompt: PromptReference | None = None
    truncation: Literal["auto", "disabled"] | None = None
    user: str | None = Field(None, max_length=256)
    guardrails: (
        Annotated[
            list[Annotated[str, Field(min_length=1, max_length=128)] | GuardrailSpec],
            Field(max_length=8),
        ]
        | GuardrailsExtension
        | None
    ) = Field(None, description="Shields for every model call of the loop (Llama Stack's field).")

    def problems(self) -> list[tuple[str, str]]:
        """(param, message) of each way the fields disagree (checked by the service, so the
        400 names its field)."""
        out: list[tuple[str, str]] = []
        names = [t.name for t in self.tools or [] if isinstance(t, FunctionTool)]
        if len(names) != len(set(names)):
            out.append(("tools", "function names must be unique"))
        labels = [t.server_label for t in self.tools or [] if isinstance(t, MCPTool)]
        if len(labels) != len(set(labels)):
            out.append(("tools", "mcp server_label values must be unique"))
        choice = self.tool_choice
        if isinstance(choice, ToolChoiceFunction) and choice.name not in names:
            out.append(("tool_choice", f"names unknown function {choice.name!r}"))
        if isinstance(choice, ToolChoiceFileSearch) and not any(
            isinstance(t, FileSearchTool) for t in self.tools or []
        ):
            out.append(("tool_choice", "file_search needs a file_search tool"))
        if choice == "required" and not self.tools:
            out.append(("tool_choice", "'required' needs tools"))
        if self.background and self.store is False:
            out.append(("store", "background responses are stored: store cannot be false"))
        if self.background and self.stream:
            out.append(
                ("stream", "background responses are not streamed: poll GET /v1/responses/{id}")
            )
        if self.background and any(
            isinstance(t, MCPTool) and (t.headers or t.authorization) for t in self.tools or []
        ):
            out.append(
                ("tools", "mcp headers cannot be used in a background response (never stored)")
            )
        if self.previous_response_id and self.conversation:
            out.append(("conversation", "previous_response_id and conversation cannot both be set"))
        return out

    @property
    def conversation_id(self) -> str | None:
        if isinstance(self.conversation, dict):
            return self.conversation.get("id")
        return self.conversation

    @property
    def shield_ids(self) -> tuple[list[str], list[str]]:
        """(input shields, output shields) the request adds to its model's."""
        if self.guardrails is None:
            return [], []
        if isinstance(self.guardrails, GuardrailsExtension):
            return list(self.guardrails.input), list(self.guardrails.output)
        ids = [g if isinstance(g, str) else g.type for g in self.guardrails]
        return ids, ids


# -- the response (documentation of what the service returns) -------------------------------


class ResponseUsage(BaseModel):
    input_tokens: int = 0
    input_tokens_details: dict[str, int] = Field(default_factory=lambda: {"cached_tokens": 0})
    output_tokens: int = 0
    output_tokens_details: dict[str, int] = Field(default_factory=lambda: {"reasoning_tokens": 0})
    total_tokens: int = 0


class ResponseObject(BaseModel):
    """An OpenAI Response. Output items are the stored item shapes (see module doc)."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["response"] = "response"
    created_at: float
    status: Literal["completed", "failed", "in_progress", "incomplete", "cancelled", "queued"]
    model: str
    output: list[dict[str, Any]]
    error: dict[str, Any] | None = None
    incomplete_details: dict[str, Any] | None = None
    instructions: str | None = None
    previous_response_id: str | None = None
    usage: ResponseUsage | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class ResponseList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ResponseObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class ItemList(BaseModel):
    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class DeletedResponse(BaseModel):
    id: str
    object: Literal["response"] = "response"
    deleted: bool = True
