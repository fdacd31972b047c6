"""Models API shapes: OpenAI's model object plus Llama Stack's resource fields."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from llamda.api.bounds import JsonObject

ModelType = Literal["llm", "embedding", "rerank"]
MODEL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,255}$"
Name = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class Model(BaseModel):
    """One model, readable by the OpenAI SDK (id, object, created, owned_by) and by
    llama-stack-client (identifier, provider_id, provider_resource_id, model_type, metadata)."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    identifier: str
    provider_id: str
    provider_resource_id: str
    model_type: ModelType
    metadata: dict[str, Any] = Field(default_factory=dict)
    type: Literal["model"] = "model"
    fallbacks: list[str] = Field(default_factory=list)
    context_window_fallbacks: list[str] = Field(default_factory=list)
    content_policy_fallbacks: list[str] = Field(default_factory=list)
    input_shields: list[str] = Field(default_factory=list)
    output_shields: list[str] = Field(default_factory=list)
    custom_metadata: dict[str, Any] = Field(
        default_factory=dict, description="Llama Stack's list view of the resource fields."
    )
    source: Literal["run_config", "registered", "discovered"] = Field(
        description="Where the model comes from: the run config, POST /v1/models, or its "
        "provider (listed or probed when the server started)."
    )


class ListModelsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


class RegisterModelRequest(BaseModel):
    """Llama Stack's model registration body (kept by Llamda as an addition)."""

    model_config = ConfigDict(extra="forbid")

    model_id: str = Field(pattern=MODEL_ID_PATTERN, description="The id clients will use.")
    provider_id: Name | None = Field(
        None, description="An inference provider of the run config; optional when there is one."
    )
    provider_model_id: str | None = Field(
        None, min_length=1, max_length=512, description="The provider's id; defaults to model_id."
    )
    model_type: ModelType = "llm"
    metadata: JsonObject = Field(default_factory=dict)
    fallbacks: list[Name] = Field(default_factory=list, max_length=8)
    context_window_fallbacks: list[Name] = Field(default_factory=list, max_length=8)
    content_policy_fallbacks: list[Name] = Field(default_factory=list, max_length=8)
    input_shields: list[Name] = Field(default_factory=list, max_length=8)
    output_shields: list[Name] = Field(default_factory=list, max_length=8)
    shared: bool = Field(
        False,
        description="Llamda addition: register for every tenant (admin role); otherwise the "
        "model is the caller's tenant's own.",
    )


class DeleteModelResponse(BaseModel):
    id: str
    object: Literal["model"] = "model"
    deleted: bool = True
