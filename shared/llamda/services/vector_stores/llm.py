"""What vector stores ask an LLM: a short context for each chunk (contextual chunking) and a
rewritten search query (``rewrite_query``). Every call goes through the Inference service's
guarded ``chat`` (routing, limits, guardrails), never to a provider directly."""

from __future__ import annotations

import asyncio
from typing import Any

from llamda.api.inference import ChatCompletionRequest
from llamda.api.vector_stores import ContextualChunking
from llamda.errors import BadRequestError, LlamdaError
from llamda.observability import logger as log
from llamda.services.inference import InferenceService
from llamda.services.models import ModelsService

# Llama Stack's default query expansion prompt.
REWRITE_PROMPT = (
    "Expand this query with relevant synonyms and related terms. Return only the improved "
    "query, no explanations:\n\n{query}\n\nImproved query:"
)
REWRITE_MAX_TOKENS = 100
CONTEXT_MAX_TOKENS = 200
# The whole document sent with each chunk is cut to this many characters (the model's
# context and the cost of one call per chunk stay bounded whatever the file's size).
MAX_DOCUMENT_CHARS = 24_000
DEFAULT_CONCURRENCY = 4
# One model call per chunk: a file of more chunks fails (its last_error says so) rather than
# spending thousands of calls (a 2M-token file at 700 tokens a chunk would be ~3,000).
MAX_CONTEXTUAL_CHUNKS = 500
DEFAULT_TIMEOUT_SECONDS = 60


def _reply_text(reply: Any) -> str:
    content = reply.choices[0].message.content if reply.choices else None
    return content.strip() if isinstance(content, str) else ""


class StoreLLM:
    def __init__(
        self, inference: InferenceService, models: ModelsService, rewrite_model: str | None
    ):
        self._inference = inference
        self._models = models
        self._rewrite_model = rewrite_model

    async def _chat(self, model: str, prompt: str, max_tokens: int) -> str:
        request = ChatCompletionRequest.model_validate(
            {
                "model": model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens,
                "temperature": 0.0,
            }
        )
        return _reply_text((await self._inference.chat(request)).value)

    async def check_llm(self, model_id: str, param: str) -> None:
        """404 for an unknown model, 400 when it is not a chat model (before any work)."""
        model = await self._models.get(model_id)
        if model.model_type != "llm":
            raise BadRequestError(f"{model_id!r} is not an LLM", param=param)

    async def _default_model(self) -> str:
        if self._rewrite_model:
            return self._rewrite_model
        for model in await self._models.list():
            if model.model_type == "llm":
                return model.id
        raise BadRequestError(
            "rewrite_query needs an LLM and none is configured "
            "(storage.vectors.query_rewrite_model)",
            param="rewrite_query",
        )

    async def rewrite(self, queries: list[str]) -> list[str]:
        """Each query as the default LLM rewrites it (an empty answer keeps the query). The
        rewrite only improves a search: when the model's upstream fails, the search goes on
        with the queries as sent (``search_query`` shows which were used)."""
        model = await self._default_model()
        out = []
        for query in queries:
            try:
                text = await self._chat(
                    model, REWRITE_PROMPT.format(query=query), REWRITE_MAX_TOKENS
                )
            except LlamdaError as exc:
                if exc.status_code < 500:
                    raise
                log.warning("query rewrite skipped", error=exc.message)
                text = ""
            out.append(" ".join(text.split())[:2000] or query)
        return out

    async def contextualize(
        self, settings: ContextualChunking, document: str, chunks: list[str]
    ) -> list[str]:
        """Each chunk with the model's short context for it prepended (Llama Stack's
        contextual retrieval); a failed call fails the file (its ``last_error`` says why)."""
        assert settings.model_id is not None  # the request model requires it
        if len(chunks) > MAX_CONTEXTUAL_CHUNKS:
            raise BadRequestError(
                f"contextual chunking takes at most {MAX_CONTEXTUAL_CHUNKS} chunks a file; this "
                f"file has {len(chunks)}: use larger chunks, or static chunking",
                param="chunking_strategy",
            )
        whole = document[:MAX_DOCUMENT_CHARS]
        limit = asyncio.Semaphore(settings.max_concurrency or DEFAULT_CONCURRENCY)
        timeout = settings.timeout_seconds or DEFAULT_TIMEOUT_SECONDS

        async def one(chunk: str) -> str:
            # str.replace, not format: documents contain braces.
            prompt = settings.context_prompt.replace("{{WHOLE_DOCUMENT}}", whole).replace(
                "{{CHUNK_CONTENT}}", chunk
            )
            async with limit:
                try:
                    async with asyncio.timeout(timeout):
                        context = await self._chat(settings.model_id, prompt, CONTEXT_MAX_TOKENS)
                except TimeoutError:
                    raise LlamdaError(
                        f"the context model {settings.model_id!r} did not answer within {timeout} s"
                    ) from None
            return f"{context}\n\n{chunk}" if context else chunk

        return list(await asyncio.gather(*(one(c) for c in chunks)))
