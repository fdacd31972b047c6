"""Scoring: functions resolved once per request (404 unknown, 400 bad params or missing
columns), rows scored (judges through ``stack.inference``: guardrails, retries and fallbacks
apply, at most ``eval.judge_concurrency`` calls at once), aggregates as Llama Stack computes
them. Eval jobs call ``functions`` once, ``score_rows`` per chunk, ``aggregate`` at the end.

A row a function cannot score (a judge reply no regex parses, a judge call the provider
refuses) is a scored error: ``score`` null and an ``error`` message; scoring goes on. A failure
that is not the row's (an upstream down or rate limiting) propagates, so a job retries it."""

from __future__ import annotations

import asyncio
import json
import statistics
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import TypeAdapter, ValidationError

from llamda.api.inference import ChatCompletion, ChatCompletionRequest
from llamda.api.scoring import (
    LLMAsJudgeParams,
    RegexParserParams,
    RegisterScoringFunctionRequest,
    ScoreBatchResponse,
    ScoringFn,
    ScoringFunctions,
)
from llamda.config import EvalConfig
from llamda.errors import BadRequestError, NotFoundError, UpstreamBadRequestError
from llamda.services.eval.datasets import DatasetsService
from llamda.services.eval.scoring_fns import (
    MAX_MATCH_CHARS,
    MULTILINGUAL_ANSWER_REGEXES,
    SCORE_REGEXES,
    Builtin,
    ResolvedFn,
    builtin_fn,
    builtins,
    resolve,
)
from llamda.services.registry import Registry
from llamda.storage.records import Records

KIND = "scoring_functions"
# A judge reply kept in a score row (judge_feedback) is cut here: a 1000-row answer with
# several judges stays within Lambda's 6 MB response.
MAX_FEEDBACK_CHARS = 2_000
# Regexes one request's scoring functions may compile (each costs up to ~15 ms of CPU holding
# the GIL, see scoring_fns.REGEX_MAX_MEM), on top of the built-ins' own.
MAX_REQUEST_REGEXES = 128
BUILTIN_REGEXES = len(MULTILINGUAL_ANSWER_REGEXES) + len(SCORE_REGEXES) * 3
Chat = Callable[[ChatCompletionRequest], Awaitable[ChatCompletion]]
ModelCheck = Callable[[str], Awaitable[None]]
_SPEC: TypeAdapter[dict[str, Any]] = TypeAdapter(ScoringFunctions)


def _fn_from_record(record: dict[str, Any], _source: str) -> ScoringFn:
    return ScoringFn.model_validate({k: v for k, v in record.items() if k != "scoring_fn_id"})


class ScoringService:
    def __init__(
        self,
        config: EvalConfig,
        records: Records,
        chat: Chat,
        check_judge_model: ModelCheck,
        datasets: DatasetsService,
    ):
        """``chat``: the guarded, routed chat call; ``check_judge_model``: raises as the
        inference API does for a model that is unknown or not an llm."""
        self._config = config
        self._chat = chat
        self._check_judge_model = check_judge_model
        self._datasets = datasets
        self._builtins: dict[str, Builtin] = {b.identifier: b for b in builtins(config.judge_model)}
        self._registry = Registry(
            records,
            kind=KIND,
            noun="scoring function",
            param="scoring_fn_id",
            build=_fn_from_record,
            static=(
                (b.identifier, {"scoring_fn_id": b.identifier, **builtin_fn(b).model_dump()})
                for b in self._builtins.values()
            ),
        )

    # --- scoring functions (the resource) -----------------------------------------------------

    async def list_functions(self) -> list[ScoringFn]:
        return await self._registry.list()

    async def get_function(self, fn_id: str) -> ScoringFn:
        return await self._registry.get(fn_id)

    async def register_function(self, request: RegisterScoringFunctionRequest) -> ScoringFn:
        """A tenant's own function: LLM-as-judge or regex-parser params, checked now."""
        params = request.params
        if not isinstance(params, LLMAsJudgeParams | RegexParserParams):
            raise BadRequestError(
                "a registered scoring function needs params of type llm_as_judge (a judge "
                "model, prompt template and score regexes) or regex_parser (parsing_regexes)",
                param="params",
                code="invalid_scoring_params",
            )
        kind = "llm_as_judge" if isinstance(params, LLMAsJudgeParams) else "regex_parser"
        try:
            resolved = resolve(request.scoring_fn_id, kind, params, None, default_judge=None)
        except BadRequestError as exc:
            raise BadRequestError(exc.message, param="params", code=exc.code) from None
        if resolved.kind == "llm_as_judge":
            await self._check_judge_model(resolved.judge_model)
        record = {
            "scoring_fn_id": request.scoring_fn_id,
            "identifier": request.scoring_fn_id,
            "provider_id": "llm-as-judge" if kind == "llm_as_judge" else "basic",
            "provider_resource_id": request.provider_scoring_fn_id or request.scoring_fn_id,
            "description": request.description,
            "metadata": request.metadata or {},
            "return_type": request.return_type.model_dump(),
            "params": params.model_dump(),
        }
        return await self._registry.add(request.scoring_fn_id, record, "scoring_fn_id")

    async def unregister_function(self, fn_id: str) -> None:
        await self._registry.remove(fn_id)

    # --- the interface eval jobs use ----------------------------------------------------------

    async def functions(self, spec: dict[str, Any]) -> dict[str, ResolvedFn]:
        """Each named function with its params (a dict, a params model, or None for the
        registered ones): 404 naming an unknown function, 400 for params it cannot take."""
        try:
            checked = _SPEC.validate_python(spec)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise BadRequestError(
                f"scoring_functions.{where}: {first['msg']}", param="scoring_functions"
            ) from None
        given = sum(
            len(
                getattr(p, "parsing_regexes", None) or getattr(p, "judge_score_regexes", None) or []
            )
            for p in checked.values()
        )
        if given > MAX_REQUEST_REGEXES:  # before compiling any: compiling holds the GIL
            raise _too_many_regexes(given)
        out: dict[str, ResolvedFn] = {}
        total = 0
        for fn_id, override in checked.items():
            out[fn_id] = resolved = await self._resolve(fn_id, override)
            total += len(resolved.regexes)  # registered and built-in ones too: one bound
            if total > MAX_REQUEST_REGEXES + BUILTIN_REGEXES:
                raise _too_many_regexes(total)
        return out

    async def _resolve(self, fn_id: str, override: Any) -> ResolvedFn:
        builtin = self._builtins.get(fn_id)
        if builtin is not None:
            resolved = resolve(
                fn_id,
                builtin.kind,
                builtin.params,
                override,
                default_judge=self._config.judge_model,
            )
        else:
            try:
                fn = await self._registry.get(fn_id)
            except NotFoundError:
                raise NotFoundError(
                    f"Scoring function '{fn_id}' not found",
                    param="scoring_functions",
                    code="scoring_function_not_found",
                ) from None
            kind = "llm_as_judge" if isinstance(fn.params, LLMAsJudgeParams) else "regex_parser"
            resolved = resolve(fn_id, kind, fn.params, override, default_judge=None)  # type: ignore[arg-type]
        if resolved.kind == "llm_as_judge":
            await self._check_judge_model(resolved.judge_model)
        return resolved

    def check_columns(
        self, fn: ResolvedFn, rows: list[dict[str, Any]], start_index: int = 0
    ) -> None:
        """400 naming the first row (its index in the dataset) that lacks a column ``fn``
        reads, before anything is scored (no judge call is spent on a set that cannot pass)."""
        for offset, row in enumerate(rows):
            if not isinstance(row, dict):
                raise BadRequestError(
                    f"row {start_index + offset}: a row must be a JSON object", param="input_rows"
                )
            for column in fn.columns:
                if column not in row or row[column] is None:
                    raise BadRequestError(
                        f'row {start_index + offset}: missing column "{column}" '
                        f"(needed by scoring function '{fn.identifier}')",
                        param="input_rows",
                        code="missing_column",
                    )

    async def score_rows(
        self, fn: ResolvedFn, rows: list[dict[str, Any]], start_index: int = 0
    ) -> list[dict[str, Any]]:
        """One score row per input row, in order. ``start_index``: the first row's index in
        its dataset (for messages naming a row)."""
        self.check_columns(fn, rows, start_index)
        if fn.kind in ("equality", "subset_of"):
            return [_score_basic(fn, row) for row in rows]
        if fn.kind != "llm_as_judge":
            # Regex matching on long answers can take a while; RE2 releases the GIL while it
            # matches, so in a thread the server goes on answering other requests meanwhile.
            return await asyncio.to_thread(lambda: [_score_basic(fn, row) for row in rows])
        gate = asyncio.Semaphore(self._config.judge_concurrency)

        async def one(row: dict[str, Any]) -> dict[str, Any]:
            async with gate:
                return await self._judge(fn, row)

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(row)) for row in rows]
        except BaseExceptionGroup as failed:
            # The first failure as itself (a 404 or 503 the client understands), not a group;
            # the group cancelled the other calls.
            raise _first(failed) from None
        return [task.result() for task in tasks]

    def aggregate(self, fn: ResolvedFn, score_rows: list[dict[str, Any]]) -> dict[str, Any]:
        """``aggregated_results`` over every score row (all chunks together)."""
        return {name: AGGREGATIONS[name](score_rows) for name in fn.aggregations}

    async def score(
        self, rows: list[dict[str, Any]], spec: dict[str, Any]
    ) -> dict[str, dict[str, Any]]:
        """``{fn_id: {"score_rows": [...], "aggregated_results": {...}}}`` for every function."""
        if len(rows) > self._config.max_score_rows:
            raise BadRequestError(
                f"at most {self._config.max_score_rows} rows are scored in one request "
                "(eval.max_score_rows); score larger sets with an eval job",
                param="input_rows",
                code="too_many_rows",
            )
        fns = await self.functions(spec)
        for fn in fns.values():  # every function's columns checked before any judge call
            self.check_columns(fn, rows)
        out: dict[str, dict[str, Any]] = {}
        for fn_id, fn in fns.items():
            scored = await self.score_rows(fn, rows)
            out[fn_id] = {"score_rows": scored, "aggregated_results": self.aggregate(fn, scored)}
        return out

    async def score_batch(
        self, dataset_id: str, spec: dict[str, Any], *, save: bool
    ) -> ScoreBatchResponse:
        """Every row of a dataset scored; with ``save`` the rows plus a column per function
        (its score row) become a new dataset of the same purpose."""
        total = await self._datasets.count(dataset_id)
        if total > self._config.max_score_rows:
            raise BadRequestError(
                f"dataset '{dataset_id}' has {total} rows; at most "
                f"{self._config.max_score_rows} are scored in one request "
                "(eval.max_score_rows): score it with an eval job",
                param="dataset_id",
                code="too_many_rows",
            )
        rows = await self._datasets.rows(dataset_id)
        results = await self.score(rows, spec)
        saved = None
        if save:
            dataset = await self._datasets.get(dataset_id)
            scored = [
                {**row, **{fn_id: result["score_rows"][i] for fn_id, result in results.items()}}
                for i, row in enumerate(rows)
            ]
            saved = await self._datasets.register(
                purpose=dataset["purpose"],
                source={"type": "rows", "rows": scored},
                metadata={"scored_dataset_id": dataset_id, "scoring_functions": list(results)},
                dataset_id=None,
            )
        return ScoreBatchResponse.model_validate(
            {
                "dataset_id": dataset_id,
                "results": results,
                "results_dataset_id": saved.identifier if saved else None,
            }
        )

    async def _judge(self, fn: ResolvedFn, row: dict[str, Any]) -> dict[str, Any]:
        prompt = "".join(
            literal + ("" if column is None else _as_text(row[column]))
            for literal, column in fn.template
        )
        try:
            request = ChatCompletionRequest.model_validate(
                {"model": fn.judge_model, "messages": [{"role": "user", "content": prompt}]}
            )
        except ValidationError as exc:
            raise BadRequestError(
                f"scoring function '{fn.identifier}': the judge request is invalid: "
                f"{exc.errors()[0]['msg']}",
                param="scoring_functions",
            ) from None
        try:
            reply = await self._chat(request)
        except UpstreamBadRequestError as exc:
            # The provider (or a guardrail) refused this row's prompt: this row cannot be
            # judged; the others can.
            return {"score": None, "error": f"judge call refused: {exc.message}"}
        content = _reply_text(reply)
        feedback = content[:MAX_FEEDBACK_CHARS]
        for regex in fn.regexes:
            match = regex.search(content[:MAX_MATCH_CHARS])
            if match and match.group(1) is not None:
                return {"score": _number_or_text(match.group(1)), "judge_feedback": feedback}
        return {
            "score": None,
            "judge_feedback": feedback,
            "error": "the judge's reply matched none of judge_score_regexes",
        }


def _too_many_regexes(count: int) -> BadRequestError:
    return BadRequestError(
        f"the scoring functions of one request may use at most {MAX_REQUEST_REGEXES} regexes "
        f"of their own (parsing_regexes, judge_score_regexes); these use {count}",
        param="scoring_functions",
        code="too_many_regexes",
    )


def _first(group: BaseExceptionGroup) -> BaseException:
    """The first leaf exception of a (possibly nested) exception group."""
    first: BaseException = group
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first


def _score_basic(fn: ResolvedFn, row: dict[str, Any]) -> dict[str, Any]:
    expected, generated = row["expected_answer"], row["generated_answer"]
    if fn.kind == "equality":
        return {"score": 1.0 if expected == generated else 0.0}
    if not isinstance(generated, str) or not isinstance(expected, str):
        return {"score": None, "error": "expected_answer and generated_answer must be strings"}
    if fn.kind == "subset_of":
        return {"score": 1.0 if expected in generated else 0.0}
    generated = generated[:MAX_MATCH_CHARS]  # regexes below: bounded time per row
    if fn.kind == "math":
        from llamda.services.eval import mathnorm  # its patterns compile on first use only

        return {"score": 1.0 if mathnorm.math_equal(generated, expected, fn.regexes[0]) else 0.0}
    parsed = None
    for regex in fn.regexes:
        match = regex.search(generated)
        if match:
            parsed = match.group(1)
            break
    return {"score": 1.0 if parsed and parsed == expected else 0.0}


def _as_text(value: Any) -> str:
    """A row value in a judge prompt: strings as they are, a list of strings (retrieved
    chunks) one per paragraph, anything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n\n".join(value)
    return json.dumps(value, ensure_ascii=False)


def _reply_text(reply: ChatCompletion) -> str:
    if not reply.choices:
        return ""
    content = reply.choices[0].message.content
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(getattr(part, "text", "") or "" for part in content)
    return ""


def _number_or_text(text: str) -> int | float | str:
    """A parsed judge score: a number when it reads as one (so it averages), else the text."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return text
    return value if value == value and value not in (float("inf"), float("-inf")) else text


def _numbers(rows: list[dict[str, Any]]) -> list[float]:
    return [
        r["score"]
        for r in rows
        if isinstance(r.get("score"), int | float) and not isinstance(r.get("score"), bool)
    ]


# Llama Stack's aggregations, keys and all. Where Llama Stack would fail (no rows, a scored
# error's null, a text score) these answer: accuracy counts a null as wrong; average and median
# skip what is not a number (null when nothing is left).
def _accuracy(rows: list[dict[str, Any]]) -> dict[str, Any]:
    correct = sum(_numbers(rows))
    return {
        "accuracy": correct / len(rows) if rows else None,
        "num_correct": correct,
        "num_total": len(rows),
    }


def _average(rows: list[dict[str, Any]]) -> dict[str, Any]:
    scores = _numbers(rows)
    return {"average": sum(scores) / len(scores) if scores else None}


def _median(rows: list[dict[str, Any]]) -> dict[str, Any]:
    scores = _numbers(rows)
    return {"median": statistics.median(scores) if scores else None}


def _categorical_count(rows: list[dict[str, Any]]) -> dict[str, Any]:
    counts = Counter(str(r.get("score")) for r in rows)
    return {"categorical_count": {s: counts[s] for s in sorted(counts)}}


AGGREGATIONS: dict[str, Callable[[list[dict[str, Any]]], dict[str, Any]]] = {
    "accuracy": _accuracy,
    "average": _average,
    "median": _median,
    "categorical_count": _categorical_count,
}
