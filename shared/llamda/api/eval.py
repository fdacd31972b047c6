"""Benchmarks and Eval (Llama Stack's /v1alpha/eval API): request and response models."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Ids name records and appear in paths: a conservative alphabet, like Llama Stack's examples
# ("meta-reference::mmlu", "my-benchmark").
ResourceId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:/-]+$")]
MAX_SCORING_FUNCTIONS = 16


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterBenchmarkRequest(_Request):
    benchmark_id: ResourceId
    dataset_id: ResourceId
    scoring_functions: list[ResourceId] = Field(min_length=1, max_length=MAX_SCORING_FUNCTIONS)
    metadata: dict[str, Any] | None = None
    provider_benchmark_id: str | None = Field(None, max_length=128)
    provider_id: str | None = Field(None, max_length=64)


class Benchmark(BaseModel):
    identifier: str
    provider_id: str
    provider_resource_id: str
    type: Literal["benchmark"] = "benchmark"
    dataset_id: str
    scoring_functions: list[str]
    metadata: dict[str, Any] = Field(default_factory=dict)


class BenchmarkList(BaseModel):
    data: list[Benchmark]


class GreedyStrategy(_Request):
    type: Literal["greedy"] = "greedy"


class TopPStrategy(_Request):
    type: Literal["top_p"] = "top_p"
    temperature: float = Field(ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)


class TopKStrategy(_Request):
    type: Literal["top_k"] = "top_k"
    top_k: int = Field(ge=1)


class SamplingParams(_Request):
    strategy: Annotated[
        GreedyStrategy | TopPStrategy | TopKStrategy, Field(discriminator="type")
    ] = Field(default_factory=GreedyStrategy)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    repetition_penalty: float | None = Field(None, ge=-2, le=2)
    stop: list[str] | None = Field(None, max_length=4)


class CandidateSystemMessage(_Request):
    role: Literal["system"] = "system"
    content: str | list[dict[str, Any]]


class ModelCandidate(_Request):
    """A model called with each row's input (chat_completion_input, messages, input_query or
    completion_input), a system message and sampling params."""

    type: Literal["model"] = "model"
    model: str = Field(min_length=1, max_length=256)
    sampling_params: SamplingParams = Field(default_factory=SamplingParams)
    system_message: CandidateSystemMessage | None = None


class AgentCandidate(_Request):
    """An agent: the Responses API run with ``config`` (model, instructions, tools such as
    file_search, …) and each row's input; file_search results become the row's ``context``
    so the RAG judges can score faithfulness."""

    type: Literal["agent"]
    config: dict[str, Any] = Field(
        description="POST /v1/responses fields except input, stream, background, store."
    )


class BenchmarkConfig(_Request):
    eval_candidate: Annotated[ModelCandidate | AgentCandidate, Field(discriminator="type")]
    num_examples: int | None = Field(None, ge=1)
    scoring_params: dict[str, dict[str, Any]] = Field(default_factory=dict)


class EvaluateRowsRequest(_Request):
    benchmark_config: BenchmarkConfig
    input_rows: list[dict[str, Any]] = Field(min_length=1)
    scoring_functions: list[ResourceId] = Field(min_length=1, max_length=MAX_SCORING_FUNCTIONS)


class RunEvalRequest(_Request):
    benchmark_config: BenchmarkConfig


class ScoringResultModel(BaseModel):
    score_rows: list[dict[str, Any]]
    aggregated_results: dict[str, Any]


class EvaluateResponse(BaseModel):
    generations: list[dict[str, Any]]
    scores: dict[str, ScoringResultModel]


class EvalJob(BaseModel):
    """Llama Stack's Job, plus progress."""

    job_id: str
    status: Literal["scheduled", "in_progress", "completed", "failed", "cancelled"]
    benchmark_id: str
    rows_done: int
    rows_total: int
    created_at: int
    completed_at: int | None = None
    error: dict[str, Any] | None = None
