"""Agents function (streaming): the Responses API run by uvicorn under the Lambda Web Adapter,
which relays each event to API Gateway as it is produced (REST API response streaming, up to
15 minutes). No Lambda context reaches the app here: the loop's deadline is
``agents.deadline_seconds`` (LLAMDA_AGENTS_DEADLINE_SECONDS, below the function's timeout)."""

from llamda.lambda_runtime import asgi_app

app = asgi_app(apis=["agents"])
