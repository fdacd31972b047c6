"""Per-key limits: requests and tokens per minute, counted in Records with atomic increments
(DynamoDB ``UpdateItem ADD`` in AWS, one SQLite statement locally), so every Lambda container
and every local process shares one count. Fixed one-minute windows."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from llamda.context import Principal, system_scope
from llamda.errors import RateLimitError
from llamda.storage.records import Records

WINDOW_SECONDS = 60
KIND = "rate_counters"


@dataclass(frozen=True)
class Limits:
    rpm: int | None = None
    tpm: int | None = None


class RateLimiter:
    def __init__(self, records: Records, clock: Callable[[], float] = time.time):
        self._records = records
        self._clock = clock

    def _window(self) -> tuple[int, int, float]:
        now = self._clock()
        window = int(now // WINDOW_SECONDS)
        return window, (window + 2) * WINDOW_SECONDS, (window + 1) * WINDOW_SECONDS - now

    async def admit(self, principal: Principal, limits: Limits) -> None:
        """Count this request; 429 with Retry-After when the key is over a limit."""
        if limits.rpm is None and limits.tpm is None:
            return
        window, expires_at, retry_after = self._window()
        with system_scope():
            if limits.rpm is not None:
                count = await self._records.incr(
                    KIND, f"{principal.key_id}:r:{window}", 1, expires_at=expires_at
                )
                if count > limits.rpm:
                    raise _limited(f"{limits.rpm} requests per minute", retry_after)
            if limits.tpm is not None:
                used = await self._records.incr(
                    KIND, f"{principal.key_id}:t:{window}", 0, expires_at=expires_at
                )
                if used >= limits.tpm:
                    raise _limited(f"{limits.tpm} tokens per minute", retry_after)

    async def settle(self, principal: Principal, limits: Limits) -> None:
        """Charge the tokens the request used (as its providers reported them)."""
        if limits.tpm is None or principal.tokens <= 0:
            return
        window, expires_at, _ = self._window()
        with system_scope():
            await self._records.incr(
                KIND, f"{principal.key_id}:t:{window}", principal.tokens, expires_at=expires_at
            )


def _limited(what: str, retry_after: float) -> RateLimitError:
    seconds = max(1, int(retry_after + 0.999))
    error = RateLimitError(
        f"Rate limit reached for this API key: {what}. Retry after {seconds}s.",
        code="rate_limit_exceeded",
    )
    error.headers = {"retry-after": str(seconds)}
    return error
