"""A resource registry: resources from the run config (global, read-only) plus resources
registered at run time (per tenant, in Records). Models and shields use it; so will vector
stores."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from llamda.errors import ConflictError, NotFoundError
from llamda.storage.records import Records


class Registry[R]:
    def __init__(
        self,
        records: Records,
        *,
        kind: str,
        noun: str,
        param: str,
        build: Callable[[dict[str, Any], str], R],
        static: Iterable[tuple[str, dict[str, Any]]],
    ):
        """``kind``: the Records kind; ``noun``: for messages ("model"); ``param``: the field
        named in errors; ``build(record, source)``: the API object of a record."""
        self._records = records
        self._kind = kind
        self._noun = noun
        self._param = param
        self._build = build
        self._static: dict[str, R] = {key: build(record, "run_config") for key, record in static}

    def is_static(self, key: str) -> bool:
        return key in self._static

    async def list(self) -> list[R]:
        registered = [self._build(r, "registered") for r in await self._records.list(self._kind)]
        return [*self._static.values(), *registered]

    async def get(self, key: str) -> R:
        if key in self._static:
            return self._static[key]
        record = await self._records.get(self._kind, key)
        if record is None:
            raise NotFoundError(
                f"The {self._noun} '{key}' does not exist",
                param=self._param,
                code=f"{self._noun}_not_found",
            )
        return self._build(record, "registered")

    async def exists(self, key: str) -> bool:
        try:
            await self.get(key)
        except NotFoundError:
            return False
        return True

    def refuse_static(self, key: str, param: str) -> None:
        """A run-config resource cannot be registered over."""
        if key in self._static:
            raise ConflictError(
                f"{self._noun} '{key}' is defined in the run config",
                param=param,
                code=f"{self._noun}_exists",
            )

    async def add(self, key: str, record: dict[str, Any], param: str) -> R:
        self.refuse_static(key, param)
        try:
            await self._records.put(self._kind, key, record, if_absent=True)
        except ConflictError:
            raise ConflictError(
                f"{self._noun} '{key}' is already registered",
                param=param,
                code=f"{self._noun}_exists",
            ) from None
        return self._build(record, "registered")

    async def remove(self, key: str) -> None:
        if key in self._static:
            raise ConflictError(
                f"{self._noun} '{key}' is defined in the run config; remove it there",
                param=self._param,
                code=f"{self._noun}_in_run_config",
            )
        if not await self._records.delete(self._kind, key):
            raise NotFoundError(
                f"The {self._noun} '{key}' does not exist",
                param=self._param,
                code=f"{self._noun}_not_found",
            )
