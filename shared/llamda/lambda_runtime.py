"""Lambda entry points: the FastAPI app of the function's APIs, run by Mangum, wrapped in
Powertools' Logger, Tracer and Metrics. Everything here is built once per container."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

from llamda.context import bind_deadline
from llamda.errors import ConfigError, ServiceUnavailableError
from llamda.observability import logger

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def asgi_app(apis: Sequence[str]) -> Any:
    """The ASGI app serving ``apis``. A bad config still starts: every request then gets a 503
    naming the config error (a clear answer, not an init crash loop)."""
    from llamda.app import create_app
    from llamda.config import cached_config

    try:
        config = cached_config()
        return with_lambda_deadline(
            create_app(config, apis=apis), config.routing.lambda_margin_seconds
        )
    except ConfigError as exc:
        logger.error("invalid configuration", error=str(exc))
        return _misconfigured(str(exc))


def with_lambda_deadline(app: Any, margin_seconds: float) -> Any:
    """Bind each request's deadline to the invocation's: the Lambda context's remaining time
    (Mangum puts the context in the scope as ``aws.context``) less ``margin_seconds``, so the
    router's retries and fallbacks end while there is still time to answer. Without a Lambda
    context (uvicorn under the Web Adapter, ``llamda serve``) nothing is bound and
    ``routing.deadline_seconds`` alone applies."""

    async def bound(scope: dict[str, Any], receive: Any, send: Any) -> None:
        context = scope.get("aws.context")
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        bind_deadline(remaining() / 1000 - margin_seconds if remaining is not None else None)
        await app(scope, receive, send)

    return bound


def _misconfigured(message: str) -> Any:
    error = ServiceUnavailableError(f"service misconfigured: {message}")
    body = json.dumps(error.to_dict()).encode()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


def http_handler(apis: Sequence[str]) -> Handler:
    """The Lambda handler serving ``apis`` behind API Gateway (REST API, v1 proxy events)."""
    from aws_lambda_powertools import Metrics
    from aws_lambda_powertools.logging import correlation_paths
    from mangum import Mangum

    asgi = Mangum(asgi_app(apis), lifespan="off")
    register_snapstart_hooks()
    metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Llamda"))

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
    @metrics.log_metrics(capture_cold_start_metric=True)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return _fits_lambda(asgi(event, context))

    if not _tracing_enabled():
        return handler
    # The X-Ray SDK costs ~250 ms of imports (it pulls in botocore); only pay when tracing.
    from aws_lambda_powertools import Tracer

    return Tracer().capture_lambda_handler(handler, capture_response=False)


def register_snapstart_hooks() -> None:
    """SnapStart resumes many environments from one snapshot of this init: what init made is
    shared by all of them. Init here opens no connection and reads no credentials (AWS clients
    are made on the first request), but ``random`` was seeded at import: re-seed it from the OS
    after each restore, or every environment would draw the same retry jitter (ours and
    botocore's). The runtime's ``snapshot_restore_py`` exists only in Lambda's Python runtime
    (3.12+)."""
    try:
        from snapshot_restore_py import register_after_restore
    except ImportError:
        return
    import random

    register_after_restore(random.seed)


# Lambda returns at most 6 MB (6,291,456 bytes) of response payload, headers and JSON framing
# included; a larger one fails the invocation and API Gateway answers the client a 502.
MAX_RESPONSE_BODY = 6_000_000


def _fits_lambda(response: dict[str, Any]) -> dict[str, Any]:
    """``response``, or, when its body is more than Lambda can return, a 400 saying so (the
    client asked for too much at once: fewer rows, or a page), instead of a 502."""
    body = response.get("body") or ""
    if len(body) <= MAX_RESPONSE_BODY:
        return response
    from llamda.errors import BadRequestError

    logger.warning("response too large for Lambda", bytes=len(body))
    error = BadRequestError(
        f"the answer is {len(body)} bytes, more than a Lambda function can return (6 MB): "
        "ask for less at once (fewer rows, or a page)",
        code="response_too_large",
    )
    return {
        "statusCode": 400,
        "headers": {"content-type": "application/json"},
        "multiValueHeaders": {},
        "body": json.dumps(error.to_dict()),
        "isBase64Encoded": False,
    }


def _tracing_enabled() -> bool:
    return os.environ.get("POWERTOOLS_TRACE_DISABLED", "").lower() not in {"1", "true"}
