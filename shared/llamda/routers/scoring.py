"""Scoring (Llama Stack 0.7): ``/v1/scoring-functions`` and ``/v1/scoring/score[-batch]``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from llamda.api.errors import error_responses
from llamda.api.scoring import (
    SCORING_FN_ID,
    ListScoringFunctionsResponse,
    RegisterScoringFunctionRequest,
    ScoreBatchRequest,
    ScoreBatchResponse,
    ScoreRequest,
    ScoreResponse,
    ScoringFn,
)
from llamda.routers import get_stack
from llamda.stack import Stack

router = APIRouter(tags=["scoring"])
StackDep = Annotated[Stack, Depends(get_stack)]
ScoringFnId = Annotated[str, Path(pattern=SCORING_FN_ID, description="A scoring function id.")]


@router.get(
    "/v1/scoring-functions",
    summary="List scoring functions",
    response_model=ListScoringFunctionsResponse,
)
async def list_scoring_functions(stack: StackDep) -> ListScoringFunctionsResponse:
    return ListScoringFunctionsResponse(data=await stack.scoring.list_functions())


@router.get(
    "/v1/scoring-functions/{scoring_fn_id}",
    summary="Get a scoring function",
    response_model=ScoringFn,
    responses=error_responses(404),
)
async def get_scoring_function(scoring_fn_id: ScoringFnId, stack: StackDep) -> ScoringFn:
    return await stack.scoring.get_function(scoring_fn_id)


@router.post(
    "/v1/scoring-functions",
    summary="Register a scoring function (LLM-as-judge or regex parser params)",
    response_model=ScoringFn,
    responses=error_responses(400, 404, 409),
)
async def register_scoring_function(
    body: RegisterScoringFunctionRequest, stack: StackDep
) -> ScoringFn:
    return await stack.scoring.register_function(body)


@router.delete(
    "/v1/scoring-functions/{scoring_fn_id}",
    summary="Unregister a scoring function",
    status_code=204,
    response_class=Response,
    responses=error_responses(404, 409),
)
async def unregister_scoring_function(scoring_fn_id: ScoringFnId, stack: StackDep) -> Response:
    await stack.scoring.unregister_function(scoring_fn_id)
    return Response(status_code=204)


@router.post(
    "/v1/scoring/score",
    summary="Score rows",
    description="`scoring_functions` maps function ids to params (null: the registered ones). "
    "A row a judge cannot score has `score: null` and an `error`.",
    response_model=ScoreResponse,
    responses=error_responses(400, 404),
)
async def score(body: ScoreRequest, stack: StackDep) -> ScoreResponse:
    results = await stack.scoring.score(body.input_rows, body.scoring_functions)
    return ScoreResponse.model_validate({"results": results})


@router.post(
    "/v1/scoring/score-batch",
    summary="Score a dataset's rows",
    description="`save_results_dataset`: the rows, each with a column per function holding "
    "its score row, are also registered as a new dataset (its id: `results_dataset_id`).",
    response_model=ScoreBatchResponse,
    responses=error_responses(400, 404),
)
async def score_batch(body: ScoreBatchRequest, stack: StackDep) -> ScoreBatchResponse:
    return await stack.scoring.score_batch(
        body.dataset_id, body.scoring_functions, save=body.save_results_dataset
    )
