"""Config models of vector-io providers (``providers.vector_io[].config``). LanceDB's location
and tuning live in ``storage.vectors`` (shared by every LanceDB provider of the stack)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class LanceDBConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FaissConfig(BaseModel):
    """FAISS in process; each store's index and rows persisted through the object store."""

    model_config = ConfigDict(extra="forbid")
    prefix: str = Field(
        "vector_io/faiss",
        pattern=r"^[A-Za-z0-9_-]{1,64}(/[A-Za-z0-9_-]{1,64}){0,4}$",
        description="Object-store key prefix (under the tenant's keys) of the saved indexes.",
    )
    index: Literal["flat"] = Field(
        "flat", description="flat: exact inner product on normalized vectors (cosine)."
    )
