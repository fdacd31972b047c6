"""Vector stores themselves: create, read, list, update, delete; run-config stores; expiry."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from llamda.api.vector_stores import (
    CreateVectorStoreRequest,
    ListResponse,
    UpdateVectorStoreRequest,
    VectorStoreObject,
)
from llamda.config import RunConfig
from llamda.context import SYSTEM_TENANT, current_tenant, system_scope, tenant_scope
from llamda.errors import BadRequestError, ConflictError, NotFoundError
from llamda.providers.vector_io.index import VectorIndex
from llamda.services.embeddings import passes_dimensions
from llamda.services.models import ModelsService
from llamda.services.vector_stores.common import (
    DAY,
    STORES,
    all_records,
    batches_kind,
    files_kind,
    list_response,
    new_id,
    new_store_record,
    tally,
)
from llamda.services.vector_stores.embedding import Embedder
from llamda.services.vector_stores.indexes import Indexes
from llamda.storage.records import Records, list_page, save


def missing(store_id: str) -> NotFoundError:
    return NotFoundError(
        f"No vector store found with id {store_id!r}",
        param="vector_store_id",
        code="vector_store_not_found",
    )


class Stores:
    def __init__(
        self,
        config: RunConfig,
        records: Records,
        models: ModelsService,
        embedder: Embedder,
        indexes: Indexes,
    ):
        self._config = config.storage.vectors
        self._run_config = config
        self._records = records
        self._models = models
        self._embedder = embedder
        self.indexes = indexes

    async def create(self, request: CreateVectorStoreRequest) -> dict[str, Any]:
        """The new store's record (its files, if any, are the caller's to ingest)."""
        provider_id = self.indexes.choose(request.provider_id)  # 400 before anything is written
        model_id = request.embedding_model or await self._default_embedding_model()
        model = await self._models.get(model_id)
        if model.model_type != "embedding":
            raise BadRequestError(
                f"{model_id!r} is not an embedding model", param="embedding_model"
            )
        if request.embedding_dimension:
            # Checked now, not at the first file: the model must be able to produce it.
            passes_dimensions(model, request.embedding_dimension, param="embedding_dimension")
        dimension = request.embedding_dimension or model.metadata.get("embedding_dimension")
        if not isinstance(dimension, int) or dimension <= 0:
            dimension = len((await self._embedder.embed(model_id, None, ["dimension probe"]))[0])
        record = new_store_record(
            new_id("vs_"),
            request.name,
            model_id,
            dimension,
            metadata=request.metadata,
            expires_after=request.expires_after.model_dump() if request.expires_after else None,
            request_dimensions=request.embedding_dimension,
            provider_id=provider_id,
        )
        await self.indexes.get(provider_id).create(record["id"], dimension)
        # A stack-wide note of the use first, so a shared model is never deleted under a store
        # of a tenant its admin cannot list (see ``any_tenant_uses``).
        key = _use_key(model_id, current_tenant(), record["id"])
        with system_scope():
            await self._records.put(MODEL_USES, key, {"id": key})
        await self._records.put(STORES, record["id"], record, if_absent=True)
        await self._note_expiry(record)
        return record

    async def _default_embedding_model(self) -> str:
        if self._config.default_embedding_model:
            return self._config.default_embedding_model
        for model in await self._models.list():
            if model.model_type == "embedding":
                return model.id
        raise BadRequestError(
            "no embedding model is configured; pass embedding_model", param="embedding_model"
        )

    async def record(self, store_id: str) -> dict[str, Any]:
        """The store's record (404 when unknown)."""
        record = await self._records.get(STORES, store_id)
        if record is None:
            record = await self._declared(store_id)
        if record is None:
            raise missing(store_id)
        return record

    async def check_exists(self, store_id: str) -> None:
        """404 when the store's record is gone (a run-config store is not re-created here)."""
        if not await self.exists(store_id):
            raise missing(store_id)

    async def _declared(self, store_id: str) -> dict[str, Any] | None:
        """A store declared in the run config (``vector_stores:``) exists from its first use."""
        for resource in self._run_config.vector_stores:
            if resource.vector_store_id == store_id:
                record = new_store_record(
                    store_id,
                    resource.name or store_id,
                    resource.embedding_model,
                    resource.embedding_dimension,
                    provider_id=resource.provider_id,
                )
                await self.indexes.of(record).create(store_id, resource.embedding_dimension)
                with contextlib.suppress(ConflictError):  # another request made it first
                    await self._records.put(STORES, store_id, record, if_absent=True)
                return await self._records.get(STORES, store_id)
        return None

    @staticmethod
    def expires_at(record: dict[str, Any]) -> int | None:
        if not record.get("expires_after"):
            return None
        return record["last_active_at"] + record["expires_after"]["days"] * DAY

    async def get(self, store_id: str) -> VectorStoreObject:
        record = await self.record(store_id)
        files = await all_records(self._records, files_kind(store_id))
        counts = tally([f["status"] for f in files])
        expires_at = self.expires_at(record)
        return VectorStoreObject(
            **{k: v for k, v in record.items() if k in VectorStoreObject.model_fields},
            usage_bytes=sum(f.get("usage_bytes", 0) for f in files),
            file_counts=counts,
            expires_at=expires_at,
            status="in_progress"
            if counts.in_progress
            else ("expired" if expires_at and expires_at < time.time() else "completed"),
        )

    async def list(
        self, *, limit: int, after: str | None, order: str
    ) -> ListResponse[VectorStoreObject]:
        page, has_more = await list_page(
            self._records, STORES, limit=limit, after=after, descending=order == "desc"
        )
        data = [await self.get(r["id"]) for r in page]
        return list_response(data, has_more)

    async def update(self, store_id: str, request: UpdateVectorStoreRequest) -> VectorStoreObject:
        fields = request.model_dump(exclude_unset=True)
        if "metadata" in fields and fields["metadata"] is None:
            fields["metadata"] = {}  # null clears, as an empty object does
        for _ in range(5):  # a concurrent writer changed it: apply ours to the newer record
            record = await self.record(store_id)  # 404 once deleted
            record.update(fields)
            record["last_active_at"] = int(time.time())
            if await save(self._records, STORES, store_id, record):
                await self._note_expiry(record)
                return await self.get(store_id)
        raise ConflictError("the vector store is being changed concurrently; retry")

    async def delete(self, store_id: str) -> None:
        record = await self.record(store_id)
        # The record first: once gone, the store is gone for readers; then its rows and files.
        await self._records.delete(STORES, store_id)
        if record.get("embedding_model"):
            key = _use_key(record["embedding_model"], current_tenant(), store_id)
            with system_scope():
                await self._records.delete(MODEL_USES, key)
        await self.indexes.of(record).drop(store_id)
        for kind in (files_kind(store_id), batches_kind(store_id)):
            for item in await all_records(self._records, kind):
                await self._records.delete(kind, item["id"])

    async def touch(self, record: dict[str, Any]) -> None:
        """Mark the store active (at most once a minute: expiry counts from here). Conditional:
        a stale copy never overwrites a newer record, nor brings back a deleted store."""
        now = int(time.time())
        if now - record.get("last_active_at", 0) >= 60:
            record["last_active_at"] = now
            await save(self._records, STORES, record["id"], record)

    async def exists(self, store_id: str) -> bool:
        """Whether the store's record is still there (no side effects, unlike ``record``)."""
        return await self._records.get(STORES, store_id) is not None

    def index(self, store: dict[str, Any]) -> VectorIndex:
        """The backend holding a store (its record names the provider)."""
        return self.indexes.of(store)

    async def still_there(self, store: dict[str, Any]) -> bool:
        """After a write to the store's table: False when the store was deleted meanwhile, in
        which case its table is dropped (again), so a write racing the delete leaves nothing."""
        store_id = store["id"]
        if await self.exists(store_id):
            return True
        await self.indexes.of(store).drop(store_id)
        return False

    async def any_tenant_uses(self, model_id: str) -> bool:
        """Whether a store of any tenant embeds with ``model_id`` (for shared models, which
        every tenant's stores may use): one read of the stack-wide notes."""
        prefix = f"{model_id}|"
        with system_scope():
            found = await self._records.list(MODEL_USES, after=prefix, limit=1)
        return bool(found) and str(found[0].get("id", "")).startswith(prefix)

    async def using_model(self, model_id: str) -> list[str]:
        """Ids of the caller's stores that embed with ``model_id`` (Records are per tenant)."""
        stores = await all_records(self._records, STORES)
        return [r["id"] for r in stores if r.get("embedding_model") == model_id]

    async def searchable(self, store_id: str) -> dict[str, Any]:
        """The store's record for a search: 400 once expired; a search keeps it active."""
        store = await self.record(store_id)
        expires_at = self.expires_at(store)
        if expires_at is not None and expires_at < time.time():
            raise BadRequestError(f"vector store {store_id!r} has expired", code="expired")
        await self.touch(store)
        return store

    async def _note_expiry(self, record: dict[str, Any]) -> None:
        """A store that can expire is noted for the maintenance step (a system-tenant marker,
        so the scheduled function finds the stores of every tenant without listing them)."""
        if record.get("expires_after"):
            tenant = current_tenant()
            marker = {"id": f"{tenant}/{record['id']}", "tenant": tenant, "store_id": record["id"]}
            with tenant_scope(SYSTEM_TENANT):
                await self._records.put(EXPIRING, marker["id"], marker)

    async def reap_expired(self, now: float) -> int:
        """Delete every store whose expiry has passed at ``now`` (with its files' records and
        chunks; the Files stay); markers of deleted or no-longer-expiring stores are cleared.
        The number of stores deleted."""
        with tenant_scope(SYSTEM_TENANT):
            markers = await all_records(self._records, EXPIRING)
        reaped = 0
        for marker in markers:
            with tenant_scope(marker["tenant"]):
                record = await self._records.get(STORES, marker["store_id"])
                expires_at = self.expires_at(record) if record else None
                if expires_at is not None and expires_at >= now:
                    continue  # still live: its marker stays
                if expires_at is not None:
                    await self.delete(marker["store_id"])
                    reaped += 1
            with tenant_scope(SYSTEM_TENANT):
                await self._records.delete(EXPIRING, marker["id"])
        return reaped


MODEL_USES = "model_uses"  # stack-wide: "<model>|<tenant>|<store>" while that store exists
EXPIRING = "vector_expiry"  # system tenant: "<tenant>/<store>" for stores with expires_after


def _use_key(model_id: str, tenant: str, store_id: str) -> str:
    return f"{model_id}|{tenant}|{store_id}"
