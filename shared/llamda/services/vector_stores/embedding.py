"""Embeddings for a store: batched calls to the Inference service, dimensions checked."""

from __future__ import annotations

from typing import Any

from llamda.api.inference import EmbeddingsRequest
from llamda.errors import BadRequestError
from llamda.services.inference import InferenceService

EMBED_BATCH = 64


class Embedder:
    def __init__(self, inference: InferenceService):
        self._inference = inference

    async def embed(
        self, model: str, dimensions: int | None, texts: list[str]
    ) -> list[list[float]]:
        """One vector per text, in order, ``EMBED_BATCH`` texts per call."""
        out: list[list[float]] = []
        for start in range(0, len(texts), EMBED_BATCH):
            request = EmbeddingsRequest(
                model=model, input=texts[start : start + EMBED_BATCH], dimensions=dimensions
            )
            served = await self._inference.embeddings(request)
            data = sorted(served.value.data, key=lambda e: e.index)
            out.extend(e.embedding for e in data)  # type: ignore[misc]
        return out

    async def for_store(self, store: dict[str, Any], texts: list[str]) -> list[list[float]]:
        """Vectors from the store's model, each of the store's dimension (else a 400)."""
        vectors = await self.embed(store["embedding_model"], store.get("request_dimensions"), texts)
        for vector in vectors:
            if len(vector) != store["embedding_dimension"]:
                raise BadRequestError(
                    f"{store['embedding_model']} returned {len(vector)} dimensions; the store "
                    f"has {store['embedding_dimension']}",
                    param="embedding_dimension",
                )
        return vectors
