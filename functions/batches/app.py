"""Batches function: OpenAI Batches API behind API Gateway (the work runs on JobsFunction)."""

from llamda.lambda_runtime import http_handler

lambda_handler = http_handler(apis=["batches"])
