"""``PromptsService.render`` (what the Responses loop calls for ``prompt``), on the real local
record store: the chosen version, variables checked both ways, one-pass substitution, bounds."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from llamda.context import tenant_scope
from llamda.errors import BadRequestError, NotFoundError
from llamda.services.agents.prompts import MAX_RENDERED_CHARS, PromptsService
from llamda.storage.records_sqlite import SqliteRecordStore


@pytest.fixture
def prompts(tmp_path: Path) -> PromptsService:
    return PromptsService(SqliteRecordStore(tmp_path / "records.sqlite3"))


def test_render_fills_the_default_or_the_chosen_version(prompts: PromptsService) -> None:
    async def run() -> None:
        with tenant_scope("alice"):
            made = await prompts.create("Hello {{ name }}, {{name}} is {{role}}.", ["name", "role"])
            pid = made.prompt_id
            await prompts.update(pid, "Bye {{name}}", 1, ["name"], set_as_default=False)
            values = {"name": "{{role}}", "role": "admin"}
            # One pass: a value that looks like a placeholder stays text.
            assert await prompts.render(pid, None, values) == ("Hello {{role}}, {{role}} is admin.")
            assert await prompts.render(pid, 2, {"name": "Ann"}) == "Bye Ann"
            with pytest.raises(BadRequestError) as caught:
                await prompts.render(pid, None, {"name": "Ann"})
            assert "role" in caught.value.message
            with pytest.raises(BadRequestError) as caught:
                await prompts.render(pid, 2, {"name": "Ann", "extra": "x"})
            assert "extra" in caught.value.message
            with pytest.raises(NotFoundError):
                await prompts.render(pid, 3, {})
            with pytest.raises(NotFoundError):
                await prompts.render("pmpt_" + "0" * 48, None, {})
            with pytest.raises(NotFoundError):
                await prompts.render("not-a-prompt", None, {})
            # A variable repeated many times cannot blow up the result.
            many = await prompts.create("{{a}}" * 1000, ["a"])
            big = "x" * (MAX_RENDERED_CHARS // 999)
            with pytest.raises(BadRequestError):
                await prompts.render(many.prompt_id, None, {"a": big})
        with tenant_scope("bob"), pytest.raises(NotFoundError):
            await prompts.render(pid, None, values)

    asyncio.run(run())
