"""A resource registry: resources from the run config (global, read-only) plus resources
registered at run time (per tenant, in Records). Models and shields use it; so will vector
stores."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from llamda.errors import BadRequestError, ConflictError, NotFoundError
from llamda.storage.records import Records

log = logging.getLogger(__name__)


class Registry[R: BaseModel]:
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

    def _answer(self, record: dict[str, Any]) -> R:
        """The API object of a stored record, checked to serialize: what a response will send.
        Raises ValueError (pydantic's errors are ValueErrors) when it cannot be answered."""
        built = self._build(record, "registered")
        built.model_dump_json()
        return built

    async def list(self) -> list[R]:
        """Every resource; a stored record that cannot be answered (written before its fields
        were bounded) is left out and logged, so one bad record never fails the listing."""
        registered = []
        for record in await self._records.list(self._kind):
            try:
                registered.append(self._answer(record))
            except (ValueError, KeyError, TypeError, PydanticSerializationError):
                log.warning("%s record %r is unreadable; skipped", self._noun, _key_of(record))
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
        try:
            return self._answer(record)
        except (ValueError, KeyError, TypeError, PydanticSerializationError):
            raise ConflictError(
                f"The {self._noun} '{key}' was stored in a form this server cannot return; "
                "delete it and register it again",
                param=self._param,
                code=f"{self._noun}_unreadable",
            ) from None

    async def exists(self, key: str) -> bool:
        try:
            await self.get(key)
        except NotFoundError:
            return False
        except ConflictError:
            return True  # stored, though in a form this server cannot return
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
        """Store a new resource. Its response is built and serialized first: a record that
        cannot be answered is refused (400), never saved."""
        self.refuse_static(key, param)
        try:
            built = self._answer(record)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or param
            raise BadRequestError(f"{where}: {first['msg']}", param=where) from None
        except (ValueError, PydanticSerializationError) as exc:
            raise BadRequestError(
                f"the {self._noun} cannot be represented as JSON: {exc}", param=param
            ) from None
        try:
            await self._records.put(self._kind, key, record, if_absent=True)
        except ConflictError:
            raise ConflictError(
                f"{self._noun} '{key}' is already registered",
                param=param,
                code=f"{self._noun}_exists",
            ) from None
        return built

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


def _key_of(record: dict[str, Any]) -> Any:
    return next((v for k, v in record.items() if k.endswith("_id")), None)
