"""Inference function (streaming): the same app run by uvicorn under the Lambda Web Adapter,
which relays the response to API Gateway chunk by chunk (REST API response streaming)."""

from llamda.lambda_runtime import asgi_app

app = asgi_app(apis=["inference"])
