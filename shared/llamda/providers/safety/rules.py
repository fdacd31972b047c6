"""Local rules: keywords, regexes and PII detectors with validation (Luhn for card numbers,
mod-97 for IBANs), block or redact. No model, no network.

Every regex runs on RE2 (``google-re2``: linear time, no backtracking), so no input can make a
detector slow, and no request brings its own regex: request params only select among the
shield's configured detectors, keywords and named patterns. Overlaps between detectors are
resolved in one merge walk (linear). Judging big inputs runs in a worker thread so the event
loop keeps serving.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import ipaddress
import json
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import re2

from llamda.errors import BadRequestError, ServiceUnavailableError
from llamda.providers.safety.base import Verdict, message_text
from llamda.providers.safety.config import PII_DETECTORS, RulesConfig, shield_rules

# Above this many characters a judgment runs in a worker thread (below, the hop costs more).
THREAD_THRESHOLD = 16 * 1024
# RE2 program memory per pattern: bounds what one registered pattern may cost.
MAX_PATTERN_MEMORY = 1 << 20


_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)  # digit d → digits of 2·d, summed (Luhn)


def luhn_ok(digits: str) -> bool:
    backwards = digits[::-1]
    total = sum(int(c) for c in backwards[0::2]) + sum(_DOUBLED[int(c)] for c in backwards[1::2])
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    iban = iban.replace(" ", "").upper()
    if not 15 <= len(iban) <= 34:
        return False
    rearranged = iban[4:] + iban[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


def _card_ok(match: str) -> bool:
    digits = "".join(c for c in match if c.isdigit())
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


@functools.lru_cache(maxsize=4096)
def _fold_char(char: str) -> str:
    """One character as the detectors should see it, always one character long (so spans in
    the folded text are spans in the original): compatibility forms to their plain form
    (fullwidth digits), invisible format characters and every kind of space to a space,
    every kind of dash to '-'."""
    category = unicodedata.category(char)
    if category in ("Cf", "Zs", "Zl", "Zp"):
        return " "
    if category == "Pd":
        return "-"
    folded = unicodedata.normalize("NFKC", char)
    return folded if len(folded) == 1 else char


def fold(text: str) -> str:
    """``text`` with the disguises a detector must see through undone, length preserved."""
    if text.isascii():
        return text
    return "".join(_fold_char(c) for c in text)


def _ip_ok(match: str) -> bool:
    try:
        ipaddress.ip_address(match)
    except ValueError:
        return False
    return True


def _phone_ok(match: str) -> bool:
    return 9 <= sum(c.isdigit() for c in match) <= 15


# name → (RE2 regex, validator). The regexes find candidates (group 1 when there is one, as
# RE2 has no look-around), validators remove false positives.
DETECTORS: dict[str, tuple[str, Callable[[str], bool] | None]] = {
    "email": (r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b", None),
    # Digits in groups, separated by up to two of space . - / _ (after folding, every space and
    # dash is one of those).
    "credit_card": (r"\b(?:\d[ .\-/_]{0,2}){12,18}\d\b", _card_ok),
    "iban": (r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b", iban_ok),
    "aws_access_key": (r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b", None),
    "aws_secret_key": (
        r"(?i)aws_secret_access_key[\s\"':=]+([A-Za-z0-9/+=]{40})(?:[^A-Za-z0-9/+=]|$)",
        None,
    ),
    "ip_address": (
        r"\b(?:\d{1,3}\.){3}\d{1,3}\b|\b(?:[0-9a-fA-F]{1,4}:){2,7}[0-9a-fA-F]{1,4}\b",
        _ip_ok,
    ),
    "phone": (
        r"(?:^|[^\w+])((?:\+\d{1,3}[ .-]?\(?\d{1,4}\)?(?:[ .-]?\d{2,4}){2,4}"
        r"|\(?\b\d{3}\)?[ .-]\d{3}[ .-]\d{4}))\b",
        _phone_ok,
    ),
}
_ORDER = ["email", "aws_access_key", "aws_secret_key", "iban", "credit_card", "ip_address", "phone"]
assert set(DETECTORS) == set(_ORDER) == set(PII_DETECTORS)

Finding = tuple[str, int, int]  # (category, start, end)


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False
    options.max_mem = MAX_PATTERN_MEMORY
    return options


def compile_pattern(name: str, pattern: str) -> Any:
    """An RE2 regex, or ValueError naming the pattern (RE2 refuses look-around and
    backreferences: the features that make a regex slow)."""
    try:
        return re2.compile(pattern, _options())
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise ValueError(f"pattern {name!r} is not a valid RE2 regex: {detail}") from None


@lru_cache(maxsize=len(DETECTORS))
def _detector(name: str) -> tuple[Any, Callable[[str], bool] | None]:
    pattern, valid = DETECTORS[name]
    return re2.compile(pattern, _options()), valid


@dataclass(frozen=True)
class Rules:
    """A shield's rules, compiled: what one judgment runs."""

    action: str
    pii: tuple[str, ...]
    custom: tuple[tuple[str, Any], ...]  # (category, RE2 regex)


@lru_cache(maxsize=256)
def _compile(key: str) -> Rules:
    config = RulesConfig.model_validate_json(key)  # patterns already checked by the model
    custom = [(f"keyword:{k}", re2.compile(rf"(?i)\b{re2.escape(k)}\b")) for k in config.keywords]
    custom += [(f"pattern:{n}", compile_pattern(n, p)) for n, p in sorted(config.patterns.items())]
    return Rules(config.action, tuple(n for n in _ORDER if n in config.pii), tuple(custom))


def rules_of(config: RulesConfig) -> Rules:
    return _compile(config.model_dump_json())


def find(text: str, rules: Rules, *, first: bool = False) -> list[Finding]:
    """Every finding in position order, overlaps between PII detectors resolved in detector
    order; with ``first`` it stops at the first finding (enough to block).

    Linear: each detector's matches come in position order and the spans kept so far are
    sorted and disjoint, so one pointer walks both lists once."""
    found: list[Finding] = []
    taken: list[tuple[int, int]] = []
    text = fold(text)  # same length: spans stay valid in the original
    for name in rules.pii:
        regex, valid = _detector(name)
        accepted: list[tuple[int, int]] = []
        k = 0
        for m in regex.finditer(text):
            start, end = m.span(1) if m.groups() else m.span()
            if valid and not valid(text[start:end]):
                continue
            while k < len(taken) and taken[k][1] <= start:
                k += 1
            if k < len(taken) and taken[k][0] < end:
                continue  # inside what an earlier detector found
            found.append((f"pii:{name}", start, end))
            if first:
                return found
            accepted.append((start, end))
        taken = list(heapq.merge(taken, accepted))
    for category, regex in rules.custom:
        for m in regex.finditer(text):
            if m.end() > m.start():  # an empty match finds nothing
                found.append((category, m.start(), m.end()))
                if first:
                    return found
    found.sort(key=lambda f: f[1])
    return found


def redact(text: str, findings: list[Finding]) -> str:
    out, last = [], 0
    for name, start, end in findings:
        if start < last:
            continue
        out.append(text[last:start])
        out.append(f"[REDACTED:{name.split(':', 1)[1].upper()}]")
        last = end
    out.append(text[last:])
    return "".join(out)


def _blocked(categories: list[str], action: str) -> Verdict:
    native = {name: 1.0 for name in categories}
    return Verdict(
        blocked=True,
        native=native,
        metadata={"findings": sorted(native), "action": action},
        user_message=f"Blocked: the message contains {', '.join(sorted(native))}.",
    )


def judge_texts(texts: list[str], rules: Rules, *, all_findings: bool) -> Verdict:
    """One verdict over several texts: a blocking shield stops at the first finding (unless
    ``all_findings``: moderation lists every category); a redacting one redacts each text."""
    native: dict[str, float] = {}
    redactions: dict[int, str] = {}
    for index, text in enumerate(texts):
        findings = find(text, rules, first=rules.action == "block" and not all_findings)
        if not findings:
            continue
        native.update((name, 1.0) for name, _, _ in findings)
        if rules.action == "block" and not all_findings:
            return _blocked(sorted(native), rules.action)
        if rules.action == "redact":
            redactions[index] = redact(text, findings)
    if not native:
        return Verdict()
    if rules.action == "block":
        return _blocked(sorted(native), rules.action)
    metadata = {"findings": sorted(native), "action": rules.action}
    return Verdict(
        native=native,
        redactions=redactions,
        redacted_text=redactions.get(len(texts) - 1),
        metadata=metadata,
        user_message="Sensitive information was redacted.",
    )


class RulesProvider:
    # What a request may choose (run-shield params): a subset of the shield's own rules.
    REQUEST_PARAMS = ("action", "pii", "keywords", "patterns")

    def __init__(self, provider_id: str, provider_type: str, config: RulesConfig | None):
        self.provider_id = provider_id
        self.provider_type = provider_type
        self._config = config

    def configure(self, shield_params: dict[str, Any]) -> RulesConfig:
        """The shield's rules (ValueError naming the param when they are not valid rules)."""
        return shield_rules(self._config, shield_params)

    def select(self, shield_params: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
        """The rules one request runs: the shield's, narrowed by the request's choices."""
        try:
            config = self.configure(shield_params)
        except ValueError as exc:
            raise ServiceUnavailableError(f"shield misconfigured: {exc}") from None
        chosen = config.model_dump()
        for key, value in request.items():
            param = f"params.{key}"
            if key == "action":
                if value not in ("block", "redact"):
                    raise BadRequestError("params.action must be block or redact", param=param)
                chosen["action"] = value
                continue
            if key not in ("pii", "keywords", "patterns"):
                raise BadRequestError(
                    f"unknown param {key!r}: a request may only choose among the shield's "
                    f"rules ({', '.join(self.REQUEST_PARAMS)})",
                    param=param,
                )
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise BadRequestError(
                    f"{param} must be a list of names the shield configures (a request cannot "
                    "bring its own regex)",
                    param=param,
                )
            configured = list(config.patterns) if key == "patterns" else chosen[key]
            unknown = sorted(set(value) - set(configured))
            if unknown:
                raise BadRequestError(
                    f"{param}: {unknown} not configured on this shield "
                    f"(configured: {sorted(configured)})",
                    param=param,
                )
            if key == "patterns":
                chosen["patterns"] = {n: config.patterns[n] for n in value}
            else:
                chosen[key] = list(value)
        return chosen

    async def _run(self, texts: list[str], params: dict[str, Any], all_findings: bool) -> Verdict:
        rules = _compile(json.dumps(params, sort_keys=True))
        if sum(len(t) for t in texts) <= THREAD_THRESHOLD:
            return judge_texts(texts, rules, all_findings=all_findings)
        return await asyncio.to_thread(judge_texts, texts, rules, all_findings=all_findings)

    async def check(
        self, provider_shield_id: str, messages: list[dict[str, Any]], params: dict[str, Any]
    ) -> Verdict:
        """Run-shield and moderations: the last message, every finding listed."""
        return await self._run([message_text(messages[-1])], params, all_findings=True)

    async def judge(
        self, provider_shield_id: str, texts: list[str], direction: str, params: dict[str, Any]
    ) -> Verdict:
        """Guardrails: every text that reaches (or leaves) the model."""
        return await self._run(texts, params, all_findings=False)

    async def close(self) -> None:
        return None
