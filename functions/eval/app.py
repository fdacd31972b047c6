"""Eval function: Llama Stack datasets, scoring functions and scoring behind API Gateway."""

from llamda.lambda_runtime import http_handler

lambda_handler = http_handler(apis=["eval"])
