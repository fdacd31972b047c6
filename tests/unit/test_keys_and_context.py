"""Key building and the request context."""

from __future__ import annotations

import json

import pytest

from llamda.context import bind_request_id, set_tenant, valid_tenant
from llamda.errors import BadRequestError
from llamda.storage.keys import check_kind, object_key, safe_segment


@pytest.mark.parametrize(
    "bad", ["", ".", "..", "a/b", "a\\b", "nul\x00", "tab\t", " pad", "x" * 256]
)
def test_unsafe_segments_are_refused(bad: str) -> None:
    with pytest.raises(BadRequestError):
        safe_segment(bad)


@pytest.mark.parametrize("good", ["file-abc123", "a.b", "model:v1@2", "ünïcode", "..."])
def test_safe_segments_pass(good: str) -> None:
    assert safe_segment(good) == good


def test_object_key_joins_checked_segments() -> None:
    assert object_key("files", "file-1") == "files/file-1"
    with pytest.raises(BadRequestError):
        object_key("files", "../x")


def test_kinds_are_code_names() -> None:
    assert check_kind("vector_stores") == "vector_stores"
    with pytest.raises(ValueError):
        check_kind("Models#x")


@pytest.mark.parametrize("tenant", ["", "..", "a/b", "a#b", "x" * 65])
def test_invalid_tenants_are_refused(tenant: str) -> None:
    assert not valid_tenant(tenant)
    with pytest.raises(ValueError):
        set_tenant(tenant)


def test_request_id_accepts_sane_client_ids_only() -> None:
    assert bind_request_id("abc-123_X.y:z") == "abc-123_X.y:z"
    assert bind_request_id("bad id with spaces").startswith("req_")
    assert bind_request_id("x" * 200).startswith("req_")
    assert bind_request_id(None).startswith("req_")


@pytest.mark.parametrize(
    ("env", "trusted"),
    [
        ({}, False),  # llamda serve, Mangum: a client's header is never a tenant
        ({"AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap"}, True),  # the adapter's layer (zip)
        ({"LLAMDA_WEB_ADAPTER": "extension"}, True),  # the image's agents-stream stage
        ({"LLAMDA_WEB_ADAPTER": "1", "AWS_LAMBDA_EXEC_WRAPPER": "/opt/other"}, False),
    ],
)
def test_request_context_header_is_trusted_only_behind_the_web_adapter(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], trusted: bool
) -> None:
    from llamda.auth import _web_adapter_event

    for name in ("AWS_LAMBDA_EXEC_WRAPPER", "LLAMDA_WEB_ADAPTER"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    forged = {"x-amzn-request-context": json.dumps({"authorizer": {"tenant": "acme"}})}
    assert bool(_web_adapter_event(forged)) is trusted
