"""Prompts (Llama Stack): versioned templates with ``{{variables}}``, tenant-scoped.

A prompt is one record (kind ``prompts``: its default and latest version) and one record per
version (kind ``prompt_versions:<prompt id>``, keyed by the zero-padded version, so versions
list in order). Prompts do not expire.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

from llamda.api.prompts import PROMPT_ID, ListPromptsResponse, PromptObject
from llamda.errors import BadRequestError, ConflictError, NotFoundError
from llamda.storage.records import Records, save

PROMPTS = "prompts"
# Versions a prompt may have: its versions list is one response (<= 32 x 64 KiB templates).
MAX_VERSIONS = 32
# A listed page of prompts stops after this much template text (a Lambda response is <= 6 MB).
PAGE_BYTES = 1024 * 1024
# A rendered prompt: variables may repeat, so the result is bounded, not only its parts.
MAX_RENDERED_CHARS = 4 * 1024 * 1024
# Llama Stack's placeholder: {{ name }} with optional spaces inside the braces.
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_PROMPT_ID = re.compile(PROMPT_ID)


def placeholders(template: str) -> list[str]:
    """The variable names a template uses, in first-use order."""
    return list(dict.fromkeys(PLACEHOLDER.findall(template)))


def check_variables(template: str, declared: list[str]) -> list[str]:
    """The declared variables (deduplicated); a 400 naming placeholders not declared and declared
    names the template does not use."""
    found = placeholders(template)
    declared = list(dict.fromkeys(declared))
    undeclared = [name for name in found if name not in declared]
    unused = [name for name in declared if name not in found]
    problems = []
    if undeclared:
        problems.append(f"the template uses undeclared variables: {', '.join(undeclared)}")
    if unused:
        problems.append(f"variables not in the template: {', '.join(unused)}")
    if problems:
        raise BadRequestError("; ".join(problems), param="variables", code="invalid_variables")
    return declared


def _versions_kind(prompt_id: str) -> str:
    return f"prompt_versions:{prompt_id}"


def _version_key(version: int) -> str:
    return f"{version:010d}"


def _missing(prompt_id: str, version: int | None = None) -> NotFoundError:
    if version is None:
        return NotFoundError(
            f"No prompt found with id {prompt_id[:128]!r}",
            param="prompt_id",
            code="prompt_not_found",
        )
    return NotFoundError(
        f"Prompt {prompt_id!r} has no version {version}", param="version", code="version_not_found"
    )


class PromptsService:
    def __init__(self, records: Records):
        self._records = records

    async def _record(self, prompt_id: str) -> dict[str, Any]:
        """The prompt's record: 404 when unknown, another tenant's or not an id's shape."""
        if not _PROMPT_ID.match(prompt_id):
            raise _missing(prompt_id)
        record = await self._records.get(PROMPTS, prompt_id)
        if record is None:
            raise _missing(prompt_id)
        return record

    async def _version(self, record: dict[str, Any], version: int | None) -> PromptObject:
        number = record["default_version"] if version is None else version
        stored = await self._records.get(_versions_kind(record["id"]), _version_key(number))
        if stored is None:
            raise _missing(record["id"], number)
        return PromptObject(
            prompt_id=record["id"],
            version=number,
            is_default=number == record["default_version"],
            prompt=stored["prompt"],
            variables=stored.get("variables", []),
        )

    async def _put_version(
        self, prompt_id: str, version: int, template: str, variables: list[str]
    ) -> None:
        # if_absent: of two updates from the same version, only one makes the next version.
        try:
            await self._records.put(
                _versions_kind(prompt_id),
                _version_key(version),
                {
                    "id": _version_key(version),
                    "prompt": template,
                    "variables": variables,
                    "created_at": int(time.time()),
                },
                if_absent=True,
            )
        except ConflictError:
            raise ConflictError(
                f"version {version - 1} of prompt {prompt_id!r} is no longer the latest; "
                "retrieve the prompt and update from its latest version",
                param="version",
                code="stale_version",
            ) from None

    async def create(self, template: str, variables: list[str] | None) -> PromptObject:
        declared = check_variables(template, variables or [])
        prompt_id = f"pmpt_{secrets.token_hex(24)}"
        await self._put_version(prompt_id, 1, template, declared)
        record = {
            "id": prompt_id,
            "created_at": int(time.time()),
            "default_version": 1,
            "latest_version": 1,
        }
        await self._records.put(PROMPTS, prompt_id, record, if_absent=True)
        return PromptObject(
            prompt_id=prompt_id, version=1, is_default=True, prompt=template, variables=declared
        )

    async def get(self, prompt_id: str, version: int | None = None) -> PromptObject:
        return await self._version(await self._record(prompt_id), version)

    async def update(
        self,
        prompt_id: str,
        template: str,
        version: int,
        variables: list[str] | None,
        set_as_default: bool,
    ) -> PromptObject:
        record = await self._record(prompt_id)
        latest = record["latest_version"]
        if version != latest:
            raise ConflictError(
                f"version {version} is not the latest version of prompt {prompt_id!r} "
                f"({latest}); update from the latest version",
                param="version",
                code="stale_version",
            )
        if latest >= MAX_VERSIONS:
            raise BadRequestError(
                f"prompt {prompt_id!r} has {MAX_VERSIONS} versions, the most it may have; "
                "create a new prompt",
                param="version",
                code="too_many_versions",
            )
        declared = check_variables(template, variables or [])
        new = latest + 1
        await self._put_version(prompt_id, new, template, declared)
        await self._change(
            prompt_id,
            lambda r: r.update(
                latest_version=max(r["latest_version"], new),
                default_version=new if set_as_default else r["default_version"],
            ),
        )
        return await self.get(prompt_id, new)

    async def _change(self, prompt_id: str, change: Any) -> dict[str, Any]:
        """Apply ``change`` to the prompt's record without losing a concurrent change."""
        for _ in range(5):
            record = await self._record(prompt_id)  # 404 once deleted
            change(record)
            if await save(self._records, PROMPTS, prompt_id, record):
                return record
        raise ConflictError("the prompt is being changed concurrently; retry")

    async def set_default_version(self, prompt_id: str, version: int) -> PromptObject:
        record = await self._record(prompt_id)
        await self._version(record, version)  # 404 for a version it does not have
        await self._change(prompt_id, lambda r: r.update(default_version=version))
        return await self.get(prompt_id, version)

    async def versions(self, prompt_id: str) -> list[PromptObject]:
        """Every version in order (at most MAX_VERSIONS)."""
        record = await self._record(prompt_id)
        rows = await self._records.list(_versions_kind(prompt_id), limit=MAX_VERSIONS + 1)
        return [
            PromptObject(
                prompt_id=prompt_id,
                version=int(row["id"]),
                is_default=int(row["id"]) == record["default_version"],
                prompt=row["prompt"],
                variables=row.get("variables", []),
            )
            for row in rows[:MAX_VERSIONS]
        ]

    async def list(self, *, after: str | None, limit: int) -> ListPromptsResponse:
        """The default version of each prompt, in id order: ``limit`` of them, fewer when their
        templates pass PAGE_BYTES (then ``has_more``)."""
        data: list[PromptObject] = []
        size, cursor, more = 0, after, False
        while not more:
            rows = await self._records.list(PROMPTS, after=cursor, limit=limit + 1)
            if not rows:
                break
            for row in rows:
                if len(data) == limit or (data and size >= PAGE_BYTES):
                    more = True
                    break
                try:
                    prompt = await self._version(row, None)
                except NotFoundError:  # deleted meanwhile
                    continue
                data.append(prompt)
                size += len(prompt.prompt.encode())
            cursor = rows[-1]["id"]
        return ListPromptsResponse(
            data=data, has_more=more, last_id=data[-1].prompt_id if data else None
        )

    async def delete(self, prompt_id: str) -> None:
        await self._record(prompt_id)
        # The record first: once gone the prompt is unknown (404) even if a version remains.
        await self._records.delete(PROMPTS, prompt_id)
        kind = _versions_kind(prompt_id)
        for row in await self._records.list(kind, limit=MAX_VERSIONS + 1):
            await self._records.delete(kind, row["id"])

    async def render(self, prompt_id: str, version: int | None, variables: dict[str, str]) -> str:
        """The template of that version (default: the default version) with its variables
        filled in; 404 when unknown, 400 when a variable is missing or not in the template."""
        prompt = await self.get(prompt_id, version)
        used = placeholders(prompt.prompt)
        missing = [name for name in used if name not in variables]
        unknown = [name for name in variables if name not in used]
        if missing or unknown:
            problems = []
            if missing:
                problems.append(f"missing variables: {', '.join(missing)}")
            if unknown:
                problems.append(
                    f"variables not in prompt {prompt_id!r} (version {prompt.version}): "
                    + ", ".join(name[:64] for name in unknown[:16])
                )
            raise BadRequestError(
                "; ".join(problems), param="prompt.variables", code="invalid_variables"
            )
        matches = list(PLACEHOLDER.finditer(prompt.prompt))
        size = len(prompt.prompt) + sum(
            len(variables[m.group(1)]) - (m.end() - m.start()) for m in matches
        )
        if size > MAX_RENDERED_CHARS:
            raise BadRequestError(
                f"the rendered prompt would have {size} characters (at most {MAX_RENDERED_CHARS})",
                param="prompt.variables",
                code="prompt_too_long",
            )
        # One pass: a value that itself contains {{x}} is text, not another placeholder.
        return PLACEHOLDER.sub(lambda m: variables[m.group(1)], prompt.prompt)
