"""Local rules: keywords, regexes and PII detectors with validation (Luhn for card numbers,
mod-97 for IBANs), block or redact. No model, no network: microseconds per message."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from llamda.errors import BadRequestError
from llamda.providers.safety.base import Verdict, message_text
from llamda.providers.safety.config import RulesConfig


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    iban = iban.replace(" ", "").upper()
    if not 15 <= len(iban) <= 34:
        return False
    rearranged = iban[4:] + iban[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


def _card_ok(match: str) -> bool:
    digits = re.sub(r"[ -]", "", match)
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def _ip_ok(match: str) -> bool:
    try:
        ipaddress.ip_address(match)
    except ValueError:
        return False
    return True


def _phone_ok(match: str) -> bool:
    return 9 <= len(re.sub(r"\D", "", match)) <= 15


# name → (regex, validator); the regexes find candidates, validators remove false positives.
DETECTORS: dict[str, tuple[re.Pattern[str], Callable[[str], bool] | None]] = {
    "email": (re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"), None),
    "credit_card": (re.compile(r"\b(?:\d[ -]?){12,18}\d\b"), _card_ok),
    "iban": (re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"), iban_ok),
    "aws_access_key": (re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b"), None),
    "aws_secret_key": (
        re.compile(
            r"(?i)(?<=aws_secret_access_key)[\s\"':=]+([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
        ),
        None,
    ),
    "ip_address": (
        re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b|\b(?:[0-9a-fA-F]{1,4}:){2,7}[0-9a-fA-F]{1,4}\b"),
        _ip_ok,
    ),
    "phone": (
        re.compile(
            r"(?<![\w+])(?:\+\d{1,3}[ .-]?\(?\d{1,4}\)?(?:[ .-]?\d{2,4}){2,4}"
            r"|\(?\b\d{3}\)?[ .-]\d{3}[ .-]\d{4})\b"
        ),
        _phone_ok,
    ),
}
_ORDER = ["email", "aws_access_key", "aws_secret_key", "iban", "credit_card", "ip_address", "phone"]


@lru_cache(maxsize=256)
def _compiled(
    keywords: tuple[str, ...], patterns: tuple[tuple[str, str], ...]
) -> list[tuple[str, re.Pattern[str]]]:
    out = [(f"keyword:{k}", re.compile(rf"(?i)\b{re.escape(k)}\b")) for k in keywords]
    for name, pattern in patterns:
        try:
            out.append((f"pattern:{name}", re.compile(pattern)))
        except re.error as exc:
            raise BadRequestError(
                f"rules pattern {name!r} is not a valid regex: {exc}", param="params.patterns"
            ) from None
    return out


def find(
    text: str, pii: list[str], custom: list[tuple[str, re.Pattern[str]]]
) -> list[tuple[str, int, int]]:
    """(category, start, end) of every finding, overlaps resolved in detector order."""
    found: list[tuple[str, int, int]] = []
    taken: list[tuple[int, int]] = []
    for name in [n for n in _ORDER if n in pii]:
        regex, valid = DETECTORS[name]
        for m in regex.finditer(text):
            start, end = m.span(1) if m.groups() else m.span()
            value = text[start:end]
            if valid and not valid(value):
                continue
            if any(s < end and start < e for s, e in taken):
                continue
            found.append((f"pii:{name}", start, end))
            taken.append((start, end))
    for name, regex in custom:
        found.extend((name, m.start(), m.end()) for m in regex.finditer(text))
    return sorted(found, key=lambda f: f[1])


def redact(text: str, findings: list[tuple[str, int, int]]) -> str:
    out, last = [], 0
    for name, start, end in findings:
        if start < last:
            continue
        out.append(text[last:start])
        out.append(f"[REDACTED:{name.split(':', 1)[1].upper()}]")
        last = end
    out.append(text[last:])
    return "".join(out)


class RulesProvider:
    def __init__(self, provider_id: str, provider_type: str, config: RulesConfig):
        self.provider_id = provider_id
        self.provider_type = provider_type
        self._config = config

    def judge(self, text: str, params: dict[str, Any]) -> Verdict:
        options = self._config.model_copy(
            update={k: v for k, v in params.items() if k in RulesConfig.model_fields}
        )
        unknown = set(options.pii) - set(DETECTORS)
        if unknown:
            raise BadRequestError(
                f"unknown PII detectors {sorted(unknown)} (known: {sorted(DETECTORS)})",
                param="params.pii",
            )
        custom = _compiled(tuple(options.keywords), tuple(sorted(options.patterns.items())))
        findings = find(text, options.pii, custom)
        if not findings:
            return Verdict()
        native = {name: 1.0 for name, _, _ in findings}
        metadata = {"findings": sorted(native), "action": options.action}
        if options.action == "redact":
            return Verdict(
                native=native,
                redacted_text=redact(text, findings),
                metadata=metadata,
                user_message="Sensitive information was redacted.",
            )
        return Verdict(
            blocked=True,
            native=native,
            metadata=metadata,
            user_message=f"Blocked: the message contains {', '.join(sorted(native))}.",
        )

    async def check(
        self, provider_shield_id: str, messages: list[dict[str, Any]], params: dict[str, Any]
    ) -> Verdict:
        return self.judge(message_text(messages[-1]), params)

    async def close(self) -> None:
        return None
