"""Datasets API shapes (Llama Stack 0.7, ``/v1beta/datasets`` and ``/v1beta/datasetio``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from llamda.api.bounds import JsonObject

# What a dataset is for; each purpose names the columns every row must have.
DatasetPurpose = Literal["eval/question-answer", "eval/messages-answer"]
# Our ids and Llama Stack's ("dataset-<uuid>", "mmlu", "my_set.v2"): one path segment.
DATASET_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
DatasetId = Annotated[str, Field(pattern=DATASET_ID, description="A dataset id.")]
MAX_URI_CHARS = 2048
# Rows in one request body are bounded by server.max_body_bytes; this bounds their count.
MAX_REQUEST_ROWS = 100_000
Row = dict[str, Any]


class URIDataSource(BaseModel):
    """Rows read from a URI when the dataset is registered: ``s3://`` within the stack's
    bucket (under the caller's tenant), a File id (``file-…``), or a path under
    ``eval.datasets_root`` (local)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["uri"] = "uri"
    uri: str = Field(min_length=1, max_length=MAX_URI_CHARS)


class RowsDataSource(BaseModel):
    """Rows given inline."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["rows"] = "rows"
    rows: list[Row] = Field(max_length=MAX_REQUEST_ROWS)


def _source_kind(value: Any) -> str:
    """The source's type; the client may leave ``type`` out, so it is told by the fields."""
    if isinstance(value, BaseModel):
        return str(getattr(value, "type", "uri"))
    if isinstance(value, dict):
        if isinstance(value.get("type"), str):
            return value["type"]
        return "rows" if "rows" in value else "uri"
    return "uri"


DataSource = Annotated[
    Annotated[URIDataSource, Tag("uri")] | Annotated[RowsDataSource, Tag("rows")],
    Discriminator(_source_kind),
]


class RegisterDatasetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    purpose: DatasetPurpose
    source: DataSource
    metadata: JsonObject | None = None
    dataset_id: DatasetId | None = None


class AppendRowsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rows: list[Row] = Field(max_length=MAX_REQUEST_ROWS)


class Dataset(BaseModel):
    """Llama Stack's Dataset resource. A ``rows`` source is answered without its rows (they can
    be large): read them with iterrows. ``row_count`` is ours."""

    identifier: str
    provider_resource_id: str | None = None
    provider_id: str
    type: Literal["dataset"] = "dataset"
    purpose: DatasetPurpose
    source: DataSource
    metadata: dict[str, Any] = Field(default_factory=dict)
    row_count: int = 0


class ListDatasetsResponse(BaseModel):
    data: list[Dataset]


class IterRowsResponse(BaseModel):
    """Llama Stack's PaginatedResponse; ``next_start_index`` (ours) is where the next page
    starts, null after the last one."""

    data: list[Row]
    has_more: bool
    next_start_index: int | None = None
    url: str | None = None
