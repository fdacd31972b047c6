"""Vector Stores API shapes (OpenAI, plus Llama Stack's embedding_model/embedding_dimension and
search_mode) and Llama Stack's native vector-io insert/query."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from llamda.api.bounds import (
    MAX_EMBEDDING_DIMENSION,
    MAX_TTL_SECONDS,
    BoundedNumber,
    EmbeddingDimension,
    FiniteFloat,
    Int64,
    JsonObject,
    NonNegInt32,
    QueryText,
    check_json,
    check_number,
    check_query,
)
from llamda.services.documents import AUTO_MAX_TOKENS, AUTO_OVERLAP_TOKENS

# Attribute keys are used in filters; a key is a plain name.
AttrKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
AttrString = Annotated[str, StringConstraints(max_length=512)]
# Numbers are checked before the union picks a branch: 2**70 is refused, not made a float.
# Strict scalars: a long string of digits is a string (over 512: refused), never coerced to a
# number; "true" is not a boolean.
AttrValue = Annotated[AttrString | StrictBool | StrictInt | StrictFloat, BoundedNumber]
Attributes = Annotated[dict[AttrKey, AttrValue], Field(max_length=16)]
Metadata = Annotated[JsonObject, Field(max_length=16)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=512)]
MAX_FILTER_DEPTH = 8
MAX_FILTER_NODES = 256
MAX_FILTER_LIST = 256


class _Lenient(BaseModel):
    """Request bodies: unknown fields are ignored, as OpenAI's API does."""

    model_config = ConfigDict(extra="ignore")


class StaticChunking(BaseModel):
    # Strict: "800" or 800.0 is refused as the schema says (a batch goes on past a bad file id,
    # so a lax number would be a schema-violating request answered 200).
    max_chunk_size_tokens: int = Field(AUTO_MAX_TOKENS, ge=100, le=4096, strict=True)
    chunk_overlap_tokens: int = Field(AUTO_OVERLAP_TOKENS, ge=0, strict=True)

    @model_validator(mode="after")
    def _overlap(self) -> StaticChunking:
        if self.chunk_overlap_tokens > self.max_chunk_size_tokens // 2:
            raise ValueError("chunk_overlap_tokens must not exceed half of max_chunk_size_tokens")
        return self


class AutoChunkingStrategy(BaseModel):
    type: Literal["auto"] = "auto"


class StaticChunkingStrategy(BaseModel):
    type: Literal["static"] = "static"
    static: StaticChunking

    @classmethod
    def of(cls, max_tokens: int, overlap_tokens: int) -> StaticChunkingStrategy:
        """Static chunking from two numbers (CLI flags, object metadata); validated."""
        return cls(
            static=StaticChunking(
                max_chunk_size_tokens=max_tokens, chunk_overlap_tokens=overlap_tokens
            )
        )


# Llama Stack's contextual retrieval prompt: {{WHOLE_DOCUMENT}} and {{CHUNK_CONTENT}} are filled in.
DEFAULT_CONTEXT_PROMPT = (
    "<document>\n{{WHOLE_DOCUMENT}}\n</document>\n"
    "Here is the chunk we want to situate within the whole document\n"
    "<chunk>\n{{CHUNK_CONTENT}}\n</chunk>\n"
    "Please give a short succinct context to situate this chunk within the overall document "
    "for the purposes of improving search retrieval of the chunk. Answer only with the "
    "succinct context and nothing else."
)


class ContextualChunking(BaseModel):
    """Llama Stack's contextual retrieval: an LLM writes a short context for each chunk, which
    is prepended to the chunk before it is embedded and indexed."""

    model_id: Name | None = Field(
        None, validate_default=True, description="The LLM that writes each chunk's context."
    )
    max_chunk_size_tokens: int = Field(700, ge=100, le=4096, strict=True)
    chunk_overlap_tokens: int = Field(AUTO_OVERLAP_TOKENS // 2, ge=0, strict=True)
    context_prompt: str = Field(DEFAULT_CONTEXT_PROMPT, min_length=1, max_length=8192)
    max_concurrency: int | None = Field(None, ge=1, le=16, strict=True)
    timeout_seconds: int | None = Field(None, ge=1, le=600, strict=True)

    @field_validator("model_id")
    @classmethod
    def _model_required(cls, value: str | None) -> str:
        if not value:  # a clear 400 naming the field, rather than a guessed default model
            raise ValueError("model_id is required: the LLM that writes each chunk's context")
        return value

    @model_validator(mode="after")
    def _valid(self) -> ContextualChunking:
        if self.chunk_overlap_tokens >= self.max_chunk_size_tokens:
            raise ValueError("chunk_overlap_tokens must be less than max_chunk_size_tokens")
        for placeholder in ("{{WHOLE_DOCUMENT}}", "{{CHUNK_CONTENT}}"):
            if placeholder not in self.context_prompt:
                raise ValueError(f"context_prompt must contain {placeholder}")
        return self


class ContextualChunkingStrategy(BaseModel):
    type: Literal["contextual"] = "contextual"
    contextual: ContextualChunking


ChunkingStrategyParam = Annotated[
    AutoChunkingStrategy | StaticChunkingStrategy | ContextualChunkingStrategy,
    Field(discriminator="type"),
]
ResolvedChunking = Annotated[
    StaticChunkingStrategy | ContextualChunkingStrategy, Field(discriminator="type")
]


def resolved_chunking(
    strategy: ChunkingStrategyParam | None,
) -> StaticChunkingStrategy | ContextualChunkingStrategy:
    """What a file is chunked with: ``auto`` is 800 tokens with 400 overlap, as OpenAI's."""
    if isinstance(strategy, StaticChunkingStrategy | ContextualChunkingStrategy):
        return strategy
    return StaticChunkingStrategy(static=StaticChunking())


def token_window(strategy: StaticChunkingStrategy | ContextualChunkingStrategy) -> tuple[int, int]:
    """(max tokens, overlap tokens) of a resolved strategy."""
    size = strategy.static if isinstance(strategy, StaticChunkingStrategy) else strategy.contextual
    return size.max_chunk_size_tokens, size.chunk_overlap_tokens


class ExpiresAfter(BaseModel):
    anchor: Literal["last_active_at"] = "last_active_at"
    days: int = Field(ge=1, le=365, strict=True)  # `true` is not a day count


class FileCounts(BaseModel):
    in_progress: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    total: int = 0


class VectorStoreObject(BaseModel):
    id: str
    object: Literal["vector_store"] = "vector_store"
    created_at: int
    name: str | None = None
    usage_bytes: int = 0
    file_counts: FileCounts = Field(default_factory=FileCounts)
    status: Literal["expired", "in_progress", "completed"] = "completed"
    expires_after: ExpiresAfter | None = None
    expires_at: int | None = None
    last_active_at: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    # Llama Stack extensions.
    embedding_model: str | None = None
    embedding_dimension: int | None = None


class CreateVectorStoreRequest(_Lenient):
    name: str | None = Field(None, max_length=256)
    file_ids: list[Id] = Field(default_factory=list, max_length=500)
    chunking_strategy: ChunkingStrategyParam | None = None
    metadata: Metadata = Field(default_factory=dict)
    expires_after: ExpiresAfter | None = None
    embedding_model: Name | None = None
    embedding_dimension: EmbeddingDimension | None = None
    provider_id: Name | None = None


class UpdateVectorStoreRequest(_Lenient):
    name: str | None = Field(None, max_length=256)
    metadata: Metadata | None = None
    expires_after: ExpiresAfter | None = None


class ListResponse[T](BaseModel):
    object: Literal["list"] = "list"
    data: list[T]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class DeletedResponse(BaseModel):
    id: str
    object: str
    deleted: bool = True


class LastError(BaseModel):
    code: Literal["server_error", "unsupported_file", "invalid_file", "rate_limit_exceeded"]
    message: str


FileStatus = Literal["in_progress", "completed", "cancelled", "failed"]


class VectorStoreFileObject(BaseModel):
    id: str
    object: Literal["vector_store.file"] = "vector_store.file"
    usage_bytes: int = 0
    created_at: int
    vector_store_id: str
    status: FileStatus
    last_error: LastError | None = None
    chunking_strategy: ResolvedChunking
    attributes: dict[str, Any] = Field(default_factory=dict)


class CreateVectorStoreFileRequest(_Lenient):
    file_id: str = Field(min_length=1, max_length=128)
    attributes: Attributes = Field(default_factory=dict)
    chunking_strategy: ChunkingStrategyParam | None = None


class UpdateVectorStoreFileRequest(_Lenient):
    attributes: Attributes


class FileContent(BaseModel):
    type: Literal["text"] = "text"
    text: str


class ChunkContent(FileContent):
    """A chunk of a store file (file content): Llama Stack adds the chunk's metadata, and on
    request its embedding and its metadata dict."""

    chunk_metadata: dict[str, Any] | None = None
    embedding: list[float] | None = None
    metadata: dict[str, Any] | None = None


class VectorStoreFileContent(BaseModel):
    object: Literal["vector_store.file_content.page"] = "vector_store.file_content.page"
    data: list[ChunkContent]
    has_more: bool = False
    next_page: str | None = None


class CreateFileBatchRequest(_Lenient):
    file_ids: list[Id] = Field(min_length=1, max_length=500)
    attributes: Attributes = Field(default_factory=dict)
    chunking_strategy: ChunkingStrategyParam | None = None


class FileBatchObject(BaseModel):
    id: str
    object: Literal["vector_store.files_batch"] = "vector_store.files_batch"
    created_at: int
    vector_store_id: str
    status: Literal["in_progress", "completed", "cancelled", "failed"]
    file_counts: FileCounts


# --- search -------------------------------------------------------------------------------------

Scalar = AttrString | bool | int | float


def _filter_value(value: Any) -> Any:
    """Numbers a filter compares with must fit storage (64-bit integers, finite floats)."""
    if isinstance(value, list):
        if len(value) > MAX_FILTER_LIST:
            raise PydanticCustomError(
                "too_long", "lists have at most {limit} values", {"limit": MAX_FILTER_LIST}
            )
        for item in value:
            check_number(item)
        return value
    return check_number(value)


class ComparisonFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "nin"]
    key: AttrKey
    value: Annotated[Scalar | list[AttrString | int | float], BeforeValidator(_filter_value)]

    @model_validator(mode="after")
    def _value_fits(self) -> ComparisonFilter:
        is_list = isinstance(self.value, list)
        if self.type in ("in", "nin") and (not is_list or not self.value):
            raise ValueError(f"{self.type} needs a non-empty list value")
        if self.type not in ("in", "nin") and is_list:
            raise ValueError(f"{self.type} needs a string, number or boolean value")
        if self.type in ("gt", "gte", "lt", "lte") and isinstance(self.value, bool):
            raise ValueError(f"{self.type} needs a number or string value")
        return self


class CompoundFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["and", "or"]
    filters: list[ComparisonFilter | CompoundFilter] = Field(min_length=1, max_length=50)


Filter = ComparisonFilter | CompoundFilter


def check_filter_shape(value: Any) -> Any:
    """Nesting depth and size of a raw filter tree, before it is parsed (iteratively: a deep
    tree costs no recursion)."""
    nodes = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if depth > MAX_FILTER_DEPTH:
            raise PydanticCustomError(
                "filter_too_deep",
                "filters nest deeper than {limit} levels",
                {"limit": MAX_FILTER_DEPTH},
            )
        if nodes > MAX_FILTER_NODES:
            raise PydanticCustomError(
                "filter_too_large",
                "filters have more than {limit} conditions",
                {"limit": MAX_FILTER_NODES},
            )
        if isinstance(node, dict) and isinstance(node.get("filters"), list):
            stack.extend((child, depth + 1) for child in node["filters"])
    return value


class RankingOptions(_Lenient):
    ranker: Literal["none", "auto", "default-2024-11-15", "rrf", "weighted", "neural"] | None = None
    score_threshold: float = Field(0.0, ge=0.0, le=1.0)
    model: Name | None = Field(None, description="neural: the rerank model.")
    weights: dict[Literal["vector", "keyword", "neural"], FiniteFloat] | None = Field(
        None, description="weighted: the shares of the vector and keyword scores."
    )
    alpha: float | None = Field(
        None, ge=0.0, le=1.0, description="weighted: the vector score's share (hybrid)."
    )
    impact_factor: float | None = Field(
        None, gt=0.0, le=10_000.0, description="rrf: k in 1/(k + rank)."
    )


class SearchRequest(_Lenient):
    query: QueryText | list[QueryText] = Field(
        description="At most server.max_query_chars characters per query (default 8192)."
    )
    filters: Annotated[Filter | None, BeforeValidator(check_filter_shape)] = Field(
        None,
        description=f"At most {MAX_FILTER_DEPTH} levels and {MAX_FILTER_NODES} conditions.",
    )
    max_num_results: int = Field(10, ge=1, le=50)
    ranking_options: RankingOptions | None = None
    rewrite_query: bool = False
    search_mode: Literal["vector", "keyword", "hybrid"] = "vector"
    page: str | None = Field(
        None,
        max_length=256,
        description="The next_page token of an earlier answer to the same search.",
    )

    @field_validator("query")
    @classmethod
    def _not_empty(cls, value: str | list[str]) -> str | list[str]:
        items = [value] if isinstance(value, str) else value
        if not items or any(not q.strip() for q in items) or len(items) > 10:
            raise ValueError("query must be a non-empty string or a list of 1-10 of them")
        return value

    @property
    def queries(self) -> list[str]:
        return [self.query] if isinstance(self.query, str) else list(self.query)


class SearchResult(BaseModel):
    file_id: str
    filename: str
    score: float
    attributes: dict[str, Any] = Field(default_factory=dict)
    content: list[FileContent]


class SearchResponse(BaseModel):
    object: Literal["vector_store.search_results.page"] = "vector_store.search_results.page"
    search_query: list[str]
    data: list[SearchResult]
    has_more: bool = False
    next_page: str | None = None


# --- Llama Stack vector-io ------------------------------------------------------------------------


class TextItem(BaseModel):
    type: Literal["text"] = "text"
    text: str


Content = str | TextItem | list[TextItem]


def content_text(content: Content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, TextItem):
        return content.text
    return "\n".join(item.text for item in content)


class ChunkMetadata(BaseModel):
    model_config = ConfigDict(extra="allow")
    chunk_id: str | None = None
    document_id: str | None = None
    source: str | None = None
    created_timestamp: Int64 | None = None
    updated_timestamp: Int64 | None = None
    chunk_window: str | None = None
    chunk_tokenizer: str | None = None
    content_token_count: NonNegInt32 | None = None
    metadata_token_count: NonNegInt32 | None = None

    @model_validator(mode="after")
    def _bounded_extras(self) -> ChunkMetadata:
        """Other fields are kept (Llama Stack adds some) but bounded like any JSON."""
        if self.model_extra:
            check_json(self.model_extra)
        return self


class Chunk(BaseModel):
    content: Content
    chunk_id: str = Field(min_length=1, max_length=256)
    metadata: JsonObject = Field(default_factory=dict)
    chunk_metadata: ChunkMetadata = Field(default_factory=ChunkMetadata)
    embedding: list[FiniteFloat] | None = Field(None, max_length=MAX_EMBEDDING_DIMENSION)
    embedding_model: Name | None = None
    embedding_dimension: EmbeddingDimension | None = None


class InsertChunksRequest(_Lenient):
    vector_store_id: Id
    chunks: list[Chunk] = Field(min_length=1, max_length=5000)
    ttl_seconds: int | None = Field(None, gt=0, le=MAX_TTL_SECONDS)


class RerankerParams(_Lenient):
    alpha: float | None = Field(
        None, ge=0.0, le=1.0, description="weighted: the vector score's share."
    )
    impact_factor: float | None = Field(
        None, gt=0.0, le=10_000.0, description="rrf: k in 1/(k + rank)."
    )

    def get(self, key: str, default: Any = None) -> Any:
        """Mapping-style read, as the vector-io service reads params."""
        value = getattr(self, key, None)
        return default if value is None else value


class QueryChunksParams(_Lenient):
    """Llama Stack's vector-io query params, typed and bounded."""

    max_chunks: int = Field(10, ge=1, le=1000)
    score_threshold: FiniteFloat = Field(0.0, description="Clamped to 0..1.")
    mode: Literal["vector", "keyword", "hybrid"] = "vector"
    reranker_type: Literal["rrf", "weighted"] | None = None
    reranker_params: RerankerParams | None = None

    def get(self, key: str, default: Any = None) -> Any:
        """Mapping-style read, as the vector-io service reads params."""
        value = getattr(self, key, None)
        return default if value is None else value


class QueryChunksRequest(_Lenient):
    vector_store_id: Id
    query: Content
    params: QueryChunksParams | None = None

    @field_validator("query")
    @classmethod
    def _not_empty(cls, value: Content) -> Content:
        text = content_text(value)
        if not text.strip():
            raise ValueError("query must not be empty")
        check_query(text)
        return value


class QueryChunksResponse(BaseModel):
    chunks: list[Chunk]
    scores: list[float]
