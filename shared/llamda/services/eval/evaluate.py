"""Eval: run a candidate (a model, or an agent through the Responses API) over rows, score
the generations, aggregate. Small sets synchronously (``evaluate_rows``); a benchmark's whole
dataset as a chunked job (``run``: services/chunked.py — queued on SQS in AWS, a background
task locally, checkpointed per chunk, cancellable, with progress).

A row's input, as Llama Stack reads it: ``chat_completion_input`` (messages, as JSON text or a
list), ``messages``, ``input_query`` (one user message) or ``completion_input`` (a prompt for
the completions API). The generation is ``{"generated_answer": ...}`` (agents add ``context``:
the text of their file_search results). A generation that fails (its model's upstream, a
refusal of the guardrails) is a row with an ``error`` and an empty answer: its scores are
computed on that and carry the error; the job goes on.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any

from llamda.api.eval import (
    AgentCandidate,
    BenchmarkConfig,
    EvalJob,
    EvaluateResponse,
    EvaluateRowsRequest,
    ModelCandidate,
    RunEvalRequest,
    TopKStrategy,
    TopPStrategy,
)
from llamda.api.inference import ChatCompletionRequest, CompletionRequest
from llamda.api.responses import CreateResponseRequest, MCPTool
from llamda.config import EvalConfig, JobsConfig
from llamda.errors import BadRequestError, ConflictError, LlamdaError, NotFoundError
from llamda.services.agents.responses import ResponsesService
from llamda.services.chunked import ChunkedJobs, ModelSlots
from llamda.services.eval.benchmarks import BenchmarksService
from llamda.services.eval.datasets import DatasetsService
from llamda.services.eval.scoring import ScoringService
from llamda.services.inference import InferenceService
from llamda.services.jobs import JobRunner
from llamda.services.models import ModelsService
from llamda.storage.objects import JOB_LIFECYCLE, Objects
from llamda.storage.records import Record, Records

KIND = "eval_jobs"
JOB_STATUS = {
    "validating": "scheduled",
    "queued": "scheduled",
    "in_progress": "in_progress",
    "finalizing": "in_progress",
    "cancelling": "in_progress",
    "completed": "completed",
    "failed": "failed",
    "expired": "failed",
    "cancelled": "cancelled",
}
# Agent runs are the candidate's own: never stored, never in the background.
AGENT_FIXED = {"store": False, "stream": False, "background": False}
# A job's record (its config and scoring params included) is rewritten at every chunk; well
# under DynamoDB's 400 KB item limit, with room for its progress fields.
MAX_JOB_CONFIG_BYTES = 128_000
INPUT_COLUMNS = ("chat_completion_input", "messages", "input_query", "completion_input")


class EvalService:
    def __init__(
        self,
        config: EvalConfig,
        jobs_config: JobsConfig,
        records: Records,
        objects: Objects,
        runner: JobRunner,
        slots: ModelSlots,
        datasets: DatasetsService,
        scoring: ScoringService,
        models: ModelsService,
        inference: InferenceService,
        responses: ResponsesService,
    ):
        self._config = config
        self._objects = objects
        self._slots = slots
        self._datasets = datasets
        self._scoring = scoring
        self._models = models
        self._inference = inference
        self._responses = responses
        self.benchmarks = BenchmarksService(records, datasets, scoring)
        self._jobs = ChunkedJobs(
            KIND, records, objects, runner, jobs_config, work=self._work, finish=self._finish
        )

    # -- synchronous ------------------------------------------------------------------------

    async def evaluate_rows(
        self, benchmark_id: str, request: EvaluateRowsRequest
    ) -> EvaluateResponse:
        """Generate and score ``input_rows`` now (at most eval.max_sync_rows; more: a job)."""
        await self.benchmarks.get(benchmark_id)
        if len(request.input_rows) > self._config.max_sync_rows:
            raise BadRequestError(
                f"at most {self._config.max_sync_rows} input_rows are evaluated synchronously "
                "(eval.max_sync_rows); run a job for more",
                param="input_rows",
            )
        for index, row in enumerate(request.input_rows):
            _check_input(row, index)
        config = request.benchmark_config
        await self._check_candidate(config)
        spec = _spec(request.scoring_functions, config)
        functions = await self._scoring.functions(spec)
        results = await self._evaluate(config, request.input_rows, functions)
        return _response(
            results,
            {
                fn: self._scoring.aggregate(f, [r["scores"][fn] for r in results])
                for fn, f in functions.items()
            },
        )

    # -- jobs -------------------------------------------------------------------------------

    async def run(self, benchmark_id: str, request: RunEvalRequest) -> EvalJob:
        """Start a job over the benchmark's dataset (the first ``num_examples`` rows)."""
        benchmark = await self.benchmarks.get(benchmark_id)
        config = request.benchmark_config
        candidate = config.eval_candidate
        if isinstance(candidate, AgentCandidate) and any(
            isinstance(tool, MCPTool) and (tool.headers or tool.authorization)
            for tool in self._agent_request(candidate, "probe").tools or []
        ):
            # A job keeps its config until it runs: credentials are never stored.
            raise BadRequestError(
                "mcp headers cannot be used in an eval job (never stored); run the rows "
                "with /evaluations, or use a server that needs none",
                param="benchmark_config.eval_candidate.config.tools",
            )
        await self._check_candidate(config)
        spec = _spec(benchmark.scoring_functions, config)
        await self._scoring.functions(spec)
        total, registration = await self._datasets.registration(benchmark.dataset_id)
        if config.num_examples is not None:
            total = min(total, config.num_examples)
        now = int(time.time())
        record: Record = {
            "id": f"evaljob-{time.time_ns() // 1_000_000:012x}{secrets.token_hex(6)}",
            "benchmark_id": benchmark_id,
            "dataset_id": benchmark.dataset_id,
            "dataset_registration": registration,
            "config": config.model_dump(mode="json", exclude_none=True),
            "scoring": spec,
            "rows_total": total,
            "created_at": now,
            "status": "queued",
        }
        size = len(json.dumps(record))
        if size > MAX_JOB_CONFIG_BYTES:
            # The record is updated at every chunk: near DynamoDB's 400 KB item limit an
            # update would fail in the worker and leave the job stuck, so refuse it now.
            raise BadRequestError(
                f"this job's benchmark_config and scoring params take {size} bytes; at most "
                f"{MAX_JOB_CONFIG_BYTES} are kept with a job (a shorter system message, "
                "instructions or prompt templates)",
                param="benchmark_config",
                code="config_too_large",
            )
        expires = now + self._config.job_days * 86400
        return _job(await self._jobs.start(record, expires_at=expires))

    async def status(self, benchmark_id: str, job_id: str) -> EvalJob:
        record = await self._job(benchmark_id, job_id)
        await self._jobs.revive(record)  # local: a job its stopped server left goes on
        return _job(record)

    async def cancel(self, benchmark_id: str, job_id: str) -> None:
        await self._job(benchmark_id, job_id)
        await self._jobs.cancel(job_id)

    async def result(
        self, benchmark_id: str, job_id: str, start_index: int = 0, limit: int | None = None
    ) -> bytes:
        """The generations and scores of a finished job (a cancelled one: of the rows it
        finished) as JSON; 409 while it runs. ``start_index``/``limit``: only those rows'
        generations and score rows (``aggregated_results`` stay whole). An answer over
        eval.max_result_bytes is a 400 asking for pages: a Lambda cannot answer over 6 MB."""
        record = await self._job(benchmark_id, job_id)
        if record["status"] not in ("completed", "cancelled"):
            raise ConflictError(
                f"eval job {job_id!r} is {JOB_STATUS.get(record['status'], record['status'])}: "
                "its result is ready when it is completed",
                param="job_id",
                code="job_not_completed",
            )
        data = await self._objects.get(_result_key(job_id))
        if start_index or limit is not None:
            body = json.loads(data)
            end = None if limit is None else start_index + limit
            body["generations"] = body["generations"][start_index:end]
            for scores in body["scores"].values():
                scores["score_rows"] = scores["score_rows"][start_index:end]
            data = json.dumps(body).encode()
        if len(data) > self._config.max_result_bytes:
            raise BadRequestError(
                f"eval job {job_id!r}: this result is {len(data)} bytes, more than one answer "
                f"holds ({self._config.max_result_bytes}, eval.max_result_bytes); read it in "
                "pages with ?start_index=0&limit=N (rows_total rows in all)",
                param="limit",
                code="result_too_large",
            )
        return data

    async def _job(self, benchmark_id: str, job_id: str) -> Record:
        record = await self._jobs.get(job_id)
        if record is None or record.get("benchmark_id") != benchmark_id:
            raise NotFoundError(f"eval job {job_id!r} not found", param="job_id")
        return record

    async def _work(self, record: Record, start: int, end: int) -> list[dict[str, Any]]:
        config = BenchmarkConfig.model_validate(record["config"])
        functions = await self._scoring.functions(record["scoring"])
        rows = await self._datasets.rows(
            record["dataset_id"],
            start,
            end - start,
            registration=record.get("dataset_registration"),
        )
        return await self._evaluate(config, rows, functions)

    async def _finish(self, record: Record, status: str) -> None:
        """Aggregate every finished row into the job's result object (once: a redelivered
        finish finds it), then drop the per-chunk objects."""
        key = _result_key(record["id"])
        if status != "failed" and not await self._exists(key):
            functions = await self._scoring.functions(record["scoring"])
            results = [row async for row in self._jobs.results(record)]
            aggregates = {
                fn: self._scoring.aggregate(f, [r["scores"][fn] for r in results])
                for fn, f in functions.items()
            }
            body = _response(results, aggregates).model_dump(mode="json")
            await self._objects.put(
                key,
                json.dumps(body).encode(),
                content_type="application/json",
                lifecycle=JOB_LIFECYCLE,
            )
            record["aggregated_results"] = {
                fn: s["aggregated_results"] for fn, s in body["scores"].items()
            }
        await self._jobs.delete_results(record)

    async def _exists(self, key: str) -> bool:
        try:
            await self._objects.get(key)
        except NotFoundError:
            return False
        return True

    # -- generation and scoring -------------------------------------------------------------

    async def _check_candidate(self, config: BenchmarkConfig) -> None:
        """What a client can get wrong about its candidate is a 4xx now, not N failed rows."""
        candidate = config.eval_candidate
        if isinstance(candidate, ModelCandidate):
            if isinstance(candidate.sampling_params.strategy, TopKStrategy):
                raise BadRequestError(
                    "top_k sampling has no OpenAI-compatible parameter; use greedy or top_p",
                    param="benchmark_config.eval_candidate.sampling_params.strategy",
                )
            await self._models.get(candidate.model)
            return
        request = self._agent_request(candidate, "probe")
        await self._responses.validate(request)

    async def _evaluate(
        self, config: BenchmarkConfig, rows: list[dict[str, Any]], functions: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """One result per row: ``{"generation": {...}, "scores": {fn: score_row}}``."""
        generations = await asyncio.gather(*(self._generate(config, row) for row in rows))
        scored_input = [
            {**row, **generation} for row, generation in zip(rows, generations, strict=True)
        ]
        scores = {
            fn: await self._scoring.score_rows(f, scored_input) for fn, f in functions.items()
        }
        results = []
        for index, generation in enumerate(generations):
            row_scores = {fn: dict(scores[fn][index]) for fn in functions}
            if generation.get("error"):
                for score in row_scores.values():
                    score.setdefault("error", generation["error"])
            results.append({"generation": generation, "scores": row_scores})
        return results

    async def _generate(self, config: BenchmarkConfig, row: dict[str, Any]) -> dict[str, Any]:
        candidate = config.eval_candidate
        try:
            if isinstance(candidate, ModelCandidate):
                async with self._slots.slot(candidate.model):
                    return await self._model_generation(candidate, row)
            async with self._slots.slot(str(candidate.config.get("model"))):
                return await self._agent_generation(candidate, row)
        except LlamdaError as exc:
            return {"generated_answer": "", "error": exc.message}
        except (ValueError, TypeError) as exc:  # a row whose input is not what it says
            return {"generated_answer": "", "error": f"bad input row: {exc}"[:500]}

    async def _model_generation(
        self, candidate: ModelCandidate, row: dict[str, Any]
    ) -> dict[str, Any]:
        sampling = _sampling(candidate)
        if "completion_input" in row and not any(c in row for c in INPUT_COLUMNS[:3]):
            prompt = _maybe_json(row["completion_input"])
            request = CompletionRequest.model_validate(
                {"model": candidate.model, "prompt": prompt, **sampling}
            )
            completion = (await self._inference.completion(request)).value
            return {"generated_answer": completion.choices[0].text or ""}
        messages = _messages(row)
        if candidate.system_message is not None:
            messages.insert(0, candidate.system_message.model_dump())
        request = ChatCompletionRequest.model_validate(
            {"model": candidate.model, "messages": messages, **sampling}
        )
        reply = (await self._inference.chat(request)).value
        return {"generated_answer": reply.choices[0].message.content or ""}

    async def _agent_generation(
        self, candidate: AgentCandidate, row: dict[str, Any]
    ) -> dict[str, Any]:
        messages = _messages(row)
        request = self._agent_request(candidate, messages)
        response = await self._responses.create(request)
        answer, context = [], []
        for item in response.get("output", []):
            if item.get("type") == "message":
                answer.extend(
                    part.get("text", "")
                    for part in item.get("content", [])
                    if part.get("type") == "output_text"
                )
            elif item.get("type") == "file_search_call":
                context.extend(str(hit.get("text", "")) for hit in item.get("results") or [])
        generation: dict[str, Any] = {"generated_answer": "".join(answer)}
        if context:
            generation["context"] = "\n\n".join(context)
        if response.get("status") not in (None, "completed"):
            reason = (response.get("incomplete_details") or {}).get("reason") or response.get(
                "status"
            )
            generation["error"] = f"the agent's response is {response.get('status')}: {reason}"
        return generation

    def _agent_request(self, candidate: AgentCandidate, messages: Any) -> CreateResponseRequest:
        fields = {k: v for k, v in candidate.config.items() if k not in ("input", *AGENT_FIXED)}
        fields.update(AGENT_FIXED)
        fields["include"] = sorted({*fields.get("include", []), "file_search_call.results"})
        if isinstance(messages, list):
            messages = [{"type": "message", **m} for m in messages]
        try:
            return CreateResponseRequest.model_validate({**fields, "input": messages})
        except ValueError as exc:
            raise BadRequestError(
                f"benchmark_config.eval_candidate.config is not a valid response request: {exc}"[
                    :1000
                ],
                param="benchmark_config.eval_candidate.config",
            ) from None


def _spec(functions: list[str], config: BenchmarkConfig) -> dict[str, dict[str, Any] | None]:
    return {fn: config.scoring_params.get(fn) for fn in functions}


def _sampling(candidate: ModelCandidate) -> dict[str, Any]:
    params = candidate.sampling_params
    fields: dict[str, Any] = {}
    strategy = params.strategy
    if isinstance(strategy, TopPStrategy):
        fields["temperature"] = strategy.temperature
        if strategy.top_p is not None:
            fields["top_p"] = strategy.top_p
    else:  # greedy
        fields["temperature"] = 0.0
    if params.max_tokens is not None:
        fields["max_tokens"] = params.max_tokens
    if params.stop:
        fields["stop"] = params.stop
    return fields


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _messages(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The chat messages of a row (see the module docstring)."""
    for column in ("chat_completion_input", "messages"):
        if column in row:
            value = _maybe_json(row[column])
            if isinstance(value, dict):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
                raise ValueError(f"{column} must be a list of messages")
            return [dict(m) for m in value]
    if "input_query" in row:
        return [{"role": "user", "content": str(row["input_query"])}]
    raise ValueError(f"no input column (one of {', '.join(INPUT_COLUMNS)})")


def _check_input(row: dict[str, Any], index: int) -> None:
    if not any(column in row for column in INPUT_COLUMNS):
        raise BadRequestError(
            f"input_rows[{index}]: no input column (one of {', '.join(INPUT_COLUMNS)})",
            param=f"input_rows[{index}]",
        )


def _response(
    results: list[dict[str, Any]], aggregates: dict[str, dict[str, Any]]
) -> EvaluateResponse:
    return EvaluateResponse.model_validate(
        {
            "generations": [r["generation"] for r in results],
            "scores": {
                fn: {
                    "score_rows": [r["scores"][fn] for r in results],
                    "aggregated_results": aggregate,
                }
                for fn, aggregate in aggregates.items()
            },
        }
    )


def _job(record: Record) -> EvalJob:
    return EvalJob(
        job_id=record["id"],
        status=JOB_STATUS.get(record["status"], "failed"),  # type: ignore[arg-type]
        benchmark_id=record["benchmark_id"],
        rows_done=int(record.get("rows_done", 0)),
        rows_total=int(record.get("rows_total", 0)),
        created_at=int(record.get("created_at", 0)),
        completed_at=record.get("completed_at") or record.get("cancelled_at"),
        error=record.get("error"),
    )


def _result_key(job_id: str) -> str:
    return f"eval/results/{job_id}.json"
