"""The eval API: datasets, scoring functions and scoring, benchmarks and eval jobs."""

from __future__ import annotations

from fastapi import APIRouter

from llamda.routers.benchmarks import router as benchmarks_router
from llamda.routers.datasets import router as datasets_router
from llamda.routers.scoring import router as scoring_router

router = APIRouter()
router.include_router(datasets_router)
router.include_router(scoring_router)
router.include_router(benchmarks_router)
