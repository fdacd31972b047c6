"""A live local server with its own limits (the shared one allows 200 kB uploads), and what
tests read of its process from /proc."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import TEST_CONFIG, LiveServer, start_server, stop_server
from tests.fakes.bedrock import FakeBedrockServer


@contextmanager
def server_with(
    home: Path, fake_bedrock: FakeBedrockServer, *, ingest: str, max_file_bytes: int
) -> Iterator[LiveServer]:
    """The shared test config with ``storage.vectors.ingest`` limits (a YAML flow mapping)
    and ``server.max_file_bytes`` replaced."""
    config = TEST_CONFIG.replace(
        'vectors: {uri: "${env.LLAMDA_HOME}/lancedb"}',
        f'vectors: {{uri: "${{env.LLAMDA_HOME}}/lancedb", ingest: {ingest}}}',
    ).replace("max_file_bytes: 200000", f"max_file_bytes: {max_file_bytes}")
    assert "ingest:" in config and str(max_file_bytes) in config
    (home / "run.yaml").write_text(config)
    server = start_server(home / "run.yaml", home, {"FAKE_BEDROCK_URL": fake_bedrock.endpoint})
    try:
        yield server
    finally:
        stop_server(server)


def descendants(pid: int) -> set[int]:
    """Every live process under ``pid`` (children, their children...)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        if fields[0] != "Z":  # zombies have finished
            parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def status_kb(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` field in kB (VmRSS, VmHWM...)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss(pid: int) -> None:
    """Restart VmHWM from the current RSS (Linux: ``5`` to clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
