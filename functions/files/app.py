"""Files function: OpenAI Files API (bytes in S3, metadata in DynamoDB) behind API Gateway."""

from llamda.lambda_runtime import http_handler

lambda_handler = http_handler(apis=["files"])
