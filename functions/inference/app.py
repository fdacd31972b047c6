"""Inference function (buffered): chat completions, completions, embeddings behind API Gateway.

A ``stream: true`` request still gets a valid server-sent-events body here, delivered at once;
token-by-token streaming is the InferenceStream function's job.
"""

from llamda.lambda_runtime import http_handler

lambda_handler = http_handler(apis=["inference"])
