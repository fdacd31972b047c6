"""Control-plane function: inspect (health, version, routes, providers) and the models registry.

One function serves both: they are small, read the same registry, and share one warm
container instead of two cold starts.
"""

from llamda.lambda_runtime import http_handler

lambda_handler = http_handler(apis=["inspect", "models"])
