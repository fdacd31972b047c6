"""The maintenance step: slow upkeep that no request waits for: delete the stores whose
``expires_after`` has passed; build a store's ANN index once it is large enough, and
``optimize`` (fold new rows into the indexes) later.

Writes note their store (``note``, in memory and as a marker record of the system tenant, so
another process — the scheduled function — finds it too); ``run`` walks the noted stores of
every tenant. It runs after each ingest batch (the ingest function), on a schedule (the
maintenance function) and, locally, as a background task of the server. Until an index exists
searches scan the table (flat): correct, only slower.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from llamda.context import SYSTEM_TENANT, current_tenant, tenant_scope
from llamda.services.vector_stores.common import STORES, all_records
from llamda.services.vector_stores.stores import Stores
from llamda.storage.records import Records

log = logging.getLogger(__name__)

UPKEEP = "vector_upkeep"  # system-tenant markers: key "<tenant>/<store id>"
NOTE_SECONDS = 60.0


class Maintenance:
    def __init__(
        self,
        records: Records,
        stores: Stores,
        clock: Callable[[], float] = time.time,
    ):
        self._records = records
        self._stores = stores
        self._clock = clock  # wall time: expiry is counted in it
        # Markers this process wrote lately (monotonic time): another process's run may have
        # cleared one since, so a marker is written again once NOTE_SECONDS have passed.
        self._noted: dict[tuple[str, str], float] = {}

    async def note(self, store_id: str) -> None:
        """The store was written to: it may need upkeep (a marker write per store at most
        every ``NOTE_SECONDS`` in this process)."""
        tenant = current_tenant()
        noted = self._noted.get((tenant, store_id))
        if noted is not None and time.monotonic() - noted < NOTE_SECONDS:
            return
        marker = {"id": f"{tenant}/{store_id}", "tenant": tenant, "store_id": store_id}
        with tenant_scope(SYSTEM_TENANT):
            await self._records.put(UPKEEP, marker["id"], marker)
        self._noted[(tenant, store_id)] = time.monotonic()

    async def run(self) -> int:
        """Upkeep of every noted store (then its marker is cleared); the number of stores seen.
        One store's failure is logged and leaves its marker for the next run. Expired stores
        are deleted first (no upkeep is spent on them)."""
        try:
            reaped = await self._stores.reap_expired(self._clock())
            if reaped:
                log.info("deleted %d expired vector stores", reaped)
        except Exception:  # the index upkeep still runs; the next run retries
            log.warning("reaping expired vector stores failed", exc_info=True)
        with tenant_scope(SYSTEM_TENANT):
            markers = await all_records(self._records, UPKEEP)
        done = 0
        for marker in markers:
            tenant, store_id = marker["tenant"], marker["store_id"]
            # Cleared first: a write during the upkeep notes the store again.
            self._noted.pop((tenant, store_id), None)
            with tenant_scope(SYSTEM_TENANT):
                await self._records.delete(UPKEEP, marker["id"])
            try:
                with tenant_scope(tenant):
                    store = await self._records.get(STORES, store_id)
                    if store is not None:
                        await self._stores.index(store).maintain(store_id)
                done += 1
            except BaseException as exc:  # also cancelled (out of time): the next run does it
                if not isinstance(exc, asyncio.CancelledError):
                    log.warning("maintenance of %s/%s failed", tenant, store_id, exc_info=True)
                with tenant_scope(tenant):
                    await self.note(store_id)
                if not isinstance(exc, Exception):
                    raise
        return done
