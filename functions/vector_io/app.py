"""Vector stores function: OpenAI Vector Stores + Llama Stack vector-io (LanceDB on S3)."""

from llamda.lambda_runtime import http_handler

lambda_handler = http_handler(apis=["vector_io"])
