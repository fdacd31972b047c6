"""Peer side of scripts/bench/vectors.py, run in .venv-bench-peer: Llama Stack 0.7.3's own
inline::faiss index (FaissIndex: IndexFlatL2, exact) on the same vectors and queries.
Prints one JSON line."""

import asyncio
import json
import sys
import time

import numpy as np
from llama_stack.providers.inline.vector_io.faiss.faiss import FaissIndex
from llama_stack_api.vector_io.models import EmbeddedChunk


async def main(data_path: str, k: int) -> None:
    data = np.load(data_path)
    vectors, queries, truth = data["vectors"], data["queries"], data["truth"]
    index = await FaissIndex.create(vectors.shape[1])
    start = time.perf_counter()
    batch = 10_000
    for lo in range(0, len(vectors), batch):
        await index.add_chunks(
            [
                EmbeddedChunk(
                    chunk_id=str(i),
                    content=f"chunk {i}",
                    metadata={},
                    chunk_metadata={"chunk_id": str(i)},
                    embedding=vectors[i].tolist(),
                    embedding_model="bench",
                    embedding_dimension=vectors.shape[1],
                )
                for i in range(lo, min(lo + batch, len(vectors)))
            ]
        )
    insert_s = time.perf_counter() - start
    latencies, hits = [], 0
    for q, expected in zip(queries, truth, strict=True):
        t = time.perf_counter()
        found = await index.query_vector(q, k, score_threshold=0.0)
        latencies.append((time.perf_counter() - t) * 1000)
        hits += len({int(c.chunk_id) for c in found.chunks} & set(expected[:k].tolist()))
    print(
        json.dumps(
            {
                "p50_ms": float(np.percentile(latencies, 50)),
                "p99_ms": float(np.percentile(latencies, 99)),
                "recall": hits / (len(queries) * k),
                "insert_rows_per_s": len(vectors) / insert_s,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
