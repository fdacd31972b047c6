"""Prompts (Llama Stack): versioned templates with ``{{variables}}``, tenant-scoped."""

from __future__ import annotations

from llamda.storage.records import Records


class PromptsService:
    def __init__(self, records: Records):
        self._records = records

    async def render(self, prompt_id: str, version: int | None, variables: dict[str, str]) -> str:
        """The template of that version (default: the default version) with its variables
        filled in; 404 when unknown, 400 when a variable is missing or not in the template."""
        raise NotImplementedError
