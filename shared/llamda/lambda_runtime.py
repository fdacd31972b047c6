"""Lambda entry points: the FastAPI app of the function's APIs, run by Mangum, wrapped in
Powertools' Logger, Tracer and Metrics. Everything here is built once per container."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from llamda.errors import ConfigError, ServiceUnavailableError
from llamda.observability import logger

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def _misconfigured_body(message: str) -> str:
    import json

    return json.dumps(ServiceUnavailableError(f"service misconfigured: {message}").to_dict())


def _misconfigured(message: str) -> Handler:
    """A handler that answers every request with the config error (503), not a crash loop."""
    body = _misconfigured_body(message)

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {
            "statusCode": 503,
            "headers": {"content-type": "application/json"},
            "body": body,
            "isBase64Encoded": False,
        }

    return handler


def http_handler(apis: Sequence[str]) -> Handler:
    """The Lambda handler serving ``apis`` behind API Gateway (REST API, v1 proxy events)."""
    from aws_lambda_powertools import Metrics
    from aws_lambda_powertools.logging import correlation_paths
    from mangum import Mangum

    from llamda.app import create_app
    from llamda.config import cached_config

    try:
        app = create_app(cached_config(), apis=apis)
    except ConfigError as exc:
        logger.error("invalid configuration", error=str(exc))
        return _misconfigured(str(exc))

    asgi = Mangum(app, lifespan="off")
    metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Llamda"))

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
    @metrics.log_metrics(capture_cold_start_metric=True)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return asgi(event, context)

    if not _tracing_enabled():
        return handler
    # The X-Ray SDK costs ~300 ms of imports (it pulls in botocore); only pay when tracing.
    from aws_lambda_powertools import Tracer

    return Tracer().capture_lambda_handler(handler, capture_response=False)


def _tracing_enabled() -> bool:
    return os.environ.get("POWERTOOLS_TRACE_DISABLED", "").lower() not in {"1", "true"}


def asgi_app(apis: Sequence[str]) -> Any:
    """The ASGI app for a function run by uvicorn (the streaming path under the Lambda Web
    Adapter). A bad config still starts, answering 503 with the config error."""
    from llamda.app import create_app
    from llamda.config import cached_config

    try:
        return create_app(cached_config(), apis=apis)
    except ConfigError as exc:
        logger.error("invalid configuration", error=str(exc))
        return _misconfigured_asgi(str(exc))


def _misconfigured_asgi(message: str) -> Any:
    body = _misconfigured_body(message).encode()

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
