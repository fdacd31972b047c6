"""Answer normalization of ``basic::regex_parser_math_response``, the rules Llama Stack applies
(Minerva's): the boxed / matched answer, units and LaTeX noise removed, fractions written one
way. Every pattern runs on RE2 (linear time): answers are model output, patterns may be user
input. Llama Stack's optional sympy LaTeX evaluation (it needs antlr4) is not done."""

from __future__ import annotations

from typing import Any

from llamda.services.eval.scoring_fns import compile_re2

SUBSTITUTIONS = [
    ("an ", ""),
    ("a ", ""),
    (".$", "$"),
    ("\\$", ""),
    (r"\ ", ""),
    (" ", ""),
    ("mbox", "text"),
    (",\\text{and}", ","),
    ("\\text{and}", ","),
    ("\\text{m}", "\\text{}"),
]
REMOVED_EXPRESSIONS = [
    "square",
    "ways",
    "integers",
    "dollars",
    "mph",
    "inches",
    "ft",
    "hours",
    "km",
    "units",
    "\\ldots",
    "sue",
    "points",
    "feet",
    "minutes",
    "digits",
    "cents",
    "degrees",
    "cm",
    "gm",
    "pounds",
    "meters",
    "meals",
    "edges",
    "students",
    "childrentickets",
    "multiples",
    "\\text{s}",
    "\\text{.}",
    "\\text{\ns}",
    "\\text{}^2",
    "\\text{}^3",
    "\\text{\n}",
    "\\text{}",
    r"\mathrm{th}",
    r"^\circ",
    r"^{\circ}",
    r"\;",
    r",\!",
    "{,}",
    '"',
    "\\dots",
]


_FRAC = compile_re2(r"\\frac{([^}]+)}{([^}]+)}")
_DOLLARS = compile_re2(r"(.*?)(\$)(.*?)(\$)(.*)")
_TEXT = compile_re2(r"(\\text\{)(.*?)(\})")
_TEXTBF = compile_re2(r"(\\textbf\{)(.*?)(\})")
_OVERLINE = compile_re2(r"(\\overline\{)(.*?)(\})")
_BOXED = compile_re2(r"(\\boxed\{)(.*)(\})")
_SHORT_FRAC = compile_re2(r"(frac)([^{])(.)")
_SHORT_SQRT = compile_re2(r"(sqrt)([^{])")
_LETTER = compile_re2(r"^\([a-zA-Z]\)")


def first_answer(text: str, markers: tuple[str, ...] = ("Q:", "A:")) -> str:
    for marker in markers:
        text = text.split(marker)[0]
    return text


def try_evaluate_frac(expression: str, fmt: str = "0.2e") -> str:
    out = expression
    for match in _FRAC.finditer(expression):
        try:
            value = float(match.group(1)) / float(match.group(2))
        except (ValueError, ZeroDivisionError):
            continue
        out = out.replace(match.group(), format(value, fmt), 1)
    return out


def extract_boxed(answer: str) -> str:
    """What ``\\boxed{...}`` (or ``\\boxed x$``) holds, braces balanced; "" without one."""
    start = answer.rfind("\\boxed")
    if start < 0:
        return ""
    answer = answer[start + len("\\boxed") :].strip()
    curly = answer.startswith("{")
    depth = 0
    for i, char in enumerate(answer):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        if depth == 0:
            if curly:
                answer = answer[: i + 1].strip()
                break
            if char == "$":
                answer = answer[:i].strip()
                break
    else:
        return ""
    while answer.startswith("{") and answer.endswith("}"):
        answer = answer[1:-1].strip()
    return answer


def normalize_final_answer(final_answer: str, pattern: Any, match_first: bool = True) -> str:
    """The answer ``pattern`` (compiled RE2) extracts, else the boxed one, normalized."""
    matches = pattern.findall(final_answer)
    extraction: str
    if matches:
        extraction = matches[0] if match_first else matches[-1]
        if isinstance(extraction, tuple):  # several groups: findall gives tuples
            extraction = extraction[0]
    else:
        extraction = extract_boxed(final_answer)
    if extraction:
        final_answer = extraction
    else:
        return final_answer
    final_answer = final_answer.split("=")[-1]
    for before, after in SUBSTITUTIONS:
        final_answer = final_answer.replace(before, after)
    for expr in REMOVED_EXPRESSIONS:
        final_answer = final_answer.replace(expr, "")
    final_answer = _DOLLARS.sub(r"$\3$", final_answer)
    final_answer = _TEXT.sub(r"\2", final_answer)
    final_answer = _TEXTBF.sub(r"\2", final_answer)
    final_answer = _OVERLINE.sub(r"\2", final_answer)
    final_answer = _BOXED.sub(r"\2", final_answer)
    final_answer = _SHORT_FRAC.sub(r"frac{\2}{\3}", final_answer)
    final_answer = _SHORT_SQRT.sub(r"sqrt{\2}", final_answer)
    final_answer = final_answer.replace("$", "")
    if final_answer.replace(",", "").isdigit():
        final_answer = final_answer.replace(",", "")
    if _LETTER.search(final_answer):
        final_answer = final_answer[1]
    return _normalise_result(final_answer)


def _normalise_result(string: str) -> str:
    string = string.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    for frac in ("cfrac", "tfrac", "dfrac"):
        string = string.replace(frac, "frac")
    for noise in ("\\left", "\\le", "\\right", "^{\\circ}", "^\\circ", "\\$"):
        string = string.replace(noise, "")
    string = _remove_right_units(string)
    string = string.replace("\\%", "")
    string = string.replace(" .", " 0.").replace("{.", "{0.")
    if not string:
        return string
    if string[0] == ".":
        string = "0" + string
    string = string.split("=")[-1]
    string = _fix_sqrt(string)
    string = string.replace(" ", "")
    string = _fix_fracs(string)
    if string == "0.5":
        string = "\\frac{1}{2}"
    return _fix_a_slash_b(string)


def _remove_right_units(string: str) -> str:
    if "\\text{ " in string:
        splits = string.split("\\text{ ")
        if len(splits) == 2:
            return splits[0]
    return string


def _fix_sqrt(string: str) -> str:
    if "\\sqrt" not in string:
        return string
    splits = string.split("\\sqrt")
    out = splits[0]
    for split in splits[1:]:
        if not split:
            return string
        out += "\\sqrt" + (split if split[0] == "{" else "{" + split[0] + "}" + split[1:])
    return out


def _fix_fracs(string: str) -> str:
    substrs = string.split("\\frac")
    out = substrs[0]
    for substr in substrs[1:]:
        out += "\\frac"
        if not substr:
            return string
        if substr[0] == "{":
            out += substr
            continue
        if len(substr) < 2:
            return string
        a, b = substr[0], substr[1]
        if b != "{":
            out += "{" + a + "}{" + b + "}" + substr[2:]
        else:
            out += "{" + a + "}" + b + substr[2:]
    return out


def _fix_a_slash_b(string: str) -> str:
    if len(string.split("/")) != 2:
        return string
    a, b = string.split("/")
    try:
        ia, ib = int(a), int(b)
    except ValueError:
        return string
    if string != f"{ia}/{ib}":
        return string
    return "\\frac{" + str(ia) + "}{" + str(ib) + "}"


def math_equal(generated: str, expected: str, pattern: Any) -> bool:
    """Llama Stack's comparison: both answers normalized, fractions evaluated."""
    got = try_evaluate_frac(normalize_final_answer(first_answer(generated), pattern))
    want = try_evaluate_frac(normalize_final_answer(expected, _ANY))
    return got == want


_ANY = compile_re2(r".*")
