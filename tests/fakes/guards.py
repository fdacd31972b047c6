"""Content-judging fakes of the two model-backed shields, for the fake Bedrock
(``fake.respond(model, ...)``): their verdicts come from the text they are sent, never from a
label the test passes in, so a test sees both what Llamda sends and how it reads the answer.

- ``llama_guard``: a stand-in for a Llama Guard model behind Converse. It answers only a prompt
  laid out as the model card's template (anything else gets a chatty non-verdict, which Llamda
  must refuse to parse); it judges the last turn of the role the template asks about, and only
  names hazard categories the prompt lists (so excluded categories never come back).
- ``apply_guardrail``: a stand-in for a Bedrock guardrail with content filters (block) and PII
  entities (anonymize, masked as ``{TYPE}`` in ``outputs`` like Bedrock does).

Both "classify" with a small phrase list and PII regexes (with their own Luhn / mod-97 / IP
checks, independent of Llamda's rules provider)."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

# phrase (lower case) → Llama Guard hazard code
HAZARDS: list[tuple[str, str]] = [
    ("pipe bomb", "S9"),
    ("build a weapon", "S9"),
    ("rob the bank", "S1"),
    ("hurt the guard", "S1"),
    ("hurt the owner", "S1"),
    ("launder money", "S2"),
    ("steal a car", "S2"),
    ("hateful rant", "S10"),
    ("awful people", "S10"),
    ("hurt myself", "S11"),
    ("involving a minor", "S4"),
    ("explicit sex scene", "S12"),
    ("takes bribes", "S5"),
    ("pills to double up", "S6"),
    ("home address", "S7"),
    ("full text of the latest", "S8"),
    ("election is moved", "S13"),
    ("rm -rf", "S14"),
]
# phrase → Bedrock content filter type (PROMPT_ATTACK applies to INPUT only, as in Bedrock)
FILTERS: list[tuple[str, str]] = [
    ("bomb", "VIOLENCE"),
    ("hurt", "VIOLENCE"),
    ("weapon", "VIOLENCE"),
    ("launder", "MISCONDUCT"),
    ("pills", "MISCONDUCT"),
    ("home address", "MISCONDUCT"),
    ("republish", "MISCONDUCT"),
    ("election", "MISCONDUCT"),
    ("hateful", "HATE"),
    ("sex", "SEXUAL"),
    ("bribes", "INSULTS"),
    ("rm -rf", "PROMPT_ATTACK"),
]


def _luhn(digits: str) -> bool:
    total = 0
    for i, d in enumerate(int(c) for c in reversed(digits)):
        total += (d * 2 - 9 if d * 2 > 9 else d * 2) if i % 2 else d
    return total % 10 == 0


def _card(m: str) -> bool:
    digits = re.sub(r"\D", "", m)
    return 13 <= len(digits) <= 19 and _luhn(digits)


def _iban(m: str) -> bool:
    s = m.replace(" ", "")
    return int("".join(str(int(c, 36)) for c in s[4:] + s[:4])) % 97 == 1


def _ip(m: str) -> bool:
    try:
        ipaddress.ip_address(m)
    except ValueError:
        return False
    return True


PII: list[tuple[str, str, Any]] = [
    ("EMAIL", r"[\w.+-]+@[\w-]+\.[\w.]+\w", None),
    ("CREDIT_DEBIT_CARD_NUMBER", r"\b\d(?:[ -]?\d){12,18}\b", _card),
    (
        "INTERNATIONAL_BANK_ACCOUNT_NUMBER",
        r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?\d{1,3})?\b",
        _iban,
    ),
    ("AWS_ACCESS_KEY", r"\bAKIA[A-Z0-9]{16}\b", None),
    ("AWS_SECRET_KEY", r"(?<=aws_secret_access_key = )[A-Za-z0-9/+]{40}", None),
    ("IP_ADDRESS", r"\b\d{1,3}(?:\.\d{1,3}){3}\b", _ip),
    ("PHONE", r"\+\d{1,3} ?(?:\(\d+\)|\d+)(?:[ -]\d+)+|\b\d{3}-\d{3}-\d{4}\b", None),
]


def pii_in(text: str) -> list[tuple[str, str]]:
    """(type, matched text) of each PII entity, earlier types first, no overlaps."""
    found: list[tuple[str, str, int, int]] = []
    for kind, pattern, valid in PII:
        for m in re.finditer(pattern, text):
            overlaps = any(s < m.end() and m.start() < e for _, _, s, e in found)
            if not overlaps and (valid is None or valid(m.group())):
                found.append((kind, m.group(), m.start(), m.end()))
    return [(kind, match) for kind, match, _, _ in found]


# -- Llama Guard ------------------------------------------------------------------------------

TEMPLATE = re.compile(
    r"Task: Check if there is unsafe content in '(?P<role>User|Agent)' messages in "
    r"conversations according our safety policy with the below categories\.\n\n"
    r"<BEGIN UNSAFE CONTENT CATEGORIES>\n(?P<categories>(?:S\d+: [^\n]+\.\n)+)"
    r"<END UNSAFE CONTENT CATEGORIES>\n\n<BEGIN CONVERSATION>\n\n(?P<conversation>.+)\n\n"
    r"<END CONVERSATION>\n\nProvide your safety assessment for ONLY THE LAST (?P=role) message "
    r"in the above conversation:\n - First line must read 'safe' or 'unsafe'\.\n"
    r" - If unsafe, a second line must include a comma-separated list of violated categories\.",
    re.S,
)


def llama_guard_verdict(prompt: str) -> str:
    """What this fake Llama Guard answers to one prompt."""
    form = TEMPLATE.fullmatch(prompt)
    if form is None:
        return "I'm sorry, I don't understand the request."
    listed = set(re.findall(r"^(S\d+): ", form["categories"], re.M))
    turns = re.split(r"(?:^|\n\n)(User|Agent): ", form["conversation"])[1:]
    judged = [
        text for role, text in zip(turns[::2], turns[1::2], strict=True) if role == form["role"]
    ]
    if not judged:
        return "I'm sorry, there is no such message."
    text = judged[-1].lower()
    codes = [code for phrase, code in HAZARDS if phrase in text]
    if pii_in(judged[-1]):
        codes.append("S7")
    codes = [c for c in dict.fromkeys(codes) if c in listed]
    return f"unsafe\n{','.join(codes)}" if codes else "safe"


def llama_guard(body: dict[str, Any]) -> str:
    """A Converse request body → the fake model's reply text."""
    messages = body.get("messages") or []
    if len(messages) != 1 or messages[0].get("role") != "user":
        return "I expected exactly one user message."
    return llama_guard_verdict("".join(b.get("text", "") for b in messages[0]["content"]))


# -- Bedrock ApplyGuardrail -------------------------------------------------------------------


def apply_guardrail(body: dict[str, Any]) -> dict[str, Any]:
    """An ApplyGuardrail request body → the fake guardrail's response."""
    source = body.get("source")
    guarded = [
        block["text"]["text"]
        for block in body.get("content", [])
        if "text" in block and not block["text"].get("qualifiers")
    ]
    filters: list[str] = []
    entities: list[dict[str, Any]] = []
    masked: list[str] = []
    for text in guarded:
        lower = text.lower()
        filters += [
            kind
            for phrase, kind in FILTERS
            if phrase in lower and (kind != "PROMPT_ATTACK" or source == "INPUT")
        ]
        for kind, match in pii_in(text):
            entities.append(
                {"type": kind, "match": match, "action": "ANONYMIZED", "detected": True}
            )
            text = text.replace(match, "{" + kind + "}")
        masked.append(text)
    filters = list(dict.fromkeys(filters))
    if not filters and not entities:
        return {"action": "NONE", "outputs": [], "assessments": [{}], "usage": {}}
    assessment: dict[str, Any] = {}
    if filters:
        assessment["contentPolicy"] = {
            "filters": [
                {"type": f, "confidence": "HIGH", "action": "BLOCKED", "detected": True}
                for f in filters
            ]
        }
    if entities:
        assessment["sensitiveInformationPolicy"] = {"piiEntities": entities}
    outputs = (
        [{"text": "Sorry, the model cannot answer this question."}]
        if filters
        else [{"text": t} for t in masked]
    )
    return {
        "action": "GUARDRAIL_INTERVENED",
        "actionReason": "Guardrail blocked." if filters else "Guardrail masked.",
        "outputs": outputs,
        "assessments": [assessment],
        "usage": {},
    }
