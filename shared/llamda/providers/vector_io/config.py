"""Config models of vector-io providers (``providers.vector_io[].config``). LanceDB's location
and tuning live in ``storage.vectors`` (shared by every LanceDB provider of the stack)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class LanceDBConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FaissConfig(BaseModel):
    """FAISS in process; each store's index and rows persisted through the object store."""

    model_config = ConfigDict(extra="forbid")
    prefix: str = Field(
        "vector_io/faiss",
        pattern=r"^[A-Za-z0-9_-]{1,64}(/[A-Za-z0-9_-]{1,64}){0,4}$",
        description="Object-store key prefix (under the tenant's keys) of the saved indexes.",
    )
    index: Literal["flat"] = Field(
        "flat", description="flat: exact inner product on normalized vectors (cosine)."
    )


class PgVectorConfig(BaseModel):
    """PostgreSQL with the pgvector extension (psycopg 3, a small async pool)."""

    model_config = ConfigDict(extra="forbid")
    host: str = Field("localhost", min_length=1, max_length=255)
    port: int = Field(5432, ge=1, le=65535)
    db: str = Field("postgres", min_length=1, max_length=63)
    user: str = Field("postgres", min_length=1, max_length=63)
    password: SecretStr | None = Field(
        None, description="Usually ${env.PGVECTOR_PASSWORD}; never shown or logged."
    )
    password_parameter: str | None = Field(
        None, description="Or an SSM parameter name / Secrets Manager ARN holding it."
    )
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    table_prefix: str = Field(
        "llamda_",
        pattern=r"^[a-z][a-z0-9_]{0,15}$",
        description="Each store's table is <prefix><store id, sanitised>_<hash>.",
    )
    connect_timeout_seconds: int = Field(
        3, ge=2, le=60, description="Per connection attempt (libpq counts whole seconds, min 2)."
    )
    statement_timeout_seconds: float = Field(10.0, gt=0, le=300)
    pool_timeout_seconds: float = Field(
        5.0, gt=0, le=120, description="Longest wait for a pooled connection: then a 503."
    )
    pool_max_size: int = Field(4, ge=1, le=64, description="Connections per process.")
    text_search_config: str = Field(
        "english", pattern=r"^[a-z_]{1,32}$", description="PostgreSQL text search config."
    )
    ef_search: int = Field(100, ge=10, le=1000, description="hnsw.ef_search (recall vs speed).")
    hnsw_build_rows: int = Field(
        0,
        ge=0,
        description="0: the HNSW index is made with the table (every insert updates it). N: "
        "the maintenance step builds it once the table has N rows (bulk loads go ~10x faster; "
        "searches are exact until then).",
    )

    @model_validator(mode="after")
    def _blank_is_none(self) -> PgVectorConfig:
        # ${env.X:=} substitutes an empty string for an unset variable.
        if self.password is not None and not self.password.get_secret_value():
            self.password = None
        if not self.password_parameter:
            self.password_parameter = None
        return self


class ChromaConfig(BaseModel):
    """Chroma: a server over HTTP (``url``) or the embedded persistent client (``path``)."""

    model_config = ConfigDict(extra="forbid")
    url: str | None = Field(None, description="e.g. http://localhost:8000 (a Chroma server).")
    path: str | None = Field(None, description="Or a local dir: the embedded PersistentClient.")
    tenant: str = Field("default_tenant", min_length=1, max_length=64)
    database: str = Field("default_database", min_length=1, max_length=64)
    headers: dict[str, str] = Field(
        default_factory=dict, description="e.g. an auth header of a hosted Chroma; never shown."
    )
    collection_prefix: str = Field("llamda_", pattern=r"^[a-z][a-z0-9_]{0,15}$")
    timeout_seconds: float = Field(10.0, gt=0, le=300, description="Per HTTP request.")

    @model_validator(mode="after")
    def _one_location(self) -> ChromaConfig:
        if not self.url:
            self.url = None
        if not self.path:
            self.path = None
        if (self.url is None) == (self.path is None):
            raise ValueError("set exactly one of url (a Chroma server) or path (embedded)")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError("url must be http:// or https://")
        return self


_HOST = r"^([A-Za-z0-9_.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])$"  # a name, IPv4, or [IPv6]


class WeaviateConfig(BaseModel):
    """Weaviate over REST (schema, health) and gRPC (objects, search), weaviate-client v4."""

    model_config = ConfigDict(extra="forbid")
    http_host: str = Field(
        "localhost", pattern=_HOST, description="A host name or IP (no scheme: http_secure)."
    )
    http_port: int = Field(8080, ge=1, le=65535)
    http_secure: bool = False
    grpc_host: str | None = Field(None, pattern=_HOST, description="Default: http_host.")
    grpc_port: int = Field(50051, ge=1, le=65535)
    grpc_secure: bool | None = Field(None, description="Default: http_secure.")
    api_key: SecretStr | None = Field(
        None, description="Usually ${env.WEAVIATE_API_KEY}; never shown or logged."
    )
    api_key_parameter: str | None = Field(
        None, description="Or an SSM parameter name / Secrets Manager ARN holding it."
    )
    collection_prefix: str = Field(
        "Llamda_",
        pattern=r"^[A-Z][A-Za-z0-9_]{0,15}$",
        description="Each store's collection is <prefix><store id, sanitised>_<hash>.",
    )
    connect_timeout_seconds: float = Field(
        3.0, gt=0, le=60, description="Connecting (meta + gRPC health) and each REST call."
    )
    timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="Each query or write: then a 503 naming the provider."
    )
    query_maximum_results: int = Field(
        10_000,
        ge=100,
        le=1_000_000,
        description="The server's QUERY_MAXIMUM_RESULTS: the most one query pages into (limit + "
        "offset) or one batch delete removes.",
    )

    @model_validator(mode="after")
    def _blank_is_none(self) -> WeaviateConfig:
        # ${env.X:=} substitutes an empty string for an unset variable.
        if self.api_key is not None and not self.api_key.get_secret_value():
            self.api_key = None
        if not self.api_key_parameter:
            self.api_key_parameter = None
        if not self.grpc_host:
            self.grpc_host = None
        same_host = (self.grpc_host or self.http_host) == self.http_host
        if same_host and self.grpc_port == self.http_port:
            raise ValueError("grpc_port must differ from http_port on the same host")
        return self
