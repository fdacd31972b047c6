"""``import_lancedb``: lancedb's namespace models build their validators on first use, and the
deferral ends with the import (models defined after it build at once, as pydantic does by
default). Run in a fresh interpreter: the import happens once per process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import pydantic
from llamda.providers.vector_io.lancedb import import_lancedb

lancedb = import_lancedb()
assert "defer_build" not in pydantic.BaseModel.model_config, pydantic.BaseModel.model_config
from lance_namespace import ListTablesResponse

print("deferred" if not ListTablesResponse.__pydantic_complete__ else "built at import")
reply = ListTablesResponse.model_validate({"tables": ["a"]})  # built now, validates as ever
assert reply.tables == ["a"] and ListTablesResponse.__pydantic_complete__


class Later(pydantic.BaseModel):
    x: int


assert Later.__pydantic_complete__
assert import_lancedb() is lancedb
print("ok")
"""


def _run(env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT / "shared"), "PATH": "/usr/bin:/bin", **env_extra},
        timeout=120,
    )


def test_lancedb_import_defers_its_models_and_only_them() -> None:
    done = _run({})
    assert done.stdout.split() == ["deferred", "ok"], done.stderr[-2000:]


def test_full_import_builds_the_models_at_import() -> None:
    done = _run({"LLAMDA_LANCEDB_FULL_IMPORT": "1"})
    assert done.stdout.splitlines() == ["built at import", "ok"], done.stderr[-2000:]
