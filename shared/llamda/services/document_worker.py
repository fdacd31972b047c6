"""Parsing and chunking in a worker process per file, so hostile documents (PDF stream bombs,
quadratic HTML, deep nesting, huge text) never block the server's event loop or grow it.

One ``multiprocessing`` Process per file, its result sent back over a Pipe: Lambda has no
/dev/shm, so no ProcessPoolExecutor or multiprocessing.Queue (both need POSIX semaphores).

Start method: "fork" (Linux, Lambda included). Measured here per file: fork ~40 ms, forkserver
~160 ms, spawn ~500 ms. spawn and forkserver also re-run the parent's ``__main__`` in every
worker (``llamda.cli``, or the Lambda runtime's bootstrap). Forking a multi-threaded server is
safe here because the child only runs this module's parsers: CPython re-creates the import and
logging locks after a fork, and the parent never tokenizes (the tokenizer and parsers are
loaded once in the parent, before the first fork, so each child starts warm). The target is
module-level and its arguments pickle, so the code also runs under "spawn" (START_METHOD).

The parent waits without blocking the loop: ``loop.add_reader`` on the pipe, then a thread
reads the pickled result. Past ``max_seconds`` the worker is killed; any failure (a limit, a
parse error, a crash) is a ``DocumentError`` that fails the file, never the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import warnings
from functools import cache
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from typing import Any

from llamda.services.documents import DocumentError, DocumentLimits, TextChunk

START_METHOD = "fork" if sys.platform == "linux" else "spawn"


@cache
def _context() -> BaseContext:
    return multiprocessing.get_context(START_METHOD)


_warm_lock = threading.Lock()
_warmed = False


def _warm() -> None:
    """Load the parsers and the tokenizer once in the parent, so forked workers start warm
    (importing pypdf alone takes about a second). Every caller returns only once they are
    loaded: a fork during an import would leave the child a half-imported module."""
    global _warmed
    with _warm_lock:
        if _warmed:
            return
        import pypdf  # noqa: F401
        import selectolax.lexbor  # noqa: F401

        from llamda.services.documents import tokenizer

        tokenizer()
        _warmed = True


def _work(
    conn: Connection,
    data: bytes,
    filename: str,
    content_type: str | None,
    max_chunk_tokens: int,
    overlap_tokens: int,
    limits: DocumentLimits,
) -> None:
    """The worker: ("ok", chunks) or ("error", code, message) out."""
    from llamda.services.documents import document_chunks

    # A forked worker inherits the server's signal wiring: its event loop's wakeup fd (a
    # signal here would reach the server's loop) and its handlers. Plain defaults instead.
    with contextlib.suppress(ValueError):
        signal.set_wakeup_fd(-1)
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_DFL)
    try:
        chunks = document_chunks(
            data, filename, content_type, max_chunk_tokens, overlap_tokens, limits
        )
        outcome: tuple[Any, ...] = ("ok", chunks)
    except DocumentError as exc:
        outcome = ("error", exc.code, exc.message)
    except MemoryError:
        outcome = ("error", "invalid_file", f"{filename!r}: too large to read in memory")
    except Exception as exc:  # a parser bug must fail the file, not the request
        outcome = ("error", "server_error", f"{filename!r}: {type(exc).__name__} while reading")
    conn.send(outcome)
    conn.close()


async def _readable(conn: Connection) -> None:
    """Until the pipe has data or its other end closed (the worker finished or died)."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    fd = conn.fileno()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def document_chunks_isolated(
    data: bytes,
    filename: str,
    content_type: str | None,
    max_chunk_tokens: int,
    overlap_tokens: int,
    limits: DocumentLimits,
    max_seconds: float,
) -> list[TextChunk]:
    """``documents.document_chunks`` in a worker process, killed after ``max_seconds``."""
    await asyncio.to_thread(_warm)
    ctx = _context()
    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(  # type: ignore[attr-defined]
        target=_work,
        args=(child, data, filename, content_type, max_chunk_tokens, overlap_tokens, limits),
        name="llamda-document-worker",
        daemon=True,
    )
    receiving: asyncio.Future[Any] | None = None
    try:
        with warnings.catch_warnings():
            # 3.12 warns on any fork of a multi-threaded process; see the module docstring.
            warnings.simplefilter("ignore", DeprecationWarning)
            process.start()  # a fork: milliseconds (under "spawn": data is pickled over)
        child.close()
        async with asyncio.timeout(max_seconds):
            await _readable(parent)
            # The read end's O_NONBLOCK flag is shared with the forked worker, which inherits
            # the fd: something there set it (seen in the backend matrix, with faiss, psycopg or
            # chromadb loaded), and a recv of a result larger than the pipe's buffer then failed
            # half way with EAGAIN ("the worker stopped"). Set blocking again once it writes.
            os.set_blocking(parent.fileno(), True)
            receiving = asyncio.ensure_future(asyncio.to_thread(parent.recv))
            try:
                outcome = await receiving
            except (EOFError, OSError):
                await asyncio.to_thread(process.join, 5)
                raise DocumentError(
                    "server_error",
                    f"{filename!r}: the document worker stopped (exit code {process.exitcode})",
                ) from None
    except TimeoutError:
        raise DocumentError(
            "invalid_file",
            f"{filename!r}: reading took longer than {max_seconds:g} s, the per-file limit "
            "(storage.vectors.ingest.max_seconds)",
        ) from None
    finally:
        if process.pid is not None:
            if process.is_alive():
                process.kill()
            await asyncio.to_thread(process.join)
        if receiving is not None:  # the reading thread ends once the worker is gone
            with contextlib.suppress(BaseException):
                await receiving
        parent.close()
        child.close()
        if process.pid is not None:
            process.close()
    if outcome[0] == "ok":
        return outcome[1]
    raise DocumentError(outcome[1], outcome[2])
