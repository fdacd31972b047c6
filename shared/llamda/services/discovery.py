"""Models the providers themselves name, found once when the server starts.

- ``auto_register: true`` on an OpenAI-compatible provider (Ollama, vLLM, OpenAI...): every
  model of the upstream's ``GET /models`` is served as an llm, as Llama Stack's Ollama provider
  does; refreshed on each start.
- ``embedding_model`` on such a provider (the local profile sets it from
  ``OLLAMA_EMBEDDING_MODEL`` / ``VLLM_EMBEDDING_MODEL``): one probe call to ``/embeddings``
  finds its dimension, and the model is served as an embedding model.
- ``discover_models: true`` on Bedrock: the region's foundation models and inference profiles
  matching ``discover_pattern`` (ListFoundationModels / ListInferenceProfiles), Llama first.
  Their list is kept in Records (stack-wide) for ``discover_cache_seconds``: a Lambda cold
  start reads one record instead of calling the control plane.

Runs once per process: the local server does it at start; elsewhere (Lambda, where the
lifespan is off) the first models lookup does.

Bounded: each provider gets ``DISCOVERY_SECONDS`` in all, the providers are asked concurrently,
and at most ``MAX_DISCOVERED`` models are taken from one upstream. A provider that fails or
does not answer in time is one warning log line; its models are left out, the server starts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from llamda.api.bounds import MAX_EMBEDDING_DIMENSION
from llamda.api.inference import EmbeddingsRequest
from llamda.config import RunConfig
from llamda.context import system_scope
from llamda.errors import LlamdaError
from llamda.observability import logger
from llamda.providers.inference.config import BedrockConfig, RemoteOpenAIConfig
from llamda.services.inference import ProviderPool
from llamda.services.models import ModelsService
from llamda.storage.records import Records

DISCOVERY_SECONDS = 5.0
MAX_DISCOVERED = 200
PROBE_TEXT = "dimension probe"
CACHE_KIND = "discovered_models"


class Discovery:
    """Asks the providers once per process (``ensure``); later calls return at once."""

    def __init__(
        self,
        config: RunConfig,
        models: ModelsService,
        pool: ProviderPool,
        records: Records,
        seconds: float = DISCOVERY_SECONDS,
    ):
        self._config = config
        self._models = models
        self._pool = pool
        self._records = records
        self._seconds = seconds
        self._lock = asyncio.Lock()
        self.done = not any(_wanted(entry.settings) for entry in _inference(config))

    async def ensure(self) -> None:
        if self.done:
            return
        async with self._lock:
            if not self.done:
                await discover_models(
                    self._config, self._models, self._pool, self._records, self._seconds
                )
                self.done = True


def _inference(config: RunConfig) -> list[Any]:
    return list(config.providers.get("inference", []))


def _wanted(settings: Any) -> bool:
    if isinstance(settings, RemoteOpenAIConfig):
        return settings.auto_register or bool(settings.embedding_model)
    return isinstance(settings, BedrockConfig) and settings.discover_models


async def discover_models(
    config: RunConfig,
    models: ModelsService,
    pool: ProviderPool,
    records: Records,
    seconds: float = DISCOVERY_SECONDS,
) -> list[str]:
    """Ask every provider that is set to; the ids of the models added."""
    jobs = [
        _discover_one(entry.provider_id, entry.settings, models, pool, records, seconds)
        for entry in _inference(config)
        if _wanted(entry.settings)
    ]
    added: list[str] = []
    for got in await asyncio.gather(*jobs):
        added.extend(got)
    return added


async def _discover_one(
    provider_id: str,
    settings: RemoteOpenAIConfig | BedrockConfig,
    models: ModelsService,
    pool: ProviderPool,
    records: Records,
    seconds: float,
) -> list[str]:
    """Each step (the embedding probe, the model list) runs concurrently and fails on its
    own: a probe that fails or hangs does not cost the listed models, nor the reverse."""
    try:
        provider: Any = pool.get(provider_id)
    except LlamdaError as exc:
        logger.warning(f"model discovery: {exc.message}", provider=provider_id)
        return []
    steps: list[tuple[str, Callable[[], Awaitable[list[str]]]]] = []
    if isinstance(settings, BedrockConfig):
        steps.append(
            (
                "its models",
                lambda: _bedrock_models(provider, provider_id, settings, models, records),
            )
        )
    else:
        if settings.embedding_model:
            steps.append(
                (
                    f"embedding model {settings.embedding_model!r}",
                    lambda: _probe_embedding(provider, provider_id, settings, models),
                )
            )
        if settings.auto_register:
            steps.append(
                ("its models", lambda: _listed_models(provider, provider_id, settings, models))
            )

    async def run(what: str, step: Callable[[], Awaitable[list[str]]]) -> list[str]:
        try:
            async with asyncio.timeout(seconds):
                return await step()
        except TimeoutError:
            logger.warning(
                f"model discovery: {provider_id} did not answer within {seconds:g} s; "
                f"{what} left out",
                provider=provider_id,
            )
        except LlamdaError as exc:
            # Our errors name the provider's URL with its credentials masked.
            logger.warning(
                f"model discovery failed: {exc.message}; {what} left out", provider=provider_id
            )
        except Exception as exc:
            # An answer of the wrong shape: named by type only (its text may quote the reply).
            logger.warning(
                f"model discovery failed for {provider_id}: {type(exc).__name__}; {what} left out",
                provider=provider_id,
            )
        return []

    added = [m for got in await asyncio.gather(*(run(w, s) for w, s in steps)) for m in got]
    if added:
        logger.info("models discovered", provider=provider_id, models=added)
    return added


def _add_llms(
    ids: list[str], provider_id: str, models: ModelsService, skip: str | None
) -> list[str]:
    """The first MAX_DISCOVERED ids as llm models of the provider (``skip``: an id already
    served as its embedding model)."""
    added = []
    for model_id in ids[:MAX_DISCOVERED]:
        if model_id == skip:
            continue
        record = {"model_id": model_id, "provider_id": provider_id, "model_type": "llm"}
        if models.add_discovered(record) is not None:
            added.append(model_id)
    if len(ids) > MAX_DISCOVERED:
        logger.warning(
            "provider lists more models than are registered",
            provider=provider_id,
            listed=len(ids),
            registered=MAX_DISCOVERED,
        )
    return added


async def _listed_models(
    provider: Any, provider_id: str, settings: RemoteOpenAIConfig, models: ModelsService
) -> list[str]:
    return _add_llms(await provider.list_models(), provider_id, models, settings.embedding_model)


async def _bedrock_models(
    provider: Any,
    provider_id: str,
    settings: BedrockConfig,
    models: ModelsService,
    records: Records,
) -> list[str]:
    ids = await _cached_ids(provider, provider_id, settings, records)
    return _add_llms(ids, provider_id, models, None)


async def _probe_embedding(
    provider: Any, provider_id: str, settings: RemoteOpenAIConfig, models: ModelsService
) -> list[str]:
    """One embeddings call: the vector's length is the model's dimension."""
    model_id = settings.embedding_model
    assert model_id is not None
    reply = await provider.embeddings(
        EmbeddingsRequest(model=model_id, input=[PROBE_TEXT]),
        settings.model_map.get(model_id, model_id),
    )
    vector = reply.data[0].embedding if reply.data else None
    dimension = len(vector) if isinstance(vector, list) else 0
    if not 1 <= dimension <= MAX_EMBEDDING_DIMENSION:
        logger.warning(
            f"model discovery: the probe of embedding model {model_id!r} returned a vector of "
            f"{dimension} values; left out",
            provider=provider_id,
        )
        return []
    record = {
        "model_id": model_id,
        "provider_id": provider_id,
        "model_type": "embedding",
        "metadata": {"embedding_dimension": dimension},
    }
    return [model_id] if models.add_discovered(record) is not None else []


async def _cached_ids(
    provider: Any, provider_id: str, settings: BedrockConfig, records: Records
) -> list[str]:
    """Bedrock's list from Records while it is fresh (same region and pattern), else asked
    and kept for ``discover_cache_seconds``."""
    scope = {"region": settings.region_name, "pattern": settings.discover_pattern}
    with system_scope():
        cached = await records.get(CACHE_KIND, provider_id)
    now = int(time.time())
    if (
        cached is not None
        and cached.get("scope") == scope
        and now - int(cached.get("fetched_at", 0)) < settings.discover_cache_seconds
        and isinstance(cached.get("ids"), list)
    ):
        return [i for i in cached["ids"] if isinstance(i, str)]
    ids = list(await provider.list_models())
    with system_scope():
        await records.put(
            CACHE_KIND,
            provider_id,
            {"provider_id": provider_id, "scope": scope, "ids": ids, "fetched_at": now},
            expires_at=now + settings.discover_cache_seconds,
        )
    return ids
