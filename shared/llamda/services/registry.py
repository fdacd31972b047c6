"""A resource registry: resources from the run config (global, read-only), resources an admin
registered for every tenant (``shared``, in the stack-wide partition of Records), and resources
a tenant registered for itself (in the tenant's partition). Models and shields use it.

Lookup order for a key: run config, then shared, then the caller's tenant. A tenant cannot
register over a run-config or shared key (409); a member cannot register or delete a shared one
(403: the role, not the data, is the problem). With auth off there is one caller: it may.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from llamda.context import current_principal, system_scope
from llamda.errors import BadRequestError, ConflictError, NotFoundError, PermissionDeniedError
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

    def static(self) -> list[R]:
        return list(self._static.values())

    def _answer(self, record: dict[str, Any]) -> R:
        """The API object of a stored record, checked to serialize: what a response will send.
        Raises ValueError (pydantic's errors are ValueErrors) when it cannot be answered."""
        built = self._build(record, "registered")
        built.model_dump_json()
        return built

    async def _readable(self, records: list[dict[str, Any]]) -> dict[Any, R]:
        out: dict[Any, R] = {}
        for record in records:
            try:
                out[_key_of(record)] = self._answer(record)
            except (ValueError, KeyError, TypeError, PydanticSerializationError):
                log.warning("%s record %r is unreadable; skipped", self._noun, _key_of(record))
        return out

    async def list(self) -> list[R]:
        """Every resource the caller may see; a stored record that cannot be answered (written
        before its fields were bounded) is left out and logged, so one bad record never fails
        the listing."""
        with system_scope():
            shared = await self._records.list(self._kind)
        own = await self._readable(await self._records.list(self._kind))
        visible = {**own, **(await self._readable(shared))}  # shared wins, as in get()
        return [*self._static.values(), *visible.values()]

    async def _record(self, key: str) -> tuple[dict[str, Any] | None, bool]:
        """The shared record for ``key``, else the caller's own; and whether it is shared.
        Shared first: a tenant's private record (say, registered before the admin shared the
        same id) can never shadow what an admin shared, e.g. a shield a shared model names."""
        with system_scope():
            shared = await self._records.get(self._kind, key)
        if shared is not None:
            return shared, True
        return await self._records.get(self._kind, key), False

    async def get(self, key: str) -> R:
        if key in self._static:
            return self._static[key]
        record, _ = await self._record(key)
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

    async def is_shared(self, key: str) -> bool:
        """Whether ``key`` names a resource an admin shared with every tenant."""
        if key in self._static:
            return False
        _, shared = await self._record(key)
        return shared

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

    def _require_admin(self, verb: str) -> None:
        principal = current_principal()
        if principal is not None and not principal.is_admin:
            raise PermissionDeniedError(
                f"{verb} a shared {self._noun} needs the admin role; without `shared` the "
                f"{self._noun} is your tenant's own",
                code="admin_required",
            )

    async def add(self, key: str, record: dict[str, Any], param: str, *, shared: bool = False) -> R:
        """Store a new resource (for every tenant when ``shared``). Its response is built and
        serialized first: a record that cannot be answered is refused (400), never saved."""
        self.refuse_static(key, param)
        if shared:
            self._require_admin("registering")
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
        with system_scope():
            taken_by_shared = await self._records.get(self._kind, key) is not None
        if taken_by_shared or (shared and await self._records.get(self._kind, key) is not None):
            raise ConflictError(
                f"{self._noun} '{key}' is already registered",
                param=param,
                code=f"{self._noun}_exists",
            )
        try:
            if shared:
                with system_scope():
                    await self._records.put(self._kind, key, record, if_absent=True)
            else:
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
        _, shared = await self._record(key)  # what get() answers is what is deleted
        if shared:
            self._require_admin("deleting")
            with system_scope():
                if await self._records.delete(self._kind, key):
                    return
        elif await self._records.delete(self._kind, key):
            return
        raise NotFoundError(
            f"The {self._noun} '{key}' does not exist",
            param=self._param,
            code=f"{self._noun}_not_found",
        )


def _key_of(record: dict[str, Any]) -> Any:
    return next((v for k, v in record.items() if k.endswith("_id")), None)
