"""Safety function: shields registry, run-shield and moderations behind API Gateway."""

from llamda.lambda_runtime import http_handler

lambda_handler = http_handler(apis=["safety"])
