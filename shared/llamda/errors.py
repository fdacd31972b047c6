"""Domain errors. Services raise these; the app maps them to OpenAI-shaped JSON in one place.

Every message is scrubbed of secrets when it is set (config secrets, the request's provider
data, credential-shaped text): no error can echo a key into a response or a log line.
"""

from __future__ import annotations


def _scrub(message: str) -> str:
    from llamda.context import provider_data
    from llamda.redact import scrub

    return scrub(message, provider_data().values())


class LlamdaError(Exception):
    """Base error: carries the HTTP status and the OpenAI error fields."""

    status_code = 500
    error_type = "server_error"
    default_code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        self.message = message
        super().__init__(self.message)
        self.param = param
        self.code = code or self.default_code
        self.headers: dict[str, str] = {}  # extra response headers, e.g. retry-after

    @property
    def message(self) -> str:
        return self._message

    @message.setter
    def message(self, value: str) -> None:
        self._message = _scrub(value)
        self.args = (self._message,)

    def to_dict(self) -> dict[str, dict[str, str | None]]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class BadRequestError(LlamdaError):
    status_code = 400
    error_type = "invalid_request_error"


class AuthenticationError(LlamdaError):
    status_code = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDeniedError(LlamdaError):
    status_code = 403
    error_type = "permission_error"


class NotFoundError(LlamdaError):
    status_code = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class ConflictError(LlamdaError):
    status_code = 409
    error_type = "invalid_request_error"
    default_code = "conflict"


class PayloadTooLargeError(LlamdaError):
    status_code = 413
    error_type = "invalid_request_error"
    default_code = "request_too_large"


class RateLimitError(LlamdaError):
    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class ServiceUnavailableError(LlamdaError):
    status_code = 503
    error_type = "server_error"
    default_code = "service_unavailable"


class ConfigError(Exception):
    """The run config is unusable; the message names the file and the bad key."""


class UpstreamError(LlamdaError):
    """A provider failed. ``retryable`` errors (throttling, 5xx, timeouts) are retried by the
    inference router and count against the provider's circuit breaker."""

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message, param=param, code=code)
        if status_code is not None:
            self.status_code = status_code
        self.retry_after = retry_after


class UpstreamRateLimitError(UpstreamError):
    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"
    retryable = True


class UpstreamUnavailableError(UpstreamError):
    status_code = 503
    error_type = "server_error"
    default_code = "service_unavailable"
    retryable = True


class UpstreamTimeoutError(UpstreamUnavailableError):
    status_code = 504
    default_code = "upstream_timeout"


class UpstreamBadRequestError(UpstreamError):
    status_code = 400
    error_type = "invalid_request_error"
    default_code = "invalid_request"


class ContextWindowExceededError(UpstreamBadRequestError):
    default_code = "context_length_exceeded"


class ContentPolicyError(UpstreamBadRequestError):
    """The provider refused on content policy (or a guardrail intervened): never retried."""

    default_code = "content_policy_violation"


class UnsupportedError(BadRequestError):
    """The provider cannot do this (e.g. /v1/completions on Bedrock)."""

    default_code = "unsupported"


class GuardrailInterventionError(ContentPolicyError):
    """A guardrail (ours or Bedrock's) blocked the content: never retried, never re-routed."""

    default_code = "guardrail_intervened"
