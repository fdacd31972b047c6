"""The service's BM25, for vector backends without full-text search (FAISS)."""

from __future__ import annotations

from llamda.services.vector_stores.keyword import bm25, tokens


def _rows(*texts: str) -> list[dict]:
    return [{"chunk_id": f"c{i}", "text": t} for i, t in enumerate(texts)]


def test_ranks_by_term_weight_and_leaves_out_non_matches() -> None:
    rows = _rows(
        "the llama and the alpaca",
        "alpaca alpaca alpaca wool",
        "camels in the desert",
        "the the the the",
    )
    hits = bm25("Alpaca wool!", rows, 10)
    assert [h.row["chunk_id"] for h in hits] == ["c1", "c0"]
    assert all(0 < h.score < 1 for h in hits) and hits[0].score > hits[1].score
    # A common word weighs less than a rare one: "the" alone still finds, ranked by frequency.
    assert [h.row["chunk_id"] for h in bm25("the", rows, 2)] == ["c3", "c0"]


def test_empty_and_unicode_queries() -> None:
    rows = _rows("Ñandú corre rápido", "nothing here")
    assert bm25("", rows, 5) == [] and bm25("!!!", rows, 5) == []
    assert [h.row["chunk_id"] for h in bm25("ñandú", rows, 5)] == ["c0"]
    assert tokens("Ñandú, RÁPIDO") == ["ñandú", "rápido"]
