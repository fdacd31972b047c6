"""`llamda ingest` as a user runs it: locally on the run config (same LLAMDA_HOME as the live
server) and against a running stack with --url; directories recurse, globs expand, the store is
checked first, re-ingesting a path replaces its chunks."""

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
    assert unknown.returncode == 2 and "404" in unknown.stderr


def _target(mode: str, live_server: LiveServer, url_suffix: str = "") -> list[str]:
    if mode == "remote":
        return ["--url", live_server.url + url_suffix]
    return ["--config", str(live_server.home / "run.yaml")]


@pytest.mark.parametrize(("mode", "url_suffix"), [("local", ""), ("remote", "/v1/")])
def test_reingesting_a_path_replaces_its_chunks(
    mode: str,
    url_suffix: str,
    tmp_path: Path,
    live_server: LiveServer,
    fake_bedrock: FakeBedrockServer,
) -> None:
    """Same path twice: one file in the store, the new text searchable, the old text gone
    (and the old File deleted). --url takes the base URL with /v1 too."""
    client = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key="unused", max_retries=0)
    store = client.vector_stores.create(name=f"again-{mode}").id
    doc = tmp_path / "notes.md"
    env = {"FAKE_BEDROCK_URL": fake_bedrock.endpoint}
    target = _target(mode, live_server, url_suffix)
    doc.write_text("Llamas hum when they are curious.")
    first = llamda(
        "ingest", str(doc), "--vector-store", store, *target, home=live_server.home, env=env
    )
    assert first.returncode == 0, first.stderr
    old_ids = [f.id for f in client.vector_stores.files.list(vector_store_id=store).data]
    doc.write_text("Alpacas sing in the morning.")
    second = llamda(
        "ingest", str(doc), "--vector-store", store, *target, home=live_server.home, env=env
    )
    assert second.returncode == 0, second.stderr
    assert "replaced" in second.stderr
    files = client.vector_stores.files.list(vector_store_id=store).data
    assert len(files) == 1 and files[0].id not in old_ids and files[0].status == "completed"
    texts = [
        c.text
        for hit in client.vector_stores.search(vector_store_id=store, query="llamas alpacas").data
        for c in hit.content
    ]
    assert texts == ["Alpacas sing in the morning."]
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(old_ids[0])
    # Another path with the same file name is another document: both stay.
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "notes.md").write_text("Vicuñas graze high.")
    third = llamda(
        "ingest",
        str(other / "notes.md"),
        "--vector-store",
        store,
        *target,
        home=live_server.home,
        env=env,
    )
    assert third.returncode == 0, third.stderr
    assert len(client.vector_stores.files.list(vector_store_id=store).data) == 2


@pytest.mark.parametrize("mode", ["local", "remote"])
def test_unknown_store_uploads_nothing(
    mode: str, tmp_path: Path, live_server: LiveServer, fake_bedrock: FakeBedrockServer
) -> None:
    client = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key="unused", max_retries=0)
    before = {f.id for f in client.files.list()}
    (tmp_path / "a.txt").write_text("orphan?")
    result = llamda(
        "ingest",
        str(tmp_path / "a.txt"),
        "--vector-store",
        "vs_nowhere",
        *_target(mode, live_server),
        home=live_server.home,
        env={"FAKE_BEDROCK_URL": fake_bedrock.endpoint},
    )
    assert result.returncode == 2 and "vs_nowhere" in result.stderr
    assert "nothing was uploaded" in result.stderr
    assert {f.id for f in client.files.list()} == before


def test_url_must_not_be_empty(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    for url in ("", "  ", "localhost:8321"):
        result = llamda(
            "ingest",
            str(tmp_path / "a.txt"),
            "--vector-store",
            "vs_x",
            "--url",
            url,
            home=tmp_path,
            env={},
        )
        assert result.returncode == 2 and "--url" in result.stderr, (url, result.stderr)
        assert "ok," not in result.stdout  # never fell back to local mode


def test_unmatched_globs_unaccepted_types_and_quiet(
    tmp_path: Path, live_server: LiveServer, fake_bedrock: FakeBedrockServer
) -> None:
    """A glob that matches nothing is reported (exit 1, the rest ingested); directories take
    only accepted types (.jsonl, .yaml, .toml, source code...); logs go to stderr, and --quiet
    leaves stderr empty and stdout the summary."""
    client = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key="unused", max_retries=0)
    store = client.vector_stores.create(name="types").id
    root = tmp_path / "repo"
    root.mkdir()
    (root / "rows.jsonl").write_text('{"animal": "llama"}\n{"animal": "alpaca"}\n')
    (root / "conf.yaml").write_text("herd: llamas\n")
    (root / "pyproject.toml").write_text("[tool]\nname = 'herd'\n")
    (root / "herd.rs").write_text('fn main() { println!("llamas"); }\n')
    (root / "logo.png").write_bytes(b"\x89PNG\r\n")
    (root / ".DS_Store").write_bytes(b"\x00\x01")
    env = {"FAKE_BEDROCK_URL": fake_bedrock.endpoint}
    config = ["--config", str(live_server.home / "run.yaml")]
    loud = llamda(
        "ingest",
        str(root),
        str(tmp_path / "missing-*.md"),
        "--vector-store",
        store,
        *config,
        home=live_server.home,
        env=env,
    )
    assert loud.returncode == 1, loud.stderr
    assert "no files match" in loud.stderr and "missing-*.md" in loud.stderr
    assert ".jsonl" in loud.stderr  # the accepted types are named
    assert loud.stdout.splitlines()[0] == f"4 ok, 0 failed (4 files) → {store}"
    names = sorted(
        f.filename
        for f in client.files.list()
        if f.filename
        in {"rows.jsonl", "conf.yaml", "pyproject.toml", "herd.rs", "logo.png", ".DS_Store"}
    )
    assert names == ["conf.yaml", "herd.rs", "pyproject.toml", "rows.jsonl"]
    quiet = llamda(
        "ingest",
        str(root / "conf.yaml"),
        "--vector-store",
        store,
        "--quiet",
        *config,
        home=live_server.home,
        env=env,
    )
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert quiet.stdout == f"1 ok, 0 failed (1 files) → {store}\n"
    helped = llamda("ingest", "--help", home=tmp_path, env={})
    assert ".jsonl" in helped.stdout and ".toml" in helped.stdout and ".py" in helped.stdout
