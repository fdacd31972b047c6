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
    from aws_lambda_powertools import Metrics, Tracer
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
    tracer = Tracer()
    metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Llamda"))

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
    @tracer.capture_lambda_handler(capture_response=False)
    @metrics.log_metrics(capture_cold_start_metric=True)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return asgi(event, context)

    return handler
