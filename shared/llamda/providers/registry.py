"""Which provider types exist, per API, and the config model each one takes.

Llama Stack registers providers by spec; so do we. Specs are data only: importing this module
imports no provider implementation. Provider types carry Llama Stack's names (``remote::vllm``,
``inline::llama-cpp``...), because tools and tests written for Llama Stack key on them; the short
names of earlier run configs (``vllm``, ``llama-cpp``...) are aliases, resolved by
``canonical_type`` when the config is loaded (the one place), so the rest of the code sees one
name.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from llamda.providers.inference.config import (
    BedrockConfig,
    BedrockOpenAIConfig,
    LlamaCppConfig,
    RemoteOpenAIConfig,
    SentenceTransformersConfig,
)
from llamda.providers.safety.config import BedrockGuardrailsConfig, LlamaGuardConfig, RulesConfig
from llamda.providers.vector_io.config import (
    ChromaConfig,
    FaissConfig,
    LanceDBConfig,
    PgVectorConfig,
    WeaviateConfig,
)


@dataclass(frozen=True)
class ProviderSpec:
    api: str
    provider_type: str
    config_class: type[BaseModel]
    description: str
    default_url: str | None = None
    implementation: str = "llamda.providers.inference.remote_openai:RemoteOpenAIProvider"
    requires: tuple[str, ...] = ()  # modules of optional extras it cannot run without
    chat: bool = True  # False: an embeddings-only inference provider
    # vector_io: one writer process only (refused by the aws profile, whose writers are many).
    single_writer: bool = False

    @property
    def remote(self) -> bool:
        return self.provider_type.startswith("remote::")


def _remote(provider_type: str, description: str, url: str | None = None) -> ProviderSpec:
    return ProviderSpec("inference", provider_type, RemoteOpenAIConfig, description, url)


SPECS: dict[tuple[str, str], ProviderSpec] = {
    (spec.api, spec.provider_type): spec
    for spec in [
        ProviderSpec(
            "inference",
            "remote::bedrock",
            BedrockConfig,
            "Amazon Bedrock Converse API",
            implementation="llamda.providers.inference.bedrock:BedrockProvider",
        ),
        ProviderSpec(
            "inference",
            "remote::bedrock-openai",
            BedrockOpenAIConfig,
            "Bedrock OpenAI-compatible API",
            implementation="llamda.providers.inference.remote_openai:BedrockOpenAIProvider",
        ),
        _remote("remote::vllm", "vLLM OpenAI-compatible server"),
        _remote("remote::tgi", "Hugging Face Text Generation Inference (Messages API)"),
        _remote("remote::ollama", "Ollama OpenAI-compatible API", "http://localhost:11434/v1"),
        _remote("remote::fireworks", "Fireworks AI", "https://api.fireworks.ai/inference/v1"),
        _remote("remote::together", "Together AI", "https://api.together.xyz/v1"),
        _remote(
            "remote::openai", "OpenAI or any OpenAI-compatible server", "https://api.openai.com/v1"
        ),
        ProviderSpec(
            "safety",
            "inline::llama-guard",
            LlamaGuardConfig,
            "Llama Guard 3/4 through the Inference service",
            implementation="llamda.providers.safety.llama_guard:LlamaGuardProvider",
        ),
        ProviderSpec(
            "safety",
            "remote::bedrock-guardrails",
            BedrockGuardrailsConfig,
            "Amazon Bedrock Guardrails (ApplyGuardrail)",
            implementation="llamda.providers.safety.bedrock_guardrails:BedrockGuardrailsProvider",
        ),
        ProviderSpec(
            "safety",
            "inline::rules",
            RulesConfig,
            "Local keyword/regex/PII rules (no model)",
            implementation="llamda.providers.safety.rules:RulesProvider",
        ),
        ProviderSpec(
            "inference",
            "inline::llama-cpp",
            LlamaCppConfig,
            "Inline llama.cpp (local extra)",
            implementation="llamda.providers.inference.llama_cpp:LlamaCppProvider",
            requires=("llama_cpp",),
        ),
        ProviderSpec(
            "inference",
            "inline::sentence-transformers",
            SentenceTransformersConfig,
            "In-process sentence embeddings on CPU (all-MiniLM-L6-v2 by default; no PyTorch)",
            implementation=(
                "llamda.providers.inference.sentence_transformers:SentenceTransformersProvider"
            ),
            requires=("numpy", "tokenizers"),
            chat=False,
        ),
        ProviderSpec(
            "vector_io",
            "inline::lancedb",
            LanceDBConfig,
            "LanceDB in a local directory: vector, full-text and hybrid search",
            implementation="llamda.providers.vector_io.lancedb:LanceDBIndex",
        ),
        ProviderSpec(
            "vector_io",
            "remote::lancedb",
            LanceDBConfig,
            "LanceDB on S3 (s3://): vector, full-text and hybrid search",
            implementation="llamda.providers.vector_io.lancedb:LanceDBIndex",
        ),
        ProviderSpec(
            "vector_io",
            "inline::faiss",
            FaissConfig,
            "FAISS in process, saved to the object store: vector search; keyword via the "
            "service's BM25; one writer process (local use)",
            implementation="llamda.providers.vector_io.faiss:FaissIndex",
            requires=("faiss", "numpy"),
            single_writer=True,
        ),
        ProviderSpec(
            "vector_io",
            "remote::pgvector",
            PgVectorConfig,
            "PostgreSQL with pgvector: HNSW vector search, tsvector full-text keyword search, "
            "filters as parameterized SQL on JSONB; hybrid fused by the service",
            implementation="llamda.providers.vector_io.pgvector:PgVectorIndex",
            requires=("psycopg", "psycopg_pool"),
        ),
        ProviderSpec(
            "vector_io",
            "remote::chromadb",
            ChromaConfig,
            "Chroma (a server by url, or embedded by path): vector search, metadata filters as "
            "Chroma where; keyword via the service's BM25, hybrid fused by the service",
            implementation="llamda.providers.vector_io.chroma:ChromaIndex",
            requires=("chromadb",),
        ),
        ProviderSpec(
            "vector_io",
            "remote::weaviate",
            WeaviateConfig,
            "Weaviate (weaviate-client v4, REST + gRPC): vector search, filters as Weaviate "
            "filters, native BM25 keyword search; hybrid fused by the service",
            implementation="llamda.providers.vector_io.weaviate:WeaviateIndex",
            requires=("weaviate",),
        ),
        # More vector_io providers: one ProviderSpec here each.
    ]
}

# Short names of earlier run configs → Llama Stack's names. LanceDB's depends on where its
# tables live (storage.vectors.uri): see canonical_type.
ALIASES: dict[str, dict[str, str]] = {
    "inference": {
        name: f"remote::{name}"
        for name in ("bedrock", "bedrock-openai", "vllm", "tgi", "ollama", "fireworks", "together")
    }
    | {"openai": "remote::openai", "llama-cpp": "inline::llama-cpp"},
    "safety": {
        "llama-guard": "inline::llama-guard",
        "bedrock-guardrails": "remote::bedrock-guardrails",
        "rules": "inline::rules",
    },
    "vector_io": {"faiss": "inline::faiss"},
}
_LANCEDB = ("lancedb", "inline::lancedb", "remote::lancedb")


def canonical_type(api: str, provider_type: str, vectors_uri: str = "") -> str:
    """Llama Stack's name of ``provider_type`` (unknown names come back unchanged). LanceDB is
    ``remote::lancedb`` when its tables live on S3, else ``inline::lancedb``, whichever name the
    config used: the location decides, not the label."""
    if api == "vector_io" and provider_type in _LANCEDB:
        return "remote::lancedb" if vectors_uri.startswith("s3://") else "inline::lancedb"
    return ALIASES.get(api, {}).get(provider_type, provider_type)


def short_name(provider_type: str) -> str:
    """``remote::fireworks`` → ``fireworks``: the stem of per-provider keys such as
    ``fireworks_api_key`` in X-LlamaStack-Provider-Data (Llama Stack's key names)."""
    return provider_type.rpartition("::")[2]


def provider_types(api: str) -> list[str]:
    return sorted(t for a, t in SPECS if a == api)


def get_spec(api: str, provider_type: str) -> ProviderSpec | None:
    return SPECS.get((api, provider_type))


def load_implementation(spec: ProviderSpec) -> type:
    """The provider class of a spec, imported on first use."""
    import importlib

    module, _, name = spec.implementation.partition(":")
    return getattr(importlib.import_module(module), name)
