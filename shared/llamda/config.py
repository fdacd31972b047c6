"""The run config: one YAML file (like Llama Stack's run.yaml) that composes the stack.

Strings may use ``${env.VAR}`` (required), ``${env.VAR:=default}`` and ``${env.VAR:+value}``
(``value`` when VAR is set and non-empty, else empty); a default or value may itself hold
``${env.OTHER}`` / ``${env.OTHER:=x}`` (one level). ``BEDROCK_PROFILE_PREFIX``, when not set,
is derived from the region (``us.``, ``eu.``, ``apac.``, ``us-gov.``, or empty where Bedrock has
no cross-region inference profiles), so the default chat model follows the region the way
template.yaml's BedrockProfilePrefix mapping does. A provider whose ``provider_id`` comes
out empty is switched off, and so is every resource that names it that way: that is how
``llamda serve`` turns on exactly the providers the environment has credentials for.

Profiles: ``LLAMDA_CONFIG`` names a file; otherwise ``LLAMDA_PROFILE`` (``local`` by default,
or ``aws``) picks a bundled one. Every error names the file and the bad key.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llamda import redact
from llamda.errors import ConfigError
from llamda.providers.registry import canonical_type, get_spec, provider_types

KNOWN_APIS = (
    "inspect",
    "models",
    "inference",
    "safety",
    "files",
    "vector_io",
    "agents",
    "eval",
    "batches",
)


class _UploadPaths:
    """Routes whose body may be as large as server.max_file_bytes (multipart uploads, passed
    through counted, not buffered): ``path in UPLOAD_PATHS``. An Upload's parts route has the
    upload id in its path; the Uploads service bounds each part to 4 MiB itself."""

    _exact = frozenset({"/v1/files"})
    _parts = re.compile(r"/v1/uploads/upload_[a-f0-9]{1,64}/parts")

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and (
            path in self._exact or self._parts.fullmatch(path) is not None
        )


UPLOAD_PATHS = _UploadPaths()
PROFILES = ("local", "aws")
ApiName = Literal[
    "inspect", "models", "inference", "safety", "files", "vector_io", "agents", "eval", "batches"
]

_ENV_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# A default/value may hold one level of ${env.X} / ${env.X:=y} (no further nesting).
_ENV_INNER = rf"\$\{{env\.{_ENV_NAME}(?:(?::=|:\+)[^{{}}$]*)?\}}"
_ENV_REF = re.compile(
    rf"\$\{{env\.({_ENV_NAME})(?:(:=|:\+)((?:[^}}$]|\$(?!\{{)|{_ENV_INNER})*))?\}}"
)
# A region set either way turns Bedrock on.
_ENV_FALLBACKS = {"AWS_REGION": ("AWS_DEFAULT_REGION",)}
# Bedrock's geographies for cross-region inference profiles, by source region.
_BEDROCK_GEOGRAPHIES = (
    (re.compile(r"us-gov-[a-z]+-\d+"), "us-gov."),
    (re.compile(r"us-(east|west)-\d+"), "us."),
    (re.compile(r"eu-(central|north|south|west)-\d+"), "eu."),
    (re.compile(r"ap-[a-z]+-\d+|me-central-1"), "apac."),
)


def bedrock_profile_prefix(region: str) -> str:
    """The id prefix of ``region``'s cross-region inference profiles (``us.``, ``eu.``,
    ``apac.``, ``us-gov.``), or "" where Bedrock has none (the foundation model id is used)."""
    for pattern, prefix in _BEDROCK_GEOGRAPHIES:
        if pattern.fullmatch(region):
            return prefix
    return ""


# Variables derived from others when not set themselves.
_ENV_DERIVED = {
    "BEDROCK_PROFILE_PREFIX": lambda env: bedrock_profile_prefix(_lookup("AWS_REGION", env) or ""),
}
_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,255}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProviderEntry(_Strict):
    provider_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    provider_type: str
    config: dict[str, Any] = Field(default_factory=dict)
    default_only: bool = Field(
        False,
        description="A last-resort default: left out, with its models, when another "
        "chat-capable inference provider is configured or when its packages are not installed.",
    )
    # The validated config (the provider spec's model); filled by the loader.
    settings: Any = Field(default=None, exclude=True)


class ModelResource(_Strict):
    model_id: str = Field(pattern=_ID_PATTERN)
    provider_id: str
    provider_model_id: str | None = None
    model_type: Literal["llm", "embedding", "rerank"] = "llm"
    metadata: dict[str, Any] = Field(default_factory=dict)
    fallbacks: list[str] = Field(default_factory=list, description="Tried in order on failure.")
    context_window_fallbacks: list[str] = Field(default_factory=list)
    content_policy_fallbacks: list[str] = Field(default_factory=list)
    input_shields: list[str] = Field(default_factory=list, description="Run on each request.")
    output_shields: list[str] = Field(default_factory=list, description="Run on each reply.")


class GuardrailsConfig(_Strict):
    on_violation: Literal["error", "refuse"] = Field(
        "error",
        description="error: a 400 naming the violation; refuse: a normal reply whose content is "
        "the refusal, finish_reason content_filter.",
    )
    max_judged_chars: int = Field(
        256 * 1024,
        gt=0,
        le=16 * 1024 * 1024,
        description="Most characters one shield call judges: a longer input is a 400 naming the "
        "field; a longer reply of a guarded model is treated as a violation (it cannot be judged).",
    )


class RoutingConfig(_Strict):
    """How the inference router retries, falls back and breaks circuits (one place)."""

    max_retries: int = Field(2, ge=0, le=10, description="Retries per model before falling back.")
    backoff_base_seconds: float = Field(0.25, ge=0)
    backoff_max_seconds: float = Field(8.0, ge=0)
    timeout_seconds: float = Field(60.0, gt=0, description="Per attempt (time to first token).")
    deadline_seconds: float = Field(
        120.0,
        gt=0,
        description="Total for one request: every attempt, retry, backoff and fallback (for a "
        "stream: until its first token). In Lambda the function's remaining time, less "
        "lambda_margin_seconds, also bounds it.",
    )
    lambda_margin_seconds: float = Field(
        1.5,
        ge=0,
        description="Kept back from the Lambda function's remaining time to answer in time.",
    )
    stream_idle_seconds: float = Field(
        30.0,
        gt=0,
        description="A stream whose client reads nothing for this long is ended (its upstream "
        "connection released).",
    )
    breaker_failure_threshold: int = Field(5, ge=1)
    breaker_cooldown_seconds: float = Field(30.0, ge=0)


class MCPConfig(_Strict):
    """Which MCP servers a request's mcp tools may reach (the SSRF guard)."""

    allowed_servers: list[str] = Field(
        default_factory=list,
        description="`host` (the scheme's default port only), `host:port` or `host:*` entries, "
        "`*` globs allowed in the host (`*.example.com`). A host resolving to a loopback, "
        "private or link-local address (or not resolving) is refused unless named literally. "
        "Empty: no mcp tools.",
    )
    timeout_seconds: float = Field(
        30.0, gt=0, le=900, description="Per MCP operation (listing, one call)."
    )


class JobsConfig(_Strict):
    """Where asynchronous jobs run (background responses, batches, eval jobs)."""

    queue_url: str | None = Field(
        None,
        description="An SQS queue the jobs function reads. Unset: jobs run in this process as "
        "background tasks (the local server).",
    )
    lambda_margin_seconds: float = Field(
        20.0,
        ge=1,
        description="Kept back from the jobs function's remaining time: a job that reaches it "
        "checkpoints and continues in a new invocation.",
    )
    max_receive_count: int = Field(
        3,
        ge=1,
        le=100,
        description="Deliveries of one message before SQS moves it to the dead-letter queue "
        "(the queue's redrive maxReceiveCount): the last one records a failure instead.",
    )
    chunk_rows: int = Field(
        50,
        ge=1,
        le=10_000,
        description="Rows (batch requests, eval rows) per chunk of a chunked job: the unit of "
        "checkpointing, so at most this many rows are redone after a crash.",
    )
    max_concurrency_per_model: int = Field(
        8,
        ge=1,
        le=256,
        description="Concurrent model calls per model in one process, across every batch and "
        "eval job it runs (the inference router's retries and fallbacks apply to each).",
    )
    min_chunk_seconds: float = Field(
        10.0,
        ge=0,
        description="A chunk starts only with at least this much of the invocation's time "
        "left; otherwise the job continues in a new invocation.",
    )


class AgentsConfig(_Strict):
    """The Responses API's loop and what it keeps (Agents)."""

    max_steps: int = Field(
        16, ge=1, le=128, description="Most model calls in one response (its tool loop)."
    )
    max_tool_calls: int = Field(
        32,
        ge=1,
        le=512,
        description="Most server-side tool calls in one response; a request's max_tool_calls "
        "may lower it.",
    )
    deadline_seconds: float = Field(
        300.0,
        gt=0,
        description="Total for one response's loop (in Lambda the function's remaining time also "
        "bounds it); when it passes the response ends `incomplete` (reason `deadline`).",
    )
    store_days: float = Field(
        30.0,
        gt=0,
        description="How long stored responses, their input items and conversations are kept "
        "(DynamoDB TTL in AWS).",
    )
    max_context_items: int = Field(
        1000,
        ge=1,
        le=100_000,
        description="Most items a response reads from its previous_response_id chain or "
        "conversation; a longer history is a 400.",
    )
    file_search_max_results: int = Field(10, ge=1, le=50)
    mcp: MCPConfig = Field(default_factory=MCPConfig)
    background_max_seconds: float = Field(
        3600.0,
        gt=0,
        description="Most time a background response may take in all (across job invocations); "
        "then it ends `incomplete` (reason `deadline`).",
    )


class EvalConfig(_Strict):
    """Datasets and scoring (the eval API): what a dataset may hold and how judges are called."""

    datasets_root: str | None = Field(
        None,
        description="Local only: a dataset source `file://` URI or plain path must resolve "
        "inside this directory (symlinks and `..` followed first). Unset: paths are refused.",
    )
    max_rows: int = Field(
        100_000, ge=1, le=10_000_000, description="Most rows in one dataset (400 above)."
    )
    max_bytes: int = Field(
        20 * 1024 * 1024,
        ge=1024,
        description="Largest dataset: its source as read, and its rows as stored JSONL (400 "
        "above).",
    )
    max_score_rows: int = Field(
        1_000,
        ge=1,
        le=1_000_000,
        description="Most rows scored by one synchronous /v1/scoring request (score or "
        "score-batch); larger sets go through eval jobs.",
    )
    judge_concurrency: int = Field(
        8, ge=1, le=256, description="LLM-as-judge calls in flight at once per scoring call."
    )
    judge_model: str | None = Field(
        None,
        description="The judge model of the built-in RAG judges (and `llm-as-judge::base`) "
        "when a request's params name none.",
    )
    max_sync_rows: int = Field(
        20,
        ge=1,
        le=1_000,
        description="Most input_rows of one synchronous /evaluations request (generation and "
        "scoring within the request's time); larger sets run as eval jobs.",
    )
    job_days: int = Field(
        30, ge=1, le=3650, description="How long eval jobs and their results are kept."
    )
    max_result_bytes: int = Field(
        5_000_000,
        ge=1024,
        le=5_500_000,
        description="Largest eval job result answered whole (a Lambda answers at most 6 MB); a "
        "larger one is read in pages (`?start_index=&limit=` on the result endpoint).",
    )


class InferenceStoreConfig(_Strict):
    """Stored chat completions (OpenAI's ``store``; Llama Stack's inference store)."""

    enabled: bool = Field(
        False,
        description="Store every chat completion (request and reply) unless a request says "
        "`store: false`; off: only those that say `store: true`. One Records write per call.",
    )
    ttl_days: float = Field(
        30.0, gt=0, le=3650, description="How long a stored completion is kept (DynamoDB TTL)."
    )


class ShieldResource(_Strict):
    shield_id: str = Field(pattern=_ID_PATTERN)
    provider_id: str
    provider_shield_id: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class VectorStoreResource(_Strict):
    vector_store_id: str = Field(pattern=_ID_PATTERN)
    provider_id: str
    embedding_model: str
    embedding_dimension: int = Field(gt=0)
    name: str | None = None


class SqliteRecords(_Strict):
    type: Literal["sqlite"]
    path: str


class DynamoDBRecords(_Strict):
    type: Literal["dynamodb"]
    table_name: str
    region_name: str | None = None
    endpoint_url: str | None = None


class LocalObjects(_Strict):
    type: Literal["local"]
    root: str


class S3Objects(_Strict):
    type: Literal["s3"]
    bucket: str
    prefix: str = ""
    region_name: str | None = None
    endpoint_url: str | None = None

    @field_validator("prefix")
    @classmethod
    def _strip_slashes(cls, value: str) -> str:
        return value.strip("/")


class IngestLimits(_Strict):
    """What one file may cost to parse and chunk (in a worker process); a file past a limit
    ends ``failed`` with a ``last_error`` naming the limit."""

    max_seconds: float = Field(
        120.0, gt=0, le=900, description="Wall time to parse and chunk one file (then killed)."
    )
    max_decoded_bytes: int = Field(
        16 * 1024 * 1024,
        gt=0,
        description="Bytes of text, or of decompressed PDF page content, in one file.",
    )
    max_pages: int = Field(2_000, gt=0, description="Pages of one PDF.")
    max_tokens: int = Field(2_000_000, gt=0, description="Tokens of one file's text.")


class VectorsConfig(_Strict):
    """LanceDB: where tables live and how they are indexed and written."""

    uri: str = Field(description="LanceDB location: a local dir or s3://bucket/prefix.")
    storage_options: dict[str, str | None] = Field(
        default_factory=dict,
        description="object_store options for s3:// (endpoint, allow_http, region...); "
        "empty values are dropped.",
    )
    default_embedding_model: str | None = Field(
        None, description="For stores created without one; else the first embedding model."
    )
    query_rewrite_model: str | None = Field(
        None,
        description="The LLM that rewrites search queries (rewrite_query: true); else the "
        "first LLM of the stack.",
    )
    ann_index_min_rows: int = Field(
        50_000,
        ge=256,
        description="Build the ANN (IVF_HNSW_SQ) index once a table has this many rows.",
    )
    read_consistency_seconds: float = Field(
        0.0,
        ge=0,
        description="How stale a cached table may be (other writers' commits); 0 = check on "
        "every read (read-your-writes across Lambda containers).",
    )
    index_cache_mib: int = Field(
        512,
        ge=1,
        le=65_536,
        description="LanceDB's index cache (IVF centroids, HNSW partitions as searches load them; "
        "LRU), per process and shared by every table: the memory a warm container keeps so "
        "searches skip index reads.",
    )
    metadata_cache_mib: int = Field(
        128,
        ge=1,
        le=65_536,
        description="LanceDB's metadata cache (manifests, file footers, index metadata; LRU), "
        "per process and shared by every table.",
    )
    write_retries: int = Field(8, ge=0, le=50, description="Retries of a conflicting commit.")
    ingest_concurrency: int = Field(
        4,
        ge=1,
        le=64,
        description="Files processed at once (per request), and document worker processes at "
        "once (per server process).",
    )
    ingest: IngestLimits = Field(default_factory=IngestLimits)
    ingest_queue_url: str | None = Field(
        None,
        description="An SQS queue the ingest function reads: files attached through the API "
        "are queued there (in_progress until processed). Unset: processed within the request.",
    )


class StorageConfig(_Strict):
    records: Annotated[SqliteRecords | DynamoDBRecords, Field(discriminator="type")]
    objects: Annotated[LocalObjects | S3Objects, Field(discriminator="type")]
    vectors: VectorsConfig


AuthMode = Literal["off", "keys", "authorizer"]


class ServerConfig(_Strict):
    auth: AuthMode = Field(
        "off",
        description="off | keys (Bearer keys checked in-app; true means keys) | authorizer "
        "(in Lambda: API Gateway's authorizer checked the key).",
    )
    host: str = "127.0.0.1"
    port: int = Field(8321, ge=0, le=65535)
    max_body_bytes: int = Field(10 * 1024 * 1024, gt=0, description="Larger bodies get a 413.")
    max_file_bytes: int = Field(
        100 * 1024 * 1024, gt=0, description="Largest upload to POST /v1/files (413 above)."
    )
    max_upload_bytes: int = Field(
        512 * 1024 * 1024,
        gt=0,
        description="Largest file made through the Uploads API (POST /v1/uploads; 400 above).",
    )
    content_redirect_bytes: int = Field(
        0,
        ge=0,
        description="GET /v1/files/{id}/content of a File larger than this answers a 307 to a "
        "presigned S3 URL (5 minutes) instead of the bytes; 0 = never (local objects: never).",
    )
    allowed_hosts: list[str] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1", "[::1]"],
        description="`llamda serve` answers only requests whose Host is one of these (any "
        "port; `*.example.com` for subdomains, `*` for any): stops DNS rebinding.",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins (e.g. http://localhost:3000) allowed to send "
        "state-changing requests to `llamda serve` (CORS too); others get a 403.",
    )
    max_query_chars: int = Field(
        8_192,
        ge=1,
        le=1_000_000,
        description="Longest search query (vector store search, vector-io query); 400 above.",
    )
    maintenance_interval_seconds: float = Field(
        60.0,
        ge=0,
        description="The local server runs the maintenance step (vector indexes) this often, "
        "in the background; 0 = never.",
    )

    @field_validator("auth", mode="before")
    @classmethod
    def _auth_flag(cls, value: Any) -> Any:
        """YAML booleans and env flags: true/1/yes → keys, false/0/no/'' → off."""
        if isinstance(value, bool):
            return "keys" if value else "off"
        if isinstance(value, str) and value.strip().lower() in {"true", "1", "yes", "on"}:
            return "keys"
        if isinstance(value, str) and value.strip().lower() in {"false", "0", "no", ""}:
            return "off"
        return value


class BatchesConfig(_Strict):
    """Limits of the OpenAI Batches API (OpenAI's own: 50,000 requests, 200 MB per file)."""

    max_requests: int = Field(
        50_000, ge=1, le=1_000_000, description="Most request lines in one batch's input file."
    )
    max_file_bytes: int = Field(
        200 * 1024 * 1024, gt=0, description="Largest input file a batch accepts."
    )
    max_line_bytes: int = Field(
        1024 * 1024,
        gt=0,
        le=64 * 1024 * 1024,
        description="Largest request line; a longer one is an error line (never held whole).",
    )
    idempotency_hours: int = Field(
        24, ge=1, le=24 * 30, description="How long an Idempotency-Key maps to its batch."
    )


class RunConfig(_Strict):
    version: int = 1
    profile: str = "local"
    apis: list[ApiName]
    providers: dict[ApiName, list[ProviderEntry]] = Field(default_factory=dict)
    models: list[ModelResource] = Field(default_factory=list)
    shields: list[ShieldResource] = Field(default_factory=list)
    vector_stores: list[VectorStoreResource] = Field(default_factory=list)
    storage: StorageConfig
    server: ServerConfig = Field(default_factory=ServerConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    guardrails: GuardrailsConfig = Field(default_factory=GuardrailsConfig)
    agents: AgentsConfig = Field(default_factory=AgentsConfig)
    jobs: JobsConfig = Field(default_factory=JobsConfig)
    batches: BatchesConfig = Field(default_factory=BatchesConfig)
    inference_store: InferenceStoreConfig = Field(default_factory=InferenceStoreConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    # Where this config came from, for messages.
    source: str = Field(default="<memory>", exclude=True)

    def provider(self, provider_id: str) -> tuple[str, ProviderEntry] | None:
        for api, entries in self.providers.items():
            for entry in entries:
                if entry.provider_id == provider_id:
                    return api, entry
        return None

    def provider_ids(self, api: str) -> list[str]:
        return [entry.provider_id for entry in self.providers.get(api, [])]  # type: ignore[call-overload]


# --- substitution -----------------------------------------------------------------------------


def _lookup(name: str, env: Mapping[str, str]) -> str | None:
    for candidate in (name, *_ENV_FALLBACKS.get(name, ())):
        value = env.get(candidate)
        if value:
            return value
    derive = _ENV_DERIVED.get(name)
    return (derive(env) or None) if derive else None


def _substitute(value: Any, env: Mapping[str, str], where: str) -> Any:
    if isinstance(value, dict):
        return {
            k: _substitute(v, env, f"{where}.{k}" if where else str(k)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_substitute(v, env, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3) or ""
        found = _lookup(name, env)
        if op == ":=":
            return found if found is not None else _ENV_REF.sub(replace, arg)
        if op == ":+":
            return _ENV_REF.sub(replace, arg) if found is not None else ""
        if found is None:
            raise ConfigError(f"{where}: environment variable {name} is not set")
        return found

    result = _ENV_REF.sub(replace, value)
    if "${" in result:
        # The value is not repeated: it may hold a secret, and Lambda answers with this text.
        raise ConfigError(f"{where}: cannot parse a ${{env...}} substitution")
    # A value that was only a substitution and came out empty means "unset".
    return None if result == "" and _ENV_REF.fullmatch(value) else result


def _drop_switched_off(raw: dict[str, Any]) -> None:
    providers = raw.get("providers") or {}
    if isinstance(providers, dict):
        for api, entries in providers.items():
            if isinstance(entries, list):
                providers[api] = [
                    e for e in entries if not (isinstance(e, dict) and e.get("provider_id") is None)
                ]
    for kind in ("models", "shields", "vector_stores"):
        items = raw.get(kind)
        if isinstance(items, list):
            raw[kind] = [
                i for i in items if not (isinstance(i, dict) and i.get("provider_id") is None)
            ]


def _installed(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None  # looks, imports nothing
    except (ImportError, ValueError):
        return False


def _needs(api: str, entry: dict[str, Any]) -> list[str]:
    """The modules a provider entry needs installed (its type's, and a model package's)."""
    from llamda.providers.inference.config import package_module

    spec = get_spec(api, str(entry.get("provider_type")))
    needs = list(spec.requires) if spec else []
    config = entry.get("config")
    if isinstance(config, dict) and isinstance(config.get("model_package"), str):
        needs.append(package_module(config["model_package"]))
    return needs


def _drop_idle_defaults(raw: dict[str, Any]) -> None:
    """Leave out each ``default_only`` provider, and what names it, when another inference
    provider that can chat is configured or when its packages are not installed: the
    profile's chat default (llama.cpp) then never lists a model that cannot answer, nor
    shadows a configured provider."""
    providers = raw.get("providers") or {}
    if not isinstance(providers, dict):
        return
    items = {kind: raw.get(kind) for kind in ("models", "shields", "vector_stores")}
    entries_of = {api: e for api, e in providers.items() if isinstance(e, list)}
    defaults = {
        e["provider_id"]
        for entries in entries_of.values()
        for e in entries
        if isinstance(e, dict)
        and e.get("default_only") is True
        and isinstance(e.get("provider_id"), str)
    }

    def serves_chat(api: str, entry: dict[str, Any]) -> bool:
        spec = get_spec(api, str(entry.get("provider_type")))
        return api == "inference" and (spec is None or spec.chat)

    other_chat = any(
        isinstance(e, dict) and e.get("provider_id") not in defaults and serves_chat(api, e)
        for api, entries in entries_of.items()
        for e in entries
    )
    dropped: set[Any] = set()
    for api, entries in providers.items():
        if not isinstance(entries, list):
            continue
        for e in entries:
            if (
                isinstance(e, dict)
                and e.get("provider_id") in defaults
                and (other_chat or not all(_installed(m) for m in _needs(api, e)))
            ):
                dropped.add(e["provider_id"])
        providers[api] = [
            e for e in entries if not (isinstance(e, dict) and e.get("provider_id") in dropped)
        ]
    for kind, listed in items.items():
        if isinstance(listed, list):
            raw[kind] = [
                i for i in listed if not (isinstance(i, dict) and i.get("provider_id") in dropped)
            ]


# --- validation -------------------------------------------------------------------------------


def _loc(parts: tuple[Any, ...]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _format_errors(source: str, exc: ValidationError, prefix: str = "") -> str:
    lines = [f"invalid run config {source}:"]
    for err in exc.errors():
        loc = _loc(tuple(err["loc"]))
        key = f"{prefix}.{loc}" if prefix and loc else (prefix or loc or "<root>")
        lines.append(f"  {key}: {err['msg']}")
    return "\n".join(lines)


def _check_providers(config: RunConfig) -> None:
    seen: set[str] = set()
    for api, entries in config.providers.items():
        for index, entry in enumerate(entries):
            where = f"providers.{api}[{index}]"
            if entry.provider_id in seen:
                raise ConfigError(
                    f"{where}.provider_id: duplicate provider id {entry.provider_id!r}"
                )
            seen.add(entry.provider_id)
            # The one place aliases resolve: everything after this sees Llama Stack's name.
            entry.provider_type = canonical_type(
                api, entry.provider_type, config.storage.vectors.uri
            )
            spec = get_spec(api, entry.provider_type)
            if spec is None:
                known = ", ".join(provider_types(api)) or "none yet"
                raise ConfigError(
                    f"{where}.provider_type: unknown provider type {entry.provider_type!r} "
                    f"for api {api} (known: {known})"
                )
            if spec.single_writer and config.profile == "aws":
                raise ConfigError(
                    f"{where}.provider_type: {entry.provider_type} allows one writer process "
                    "only; the aws profile writes from many (API and ingest functions): use "
                    "remote::lancedb (or a server-backed vector_io provider) there"
                )
            raw = dict(entry.config)
            if spec.default_url and not raw.get("url"):
                raw["url"] = spec.default_url
            try:
                entry.settings = spec.config_class.model_validate(raw)
            except ValidationError as exc:
                raise ConfigError(_format_errors(config.source, exc, f"{where}.config")) from None
            # Its secrets are scrubbed verbatim from every error message from now on.
            redact.remember(redact.secret_values(entry.settings.model_dump()))


def _check_resources(config: RunConfig) -> None:
    resource_api = {"models": "inference", "shields": "safety", "vector_stores": "vector_io"}
    for kind, api in resource_api.items():
        ids: set[str] = set()
        for index, item in enumerate(getattr(config, kind)):
            where = f"{kind}[{index}]"
            if item.provider_id not in config.provider_ids(api):
                raise ConfigError(
                    f"{where}.provider_id: {item.provider_id!r} is not a configured {api} "
                    f"provider (configured: {', '.join(config.provider_ids(api)) or 'none'})"
                )
            ident = getattr(item, kind[:-1] + "_id")
            if ident in ids:
                raise ConfigError(f"{where}: duplicate id {ident!r}")
            ids.add(ident)
    model_ids = {m.model_id for m in config.models}
    shield_ids = {s.shield_id for s in config.shields}
    for index, model in enumerate(config.models):
        for field in ("input_shields", "output_shields"):
            for shield in getattr(model, field):
                if shield not in shield_ids:
                    raise ConfigError(
                        f"models[{index}].{field}: {shield!r} is not a shield of this config"
                    )
        for field in ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks"):
            for target in getattr(model, field):
                if target not in model_ids or target == model.model_id:
                    raise ConfigError(
                        f"models[{index}].{field}: {target!r} is not another model of this config"
                    )


def parse_config(raw: Any, source: str, env: Mapping[str, str] | None = None) -> RunConfig:
    """Validate an already-parsed YAML document into a RunConfig (raises ConfigError)."""
    env = os.environ if env is None else env
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid run config {source}: the top level must be a mapping")
    try:
        substituted = _substitute(raw, env, "")
    except ConfigError as exc:
        raise ConfigError(f"invalid run config {source}: {exc}") from None
    _drop_switched_off(substituted)
    _drop_idle_defaults(substituted)
    try:
        config = RunConfig.model_validate(substituted)
    except ValidationError as exc:
        raise ConfigError(_format_errors(source, exc)) from None
    config.source = source
    try:
        _check_providers(config)
        _check_resources(config)
    except ConfigError as exc:
        message = str(exc)
        if not message.startswith("invalid run config"):
            message = f"invalid run config {source}: {message}"
        raise ConfigError(message) from None
    return config


def _profile_text(profile: str) -> str:
    if profile not in PROFILES:
        raise ConfigError(
            f"LLAMDA_PROFILE={profile!r} is not a profile (choose one of: {', '.join(PROFILES)})"
        )
    return resources.files("llamda.profiles").joinpath(f"{profile}.yaml").read_text("utf-8")


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> RunConfig:
    """Load the run config from ``path``, ``$LLAMDA_CONFIG`` or the ``$LLAMDA_PROFILE`` profile."""
    env = os.environ if env is None else env
    path = path or env.get("LLAMDA_CONFIG") or None
    if path:
        source = str(path)
        try:
            text = Path(path).read_text("utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read run config {source}: {exc.strerror}") from None
    else:
        profile = env.get("LLAMDA_PROFILE") or "local"
        source = f"<profile {profile}>"
        text = _profile_text(profile)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"invalid run config {source}:{where}: {problem}") from None
    return parse_config(raw, source, env)


@functools.cache
def cached_config() -> RunConfig:
    """The process-wide config, loaded once per (Lambda) container from the environment."""
    return load_config()
