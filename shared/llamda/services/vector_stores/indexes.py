"""Which vector backend holds a store: the stack's ``providers.vector_io`` by id, each built
once (``build_index``); a store names its provider on its record (``provider_id``, chosen at
creation; records written before there was a choice belong to the default LanceDB)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llamda.config import ProviderEntry, RunConfig
from llamda.errors import BadRequestError
from llamda.providers.registry import canonical_type
from llamda.providers.vector_io.index import IndexContext, VectorIndex, build_index

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from llamda.storage.objects import Objects

_LANCEDB = ("inline::lancedb", "remote::lancedb")


class Indexes:
    """The vector_io providers of the stack; the first is the default for new stores."""

    def __init__(self, config: RunConfig, objects: Objects | None = None):
        context = IndexContext(config.storage.vectors, objects, config.profile)
        entries: list[ProviderEntry] = list(config.providers.get("vector_io") or [])  # type: ignore[call-overload]
        self._by_id: dict[str, VectorIndex] = {
            e.provider_id: build_index(e, context) for e in entries
        }
        self._types = {e.provider_id: e.provider_type for e in entries}
        if not self._by_id:  # a config without vector_io providers: LanceDB under storage.vectors
            kind = canonical_type("vector_io", "lancedb", config.storage.vectors.uri)
            entry = ProviderEntry(provider_id="lancedb", provider_type=kind)
            self._by_id["lancedb"] = build_index(entry, context)
            self._types["lancedb"] = kind
        self.default_id = next(iter(self._by_id))
        # Records written before stores chose a provider live in the (first) LanceDB one.
        self.legacy_id = next(
            (pid for pid, t in self._types.items() if t in _LANCEDB), self.default_id
        )

    def choose(self, provider_id: str | None) -> str:
        """The provider a new store uses: the one asked for (400 naming it when unknown)."""
        if provider_id is None:
            return self.default_id
        if provider_id not in self._by_id:
            raise BadRequestError(
                f"vector_io provider {provider_id!r} is not configured (configured: "
                f"{', '.join(self._by_id)})",
                param="provider_id",
                code="unknown_provider",
            )
        return provider_id

    def get(self, provider_id: str) -> VectorIndex:
        return self._by_id[provider_id]

    def of(self, store: dict[str, Any]) -> VectorIndex:
        """The backend of a store record (one whose provider left the config: 503 naming it)."""
        provider_id = store.get("provider_id") or self.legacy_id
        index = self._by_id.get(provider_id)
        if index is None:
            from llamda.errors import ServiceUnavailableError

            raise ServiceUnavailableError(
                f"vector store {store.get('id')!r} is held by vector_io provider "
                f"{provider_id!r}, which this stack does not configure",
                code="unavailable",
            )
        return index

    async def health(self, provider_id: str) -> None:
        """The provider's probe (raises when it does not answer)."""
        await self._by_id[provider_id].health()

    def all(self) -> dict[str, VectorIndex]:
        return dict(self._by_id)

    def set_on_write(self, hook: Callable[[str], Awaitable[None]]) -> None:
        for index in self._by_id.values():
            index.on_write = hook

    async def close(self) -> None:
        for index in self._by_id.values():
            await index.close()
