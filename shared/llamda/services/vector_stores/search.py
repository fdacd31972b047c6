"""Search and ranking: attribute filters compiled to LanceDB predicates, vector / keyword /
hybrid retrieval, fusion (reciprocal rank or weighted) and thresholds."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Awaitable
from typing import Any

from llamda.api.vector_stores import (
    ComparisonFilter,
    CompoundFilter,
    FileContent,
    Filter,
    RankingOptions,
    SearchRequest,
    SearchResponse,
    SearchResult,
)
from llamda.errors import BadRequestError, LlamdaError
from llamda.services.vector_stores.embedding import Embedder
from llamda.services.vector_stores.llm import StoreLLM
from llamda.services.vector_stores.stores import Stores
from llamda.storage.vectors_lancedb import SEARCH_COLUMNS, Hit, LanceDBIndex, quote

RRF_K = 60.0
# How deep pages reach: results past this rank are never served (a page token is an offset).
MAX_SEARCH_DEPTH = 1000


def compile_filter(node: Filter) -> str:
    """An OpenAI attribute filter as a LanceDB (DataFusion SQL) predicate on the json column.
    Numbers compare numerically (a non-number never matches), strings as strings."""
    if isinstance(node, CompoundFilter):
        glue = " AND " if node.type == "and" else " OR "
        return "(" + glue.join(compile_filter(f) for f in node.filters) + ")"
    if node.type in ("in", "nin"):
        op, glue = ("eq", " OR ") if node.type == "in" else ("ne", " AND ")
        values = node.value if isinstance(node.value, list) else [node.value]
        parts = [compile_filter(ComparisonFilter(type=op, key=node.key, value=v)) for v in values]
        return "(" + glue.join(parts) + ")"
    sql_op = {"eq": "=", "ne": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[node.type]
    value, key = node.value, node.key
    if isinstance(value, bool):
        if node.type not in ("eq", "ne"):
            raise BadRequestError("booleans compare with eq or ne only", param="filters")
        return f"json_extract(attributes, '$.{key}') {sql_op} '{str(value).lower()}'"
    if isinstance(value, int | float):
        return f"TRY_CAST(json_extract(attributes, '$.{key}') AS DOUBLE) {sql_op} {float(value)!r}"
    return f"json_get_string(attributes, '{key}') {sql_op} {quote(str(value))}"


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
    def __init__(self, stores: Stores, embedder: Embedder, index: LanceDBIndex, llm: StoreLLM):
        self._stores = stores
        self._embedder = embedder
        self._index = index
        self._llm = llm

    async def ranked(
        self,
        store: dict[str, Any],
        queries: list[str],
        *,
        mode: str,
        k: int,
        where: str | None,
        ranking: RankingOptions,
        columns: tuple[str, ...] = SEARCH_COLUMNS,
    ) -> list[tuple[dict[str, Any], float]]:
        """Best chunks for any of the queries, best score first. A store deleted while the
        search runs answers 404 (its table may vanish mid-query), not a 500."""
        try:
            ranked = await self._ranked(
                store, queries, mode=mode, k=k, where=where, ranking=ranking, columns=columns
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
        where: str | None,
        ranking: RankingOptions,
        columns: tuple[str, ...],
    ) -> list[tuple[dict[str, Any], float]]:
        vectors = await self._embedder.for_store(store, queries) if mode != "keyword" else []
        best: dict[str, tuple[dict[str, Any], float]] = {}
        wide = k * 3 if mode == "hybrid" else k

        def search(**kw: Any) -> Awaitable[list[Hit]]:
            return self._index.search(
                store["id"],
                k=wide,
                where=where,
                columns=columns,
                expiring=bool(store.get("has_ttl")),
                **kw,
            )

        for i, query in enumerate(queries):
            vector_hits = await search(mode="vector", vector=vectors[i]) if vectors else []
            keyword_hits = await search(mode="keyword", text=query) if mode != "vector" else []
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
            where=compile_filter(request.filters) if request.filters else None,
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
                    attributes=json.loads(row["attributes"] or "{}"),
                    content=[FileContent(text=row["text"])],
                )
                for row, score in ranked
            ],
        )
