"""The rules shield's detector engine: linear on many matches, overlaps resolved in detector
order, a blocking judgment stops at the first finding, patterns are RE2 only."""

from __future__ import annotations

import pytest

from llamda.errors import BadRequestError
from llamda.providers.safety.config import RulesConfig
from llamda.providers.safety.rules import RulesProvider, find, judge_texts, redact, rules_of

CARD = "4111 1111 1111 1111"


def test_twenty_thousand_matches_are_all_found() -> None:
    # Before: each match was compared with every earlier one (22 s for 20k matches).
    text = " ".join([CARD, "x@y.org"] * 20_000)
    findings = find(text, rules_of(RulesConfig()))
    assert len(findings) == 40_000
    assert sum(1 for name, _, _ in findings if name == "pii:credit_card") == 20_000
    assert sum(1 for name, _, _ in findings if name == "pii:email") == 20_000
    assert [f[1] for f in findings] == sorted(f[1] for f in findings)


def test_overlaps_go_to_the_earlier_detector() -> None:
    # A card number also looks like a phone number; the card detector comes first.
    text = f"card {CARD}, call 415-555-0199, card {CARD}"
    findings = find(text, rules_of(RulesConfig()))
    assert [(name, text[s:e]) for name, s, e in findings] == [
        ("pii:credit_card", CARD),
        ("pii:phone", "415-555-0199"),
        ("pii:credit_card", CARD),
    ]
    assert redact(text, findings) == (
        "card [REDACTED:CREDIT_CARD], call [REDACTED:PHONE], card [REDACTED:CREDIT_CARD]"
    )


def test_a_blocking_judgment_stops_at_the_first_finding() -> None:
    texts = ["clean", f"a a@b.co and {CARD}", f"{CARD} again"]
    rules = rules_of(RulesConfig())
    assert find(texts[1], rules, first=True) == [("pii:email", 2, 8)]
    verdict = judge_texts(texts, rules, all_findings=False)
    assert verdict.blocked and list(verdict.native) == ["pii:email"]
    every = judge_texts(texts, rules, all_findings=True)
    assert sorted(every.native) == ["pii:credit_card", "pii:email"]


def test_redaction_is_per_text() -> None:
    rules = rules_of(RulesConfig(action="redact"))
    verdict = judge_texts(["mail a@b.co", "nothing", f"pay {CARD}"], rules, all_findings=False)
    assert not verdict.blocked
    assert verdict.redactions == {0: "mail [REDACTED:EMAIL]", 2: "pay [REDACTED:CREDIT_CARD]"}


def test_patterns_must_be_re2_and_bounded() -> None:
    with pytest.raises(ValueError, match="not a valid RE2 regex"):
        RulesConfig(patterns={"look": "(?=secret)secret"})  # look-ahead: backtracking only
    with pytest.raises(ValueError, match="not a valid RE2 regex"):
        RulesConfig(patterns={"again": r"(a)\1"})
    with pytest.raises(ValueError):
        RulesConfig(patterns={f"p{i}": "x" for i in range(33)})
    with pytest.raises(ValueError):
        RulesConfig(patterns={"long": "x" * 1025})
    # RE2 runs the classic catastrophic pattern in linear time.
    rules = rules_of(RulesConfig(pii=[], patterns={"evil": "^(a+)+$"}))
    assert find("a" * 100_000 + "b", rules) == []


def test_requests_only_select_among_configured_rules() -> None:
    provider = RulesProvider("rules", "inline::rules", RulesConfig())
    shield = {"patterns": {"ticket": r"TICKET-\d+", "code": r"X\d{3}"}, "keywords": ["falcon"]}
    chosen = provider.select(shield, {"patterns": ["ticket"], "pii": ["email"]})
    assert chosen["patterns"] == {"ticket": r"TICKET-\d+"} and chosen["pii"] == ["email"]
    for params, param in [
        ({"patterns": {"x": "^(a+)+$"}}, "params.patterns"),
        ({"patterns": ["nope"]}, "params.patterns"),
        ({"keywords": ["not configured"]}, "params.keywords"),
        ({"pii": ["dna"]}, "params.pii"),
        ({"action": "explode"}, "params.action"),
        ({"regex": "x"}, "params.regex"),
    ]:
        with pytest.raises(BadRequestError) as err:
            provider.select(shield, params)
        assert err.value.param == param


@pytest.mark.parametrize(
    "disguised",
    [
        "4111.1111.1111.1111",
        "4111/1111/1111/1111",
        "4111_1111_1111_1111",
        "4111  1111  1111  1111",
        "4111\u00a01111\u00a01111\u00a01111",  # no-break spaces
        "4111\u20131111\u20131111\u20131111",  # en dashes
        "4111\u200b1111\u200b1111\u200b1111",  # zero-width spaces
        "\uff14\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 \uff11\uff11\uff11\uff11",
    ],
)
def test_card_numbers_are_seen_through_formatting(disguised: str) -> None:
    from llamda.providers.safety.rules import find, redact, rules_of

    rules = rules_of(RulesConfig(pii=["credit_card"]))
    text = f"pay with {disguised} today"
    findings = find(text, rules)
    assert [f[0] for f in findings] == ["pii:credit_card"]
    # Spans are in the original text: redaction keeps everything around the number.
    assert redact(text, findings) == "pay with [REDACTED:CREDIT_CARD] today"
