"""``llamda ingest PATH... --vector-store ID``: files, directories (recursive) and globs into a
vector store, with a progress bar and a summary. Without ``--url`` it runs the service code
in-process on the run config (the local profile by default); with ``--url`` it uploads to a
deployed stack through the Files and Vector Stores APIs (same service code, server side)."""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llamda.api.vector_stores import StaticChunkingStrategy


def add_parser(sub: Any) -> None:
    cmd = sub.add_parser("ingest", help="ingest files into a vector store", description=__doc__)
    cmd.add_argument("paths", nargs="+", help="files, directories (recursive) or globs")
    cmd.add_argument("--vector-store", required=True, help="the vector store id")
    cmd.add_argument("--attributes", default="{}", help='file attributes as JSON: {"team": "ml"}')
    cmd.add_argument("--chunk-size", type=int, help="static chunking: tokens per chunk")
    cmd.add_argument("--chunk-overlap", type=int, default=0, help="static chunking: overlap")
    cmd.add_argument("--concurrency", type=int, default=4, help="files in flight (default 4)")
    cmd.add_argument("--config", help="run config (local mode; default: the profile)")
    cmd.add_argument("--url", help="a deployed stack's base URL (ApiUrl), instead of local")
    cmd.add_argument(
        "--api-key", default=os.environ.get("LLAMDA_API_KEY"), help="($LLAMDA_API_KEY)"
    )
    cmd.add_argument("--quiet", action="store_true", help="no progress bar")
    cmd.set_defaults(func=run)


def expand(paths: list[str]) -> list[Path]:
    """Every regular file named by ``paths`` (globs expanded, directories walked), sorted, once."""
    found: dict[Path, None] = {}

    def walk(path: Path) -> Iterator[Path]:
        if path.is_dir():
            yield from (p for p in sorted(path.rglob("*")) if p.is_file())
        elif path.is_file():
            yield path

    for raw in paths:
        matches = glob.glob(raw, recursive=True) if glob.has_magic(raw) else [raw]
        for match in sorted(matches):
            for path in walk(Path(match)):
                found.setdefault(path.resolve())
    return list(found)


def run(args: argparse.Namespace) -> int:
    try:
        attributes = json.loads(args.attributes)
        chunking = None
        if args.chunk_size:
            chunking = StaticChunkingStrategy.of(args.chunk_size, args.chunk_overlap)
    except ValueError as exc:
        print(f"llamda ingest: {exc}", file=sys.stderr)
        return 2
    files = expand(args.paths)
    if not files:
        print("llamda ingest: no files match", file=sys.stderr)
        return 2
    results = asyncio.run(_ingest(args, files, attributes, chunking))
    ok = [p for p, status, _ in results if status == "completed"]
    failed = [(p, err) for p, status, err in results if status != "completed"]
    print(f"{len(ok)} ok, {len(failed)} failed ({len(files)} files) → {args.vector_store}")
    for path, error in failed:
        print(f"  failed: {path}: {error}")
    return 1 if failed else 0


async def _ingest(
    args: argparse.Namespace,
    files: list[Path],
    attributes: dict[str, Any],
    chunking: StaticChunkingStrategy | None,
) -> list[tuple[Path, str, str]]:
    from tqdm import tqdm

    ingest = _Remote(args) if args.url else await _Local.open(args.config, args.vector_store)
    limit = asyncio.Semaphore(max(1, args.concurrency))
    bar = tqdm(total=len(files), unit="file", disable=args.quiet, file=sys.stderr)

    async def one(path: Path) -> tuple[Path, str, str]:
        async with limit:
            try:
                status, error = await ingest.one(path, attributes, chunking)
            except Exception as exc:  # one bad file never stops the rest
                status, error = "failed", f"{type(exc).__name__}: {exc}"
            bar.update(1)
            bar.set_postfix_str(path.name[-30:])
            return path, status, error

    try:
        return list(await asyncio.gather(*(one(p) for p in files)))
    finally:
        bar.close()
        await ingest.close()


class _Local:
    """In-process: the same IngestService/VectorStoresService the Lambda functions run."""

    def __init__(self, stack: Any, store_id: str):
        from llamda.services.ingest import IngestService

        self._stack = stack
        self._store = store_id
        self._service = IngestService(stack.files, stack.vector_stores, stack.records)

    @classmethod
    async def open(cls, config_path: str | None, store_id: str) -> _Local:
        from llamda.config import load_config
        from llamda.stack import Stack

        return cls(Stack(load_config(config_path)), store_id)

    async def one(
        self, path: Path, attributes: dict[str, Any], chunking: StaticChunkingStrategy | None
    ) -> tuple[str, str]:
        result = await self._service.ingest_local(
            self._store, await asyncio.to_thread(path.read_bytes), path.name, attributes, chunking
        )
        return result.status, result.last_error.message if result.last_error else ""

    async def close(self) -> None:
        await self._stack.close()


class _Remote:
    """A deployed stack: upload with POST /v1/files, attach with POST /v1/vector_stores/…/files."""

    def __init__(self, args: argparse.Namespace):
        import httpx

        headers = {}
        if args.api_key:
            headers = {"x-api-key": args.api_key, "Authorization": f"Bearer {args.api_key}"}
        self._store = args.vector_store
        self._http = httpx.AsyncClient(
            base_url=args.url.rstrip("/"), headers=headers, timeout=httpx.Timeout(120, connect=10)
        )

    async def one(
        self, path: Path, attributes: dict[str, Any], chunking: StaticChunkingStrategy | None
    ) -> tuple[str, str]:
        upload = await self._http.post(
            "/v1/files",
            files={"file": (path.name, await asyncio.to_thread(path.read_bytes))},
            data={"purpose": "assistants"},
        )
        if upload.status_code != 200:
            return "failed", _error(upload)
        body: dict[str, Any] = {"file_id": upload.json()["id"], "attributes": attributes}
        if chunking:
            body["chunking_strategy"] = chunking.model_dump()
        attached = await self._http.post(f"/v1/vector_stores/{self._store}/files", json=body)
        if attached.status_code != 200:
            return "failed", _error(attached)
        result = attached.json()
        return result["status"], (result.get("last_error") or {}).get("message", "")

    async def close(self) -> None:
        await self._http.aclose()


def _error(response: Any) -> str:
    try:
        return f"{response.status_code}: {response.json()['error']['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code}: {response.text[:200]}"
