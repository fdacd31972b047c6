"""Per-request context: who is calling (tenant) and which request this is.

Everything that touches storage scopes its keys by ``current_tenant()``. While auth is off the
tenant is ``default``; the auth layer only has to call ``set_tenant``.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

DEFAULT_TENANT = "default"
# Records of the deployment itself (API keys, rate counters, maintenance bookkeeping): not
# a valid tenant name (tenant ids start alphanumeric), so no request can be bound to it.
SYSTEM_TENANT = "_system"
_TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")

_tenant: ContextVar[str] = ContextVar("llamda_tenant", default=DEFAULT_TENANT)
_request_id: ContextVar[str | None] = ContextVar("llamda_request_id", default=None)
_provider_data: ContextVar[dict[str, str] | None] = ContextVar("llamda_provider_data", default=None)
_deadline: ContextVar[float | None] = ContextVar("llamda_deadline", default=None)


@dataclass
class Principal:
    """Who is calling: the API key's id, tenant and role, and the tokens this request used."""

    key_id: str
    tenant: str
    role: str = "member"
    tokens: int = field(default=0)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


_principal: ContextVar[Principal | None] = ContextVar("llamda_principal", default=None)


def valid_tenant(tenant: str) -> bool:
    return bool(_TENANT_RE.match(tenant)) and tenant not in {".", ".."}


def current_tenant() -> str:
    return _tenant.get()


def set_tenant(tenant: str) -> None:
    """Bind the tenant for the rest of this request (task)."""
    if not valid_tenant(tenant):
        raise ValueError(f"invalid tenant id {tenant!r}")
    _tenant.set(tenant)


@contextmanager
def tenant_scope(tenant: str) -> Iterator[None]:
    """Act as ``tenant`` within the block (work outside requests, e.g. maintenance). Accepts
    ``SYSTEM_TENANT``, which no caller can be."""
    if tenant != SYSTEM_TENANT and not valid_tenant(tenant):
        raise ValueError(f"invalid tenant id {tenant!r}")
    token = _tenant.set(tenant)
    try:
        yield
    finally:
        _tenant.reset(token)


def system_scope() -> AbstractContextManager[None]:
    """Storage calls in the stack-wide partition (API keys, rate counters), then restore."""
    return tenant_scope(SYSTEM_TENANT)


def current_principal() -> Principal | None:
    """The authenticated caller, or None while auth is off."""
    return _principal.get()


def bind_principal(principal: Principal | None) -> None:
    """Bind the caller for this request; its tenant scopes every storage key from here on."""
    _principal.set(principal)
    if principal is not None:
        set_tenant(principal.tenant)


def add_tokens(count: int) -> None:
    """Charge tokens a provider reported to the caller (the rate limiter settles them)."""
    principal = _principal.get()
    if principal is not None and count > 0:
        principal.tokens += count


def current_request_id() -> str | None:
    return _request_id.get()


def bind_request_id(candidate: str | None) -> str:
    """Use the client's request id when it is sane, otherwise make one; bind and return it."""
    request_id = (
        candidate if candidate and _REQUEST_ID_RE.match(candidate) else f"req_{uuid.uuid4().hex}"
    )
    _request_id.set(request_id)
    return request_id


def provider_data() -> dict[str, str]:
    """Per-request provider credentials (Llama Stack's ``X-LlamaStack-Provider-Data``)."""
    return _provider_data.get() or {}


def bind_provider_data(data: dict[str, str] | None) -> None:
    _provider_data.set(data)


def request_deadline() -> float | None:
    """When this request must have answered (a ``time.monotonic()`` value), if its caller set a
    hard limit (in Lambda: the function's remaining time minus a margin); None locally."""
    return _deadline.get()


def bind_deadline(seconds_left: float | None) -> None:
    """Bind the request's hard deadline, ``seconds_left`` from now (None: no hard limit)."""
    _deadline.set(None if seconds_left is None else time.monotonic() + seconds_left)
