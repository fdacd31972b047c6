"""One Powertools Logger for the package: JSON lines, request id on every line."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger

logger = Logger(
    service=os.environ.get("POWERTOOLS_SERVICE_NAME", "llamda"),
    level=os.environ.get("LLAMDA_LOG_LEVEL") or os.environ.get("POWERTOOLS_LOG_LEVEL") or "INFO",
)
