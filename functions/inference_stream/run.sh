#!/bin/sh
# Start command for the Lambda Web Adapter (AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap): serve the
# app on $PORT; the adapter forwards each invocation to it and streams the response back.
export PYTHONPATH="${LAMBDA_TASK_ROOT:-/var/task}:/opt/python${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m uvicorn app:app --host 127.0.0.1 --port "${PORT:-8080}" --no-access-log --log-level warning
