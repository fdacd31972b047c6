"""The shields registry: shields from the run config plus shields registered at run time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llamda.api.safety import RegisterShieldRequest, Shield
from llamda.config import RunConfig
from llamda.errors import BadRequestError, ConfigError
from llamda.services.registry import Registry
from llamda.storage.records import Records

KIND = "shields"


def _shield(record: dict[str, Any], source: str) -> Shield:
    return Shield(
        identifier=record["shield_id"],
        provider_id=record["provider_id"],
        provider_resource_id=record.get("provider_shield_id") or record["shield_id"],
        params=record.get("params") or {},
        source=source,  # type: ignore[arg-type]
    )


def check_shield_params(config: RunConfig, provider_id: str, params: dict[str, Any]) -> None:
    """A shield's params checked (and its rules compiled) before the shield exists:
    BadRequestError naming the param otherwise."""
    found = config.provider(provider_id)
    if found is None or found[1].provider_type != "inline::rules":
        return
    from llamda.providers.safety.config import shield_rules

    try:
        shield_rules(found[1].settings, params)
    except ValueError as exc:
        raise BadRequestError(str(exc), param=str(exc).split(":", 1)[0]) from None


def check_configured_shields(config: RunConfig) -> None:
    """The run config's shields checked at start: ConfigError naming the bad one."""
    for index, shield in enumerate(config.shields):
        try:
            check_shield_params(config, shield.provider_id, shield.params)
        except BadRequestError as exc:
            raise ConfigError(f"{config.source}: shields[{index}].{exc.message}") from None


class ShieldsService:
    def __init__(self, config: RunConfig, records: Records):
        self._config = config
        self._registry = Registry(
            records,
            kind=KIND,
            noun="shield",
            param="shield_id",
            build=_shield,
            static=((s.shield_id, s.model_dump()) for s in config.shields),
        )
        # Set by the stack: checks a new shield's params with its provider (400 if invalid).
        self.validate: Callable[[str, dict[str, Any]], None] | None = None

    async def list(self) -> list[Shield]:
        return await self._registry.list()

    async def get(self, shield_id: str) -> Shield:
        return await self._registry.get(shield_id)

    async def exists(self, shield_id: str) -> bool:
        return await self._registry.exists(shield_id)

    async def register(self, request: RegisterShieldRequest) -> Shield:
        self._registry.refuse_static(request.shield_id, "shield_id")
        configured = self._config.provider_ids("safety")
        provider_id = request.provider_id
        if provider_id is None and len(configured) == 1:
            provider_id = configured[0]
        if provider_id not in configured:
            raise BadRequestError(
                "provider_id must be a configured safety provider "
                f"(configured: {', '.join(configured) or 'none'})",
                param="provider_id",
            )
        if self.validate is not None:
            self.validate(provider_id, request.params or {})
        record = {
            "shield_id": request.shield_id,
            "provider_id": provider_id,
            "provider_shield_id": request.provider_shield_id or request.shield_id,
            "params": request.params or {},
        }
        return await self._registry.add(
            request.shield_id, record, "shield_id", shared=request.shared
        )

    async def unregister(self, shield_id: str) -> None:
        await self._registry.remove(shield_id)
