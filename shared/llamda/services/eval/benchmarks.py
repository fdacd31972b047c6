"""Benchmarks: a dataset and the scoring functions that grade a candidate on it (Records,
tenant-scoped; kind ``benchmarks``)."""

from __future__ import annotations

from typing import Any

from llamda.api.eval import Benchmark, RegisterBenchmarkRequest
from llamda.errors import ConflictError, NotFoundError
from llamda.services.eval.datasets import DatasetsService
from llamda.services.eval.scoring import ScoringService
from llamda.storage.records import Records

KIND = "benchmarks"
PROVIDER_ID = "builtin"


class BenchmarksService:
    def __init__(self, records: Records, datasets: DatasetsService, scoring: ScoringService):
        self._records = records
        self._datasets = datasets
        self._scoring = scoring

    async def register(self, request: RegisterBenchmarkRequest) -> Benchmark:
        """Register (or re-register identically); its dataset and scoring functions must exist.
        A different definition under an existing id is a 409: unregister it first."""
        await self._datasets.get(request.dataset_id)
        for fn_id in request.scoring_functions:  # params come with each run
            await self._scoring.get_function(fn_id)
        benchmark = Benchmark(
            identifier=request.benchmark_id,
            provider_id=PROVIDER_ID,
            provider_resource_id=request.provider_benchmark_id or request.benchmark_id,
            dataset_id=request.dataset_id,
            scoring_functions=request.scoring_functions,
            metadata=request.metadata or {},
        )
        record = {"id": benchmark.identifier, **benchmark.model_dump()}
        existing = await self._records.get(KIND, benchmark.identifier)
        if existing is not None:
            if _definition(existing) != _definition(record):
                raise ConflictError(
                    f"benchmark {benchmark.identifier!r} exists with another definition; "
                    "unregister it first",
                    param="benchmark_id",
                )
            return benchmark
        await self._records.put(KIND, benchmark.identifier, record)
        return benchmark

    async def get(self, benchmark_id: str) -> Benchmark:
        record = await self._records.get(KIND, benchmark_id)
        if record is None:
            raise NotFoundError(f"benchmark {benchmark_id!r} not found", param="benchmark_id")
        return Benchmark.model_validate(_definition(record))

    async def list(self) -> list[Benchmark]:
        found: list[Benchmark] = []
        after: str | None = None
        while page := await self._records.list(KIND, after=after, limit=1000):
            found.extend(Benchmark.model_validate(_definition(r)) for r in page)
            after = page[-1]["id"]
        return found

    async def unregister(self, benchmark_id: str) -> None:
        if not await self._records.delete(KIND, benchmark_id):
            raise NotFoundError(f"benchmark {benchmark_id!r} not found", param="benchmark_id")


def _definition(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k in Benchmark.model_fields}
