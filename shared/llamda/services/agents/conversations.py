"""Conversations (OpenAI): a conversation and its items, tenant-scoped in Records."""

from __future__ import annotations

from llamda.config import AgentsConfig
from llamda.services.agents.items import Item, ItemStore
from llamda.storage.records import Records


class ConversationsService:
    def __init__(self, records: Records, items: ItemStore, config: AgentsConfig):
        self._records = records
        self._items = items
        self._config = config

    async def context(self, conversation_id: str, limit: int) -> list[Item]:
        """Every item of the conversation in order (404 when unknown; 400 over ``limit``)."""
        raise NotImplementedError

    async def append(self, conversation_id: str, items: list[Item]) -> None:
        """Append items (each already has its ``id``) after the existing ones."""
        raise NotImplementedError
