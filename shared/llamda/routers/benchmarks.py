"""Benchmarks and Eval (Llama Stack's ``/v1alpha/eval/benchmarks/...``): register, list, get,
unregister; ``evaluations`` (synchronous, small sets); ``jobs`` (create, status, cancel,
result)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from llamda.api.errors import error_responses
from llamda.api.eval import (
    Benchmark,
    BenchmarkList,
    EvalJob,
    EvaluateResponse,
    EvaluateRowsRequest,
    RegisterBenchmarkRequest,
    RunEvalRequest,
)
from llamda.routers import get_stack
from llamda.stack import Stack

router = APIRouter(tags=["eval"])  # /v1/inspect/routes: the eval provider
StackDep = Annotated[Stack, Depends(get_stack)]
BenchmarkId = Annotated[str, Path(max_length=128, description="A benchmark id.")]
JobId = Annotated[str, Path(max_length=128, description="An eval job id (evaljob-…).")]
PREFIX = "/v1alpha/eval/benchmarks"


@router.post(
    PREFIX,
    summary="Register a benchmark (a dataset and its scoring functions)",
    response_model=Benchmark,
    responses=error_responses(400, 404, 409),
)
async def register_benchmark(body: RegisterBenchmarkRequest, stack: StackDep) -> Benchmark:
    return await stack.eval.benchmarks.register(body)


@router.get(PREFIX, summary="List benchmarks", response_model=BenchmarkList)
async def list_benchmarks(stack: StackDep) -> BenchmarkList:
    return BenchmarkList(data=await stack.eval.benchmarks.list())


@router.get(
    PREFIX + "/{benchmark_id}",
    summary="Get a benchmark",
    response_model=Benchmark,
    responses=error_responses(404),
)
async def get_benchmark(benchmark_id: BenchmarkId, stack: StackDep) -> Benchmark:
    return await stack.eval.benchmarks.get(benchmark_id)


@router.delete(
    PREFIX + "/{benchmark_id}",
    summary="Unregister a benchmark",
    status_code=204,
    responses=error_responses(404),
)
async def unregister_benchmark(benchmark_id: BenchmarkId, stack: StackDep) -> Response:
    await stack.eval.benchmarks.unregister(benchmark_id)
    return Response(status_code=204)


@router.post(
    PREFIX + "/{benchmark_id}/evaluations",
    summary="Evaluate rows now (generate with the candidate, then score)",
    response_model=EvaluateResponse,
    responses=error_responses(400, 404, 429, 503),
)
async def evaluate_rows(
    benchmark_id: BenchmarkId, body: EvaluateRowsRequest, stack: StackDep
) -> EvaluateResponse:
    return await stack.eval.evaluate_rows(benchmark_id, body)


@router.post(
    PREFIX + "/{benchmark_id}/jobs",
    summary="Run an eval job over the benchmark's dataset",
    response_model=EvalJob,
    responses=error_responses(400, 404, 503),
)
async def run_eval(benchmark_id: BenchmarkId, body: RunEvalRequest, stack: StackDep) -> EvalJob:
    return await stack.eval.run(benchmark_id, body)


@router.get(
    PREFIX + "/{benchmark_id}/jobs/{job_id}",
    summary="An eval job's status and progress",
    response_model=EvalJob,
    responses=error_responses(404),
)
async def job_status(benchmark_id: BenchmarkId, job_id: JobId, stack: StackDep) -> EvalJob:
    return await stack.eval.status(benchmark_id, job_id)


@router.delete(
    PREFIX + "/{benchmark_id}/jobs/{job_id}",
    summary="Cancel an eval job (it stops at its next chunk)",
    status_code=204,
    responses=error_responses(404),
)
async def cancel_job(benchmark_id: BenchmarkId, job_id: JobId, stack: StackDep) -> Response:
    await stack.eval.cancel(benchmark_id, job_id)
    return Response(status_code=204)


@router.get(
    PREFIX + "/{benchmark_id}/jobs/{job_id}/result",
    summary="An eval job's generations and scores",
    response_model=EvaluateResponse,
    responses=error_responses(404, 409),
)
async def job_result(
    benchmark_id: BenchmarkId,
    job_id: JobId,
    stack: StackDep,
    start_index: Annotated[int, Query(ge=0, description="First row of a page.")] = 0,
    limit: Annotated[int | None, Query(ge=1, description="Rows in a page (default: all).")] = None,
) -> Response:
    return Response(
        await stack.eval.result(benchmark_id, job_id, start_index, limit),
        media_type="application/json",
    )
