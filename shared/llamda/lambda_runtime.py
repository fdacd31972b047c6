"""Lambda entry points: the FastAPI app of the function's APIs, run by Mangum, wrapped in
Powertools' Logger, Tracer and Metrics. Everything here is built once per container."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from llamda.errors import ConfigError, ServiceUnavailableError
from llamda.observability import logger

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def _misconfigured(message: str) -> Handler:
    """A handler that answers every request with the config error (503), not a crash loop."""
    import json

    body = json.dumps(ServiceUnavailableError(f"service misconfigured: {message}").to_dict())

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
