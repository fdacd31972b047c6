"""A live local server with the agents API and API keys (two tenants), for the Conversations
and Prompts tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import LiveServer, start_server, stop_server

CONFIG = """
version: 1
profile: local
apis: [inspect, models, agents]
providers: {{}}
models: []
storage:
  records: {{type: sqlite, path: "${{env.LLAMDA_HOME}}/records.sqlite3"}}
  objects: {{type: local, root: "${{env.LLAMDA_HOME}}/objects"}}
  vectors: {{uri: "${{env.LLAMDA_HOME}}/lancedb"}}
server:
  auth: true
agents: {{store_days: {store_days}}}
"""


def create_key(home: Path, tenant: str) -> str:
    """A key of ``tenant`` made with ``llamda keys create``, as an operator does."""
    config = str(home / "run.yaml")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "llamda.cli",
            "keys",
            "create",
            "--tenant",
            tenant,
            "--config",
            config,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "LLAMDA_HOME": str(home)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@contextmanager
def agents_server(home: Path, *, store_days: float = 30) -> Iterator[LiveServer]:
    (home / "run.yaml").write_text(CONFIG.format(store_days=store_days))
    server = start_server(home / "run.yaml", home)
    try:
        yield server
    finally:
        stop_server(server)
