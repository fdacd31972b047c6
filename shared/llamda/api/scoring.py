"""Scoring and scoring-function API shapes (Llama Stack 0.7, ``/v1/scoring...``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from llamda.api.bounds import JsonObject
from llamda.api.datasets import MAX_REQUEST_ROWS, DatasetId, Row

AggregationFunction = Literal[
    "average", "weighted_average", "median", "categorical_count", "accuracy"
]
# Regexes are user input, compiled by RE2 (linear time); these bound what is compiled.
MAX_REGEX_CHARS = 1_000
MAX_REGEXES = 64
MAX_PROMPT_TEMPLATE_CHARS = 32_768
MAX_FUNCTIONS_PER_REQUEST = 32
SCORING_FN_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
ScoringFnId = Annotated[str, Field(pattern=SCORING_FN_ID, description="A scoring function id.")]
Regex = Annotated[str, Field(min_length=1, max_length=MAX_REGEX_CHARS)]
Aggregations = Annotated[list[AggregationFunction], Field(max_length=8)]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    aggregation_functions: Aggregations = Field(default_factory=list)


class LLMAsJudgeParams(_Params):
    """A judge model rates each row; the first ``judge_score_regexes`` match (group 1) of its
    reply is the score. The template's ``{placeholders}`` are row columns."""

    type: Literal["llm_as_judge"] = "llm_as_judge"
    # Required by the client; "" (or a built-in judge's params) falls back to eval.judge_model.
    judge_model: str = Field(max_length=256)
    prompt_template: str | None = Field(None, max_length=MAX_PROMPT_TEMPLATE_CHARS)
    judge_score_regexes: Annotated[list[Regex], Field(max_length=MAX_REGEXES)] = Field(
        default_factory=list
    )


class RegexParserParams(_Params):
    """The first ``parsing_regexes`` match (group 1) of ``generated_answer`` is compared with
    ``expected_answer``."""

    type: Literal["regex_parser"] = "regex_parser"
    parsing_regexes: Annotated[list[Regex], Field(max_length=MAX_REGEXES)] = Field(
        default_factory=list
    )


class BasicParams(_Params):
    type: Literal["basic"] = "basic"


def _params_kind(value: Any) -> str:
    """The params' type; the client may leave ``type`` out, so it is told by the fields."""
    if isinstance(value, BaseModel):
        return str(getattr(value, "type", "basic"))
    if not isinstance(value, dict):
        return "basic"
    if isinstance(value.get("type"), str):
        return value["type"]
    if "judge_model" in value or "judge_score_regexes" in value or "prompt_template" in value:
        return "llm_as_judge"
    if "parsing_regexes" in value:
        return "regex_parser"
    return "basic"


ScoringFnParams = Annotated[
    Annotated[LLMAsJudgeParams, Tag("llm_as_judge")]
    | Annotated[RegexParserParams, Tag("regex_parser")]
    | Annotated[BasicParams, Tag("basic")],
    Discriminator(_params_kind),
]
ScoringFunctions = Annotated[
    dict[ScoringFnId, ScoringFnParams | None],
    Field(min_length=1, max_length=MAX_FUNCTIONS_PER_REQUEST),
]


class ReturnType(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal[
        "string",
        "number",
        "boolean",
        "array",
        "object",
        "json",
        "union",
        "chat_completion_input",
        "completion_input",
        "agent_turn_input",
    ]


class ScoringFn(BaseModel):
    identifier: str
    provider_resource_id: str | None = None
    provider_id: str
    type: Literal["scoring_function"] = "scoring_function"
    description: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    return_type: ReturnType
    params: ScoringFnParams | None = None


class ListScoringFunctionsResponse(BaseModel):
    data: list[ScoringFn]


class RegisterScoringFunctionRequest(BaseModel):
    """A tenant's own function: LLM-as-judge params or a regex parser."""

    model_config = ConfigDict(extra="forbid")

    scoring_fn_id: ScoringFnId
    description: str = Field(max_length=4_096)
    return_type: ReturnType
    params: ScoringFnParams | None = None
    provider_id: str | None = Field(None, max_length=64)
    provider_scoring_fn_id: str | None = Field(None, max_length=128)
    metadata: JsonObject | None = None


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_rows: list[Row] = Field(max_length=MAX_REQUEST_ROWS)
    scoring_functions: ScoringFunctions


class ScoreBatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset_id: DatasetId
    scoring_functions: ScoringFunctions
    save_results_dataset: bool = False


class ScoringResult(BaseModel):
    """One function's result: a score row per input row, and its aggregates by name."""

    score_rows: list[dict[str, Any]]
    aggregated_results: dict[str, Any]


class ScoreResponse(BaseModel):
    results: dict[str, ScoringResult]


class ScoreBatchResponse(BaseModel):
    """``dataset_id``: the dataset scored; ``results_dataset_id`` (ours): the dataset the
    scored rows were saved as (``save_results_dataset``)."""

    dataset_id: str | None = None
    results: dict[str, ScoringResult]
    results_dataset_id: str | None = None
