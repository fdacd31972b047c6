"""API keys: random bearer secrets stored only as hashes, each bound to a tenant, a role and
limits. Keys live in the stack-wide partition of Records (SQLite locally, DynamoDB in AWS).

Layout (all under the system partition): ``api_keys/<key_id>`` the key's public record;
``api_key_hashes/<sha256 of the secret>`` → its key id (how a request finds its key);
``api_key_usage/<key_id>`` the last-used time, written apart so a usage write can never undo a
revocation.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable

from llamda.api.keys import ApiKey, CreateKeyRequest
from llamda.context import system_scope, valid_tenant
from llamda.errors import BadRequestError, NotFoundError
from llamda.storage.records import Records

KEY_PREFIX = "llamda-"
KINDS = ("api_keys", "api_key_hashes", "api_key_usage")
CACHE_SECONDS = 30.0  # a revoked key stops working within this time in every process
USAGE_EVERY_SECONDS = 300.0  # last_used_at is written at most this often per key


def hash_key(secret: str) -> str:
    """The stored form of a key. Keys carry 256 random bits, so a fast hash is enough."""
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


class KeysService:
    def __init__(self, records: Records, clock: Callable[[], float] = time.time):
        self._records = records
        self._clock = clock
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        self._usage_written: dict[str, float] = {}

    async def create(self, request: CreateKeyRequest) -> tuple[ApiKey, str]:
        """A new key and its secret (shown once, never stored)."""
        if not valid_tenant(request.tenant):
            raise BadRequestError(
                "tenant must be 1-64 letters, digits, '_', '.' or '-', starting with a "
                "letter or digit",
                param="tenant",
            )
        secret = KEY_PREFIX + secrets.token_urlsafe(32)  # 256 bits
        key = ApiKey(
            id=f"key_{secrets.token_hex(8)}",
            tenant=request.tenant,
            role=request.role,
            rpm=request.rpm,
            tpm=request.tpm,
            name=request.name,
            created_at=int(self._clock()),
            hint=f"{secret[: len(KEY_PREFIX) + 4]}...{secret[-4:]}",
        )
        digest = hash_key(secret)
        with system_scope():
            await self._records.put(
                "api_keys", key.id, {**key.model_dump(), "hash": digest}, if_absent=True
            )
            await self._records.put("api_key_hashes", digest, {"id": key.id}, if_absent=True)
        return key, secret

    async def list(self, tenant: str | None = None) -> list[ApiKey]:
        out: list[ApiKey] = []
        with system_scope():
            cursor: str | None = None
            while True:
                page = await self._records.list("api_keys", after=cursor, limit=500)
                if not page:
                    break
                cursor = page[-1]["id"]
                for record in page:
                    key = ApiKey.model_validate(record)
                    if tenant is None or key.tenant == tenant:
                        usage = await self._records.get("api_key_usage", key.id)
                        key.last_used_at = (usage or {}).get("at")
                        out.append(key)
        return out

    async def get(self, key_id: str) -> ApiKey:
        with system_scope():
            record = await self._records.get("api_keys", key_id)
            usage = await self._records.get("api_key_usage", key_id) if record else None
        if record is None:
            raise NotFoundError(f"no API key {key_id!r}", param="key_id")
        key = ApiKey.model_validate(record)
        key.last_used_at = (usage or {}).get("at")
        return key

    async def revoke(self, key_id: str) -> ApiKey:
        """Revoke: the hash goes first, so the key stops authenticating even if the rest
        fails; the public record stays, marked revoked, for the audit trail."""
        with system_scope():
            record = await self._records.get("api_keys", key_id)
            if record is None:
                raise NotFoundError(f"no API key {key_id!r}", param="key_id")
            if record.get("hash"):
                await self._records.delete("api_key_hashes", record["hash"])
            key = ApiKey.model_validate(record)
            key.revoked_at = key.revoked_at or int(self._clock())
            await self._records.put("api_keys", key.id, key.model_dump())
        self._cache = {h: v for h, v in self._cache.items() if v[1] is None or v[1].id != key_id}
        return key

    async def authenticate(self, secret: str) -> ApiKey | None:
        """The live key for a bearer secret, or None. Cached briefly per process."""
        if not secret.startswith(KEY_PREFIX) or len(secret) > 256:
            return None
        digest = hash_key(secret)
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        key: ApiKey | None = None
        with system_scope():
            entry = await self._records.get("api_key_hashes", digest)
            if entry is not None:
                record = await self._records.get("api_keys", entry["id"])
                if record is not None and record.get("revoked_at") is None:
                    key = ApiKey.model_validate(record)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now, key)
        return key

    async def touch(self, key_id: str) -> None:
        """Record that a key was used (at most every few minutes per key and process)."""
        now = self._clock()
        if now - self._usage_written.get(key_id, 0.0) < USAGE_EVERY_SECONDS:
            return
        self._usage_written[key_id] = now
        with system_scope():
            await self._records.put("api_key_usage", key_id, {"id": key_id, "at": int(now)})
