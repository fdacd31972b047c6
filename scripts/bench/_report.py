"""Shared by the benchmarks: append a result, with the command that produced it, to
docs/benchmarks.md."""

from __future__ import annotations

import time
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"


def append_report(title: str, command: str, report: str) -> None:
    stamp = time.strftime("%Y-%m-%d")
    with DOC.open("a") as fh:
        fh.write(f"\n### {title} ({stamp})\n\n`{command}`\n\n```\n{report}\n```\n")
