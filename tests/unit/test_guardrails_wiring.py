"""The inference service cannot be used around its guardrails: without a safety service a
model that names shields is refused (503), never served unguarded; the stack's inference is
the guarded one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from llamda.api.inference import ChatCompletionRequest, CompletionRequest
from llamda.config import load_config
from llamda.errors import GuardrailInterventionError, ServiceUnavailableError
from llamda.services.inference import InferenceService
from llamda.services.models import ModelsService
from llamda.stack import Stack
from llamda.storage.records import build_records

CONFIG = """
apis: [models, inference, safety]
providers:
  inference:
    - {provider_id: up, provider_type: vllm, config: {url: "http://127.0.0.1:9/v1"}}
  safety:
    - {provider_id: rules, provider_type: rules}
shields:
  - {shield_id: pii, provider_id: rules}
models:
  - {model_id: guarded, provider_id: up, input_shields: [pii]}
storage:
  records: {type: sqlite, path: "HOME/r.db"}
  objects: {type: local, root: "HOME/o"}
  vectors: {uri: "HOME/v"}
"""


def test_without_safety_a_shielded_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(CONFIG.replace("HOME", str(tmp_path)))
    config = load_config(path, env={})

    async def run() -> None:
        records = build_records(config.storage.records)
        inference = InferenceService(config, ModelsService(config, records))
        chat = ChatCompletionRequest.model_validate(
            {"model": "guarded", "messages": [{"role": "user", "content": "hi"}]}
        )
        with pytest.raises(ServiceUnavailableError, match="needs shields"):
            await inference.chat(chat)
        with pytest.raises(ServiceUnavailableError, match="needs shields"):
            await inference.completion(CompletionRequest(model="guarded", prompt="hi"))
        await records.close()

    asyncio.run(run())


def test_the_stack_inference_is_the_guarded_one(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(CONFIG.replace("HOME", str(tmp_path)))
    stack = Stack(load_config(path, env={}))

    async def run() -> None:
        card = ChatCompletionRequest.model_validate(
            {
                "model": "guarded",
                "messages": [
                    {"role": "system", "content": "card 4111 1111 1111 1111"},
                    {"role": "user", "content": "hi"},
                ],
            }
        )
        # Blocked before any upstream is tried (the upstream address is unreachable).
        with pytest.raises(GuardrailInterventionError, match="input blocked by shield 'pii'"):
            await stack.inference.chat(card)
        await stack.close()

    asyncio.run(run())
