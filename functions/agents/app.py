"""Agents function (buffered): the Responses, Conversations and Prompts APIs behind API
Gateway's 29 s integration timeout. file_search runs in-process through the Vector Stores
service (LanceDB), so this function is in the container image (docs/agents.md).

A ``stream: true`` response still gets a valid server-sent-events body here, delivered at once;
token-by-token Responses events are the AgentsStream function's job.
"""

from llamda.lambda_runtime import http_handler

lambda_handler = http_handler(apis=["agents"])
