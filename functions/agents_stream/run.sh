#!/bin/sh
# The AgentsStream function's entry point in the container image (template.yaml: ImageConfig):
# serve the app on $PORT; the Lambda Web Adapter (/opt/extensions/lambda-adapter in the image's
# agents-stream stage) forwards each invocation to it and streams the response back.
export PYTHONPATH="${LAMBDA_TASK_ROOT:-/var/task}${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m uvicorn functions.agents_stream.app:app --host 127.0.0.1 --port "${PORT:-8080}" \
  --no-access-log --log-level warning
