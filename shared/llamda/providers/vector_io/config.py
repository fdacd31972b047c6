"""Config models of vector-io providers. LanceDB's location and tuning live in storage.vectors."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class LanceDBConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
