"""Which provider types exist, per API, and the config model each one takes.

Llama Stack registers providers by spec; so do we. Specs are data only: importing this module
imports no provider implementation.
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
from llamda.providers.vector_io.config import LanceDBConfig


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

    @property
    def remote(self) -> bool:
        return self.provider_type != "llama-cpp" and not self.provider_type.startswith("inline::")


def _remote(provider_type: str, description: str, url: str | None = None) -> ProviderSpec:
    return ProviderSpec("inference", provider_type, RemoteOpenAIConfig, description, url)


SPECS: dict[tuple[str, str], ProviderSpec] = {
    (spec.api, spec.provider_type): spec
    for spec in [
        ProviderSpec(
            "inference",
            "bedrock",
            BedrockConfig,
            "Amazon Bedrock Converse API",
            implementation="llamda.providers.inference.bedrock:BedrockProvider",
        ),
        ProviderSpec(
            "inference",
            "bedrock-openai",
            BedrockOpenAIConfig,
            "Bedrock OpenAI-compatible API",
            implementation="llamda.providers.inference.remote_openai:BedrockOpenAIProvider",
        ),
        _remote("vllm", "vLLM OpenAI-compatible server"),
        _remote("tgi", "Hugging Face Text Generation Inference (Messages API)"),
        _remote("ollama", "Ollama OpenAI-compatible API", "http://localhost:11434/v1"),
        _remote("fireworks", "Fireworks AI", "https://api.fireworks.ai/inference/v1"),
        _remote("together", "Together AI", "https://api.together.xyz/v1"),
        _remote("openai", "OpenAI or any OpenAI-compatible server", "https://api.openai.com/v1"),
        ProviderSpec(
            "safety",
            "llama-guard",
            LlamaGuardConfig,
            "Llama Guard 3/4 through the Inference service",
            implementation="llamda.providers.safety.llama_guard:LlamaGuardProvider",
        ),
        ProviderSpec(
            "safety",
            "bedrock-guardrails",
            BedrockGuardrailsConfig,
            "Amazon Bedrock Guardrails (ApplyGuardrail)",
            implementation="llamda.providers.safety.bedrock_guardrails:BedrockGuardrailsProvider",
        ),
        ProviderSpec(
            "safety",
            "rules",
            RulesConfig,
            "Local keyword/regex/PII rules (no model)",
            implementation="llamda.providers.safety.rules:RulesProvider",
        ),
        ProviderSpec(
            "inference",
            "llama-cpp",
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
            "lancedb",
            LanceDBConfig,
            "LanceDB (local dir or s3://): vector, full-text and hybrid search",
            implementation="llamda.storage.vectors_lancedb:LanceDBIndex",
        ),
    ]
}


def provider_types(api: str) -> list[str]:
    return sorted(t for a, t in SPECS if a == api)


def get_spec(api: str, provider_type: str) -> ProviderSpec | None:
    return SPECS.get((api, provider_type))


def load_implementation(spec: ProviderSpec) -> type:
    """The provider class of a spec, imported on first use."""
    import importlib

    module, _, name = spec.implementation.partition(":")
    return getattr(importlib.import_module(module), name)
