"""The stack builds a service (and imports its module) on first use, so a Lambda function
imports only what its APIs use; create_app builds those at init; hooks between services
resolve when called; configured shields are still checked at start."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from llamda.app import ROUTERS, SERVICES, create_app
from llamda.config import load_config
from llamda.errors import ConfigError
from llamda.stack import Stack

CONFIG = """
apis: [inspect, models, inference, safety, vector_io]
providers:
  inference:
    - {provider_id: up, provider_type: vllm, config: {url: "http://127.0.0.1:9/v1"}}
  safety:
    - {provider_id: rules, provider_type: rules}
shields:
  - {shield_id: pii, provider_id: rules, params: PARAMS}
models:
  - {model_id: m, provider_id: up}
storage:
  records: {type: sqlite, path: "HOME/r.db"}
  objects: {type: local, root: "HOME/o"}
  vectors: {uri: "HOME/v"}
"""


def _config(tmp_path: Path, params: str = "{}"):
    path = tmp_path / "run.yaml"
    path.write_text(CONFIG.replace("HOME", str(tmp_path)).replace("PARAMS", params))
    return load_config(path, env={})


def test_a_bad_configured_shield_still_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"shields\[0\]\.params\.pii: unknown PII"):
        Stack(_config(tmp_path, '{pii: ["no_such_kind"]}'))


def test_services_are_built_on_first_use_and_hooks_resolve_late(tmp_path: Path) -> None:
    stack = Stack(_config(tmp_path))
    assert not any(stack.built(s) for s in ("models", "inference", "vector_stores", "safety"))

    async def run() -> None:
        models = stack.models
        assert stack.built("models") and not stack.built("vector_stores")
        # Deleting a model asks the vector stores whether one uses it: built only then.
        assert await models.used_by("m") == []
        assert stack.built("vector_stores")
        assert stack.vector_stores is stack.vector_stores  # built once
        await stack.close()

    asyncio.run(run())


def test_create_app_builds_only_the_services_of_its_apis(tmp_path: Path) -> None:
    assert set(SERVICES) == set(ROUTERS)
    for names in SERVICES.values():
        assert all(hasattr(Stack, name) for name in names), names
    stack = create_app(_config(tmp_path), apis=["inspect", "models"]).state.stack
    assert all(stack.built(s) for s in ("keys", "limiter", "inspect", "models"))
    assert not any(
        stack.built(s) for s in ("inference", "vector_stores", "responses", "batches", "eval")
    )
    full = create_app(_config(tmp_path), apis=["inference"]).state.stack
    assert all(full.built(s) for s in ("inference", "chat_store", "safety", "models"))
