"""What output shields judge in a streamed chat reply with several choices (``n`` > 1): each
choice's text on its own, and a redaction written back into its own choice."""

from __future__ import annotations

from llamda.api.inference import ChatCompletionChunk
from llamda.services.guardrails import chat_stream_segments


def _chunk(index: int, text: str) -> ChatCompletionChunk:
    return ChatCompletionChunk.model_validate(
        {
            "id": "c",
            "created": 1,
            "model": "m",
            "choices": [{"index": index, "delta": {"content": text}}],
        }
    )


def test_each_choice_is_judged_and_redacted_on_its_own() -> None:
    chunks = [_chunk(0, "call 555"), _chunk(1, "fine"), _chunk(0, "-0100"), _chunk(1, " too")]
    segments = chat_stream_segments(chunks)
    assert [s.text for s in segments] == ["call 555-0100", "fine too"]
    put = segments[0].put
    assert put is not None and put("call [PHONE]")
    texts: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    assert texts == {0: "call [PHONE]", 1: "fine too"}
