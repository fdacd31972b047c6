"""Authentication and per-key limits: the one gate every request passes.

``server.auth`` chooses the mode:
- ``off``: no check, every caller is tenant ``default`` (the local default);
- ``keys``: ``Authorization: Bearer <key>`` checked in-app against the hashed keys in Records
  (the local server with ``server.auth: true`` or ``LLAMDA_AUTH=1``);
- ``authorizer``: in Lambda behind API Gateway, whose REQUEST authorizer (functions/authorizer,
  the same key check) already validated the key; its context names the tenant, role and limits.

Whatever the mode, the principal's tenant scopes every storage key from here on, and its
request/token limits are counted before the request runs.
"""

from __future__ import annotations

import json
import os
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from llamda.api.keys import ApiKey
from llamda.context import Principal, bind_principal, current_request_id, valid_tenant
from llamda.errors import AuthenticationError, LlamdaError, RateLimitError
from llamda.middleware import send_error
from llamda.observability import logger, record_metrics
from llamda.services.keys import KeysService
from llamda.services.limits import Limits, RateLimiter

OPEN_PATHS = frozenset({"/v1/health", "/v1/version"})
# Worded so that the error scrubber (which masks whatever follows "Bearer " or "token ") has
# nothing to mask.
MISSING = (
    "Missing API key: send it in the Authorization header (scheme: Bearer), as the OpenAI "
    "and Llama Stack SDKs do with api_key."
)
INVALID = "Invalid or revoked API key."


def bearer(headers: dict[str, str]) -> str | None:
    """The key from an ``Authorization: Bearer`` header (any case), else None."""
    value = headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def principal_of(key: ApiKey) -> tuple[Principal, Limits]:
    return Principal(key_id=key.id, tenant=key.tenant, role=key.role), Limits(key.rpm, key.tpm)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "", "None") else None
    except (TypeError, ValueError):
        return None


def from_authorizer(event: dict[str, Any]) -> tuple[Principal, Limits]:
    """The principal API Gateway's authorizer put in the event's request context."""
    context = (event.get("requestContext") or {}).get("authorizer") or {}
    tenant, key_id = context.get("tenant"), context.get("key_id")
    if not isinstance(tenant, str) or not valid_tenant(tenant) or not key_id:
        raise AuthenticationError(MISSING)
    role = "admin" if context.get("role") == "admin" else "member"
    limits = Limits(_int_or_none(context.get("rpm")), _int_or_none(context.get("tpm")))
    return Principal(key_id=str(key_id), tenant=tenant, role=role), limits


def _web_adapter_event(headers: dict[str, str]) -> dict[str, Any]:
    """Under the Lambda Web Adapter (the streaming function) the event is not in the ASGI
    scope: the adapter passes API Gateway's request context in ``x-amzn-request-context``,
    replacing any header of that name the client sent. Trusted only when the adapter runs: its
    layer wraps the runtime (zip functions: ``AWS_LAMBDA_EXEC_WRAPPER``), or, in the container
    image, the app is the entry point with the adapter as an extension (the template sets
    ``LLAMDA_WEB_ADAPTER=extension`` on that function only)."""
    if (
        os.environ.get("AWS_LAMBDA_EXEC_WRAPPER") != "/opt/bootstrap"
        and os.environ.get("LLAMDA_WEB_ADAPTER") != "extension"
    ):
        return {}
    try:
        context = json.loads(headers.get("x-amzn-request-context") or "{}")
    except ValueError:
        return {}
    return {"requestContext": context} if isinstance(context, dict) else {}


class AuthMiddleware:
    """ASGI: authenticate, bind the principal (tenant) and count limits, before the body is
    read. Placed inside RequestContextMiddleware so errors carry the request id."""

    def __init__(self, app: ASGIApp, mode: str, keys: KeysService, limiter: RateLimiter):
        self.app = app
        self.mode = mode
        self.keys = keys
        self.limiter = limiter

    async def _authenticate(self, scope: Scope) -> tuple[Principal, Limits]:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.mode == "authorizer":
            return from_authorizer(scope.get("aws.event") or _web_adapter_event(headers))
        secret = bearer(headers)
        if secret is None:
            raise AuthenticationError(MISSING)
        key = await self.keys.authenticate(secret)
        if key is None:
            raise AuthenticationError(INVALID)
        await self.keys.touch(key.id)
        return principal_of(key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.mode == "off" or scope["type"] != "http" or scope.get("path") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        try:
            principal, limits = await self._authenticate(scope)
            try:
                await self.limiter.admit(principal, limits)
            except RateLimitError:
                record_metrics({"tenant": principal.tenant}, rate_limited=1)
                raise
        except LlamdaError as exc:
            await send_error(send, exc, current_request_id() or "unknown")
            return
        bind_principal(principal)
        with logger.append_context_keys(tenant=principal.tenant, key_id=principal.key_id):
            try:
                await self.app(scope, receive, send)
            finally:
                # Per-tenant usage (one dimension: tenants are few compared with requests).
                record_metrics(
                    {"tenant": principal.tenant},
                    tenant_requests=1,
                    tenant_tokens=principal.tokens,
                )
                try:
                    await self.limiter.settle(principal, limits)
                except Exception:  # a failed charge must not turn a served request into a 500
                    logger.exception("could not charge tokens", key_id=principal.key_id)
