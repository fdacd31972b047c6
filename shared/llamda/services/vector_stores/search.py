"""Search and ranking over a store's ``VectorIndex``: vector / keyword / hybrid retrieval (the
backend's own keyword and hybrid search where it has them, else BM25 here and fusion here),
fusion (reciprocal rank or weighted), thresholds and page tokens. Filters go to the backend as
the API's filter tree: each backend compiles them itself."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Sequence
from typing import Any

from llamda.api.vector_stores import (
    FileContent,
    Filter,
    RankingOptions,
    SearchRequest,
    SearchResponse,
    SearchResult,
)
from llamda.errors import BadRequestError, LlamdaError
from llamda.providers.vector_io.index import SEARCH_KEYS, Hit, VectorIndex
from llamda.services.vector_stores.embedding import Embedder
from llamda.services.vector_stores.keyword import fallback_keyword
from llamda.services.vector_stores.llm import StoreLLM
from llamda.services.vector_stores.stores import Stores

RRF_K = 60.0
# How deep pages reach: results past this rank are never served (a page token is an offset).
MAX_SEARCH_DEPTH = 1000


def fuse(
    vector: list[Hit], keyword: list[Hit], ranking: RankingOptions
) -> list[tuple[dict[str, Any], float]]:
    """Hybrid: reciprocal rank fusion (default, scaled to 0..1) or a weighted sum of scores."""
    rows: dict[str, dict[str, Any]] = {}
    scores: dict[str, float] = {}
    if ranking.ranker == "weighted":
        alpha = 0.5 if ranking.alpha is None else ranking.alpha
        for hits, weight in ((vector, alpha), (keyword, 1.0 - alpha)):
            for hit in hits:
                cid = hit.row["chunk_id"]
                rows[cid] = hit.row
                scores[cid] = scores.get(cid, 0.0) + weight * hit.score
    else:
        k = ranking.impact_factor or RRF_K
        for hits in (vector, keyword):
            for rank, hit in enumerate(hits):
                cid = hit.row["chunk_id"]
                rows[cid] = hit.row
                scores[cid] = scores.get(cid, 0.0) + (1.0 / (k + rank + 1)) / (2.0 / (k + 1))
    return [(rows[c], s) for c, s in scores.items()]


def _fingerprint(store_id: str, request: SearchRequest) -> str:
    """What a page token is bound to: the store and the search, without its page."""
    body = request.model_dump(mode="json", exclude={"page"})
    raw = json.dumps([store_id, body], sort_keys=True).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def page_token(offset: int, fingerprint: str) -> str:
    raw = json.dumps({"o": offset, "f": fingerprint}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def page_offset(token: str | None, fingerprint: str) -> int:
    """The offset a ``next_page`` token stands for (400 for a token of another search)."""
    if token is None:
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        offset, bound = data["o"], data["f"]
    except (ValueError, TypeError, KeyError):
        offset, bound = None, None
    if not isinstance(offset, int) or not 0 < offset < MAX_SEARCH_DEPTH or bound != fingerprint:
        raise BadRequestError(
            "page is not a next_page token of this search (same store, query and options)",
            param="page",
        )
    return offset


def check_ranking(ranking: RankingOptions) -> RankingOptions:
    """Llama Stack's rankers: ``weights`` become the weighted ranker's alpha; ``neural`` needs
    a rerank model, which no provider here serves: a 400 that says so."""
    if ranking.ranker == "neural":
        if not ranking.model:
            raise BadRequestError(
                "ranking_options.model is required with the neural ranker",
                param="ranking_options.model",
            )
        raise BadRequestError(
            f"the neural ranker ({ranking.model!r}) is not supported: no provider of this stack "
            "serves rerank models; use rrf or weighted",
            param="ranking_options.ranker",
            code="unsupported_ranker",
        )
    if ranking.weights and ranking.alpha is None:
        vector, keyword = ranking.weights.get("vector", 0.0), ranking.weights.get("keyword", 0.0)
        if vector < 0 or keyword < 0 or vector + keyword <= 0:
            raise BadRequestError(
                "ranking_options.weights: vector and keyword must be >= 0, not both 0",
                param="ranking_options.weights",
            )
        if ranking.weights.get("neural"):
            raise BadRequestError(
                "ranking_options.weights.neural: no provider of this stack serves rerank models",
                param="ranking_options.weights",
            )
        ranking = ranking.model_copy(update={"alpha": vector / (vector + keyword)})
    return ranking


class Search:
    def __init__(self, stores: Stores, embedder: Embedder, llm: StoreLLM):
        self._stores = stores
        self._embedder = embedder
        self._llm = llm

    async def ranked(
        self,
        store: dict[str, Any],
        queries: list[str],
        *,
        mode: str,
        k: int,
        filters: Filter | None,
        ranking: RankingOptions,
        keys: Sequence[str] = SEARCH_KEYS,
    ) -> list[tuple[dict[str, Any], float]]:
        """Best chunks for any of the queries, best score first. A store deleted while the
        search runs answers 404 (its table may vanish mid-query), not a 500."""
        try:
            ranked = await self._ranked(
                store, queries, mode=mode, k=k, filters=filters, ranking=ranking, keys=keys
            )
        except LlamdaError:
            raise
        except Exception:
            await self._stores.check_exists(store["id"])  # 404 when deleted meanwhile
            raise
        if not ranked:  # nothing found: a missing table reads as empty; was it deleted?
            await self._stores.check_exists(store["id"])
        return ranked

    async def _ranked(
        self,
        store: dict[str, Any],
        queries: list[str],
        *,
        mode: str,
        k: int,
        filters: Filter | None,
        ranking: RankingOptions,
        keys: Sequence[str],
    ) -> list[tuple[dict[str, Any], float]]:
        index = self._stores.index(store)
        store_id = store["id"]
        vectors = await self._embedder.for_store(store, queries) if mode != "keyword" else []
        best: dict[str, tuple[dict[str, Any], float]] = {}
        wide = k * 3 if mode == "hybrid" else k
        # Stores with TTL rows (vector-io insert) leave out expired ones.
        alive_at = int(time.time()) if store.get("has_ttl") else None
        common: dict[str, Any] = {"filters": filters, "alive_at": alive_at}
        for i, query in enumerate(queries):
            if mode == "hybrid" and index.capabilities.hybrid:
                alpha = ranking.alpha if ranking.ranker == "weighted" else None
                hits = await index.search_hybrid(
                    store_id, vectors[i], query, k, keys=keys, alpha=alpha, **common
                )
                scored = [(h.row, h.score) for h in hits]
            else:
                vector_hits = (
                    await index.search_vector(store_id, vectors[i], wide, keys=keys, **common)
                    if vectors
                    else []
                )
                keyword_hits = (
                    await self._keyword(index, store_id, query, wide, keys, **common)
                    if mode != "vector"
                    else []
                )
                if mode == "hybrid":
                    scored = fuse(vector_hits, keyword_hits, ranking)
                else:
                    scored = [(h.row, h.score) for h in vector_hits or keyword_hits]
            for row, score in scored:
                current = best.get(row["chunk_id"])
                if current is None or score > current[1]:
                    best[row["chunk_id"]] = (row, score)
        ranked = sorted(best.values(), key=lambda item: item[1], reverse=True)
        return [item for item in ranked if item[1] >= ranking.score_threshold][:k]

    @staticmethod
    async def _keyword(
        index: VectorIndex,
        store_id: str,
        text: str,
        k: int,
        keys: Sequence[str],
        *,
        filters: Filter | None,
        alive_at: int | None,
    ) -> list[Hit]:
        """The backend's full-text search, or BM25 here for a backend without one."""
        if index.capabilities.keyword:
            return await index.search_keyword(
                store_id, text, k, filters=filters, alive_at=alive_at, keys=keys
            )
        return await fallback_keyword(
            index, store_id, text, k, filters=filters, alive_at=alive_at, vectors="vector" in keys
        )

    async def search(self, store_id: str, request: SearchRequest) -> SearchResponse:
        """One page of results. ``next_page`` (when ``has_more``) is a token for the next page
        of the same search, passed back as ``page``; pages reach ``MAX_SEARCH_DEPTH``."""
        ranking = check_ranking(request.ranking_options or RankingOptions())
        fingerprint = _fingerprint(store_id, request)
        offset = page_offset(request.page, fingerprint)
        store = await self._stores.searchable(store_id)
        queries = await self._llm.rewrite(request.queries) if request.rewrite_query else None
        end = offset + request.max_num_results
        ranked = await self.ranked(
            store,
            queries or request.queries,
            mode=request.search_mode,
            k=min(end + 1, MAX_SEARCH_DEPTH),  # one more: is there a next page?
            filters=request.filters,
            ranking=ranking,
        )
        has_more = len(ranked) > end
        ranked = ranked[offset:end]
        return SearchResponse(
            search_query=queries or request.queries,
            has_more=has_more,
            next_page=page_token(end, fingerprint) if has_more else None,
            data=[
                SearchResult(
                    file_id=row["file_id"] or "",
                    filename=row["filename"] or "",
                    score=round(score, 6),
                    attributes=row["attributes"] or {},
                    content=[FileContent(text=row["text"])],
                )
                for row, score in ranked
            ],
        )
