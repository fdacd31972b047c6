"""The shields registry: shields from the run config plus shields registered at run time."""

from __future__ import annotations

from typing import Any

from llamda.api.safety import RegisterShieldRequest, Shield
from llamda.config import RunConfig
from llamda.errors import BadRequestError, ConflictError, NotFoundError
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


class ShieldsService:
    def __init__(self, config: RunConfig, records: Records):
        self._config = config
        self._records = records
        self._static = {s.shield_id: _shield(s.model_dump(), "run_config") for s in config.shields}

    async def list(self) -> list[Shield]:
        return [
            *self._static.values(),
            *(_shield(r, "registered") for r in await self._records.list(KIND)),
        ]

    async def get(self, shield_id: str) -> Shield:
        if shield_id in self._static:
            return self._static[shield_id]
        record = await self._records.get(KIND, shield_id)
        if record is None:
            raise NotFoundError(
                f"The shield '{shield_id}' does not exist",
                param="shield_id",
                code="shield_not_found",
            )
        return _shield(record, "registered")

    async def exists(self, shield_id: str) -> bool:
        try:
            await self.get(shield_id)
        except NotFoundError:
            return False
        return True

    async def register(self, request: RegisterShieldRequest) -> Shield:
        if request.shield_id in self._static:
            raise ConflictError(
                f"shield '{request.shield_id}' is defined in the run config",
                param="shield_id",
                code="shield_exists",
            )
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
        record = {
            "shield_id": request.shield_id,
            "provider_id": provider_id,
            "provider_shield_id": request.provider_shield_id or request.shield_id,
            "params": request.params or {},
        }
        try:
            await self._records.put(KIND, request.shield_id, record, if_absent=True)
        except ConflictError:
            raise ConflictError(
                f"shield '{request.shield_id}' is already registered",
                param="shield_id",
                code="shield_exists",
            ) from None
        return _shield(record, "registered")

    async def unregister(self, shield_id: str) -> None:
        if shield_id in self._static:
            raise ConflictError(
                f"shield '{shield_id}' is defined in the run config; remove it there",
                param="shield_id",
                code="shield_in_run_config",
            )
        if not await self._records.delete(KIND, shield_id):
            raise NotFoundError(
                f"The shield '{shield_id}' does not exist",
                param="shield_id",
                code="shield_not_found",
            )
