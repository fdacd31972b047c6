"""The fake's ConverseStream frames decode with botocore's own event-stream parser, CRCs and
all, so the Bedrock provider is tested against the real binary encoding."""

from __future__ import annotations

import json

import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer

from tests.fakes.bedrock import event, exception_event


def test_frames_decode_with_botocore() -> None:
    buffer = EventStreamBuffer()
    buffer.add_data(
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "héllo"}})
    )
    buffer.add_data(exception_event("throttlingException", "slow down"))
    first, second = list(buffer)
    assert first.headers[":event-type"] == "contentBlockDelta"
    assert first.headers[":message-type"] == "event"
    assert json.loads(first.payload) == {"contentBlockIndex": 0, "delta": {"text": "héllo"}}
    assert second.headers[":exception-type"] == "throttlingException"
    assert json.loads(second.payload)["message"] == "slow down"


def test_a_corrupted_frame_fails_its_crc() -> None:
    frame = bytearray(event("messageStop", {"stopReason": "end_turn"}))
    frame[-6] ^= 0xFF  # flip a payload byte
    buffer = EventStreamBuffer()
    buffer.add_data(bytes(frame))
    with pytest.raises(ChecksumMismatch):
        list(buffer)
