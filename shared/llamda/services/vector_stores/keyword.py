"""Keyword search for backends without full-text search (``capabilities.keyword`` False): BM25
over the store's rows, filtered with the common filter semantics (``matches``). Fine at the
scale of an in-process backend (tens of thousands of chunks): it reads every row per query."""

from __future__ import annotations

import asyncio
import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from llamda.providers.vector_io.index import Filter, Hit, VectorIndex, matches

K1, B = 1.2, 0.75  # the usual BM25 constants (Lucene's, Tantivy's)
_WORD = re.compile(r"\w+", re.UNICODE)


def tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def bm25(query: str, rows: Sequence[dict[str, Any]], k: int) -> list[Hit]:
    """Best ``k`` rows for ``query`` by BM25, each score squashed to 0..1 as s / (s + 1) (as
    LanceDB's keyword scores are); rows matching no query term are left out."""
    terms = set(tokens(query))
    if not terms or not rows:
        return []
    docs = [Counter(tokens(str(r.get("text") or ""))) for r in rows]
    lengths = [sum(d.values()) for d in docs]
    average = (sum(lengths) / len(lengths)) or 1.0
    frequency = {t: sum(1 for d in docs if t in d) for t in terms}
    n = len(docs)
    scored: list[tuple[float, int]] = []
    for i, doc in enumerate(docs):
        score = 0.0
        for term in terms:
            tf = doc.get(term, 0)
            if tf:
                idf = math.log(1.0 + (n - frequency[term] + 0.5) / (frequency[term] + 0.5))
                score += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * lengths[i] / average))
        if score > 0:
            scored.append((score, i))
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [Hit(dict(rows[i]), s / (s + 1.0)) for s, i in scored[:k]]


async def fallback_keyword(
    index: VectorIndex,
    store_id: str,
    text: str,
    k: int,
    *,
    filters: Filter | None,
    alive_at: int | None,
    vectors: bool = False,
) -> list[Hit]:
    """Keyword search through the service: the store's live rows, filtered, ranked by BM25."""
    rows = await index.all_rows(store_id, alive_at=alive_at, vectors=vectors)

    def rank() -> list[Hit]:
        kept = rows
        if filters is not None:
            kept = [r for r in rows if matches(filters, r.get("attributes") or {})]
        return bm25(text, kept, k)

    # Tokenizing every row is O(store): in a worker thread, so the event loop keeps serving.
    return await asyncio.to_thread(rank)
