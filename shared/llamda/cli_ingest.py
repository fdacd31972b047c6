"""``llamda ingest PATH... --vector-store ID``: files, directories (recursive) and globs into a
vector store, with a progress bar and a summary. Without ``--url`` it runs the service code
in-process on the run config (the local profile by default); with ``--url`` it uploads to a
running stack through the Files and Vector Stores APIs (same service code, server side).

The store is checked before anything is uploaded. Re-ingesting a path replaces the chunks it
gave before (its files carry the attribute ``llamda_source``, a hash of the absolute path):
the old file is removed once the new one is in. Progress and logs go to stderr (``--quiet``
silences them); the summary goes to stdout."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from llamda.api.vector_stores import StaticChunkingStrategy
from llamda.services.documents import accepted_types, kind_of

SOURCE_ATTRIBUTE = "llamda_source"
PAGE = 100


class UsageError(Exception):
    """The command cannot run as asked (exit status 2, nothing uploaded)."""


def add_parser(sub: Any) -> None:
    cmd = sub.add_parser(
        "ingest",
        help="ingest files into a vector store",
        description=__doc__,
        epilog=f"accepted file types: {accepted_types()} (directories: only these are taken)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument("paths", nargs="+", help="files, directories (recursive) or globs")
    cmd.add_argument("--vector-store", required=True, help="the vector store id")
    cmd.add_argument("--attributes", default="{}", help='file attributes as JSON: {"team": "ml"}')
    cmd.add_argument("--chunk-size", type=int, help="static chunking: tokens per chunk")
    cmd.add_argument("--chunk-overlap", type=int, default=0, help="static chunking: overlap")
    cmd.add_argument("--concurrency", type=int, default=4, help="files in flight (default 4)")
    cmd.add_argument("--config", help="run config (local mode; default: the profile)")
    cmd.add_argument(
        "--url",
        help="a running stack's base URL (ApiUrl; with or without /v1), instead of local",
    )
    cmd.add_argument(
        "--api-key", default=os.environ.get("LLAMDA_API_KEY"), help="($LLAMDA_API_KEY)"
    )
    cmd.add_argument("--quiet", action="store_true", help="no progress bar and no logs")
    cmd.set_defaults(func=run)


def base_url(url: str) -> str:
    """The stack's root from what a user may paste: ``https://x/prod``, ``https://x/prod/v1/``."""
    if not url.strip():
        raise UsageError("--url is empty (leave it out to ingest locally)")
    root = url.strip().rstrip("/")
    if root.endswith("/v1"):
        root = root[: -len("/v1")]
    if not root.startswith(("http://", "https://")) or len(root.split("/")) < 3:
        raise UsageError(f"--url {url!r} is not an http(s) URL")
    return root


def expand(paths: list[str]) -> tuple[list[Path], list[str], list[Path]]:
    """(files to ingest, arguments that matched nothing, named files of unaccepted types).
    Globs expand, directories are walked for the accepted types; each file once, in order."""
    found: dict[Path, None] = {}
    unmatched: list[str] = []
    unaccepted: list[Path] = []

    def walk(path: Path) -> Iterator[Path]:
        if path.is_dir():
            yield from (p for p in sorted(path.rglob("*")) if p.is_file() and kind_of(p.name, None))
        elif path.is_file():
            if kind_of(path.name, None):
                yield path
            else:
                unaccepted.append(path)

    for raw in paths:
        matches = glob.glob(raw, recursive=True) if glob.has_magic(raw) else [raw]
        named = 0
        for match in sorted(matches):
            for path in walk(Path(match)):
                found.setdefault(path.resolve())
                named += 1
        if not named and not any(Path(m).is_file() for m in matches):
            unmatched.append(raw)  # nothing there, or no file of an accepted type
    return list(found), unmatched, unaccepted


def source_of(path: Path) -> str:
    """The ``llamda_source`` of a file: which path it came from, without showing the path."""
    return "sha256:" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]


def _say(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        print(f"llamda ingest: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    try:
        if args.url is not None:
            args.url = base_url(args.url)
        attributes = json.loads(args.attributes)
        if not isinstance(attributes, dict):
            raise UsageError("--attributes must be a JSON object")
        chunking = None
        if args.chunk_size:
            chunking = StaticChunkingStrategy.of(args.chunk_size, args.chunk_overlap)
    except (UsageError, ValueError) as exc:
        print(f"llamda ingest: {exc}", file=sys.stderr)
        return 2
    _quiet_logs(args.quiet)
    files, unmatched, unaccepted = expand(args.paths)
    for raw in unmatched:
        print(f"llamda ingest: no files match {raw!r}", file=sys.stderr)
    if unmatched:
        print(f"llamda ingest: accepted file types: {accepted_types()}", file=sys.stderr)
    for path in unaccepted:
        print(
            f"llamda ingest: skipped {path}: not an accepted file type ({accepted_types()})",
            file=sys.stderr,
        )
    if not files:
        print("llamda ingest: no files to ingest", file=sys.stderr)
        return 2
    try:
        results = asyncio.run(_ingest(args, files, attributes, chunking))
    except UsageError as exc:
        print(f"llamda ingest: {exc}", file=sys.stderr)
        return 2
    ok = [p for p, status, _ in results if status == "completed"]
    failed = [(p, err) for p, status, err in results if status != "completed"]
    print(f"{len(ok)} ok, {len(failed)} failed ({len(files)} files) → {args.vector_store}")
    for path, error in failed:
        print(f"  failed: {path}: {error}")
    return 1 if failed or unmatched or unaccepted else 0


def _quiet_logs(quiet: bool) -> None:
    """The service code's log lines (local mode) go to stderr, and nowhere with --quiet: stdout
    holds only the summary."""
    import logging

    from llamda.observability import logger

    ours = logging.getLogger(logger.service)
    for handler in ours.handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sys.stderr)
    if quiet:
        ours.setLevel(logging.CRITICAL + 1)
        logging.getLogger().setLevel(logging.CRITICAL + 1)


class _Target(Protocol):
    async def check_store(self) -> None:
        """UsageError when the store cannot be written (missing, not ours)."""

    async def sources(self) -> dict[str, list[str]]:
        """``llamda_source`` → ids of the store's files that carry it."""

    async def one(
        self, path: Path, attributes: dict[str, Any], chunking: StaticChunkingStrategy | None
    ) -> tuple[str, str, str | None]:
        """(status, error, the new file's id)."""

    async def remove(self, file_id: str) -> None:
        """Detach a file from the store and delete it."""

    async def close(self) -> None: ...


async def _ingest(
    args: argparse.Namespace,
    files: list[Path],
    attributes: dict[str, Any],
    chunking: StaticChunkingStrategy | None,
) -> list[tuple[Path, str, str]]:
    from tqdm import tqdm

    target: _Target = (
        _Remote(args) if args.url is not None else await _Local.open(args.config, args.vector_store)
    )
    try:
        await target.check_store()  # before any upload: no orphan files
        earlier = await target.sources()
        limit = asyncio.Semaphore(max(1, args.concurrency))
        bar = tqdm(total=len(files), unit="file", disable=args.quiet, file=sys.stderr)

        async def one(path: Path) -> tuple[Path, str, str]:
            source = source_of(path)
            async with limit:
                try:
                    status, error, file_id = await target.one(
                        path, {**attributes, SOURCE_ATTRIBUTE: source}, chunking
                    )
                    replaced = [f for f in earlier.get(source, []) if f != file_id]
                    if status == "completed" and replaced:
                        # Replaced only once the new one is in: a failed re-ingest keeps the old.
                        for old in replaced:
                            await target.remove(old)
                        _say(args, f"{path}: replaced what it gave before ({', '.join(replaced)})")
                except Exception as exc:  # one bad file never stops the rest
                    status, error = "failed", f"{type(exc).__name__}: {exc}"
                bar.update(1)
                bar.set_postfix_str(path.name[-30:])
                return path, status, error

        try:
            return list(await asyncio.gather(*(one(p) for p in files)))
        finally:
            bar.close()
    finally:
        await target.close()


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

    async def check_store(self) -> None:
        from llamda.errors import NotFoundError

        try:
            await self._stack.vector_stores.store_record(self._store)
        except NotFoundError as exc:
            raise UsageError(f"{exc.message} (nothing was uploaded)") from None

    async def sources(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        after: str | None = None
        while True:
            page = await self._stack.vector_stores.list_files(
                self._store, limit=PAGE, after=after, order="asc", status=None
            )
            for item in page.data:
                if isinstance(source := item.attributes.get(SOURCE_ATTRIBUTE), str):
                    out.setdefault(source, []).append(item.id)
            if not page.has_more or not page.data:
                return out
            after = page.data[-1].id

    async def one(
        self, path: Path, attributes: dict[str, Any], chunking: StaticChunkingStrategy | None
    ) -> tuple[str, str, str | None]:
        result = await self._service.ingest_local(
            self._store, await asyncio.to_thread(path.read_bytes), path.name, attributes, chunking
        )
        return result.status, result.last_error.message if result.last_error else "", result.id

    async def remove(self, file_id: str) -> None:
        from llamda.errors import NotFoundError

        with contextlib.suppress(NotFoundError):
            await self._stack.vector_stores.delete_file(self._store, file_id)
        with contextlib.suppress(NotFoundError):
            await self._stack.files.delete(file_id)

    async def close(self) -> None:
        await self._stack.close()


class _Remote:
    """A running stack: upload with POST /v1/files, attach with POST /v1/vector_stores/…/files."""

    def __init__(self, args: argparse.Namespace):
        import httpx

        headers = {}
        if args.api_key:
            headers = {"x-api-key": args.api_key, "Authorization": f"Bearer {args.api_key}"}
        self._url = args.url
        self._store = args.vector_store
        self._http = httpx.AsyncClient(
            base_url=args.url, headers=headers, timeout=httpx.Timeout(120, connect=10)
        )

    async def check_store(self) -> None:
        import httpx

        try:
            reply = await self._http.get(f"/v1/vector_stores/{self._store}")
        except httpx.HTTPError as exc:
            raise UsageError(f"cannot reach {self._url}: {type(exc).__name__}") from None
        if reply.status_code != 200:
            raise UsageError(
                f"vector store {self._store!r} at {self._url}: {_error(reply)} "
                "(nothing was uploaded)"
            )

    async def sources(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        params: dict[str, Any] = {"limit": PAGE, "order": "asc"}
        while True:
            reply = await self._http.get(f"/v1/vector_stores/{self._store}/files", params=params)
            if reply.status_code != 200:
                raise UsageError(f"cannot list the store's files: {_error(reply)}")
            page = reply.json()
            for item in page["data"]:
                source = (item.get("attributes") or {}).get(SOURCE_ATTRIBUTE)
                if isinstance(source, str):
                    out.setdefault(source, []).append(item["id"])
            if not page.get("has_more") or not page["data"]:
                return out
            params["after"] = page["data"][-1]["id"]

    async def one(
        self, path: Path, attributes: dict[str, Any], chunking: StaticChunkingStrategy | None
    ) -> tuple[str, str, str | None]:
        upload = await self._http.post(
            "/v1/files",
            files={"file": (path.name, await asyncio.to_thread(path.read_bytes))},
            data={"purpose": "assistants"},
        )
        if upload.status_code != 200:
            return "failed", _error(upload), None
        file_id = upload.json()["id"]
        body: dict[str, Any] = {"file_id": file_id, "attributes": attributes}
        if chunking:
            body["chunking_strategy"] = chunking.model_dump()
        attached = await self._http.post(f"/v1/vector_stores/{self._store}/files", json=body)
        if attached.status_code != 200:
            await self._http.delete(f"/v1/files/{file_id}")  # not left behind, unattached
            return "failed", _error(attached), None
        result = attached.json()
        return result["status"], (result.get("last_error") or {}).get("message", ""), file_id

    async def remove(self, file_id: str) -> None:
        await self._http.delete(f"/v1/vector_stores/{self._store}/files/{file_id}")
        await self._http.delete(f"/v1/files/{file_id}")

    async def close(self) -> None:
        await self._http.aclose()


def _error(response: Any) -> str:
    try:
        return f"{response.status_code}: {response.json()['error']['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code}: {response.text[:200]}"
