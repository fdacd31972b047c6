"""One Powertools Logger for the package: JSON lines, request id on every line."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger

logger = Logger(
    service=os.environ.get("POWERTOOLS_SERVICE_NAME", "llamda"),
    level=os.environ.get("LLAMDA_LOG_LEVEL") or os.environ.get("POWERTOOLS_LOG_LEVEL") or "INFO",
)


def record_metrics(dimensions: dict[str, str], **values: float) -> None:
    """CloudWatch metrics as EMF lines, in Lambda only (elsewhere the log line carries them)."""
    if not os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        return
    from aws_lambda_powertools import single_metric
    from aws_lambda_powertools.metrics import MetricUnit

    namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Llamda")
    for name, value in values.items():
        unit = MetricUnit.Milliseconds if name.endswith("_ms") else MetricUnit.Count
        with single_metric(
            name=name, unit=unit, value=value, namespace=namespace, default_dimensions=dimensions
        ):
            pass
