"""The models registry: models from the run config plus models registered at run time."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from llamda.api.bounds import MAX_EMBEDDING_DIMENSION
from llamda.api.models import Model, RegisterModelRequest
from llamda.config import _ID_PATTERN, ModelResource, RunConfig
from llamda.errors import BadRequestError, ConflictError, NotFoundError
from llamda.services.embeddings import check_declaration
from llamda.services.registry import Registry
from llamda.storage.records import Records

KIND = "models"
_VALID_ID = re.compile(_ID_PATTERN)


def _model(record: dict[str, Any], source: str) -> Model:
    provider_resource_id = record.get("provider_model_id") or record["model_id"]
    return Model(
        id=record["model_id"],
        created=record["created"],
        owned_by=record["provider_id"],
        identifier=record["model_id"],
        provider_id=record["provider_id"],
        provider_resource_id=provider_resource_id,
        model_type=record["model_type"],
        metadata=record.get("metadata") or {},
        fallbacks=record.get("fallbacks") or [],
        context_window_fallbacks=record.get("context_window_fallbacks") or [],
        content_policy_fallbacks=record.get("content_policy_fallbacks") or [],
        input_shields=record.get("input_shields") or [],
        output_shields=record.get("output_shields") or [],
        custom_metadata={
            **(record.get("metadata") or {}),
            "model_type": record["model_type"],
            "provider_id": record["provider_id"],
            "provider_resource_id": provider_resource_id,
        },
        source=source,  # type: ignore[arg-type]
    )


class ModelsService:
    """Config models are global and read-only; registered ones live in the tenant's Records."""

    def __init__(
        self,
        config: RunConfig,
        records: Records,
        started_at: int | None = None,
        shield_exists: Callable[[str], Awaitable[bool]] | None = None,
        used_by: Callable[[str], Awaitable[list[str]]] | None = None,
    ):
        self._config = config
        self.shield_exists = shield_exists
        # The caller's vector stores that embed with a model (wired by the stack).
        self.used_by = used_by
        # Whether any tenant's store embeds with a shared model (set by the stack).
        self.shared_in_use: Callable[[str], Awaitable[bool]] | None = None
        created = started_at or int(time.time())
        # Models the providers listed or probed at start (services/discovery.py): global,
        # read-only, in memory, refreshed on each start.
        self._discovered: dict[str, Model] = {}
        # Runs the discovery once per process before the first lookup (wired by the stack).
        self.discover: Callable[[], Awaitable[None]] | None = None
        self._registry = Registry(
            records,
            kind=KIND,
            noun="model",
            param="model",
            build=_model,
            static=((m.model_id, _record(m, created)) for m in config.models),
        )

    async def list(self) -> list[Model]:
        """The models this server can call. A registered model whose provider is off here (not
        in the run config, or a ``default_only`` provider left out) is not listed: a client
        that picks a model from the list never meets a surprise at call time."""
        if self.discover is not None:
            await self.discover()
        served = set(self._config.provider_ids("inference"))
        listed = await self._registry.list()
        static = [m for m in listed if m.source == "run_config"]
        known = {m.id for m in listed}
        discovered = [m for m in self._discovered.values() if m.id not in known]
        rest = [m for m in listed if m.source != "run_config"]
        return [m for m in [*static, *discovered, *rest] if m.provider_id in served]

    def add_discovered(self, record: dict[str, Any]) -> Model | None:
        """A model a provider listed or probed at start (a run-config record's fields); a
        run-config model of the same id wins (None)."""
        if self._registry.is_static(record["model_id"]) or not _VALID_ID.match(record["model_id"]):
            return None  # an upstream's id we could not serve (shape, length) is left out
        if record["model_id"] in self._discovered:
            return None  # two providers list the same id: the first one found serves it
        model = _model({"created": int(time.time()), **record}, "discovered")
        self._discovered[model.id] = model
        return model

    def static(self) -> list[Model]:
        """The run config's models (no I/O)."""
        return self._registry.static()

    async def get(self, model_id: str) -> Model:
        """A model this server can call; a registered one whose provider is off is a 404
        that says so (it can still be unregistered)."""
        if self.discover is not None and not self._registry.is_static(model_id):
            await self.discover()
        found = self._discovered.get(model_id)
        if found is not None and not self._registry.is_static(model_id):
            return found
        model = await self._registry.get(model_id)
        if model.provider_id not in self._config.provider_ids("inference"):
            raise NotFoundError(
                f"model '{model_id}' is registered on provider '{model.provider_id}', which "
                "this server does not run (it is not in the run config); it is unavailable "
                "until that provider is configured",
                param="model",
                code="model_unavailable",
            )
        return model

    async def register(self, request: RegisterModelRequest) -> Model:
        self._registry.refuse_static(request.model_id, "model_id")
        if request.model_id in self._discovered:
            raise ConflictError(
                f"model '{request.model_id}' is served by provider "
                f"'{self._discovered[request.model_id].provider_id}' (discovered at start)",
                param="model_id",
                code="model_exists",
            )
        provider_id = self._provider_for(request.provider_id)
        if request.model_type == "embedding":
            dimension = request.metadata.get("embedding_dimension")
            if (
                not isinstance(dimension, int)
                or isinstance(dimension, bool)
                or not 1 <= dimension <= MAX_EMBEDDING_DIMENSION
            ):
                raise BadRequestError(
                    "embedding models need metadata.embedding_dimension, an integer from 1 to "
                    f"{MAX_EMBEDDING_DIMENSION}",
                    param="metadata.embedding_dimension",
                )
            check_declaration(request.metadata)
        for field in ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks"):
            for target in getattr(request, field):
                if target == request.model_id:
                    raise BadRequestError("a model cannot fall back to itself", param=field)
                if not await self._registry.exists(target):
                    raise BadRequestError(f"{field}: unknown model {target!r}", param=field)
        for field in ("input_shields", "output_shields"):
            for shield in getattr(request, field):
                if self.shield_exists is None or not await self.shield_exists(shield):
                    raise BadRequestError(f"{field}: unknown shield {shield!r}", param=field)
        record = {
            "model_id": request.model_id,
            "provider_id": provider_id,
            "provider_model_id": request.provider_model_id or request.model_id,
            "model_type": request.model_type,
            "metadata": request.metadata,
            "fallbacks": request.fallbacks,
            "context_window_fallbacks": request.context_window_fallbacks,
            "content_policy_fallbacks": request.content_policy_fallbacks,
            "input_shields": request.input_shields,
            "output_shields": request.output_shields,
            "created": int(time.time()),
        }
        return await self._registry.add(request.model_id, record, "model_id", shared=request.shared)

    async def unregister(self, model_id: str) -> None:
        """Remove a registered model; 409 while a vector store of the caller embeds with it
        (its searches and ingestion would fail)."""
        shared_check = self.shared_in_use
        if (
            shared_check is not None
            and await self._registry.is_shared(model_id)
            and await shared_check(model_id)
        ):
            # Other tenants' stores are not the caller's to see: say so, name none.
            raise ConflictError(
                f"shared model {model_id!r} is the embedding model of vector stores "
                "(of one or more tenants); they must be deleted first",
                param="model_id",
                code="model_in_use",
            )
        if self.used_by is not None and await self._registry.exists(model_id):
            stores = await self.used_by(model_id)
            if stores:
                shown = ", ".join(stores[:10])
                if len(stores) > 10:
                    shown += f" and {len(stores) - 10} more"
                raise ConflictError(
                    f"model {model_id!r} is the embedding model of vector stores {shown}; "
                    "delete them first",
                    param="model_id",
                    code="model_in_use",
                )
        await self._registry.remove(model_id)

    def _provider_for(self, provider_id: str | None) -> str:
        configured = self._config.provider_ids("inference")
        if provider_id is None:
            if len(configured) == 1:
                return configured[0]
            raise BadRequestError(
                "provider_id is required when the stack has "
                f"{'no' if not configured else 'several'} inference providers "
                f"(configured: {', '.join(configured) or 'none'})",
                param="provider_id",
            )
        if provider_id not in configured:
            raise BadRequestError(
                f"provider '{provider_id}' is not a configured inference provider "
                f"(configured: {', '.join(configured) or 'none'})",
                param="provider_id",
                code="provider_not_found",
            )
        return provider_id


def _record(model: ModelResource, created: int) -> dict[str, Any]:
    return {**model.model_dump(), "created": created}
