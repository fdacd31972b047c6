"""`llamda ingest` as a user runs it: locally on the run config (same LLAMDA_HOME as the live
server) and against a running stack with --url; directories recurse, globs expand."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from tests.conftest import LiveServer
from tests.fakes.bedrock import FakeBedrockServer


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    (root / "deep" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_text("Llamas spit when annoyed.")
    (root / "deep" / "b.md").write_text("# Alpacas\n\nAlpaca fleece is warm.")
    (root / "deep" / "deeper" / "c.html").write_text("<p>Vicuñas are the smallest camelids.</p>")
    (root / "deep" / "broken.pdf").write_bytes(b"%PDF-1.4 nope")
    (tmp_path / "extra.md").write_text("Guanacos live in Patagonia.")
    return root


def llamda(*args: str, home: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llamda.cli", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "LLAMDA_HOME": str(home), **env},
    )


@pytest.mark.parametrize("mode", ["local", "remote"])
def test_ingest_directories_and_globs(
    mode: str, docs: Path, live_server: LiveServer, fake_bedrock: FakeBedrockServer
) -> None:
    client = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key="unused", max_retries=0)
    store = client.vector_stores.create(name=f"cli-{mode}").id
    target = (
        ["--url", live_server.url]
        if mode == "remote"
        else ["--config", str(live_server.home / "run.yaml")]
    )
    result = llamda(
        "ingest",
        str(docs),
        str(docs.parent / "*.md"),
        "--vector-store",
        store,
        "--attributes",
        '{"source": "cli"}',
        "--quiet",
        *target,
        home=live_server.home,
        env={"FAKE_BEDROCK_URL": fake_bedrock.endpoint},
    )
    assert result.returncode == 1, result.stderr  # one file failed
    assert "4 ok, 1 failed (5 files)" in result.stdout
    assert "broken.pdf" in result.stdout
    files = client.vector_stores.files.list(vector_store_id=store, limit=100).data
    assert sorted(f.status for f in files) == ["completed"] * 4 + ["failed"]
    hits = client.vector_stores.search(
        vector_store_id=store,
        query="smallest camelids",
        filters={"type": "eq", "key": "source", "value": "cli"},
    )
    assert hits.data[0].filename == "c.html"
    assert (
        "Guanacos"
        in client.vector_stores.search(vector_store_id=store, query="Patagonia guanacos")
        .data[0]
        .content[0]
        .text
    )


def test_ingest_usage_errors(live_server: LiveServer, tmp_path: Path) -> None:
    nothing = llamda(
        "ingest", str(tmp_path / "none*.txt"), "--vector-store", "vs_x", home=tmp_path, env={}
    )
    assert nothing.returncode == 2 and "no files match" in nothing.stderr
    (tmp_path / "a.txt").write_text("x")
    bad = llamda(
        "ingest",
        str(tmp_path / "a.txt"),
        "--vector-store",
        "vs_x",
        "--attributes",
        "{",
        home=tmp_path,
        env={},
    )
    assert bad.returncode == 2
    unknown = llamda(
        "ingest",
        str(tmp_path / "a.txt"),
        "--vector-store",
        "vs_unknown",
        "--url",
        live_server.url,
        "--quiet",
        home=tmp_path,
        env={},
    )
    assert unknown.returncode == 1 and "404" in unknown.stdout
