"""The server-backed vector backends for ``scripts/bench/vectors.py --backend
pgvector|chromadb|weaviate``: a throwaway PostgreSQL + pgvector or Chroma server (the tests' own,
tests/backends.py) and the provider on it, measured through the ``VectorIndex`` protocol like
every backend. Weaviate: only a real one (``WEAVIATE_URL``, ``WEAVIATE_GRPC_PORT``,
``WEAVIATE_API_KEY``; the bench's collection is dropped afterwards). Without it the run stops and
says why: the only Weaviate here is the tests' wire-level fake, a brute-force Python scan whose
numbers would be the fake's, not Weaviate's.

- insert rate: the rows written by ``upsert`` in batches (pgvector: into a table without its
  HNSW index, which the maintenance step then builds — ``hnsw_build_rows`` — and, separately,
  a sample of rows written into the indexed table, the rate once the index exists);
- search: p50 / p99 of ``search_vector`` top-k and recall@k against exact search.

    .venv/bin/python scripts/bench/_vectors_remote.py --backend pgvector [--rows 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "shared")]

from llamda.config import VectorsConfig  # noqa: E402
from llamda.providers.vector_io.index import ChunkRow, IndexContext, VectorIndex  # noqa: E402

BACKENDS = ("pgvector", "chromadb", "weaviate")
BATCH = 10_000  # as vectors.py (Chroma's client splits by its server's limit)
STORE = "bench"


def open_backend(name: str) -> tuple[VectorIndex, Callable[[], None]]:
    """The provider on a fresh server of its own; and how to stop that server."""
    from tests.backends import ChromaServer, PostgresServer

    context = IndexContext(vectors=VectorsConfig(uri=tempfile.mkdtemp()))
    if name == "pgvector":
        from llamda.providers.vector_io.config import PgVectorConfig
        from llamda.providers.vector_io.pgvector import PgVectorIndex

        pg = PostgresServer()
        config = PgVectorConfig(
            host="127.0.0.1",
            port=pg.port,
            db=pg.database,
            user="llamda",
            password=pg.password,
            sslmode="disable",
            statement_timeout_seconds=300,
            hnsw_build_rows=1,  # built by maintain() after the load
        )
        return PgVectorIndex("pgvector", config, context), pg.close
    if name == "chromadb":
        from llamda.providers.vector_io.chroma import ChromaIndex
        from llamda.providers.vector_io.config import ChromaConfig

        chroma = ChromaServer()
        config = ChromaConfig(url=chroma.url, timeout_seconds=300)
        return ChromaIndex("chromadb", config, context), chroma.close
    if name == "weaviate":
        import os
        import uuid
        from urllib.parse import urlsplit

        if not os.environ.get("WEAVIATE_URL"):
            raise SystemExit(
                "weaviate: skipped. No Weaviate server runs here; the tests' wire-level fake "
                "(tests/fakes/weaviate_server.py) scans in Python, so its numbers would be the "
                "fake's, not Weaviate's. Set WEAVIATE_URL (and WEAVIATE_GRPC_PORT, "
                "WEAVIATE_API_KEY) to bench a real server."
            )
        from llamda.providers.vector_io.config import WeaviateConfig
        from llamda.providers.vector_io.weaviate import WeaviateIndex

        url = urlsplit(os.environ["WEAVIATE_URL"])
        secure = url.scheme == "https"
        config = WeaviateConfig(
            http_host=url.hostname or "localhost",
            http_port=url.port or (443 if secure else 8080),
            http_secure=secure,
            grpc_port=int(os.environ.get("WEAVIATE_GRPC_PORT") or 50051),
            api_key=os.environ.get("WEAVIATE_API_KEY") or None,
            collection_prefix="Bench" + uuid.uuid4().hex[:8] + "_",
            timeout_seconds=300,
        )
        return WeaviateIndex("weaviate", config, context), lambda: None
    raise SystemExit(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")


def _rows(vectors: np.ndarray, lo: int, hi: int, prefix: str = "") -> list[ChunkRow]:
    return [
        ChunkRow(f"{prefix}{i}", "f", "f.txt", i, 1, f"chunk {i}", vectors[i].tolist())
        for i in range(lo, hi)
    ]


async def run(name: str, data: dict[str, np.ndarray], queries: int, k: int) -> dict[str, Any]:
    """Load, index, measure; the numbers as a dict (``vectors.py`` prints them)."""
    index, stop = open_backend(name)
    vectors = data["vectors"]
    dim = vectors.shape[1]
    out: dict[str, Any] = {"backend": name}
    try:
        await index.create(STORE, dim)
        start = time.perf_counter()
        for lo in range(0, len(vectors), BATCH):
            await index.upsert(STORE, _rows(vectors, lo, min(lo + BATCH, len(vectors))), dim)
        out["load_s"] = time.perf_counter() - start
        out["insert_per_s"] = len(vectors) / out["load_s"]
        start = time.perf_counter()
        await index.maintain(STORE)
        out["index_build_s"] = time.perf_counter() - start
        if name == "pgvector":  # the rate once the HNSW index exists (each insert updates it)
            sample = min(2000, len(vectors))
            start = time.perf_counter()
            await index.upsert(STORE, _rows(vectors, 0, sample, prefix="again-"), dim)
            out["indexed_insert_per_s"] = sample / (time.perf_counter() - start)
            await index.delete_chunks(STORE, [f"again-{i}" for i in range(sample)])
        await index.search_vector(STORE, data["queries"][0].tolist(), k)  # warm
        latencies, hits = [], 0
        for q, expected in zip(data["queries"][:queries], data["truth"][:queries], strict=True):
            start = time.perf_counter()
            found = await index.search_vector(STORE, q.tolist(), k)
            latencies.append((time.perf_counter() - start) * 1000)
            hits += len({int(h.row["chunk_id"]) for h in found} & set(expected.tolist()))
        latencies.sort()
        out["p50_ms"] = statistics.median(latencies)
        out["p99_ms"] = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        out["recall"] = hits / (queries * k)
        if name == "weaviate":  # someone else's server: leave nothing behind
            await index.drop(STORE)
        await index.close()
    finally:
        stop()
    return out


def remote_report(
    name: str,
    data: dict[str, np.ndarray],
    queries: int,
    lines: list[str],
    row: Callable[[str, dict[str, float]], str],
) -> str:
    """``vectors.py``'s report for a server-backed backend."""
    from scripts.bench.vectors import K

    r = asyncio.run(run(name, data, queries, K))
    head = (
        f"local server (load {r['load_s']:.1f} s, {r['insert_per_s']:.0f} rows/s "
        f"in batches of {BATCH}"
    )
    if name == "pgvector":
        head += (
            f" into the table, HNSW build {r['index_build_s']:.1f} s, then "
            f"{r['indexed_insert_per_s']:.0f} rows/s into the indexed table"
        )
    lines += [head + "):", row(f"llamda {name}", r)]
    return "\n".join(lines)


def main() -> None:
    from scripts.bench.vectors import K, make_data

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=BACKENDS, required=True)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    result = asyncio.run(run(args.backend, make_data(args.rows, args.queries), args.queries, K))
    print(result)


if __name__ == "__main__":
    main()
