"""Real vector-backend servers for the ``backends`` tier: PostgreSQL 15 with pgvector and Chroma.

Each runs on a free port in its own temp dir and can be stopped and started again mid-test (the
"backend is down" tests), keeping its data. PostgreSQL refuses to run as root (initdb says so),
and CI runs as root: the cluster belongs to an unprivileged system user (``postgres`` when it
exists, else ``nobody``) and its commands run through ``runuser``. When the tests do not run as
root, the cluster is simply the current user's.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port

PG_BIN = Path(os.environ.get("LLAMDA_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "llamda"  # the role our provider connects as (a superuser: it creates the extension)


def _pg_available() -> bool:
    return (PG_BIN / "initdb").exists()


def _owner() -> str | None:
    """The unprivileged user who owns the cluster when we are root (None: ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and no unprivileged user (postgres, nobody) to run as")


class PostgresServer:
    """A throwaway PostgreSQL cluster: password auth over TCP on 127.0.0.1, the unix socket in
    its own dir (never /var/run/postgresql), the pgvector extension available."""

    def __init__(self) -> None:
        self.owner = _owner()
        self.root = Path(tempfile.mkdtemp(prefix="llamda-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.password = "pw-" + secrets.token_hex(12)
        self.database = "llamda"
        if self.owner is not None:
            entry = pwd.getpwnam(self.owner)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run(["mkdir", "-p", str(self.sockets)])
        pwfile = self.root / "pwfile"
        self._run(["sh", "-c", f"umask 077 && cat > {pwfile}"], input=self.password)
        self._run(
            [
                str(PG_BIN / "initdb"),
                "-D", str(self.data),
                "-U", PG_USER,
                "--pwfile", str(pwfile),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E", "UTF8",
                "--no-instructions",
            ]
        )  # fmt: skip
        self._run(["rm", "-f", str(pwfile)])
        self.start()
        self._run(
            [str(PG_BIN / "createdb"), "-h", str(self.sockets), "-p", str(self.port),
             "-U", PG_USER, self.database]
        )  # fmt: skip

    def _run(self, argv: list[str], input: str | None = None) -> str:
        if self.owner is not None:
            argv = ["runuser", "-u", self.owner, "--", *argv]
        done = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{argv} failed: {done.stdout}\n{done.stderr}")
        return done.stdout

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c shared_buffers=64MB -c max_connections=50"
        )
        self._run(
            [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
             "-o", options, "-w", "-t", "60", "start"]
        )  # fmt: skip

    def stop(self) -> None:
        """Fast shutdown (open connections are cut, as when a server goes away)."""
        self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])

    def running(self) -> bool:
        argv = [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "status"]
        if self.owner is not None:
            argv = ["runuser", "-u", self.owner, "--", *argv]
        return subprocess.run(argv, capture_output=True).returncode == 0

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.running():
                self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def config(self, password_env: str = "LLAMDA_TEST_PG_PASSWORD") -> dict[str, object]:
        """The provider config (the password comes from the environment, as a user sets it)."""
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "db": self.database,
            "user": PG_USER,
            "password": "${env." + password_env + "}",
            "sslmode": "disable",
        }

    def dsn(self) -> str:
        return (
            f"host=127.0.0.1 port={self.port} dbname={self.database} user={PG_USER} "
            f"password={self.password} sslmode=disable"
        )


class ChromaServer:
    """``chroma run`` from the installed package on a free port, its data in a temp dir."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="llamda-chroma-"))
        self.port = free_port()
        self.log = self.root / "chroma.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        chroma = Path(sys.executable).with_name("chroma")
        argv = [str(chroma), "run", "--path", str(self.root / "data"),
                "--host", "127.0.0.1", "--port", str(self.port)]  # fmt: skip
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chroma exited: {self.log.read_text()[-4000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/api/v2/heartbeat", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"chroma did not start: {self.log.read_text()[-4000:]}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL 15 + pgvector for the session (skipped where it is not installed;
    ``scripts/install-pgvector`` installs it, and CI runs it)."""
    if not _pg_available():
        pytest.skip(f"PostgreSQL not installed at {PG_BIN} (scripts/install-pgvector)")
    server = PostgresServer()
    # What the backend matrix's config entry names (tests/configs.py VECTOR_BACKENDS).
    os.environ.update(
        {"LLAMDA_TEST_PG_PORT": str(server.port), "LLAMDA_TEST_PG_PASSWORD": server.password}
    )
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def chroma() -> Iterator[ChromaServer]:
    """A real Chroma server for the session (skipped without the chromadb package)."""
    if not Path(sys.executable).with_name("chroma").exists():
        pytest.skip("the chromadb package (its `chroma` command) is not installed")
    server = ChromaServer()
    os.environ["LLAMDA_TEST_CHROMA_URL"] = server.url
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def weaviate_fake() -> Iterator[Any]:
    """The wire-level fake Weaviate (tests/fakes/weaviate_server.py: REST + gRPC, real
    semantics) for the session; no Weaviate server can run here. It wants an API key, as a
    hosted Weaviate does, so the key's path (env var → client → server) is exercised too."""
    pytest.importorskip("weaviate", reason="the weaviate-client package is not installed")
    from tests.fakes.weaviate_server import FakeWeaviate

    server = FakeWeaviate(api_key="wv-" + secrets.token_hex(12))
    os.environ.update(
        {
            "LLAMDA_TEST_WEAVIATE_HTTP_PORT": str(server.http_port),
            "LLAMDA_TEST_WEAVIATE_GRPC_PORT": str(server.grpc_port),
            "LLAMDA_TEST_WEAVIATE_API_KEY": server.api_key or "",
        }
    )
    try:
        yield server
    finally:
        server.close()
