# ruff: noqa: RUF001 -- Llama Stack's answer markers hold full-width colons and letters on purpose
"""The built-in scoring functions (Llama Stack's ids, params and defaults), the judge prompts,
and how a function plus a request's params become one resolved, checked function."""

from __future__ import annotations

import functools
import re
import string
from dataclasses import dataclass, field
from typing import Any, Literal

from llamda.api.scoring import (
    BasicParams,
    LLMAsJudgeParams,
    RegexParserParams,
    ReturnType,
    ScoringFn,
)
from llamda.errors import BadRequestError

Kind = Literal["equality", "subset_of", "regex_parser", "math", "llm_as_judge"]
Params = LLMAsJudgeParams | RegexParserParams | BasicParams
PLACEHOLDER = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"

# Llama Stack's multiple-choice answer markers (basic::regex_parser_multiple_choice_answer).
MULTILINGUAL_ANSWER_REGEXES = [
    r"The best answer is ",
    r"Answer\s*:",
    r"Answer\s*:​​​​​​",  # Korean invisible character
    r"উত্তর\s*:",
    r"उत्तर\s*:",
    r"উত্তরঃ",
    r"উত্তর\s*:",
    r"Antwort\s*:",
    r"답변\s*:",
    r"정답\s*:",
    r"답\s*:",
    r"答案\s*：",
    r"答案\s*:",
    r"答\s*：",
    r"答\s*:",
    r"答复\s*：",
    r"答曰\s*：",
    r"الإجابة:",
    r"الجواب:",
    r"إجابة:",
    r"الإجابة النهائية:",
    r"الإجابة الصحيحة:",
    r"الإجابة الصحيحة هي:",
    r"الإجابة هي:",
    r"Respuesta\s*:",
    r"Risposta\s*:",
    r"答え\s*:",
    r"答え\s*：",
    r"回答\s*:",
    r"回答\s*：",
    r"解答\s*:",
    r"Jawaban\s*:",
    r"Réponse\s*:",
    r"Resposta\s*:",
    r"Jibu\s*:",
    r"Idahun\s*:",
    r"Ìdáhùn\s*:",
    r"Idáhùn\s*:",
    r"Àmọ̀nà\s*:",
    r"Àdáhùn\s*:",
    r"Ànúgọ\s*:",
    r"Àṣàyàn\s*:",
]
MULTILINGUAL_ANSWER_PATTERN = r"(?i){}\s*([A-D]|[أ-د]|[অ]|[ব]|[ড]|[ঢ]|[Ａ]|[Ｂ]|[Ｃ]|[Ｄ])"
MATH_ANSWER_REGEXES = [r".*final answer is:?\s*\$\\boxed{(?P<X>.*)}\$"]

# Our judge prompts: a number after "Score:" is the score.
SCORE_REGEXES = [r"(?i)score\s*[:=]\s*\**\s*(-?[0-9]+(?:\.[0-9]+)?)"]
BASE_TEMPLATE = """You are grading an answer to a question against the expected answer.
Question: {input_query}
Expected answer: {expected_answer}
Generated answer: {generated_answer}
Rate the generated answer from 0 (wrong) to 5 (fully correct and complete).
Reply with one line: "Score: <0-5>"."""
FAITHFULNESS_TEMPLATE = """You check whether an answer is supported by retrieved context.
Context:
{context}

Answer: {generated_answer}

Rate how much of the answer the context supports, from 0.0 (none of its claims) to 1.0 (every
claim). Reply with one line: "Score: <0.0-1.0>"."""
RELEVANCY_TEMPLATE = """You check whether an answer addresses the question asked.
Question: {input_query}
Answer: {generated_answer}

Rate how directly and completely the answer addresses the question, from 0.0 (not at all) to
1.0 (fully). Reply with one line: "Score: <0.0-1.0>"."""


# RE2's memory budget per pattern. Compiling holds the GIL for time proportional to it (a
# hostile ``(\pL{400})`` took 0.6 s at 8 MiB; at 64 KiB any pattern compiles in ~15 ms), and a
# smaller automaton bounds matching too. Answer and score regexes need a tiny fraction of it.
REGEX_MAX_MEM = 64 << 10
# RE2 instructions a pattern may compile to. Matching time per character grows with it where
# RE2's DFA gives way to its NFA: ``(?:.*a){100}(x)`` (907) took 150 ms per 20 000 characters,
# the built-ins' largest is 57, a typical score regex 20.
REGEX_MAX_PROGRAM = 500
# A scored text (a generated answer, a judge reply) is matched on its first this many
# characters: with the bound above, at most ~150 ms per regex and row.
MAX_MATCH_CHARS = 20_000


@functools.lru_cache(maxsize=512)
def compile_re2(pattern: str) -> Any:
    """An RE2 pattern (linear-time matching); ValueError with RE2's reason when it cannot be
    compiled (backreferences, lookaround) or its automaton would need over REGEX_MAX_MEM.
    Cached: a job resolves its functions once per chunk, and compiled patterns are immutable."""
    import re2  # only when a regex function runs: not on every function's cold start

    options = re2.Options()
    options.log_errors = False
    options.max_mem = REGEX_MAX_MEM
    try:
        compiled = re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode(errors="replace")
        raise ValueError(str(reason)) from None
    if compiled.programsize > REGEX_MAX_PROGRAM:
        raise ValueError(
            f"pattern too complex ({compiled.programsize} RE2 instructions, at most "
            f"{REGEX_MAX_PROGRAM})"
        )
    return compiled


@dataclass(frozen=True)
class Builtin:
    identifier: str
    kind: Kind
    description: str
    provider_id: str
    provider_resource_id: str
    params: Params


def builtins(judge_model: str | None) -> list[Builtin]:
    """Built-in functions; the judges' default model is ``eval.judge_model`` (may be unset)."""
    judge = judge_model or ""

    def judge_params(template: str, aggregations: list[str]) -> LLMAsJudgeParams:
        # Constructed unchecked: an unset judge model is "" until a request names one.
        return LLMAsJudgeParams.model_construct(
            type="llm_as_judge",
            judge_model=judge,
            prompt_template=template,
            judge_score_regexes=list(SCORE_REGEXES),
            aggregation_functions=aggregations,
        )

    return [
        Builtin(
            "basic::equality",
            "equality",
            "Returns 1.0 if the input is equal to the target, 0.0 otherwise.",
            "basic",
            "equality",
            BasicParams(aggregation_functions=["accuracy"]),
        ),
        Builtin(
            "basic::subset_of",
            "subset_of",
            "Returns 1.0 if the expected is included in generated, 0.0 otherwise.",
            "basic",
            "subset-of",
            BasicParams(aggregation_functions=["accuracy"]),
        ),
        Builtin(
            "basic::regex_parser_multiple_choice_answer",
            "regex_parser",
            "Extract answer from response matching Answer: [the_answer_letter], and compare "
            "with expected result",
            "basic",
            "regex-parser-multiple-choice-answer",
            RegexParserParams(
                parsing_regexes=[
                    MULTILINGUAL_ANSWER_PATTERN.format(x) for x in MULTILINGUAL_ANSWER_REGEXES
                ],
                aggregation_functions=["accuracy"],
            ),
        ),
        Builtin(
            "basic::regex_parser_math_response",
            "math",
            "For math related benchmarks, extract answer from the generated response and "
            "expected_answer and see if they match",
            "basic",
            "regex-parser-math-response",
            RegexParserParams(
                parsing_regexes=MATH_ANSWER_REGEXES, aggregation_functions=["accuracy"]
            ),
        ),
        Builtin(
            "llm-as-judge::base",
            "llm_as_judge",
            "Llm As Judge Scoring Function",
            "llm-as-judge",
            "llm-as-judge-base",
            judge_params(BASE_TEMPLATE, []),
        ),
        Builtin(
            "llm-as-judge::faithfulness",
            "llm_as_judge",
            "RAG: how much of generated_answer the row's retrieved context supports (0-1).",
            "llm-as-judge",
            "llm-as-judge-faithfulness",
            judge_params(FAITHFULNESS_TEMPLATE, ["average", "median"]),
        ),
        Builtin(
            "llm-as-judge::answer-relevancy",
            "llm_as_judge",
            "RAG: how directly generated_answer addresses input_query (0-1).",
            "llm-as-judge",
            "llm-as-judge-answer-relevancy",
            judge_params(RELEVANCY_TEMPLATE, ["average", "median"]),
        ),
    ]


def builtin_fn(builtin: Builtin) -> ScoringFn:
    return ScoringFn(
        identifier=builtin.identifier,
        provider_id=builtin.provider_id,
        provider_resource_id=builtin.provider_resource_id,
        description=builtin.description,
        return_type=ReturnType(type="number"),
        params=builtin.params,
    )


@dataclass(frozen=True)
class ResolvedFn:
    """A scoring function ready to run: its regexes compiled, its template parsed, the
    columns each row needs, and the aggregations to report."""

    identifier: str
    kind: Kind
    params: Params
    aggregations: tuple[str, ...]
    columns: tuple[str, ...]
    regexes: tuple[Any, ...] = ()
    template: tuple[tuple[str, str | None], ...] = ()
    judge_model: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _bad(fn_id: str, message: str) -> BadRequestError:
    return BadRequestError(
        f"scoring function '{fn_id}': {message}",
        param=f"scoring_functions.{fn_id}",
        code="invalid_scoring_params",
    )


def compile_regexes(fn_id: str, patterns: list[str], name: str) -> tuple[Any, ...]:
    """RE2-compiled patterns, each needing a capture group: the answer is group 1."""
    out = []
    for i, pattern in enumerate(patterns):
        try:
            compiled = compile_re2(pattern)
        except ValueError as exc:
            raise _bad(fn_id, f"{name}[{i}] is not a valid RE2 regex: {exc}") from None
        if compiled.groups < 1:
            raise _bad(fn_id, f"{name}[{i}] needs a capture group (the answer is group 1)")
        out.append(compiled)
    return tuple(out)


def parse_template(fn_id: str, template: str) -> tuple[tuple[str, str | None], ...]:
    """(literal text, column or None) pieces of a ``{column}`` template. Only bare column
    names: attribute/index lookups, conversions and format specs (``{x.__class__}``,
    ``{x:>999999999}``) are refused, so a template cannot reach objects or blow up memory."""
    pieces: list[tuple[str, str | None]] = []
    try:
        for literal, column, spec, conversion in string.Formatter().parse(template):
            if column is not None and (
                not re.fullmatch(PLACEHOLDER, column) or spec or conversion is not None
            ):
                raise _bad(
                    fn_id,
                    f"prompt_template placeholder {{{column[:40]}}} must be a bare column name "
                    "like {generated_answer}",
                )
            pieces.append((literal, column))
    except ValueError as exc:
        raise _bad(fn_id, f"prompt_template is not a valid template: {exc}") from None
    return tuple(pieces)


def resolve(
    fn_id: str,
    kind: Kind,
    base: Params,
    override: Params | None,
    *,
    default_judge: str | None,
) -> ResolvedFn:
    """The function ``fn_id`` of ``kind`` with its registered ``base`` params and a request's
    ``override`` (Llama Stack: request params replace the registered ones, their
    aggregation_functions included; empty regexes or template keep the registered ones)."""
    params: Params = base if override is None else override
    if override is not None and not isinstance(override, BasicParams):
        if kind in ("equality", "subset_of"):
            raise _bad(fn_id, f"takes basic params, not {override.type}")
        if kind in ("regex_parser", "math") and not isinstance(override, RegexParserParams):
            raise _bad(fn_id, f"takes regex_parser params, not {override.type}")
        if kind == "llm_as_judge" and not isinstance(override, LLMAsJudgeParams):
            raise _bad(fn_id, f"takes llm_as_judge params, not {override.type}")
    aggregations = tuple(params.aggregation_functions)
    if "weighted_average" in aggregations:
        raise _bad(fn_id, "weighted_average needs a weight per score row, which no function gives")
    if kind in ("equality", "subset_of"):
        return ResolvedFn(
            fn_id, kind, params, aggregations, ("expected_answer", "generated_answer")
        )
    if kind in ("regex_parser", "math"):
        patterns = (
            params.parsing_regexes
            if isinstance(params, RegexParserParams) and params.parsing_regexes
            else base.parsing_regexes  # type: ignore[union-attr]
        )
        if not patterns:
            raise _bad(fn_id, "parsing_regexes must name at least one regex")
        if kind == "math" and len(patterns) != 1:
            raise _bad(fn_id, "takes exactly one parsing regex")
        return ResolvedFn(
            fn_id,
            kind,
            params,
            aggregations,
            ("expected_answer", "generated_answer"),
            regexes=compile_regexes(fn_id, patterns, "parsing_regexes"),
        )
    judge_base: LLMAsJudgeParams = base  # type: ignore[assignment]
    given = params if isinstance(params, LLMAsJudgeParams) else judge_base
    judge_model = given.judge_model or judge_base.judge_model or default_judge or ""
    if not judge_model:
        raise _bad(fn_id, "needs params.judge_model (or the run config's eval.judge_model)")
    template = given.prompt_template or judge_base.prompt_template or BASE_TEMPLATE
    regexes = given.judge_score_regexes or judge_base.judge_score_regexes or SCORE_REGEXES
    pieces = parse_template(fn_id, template)
    columns = tuple(dict.fromkeys(column for _, column in pieces if column is not None))
    return ResolvedFn(
        fn_id,
        kind,
        params,
        aggregations,
        columns,
        regexes=compile_regexes(fn_id, list(regexes), "judge_score_regexes"),
        template=pieces,
        judge_model=judge_model,
    )
