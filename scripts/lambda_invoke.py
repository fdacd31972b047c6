"""Invoke a built Lambda handler the way the Lambda Python runtime does, in this process.

Run as ``python -I -S -B scripts/lambda_invoke.py RESULT.json < request.json`` so that nothing
but the artifact's own directories is importable. request.json:
``{"paths": [code dir, layer python dirs...], "handler": "app.lambda_handler", "events": [...]}``
(optional ``"timeout_ms"``: the function's timeout, 29000 by default; an event that runs longer
is reported as Lambda reports a timeout).
RESULT.json gets each event's response, the timings (import, first event, total; CPU seconds
to the first event) and the modules loaded by the import and by the end.
"""

import importlib
import json
import sys
import time
import uuid

T0 = time.perf_counter()


class LambdaContext:
    """The attributes of the Lambda runtime's context object that handlers read."""

    def __init__(self, name: str, timeout_ms: int = 29000):
        self.function_name = name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
        self.memory_limit_in_mb = 1024
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "2026/11/26/[$LATEST]0123456789abcdef"
        self._deadline = time.monotonic() + timeout_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def main() -> None:
    request = json.load(sys.stdin)
    sys.path[:0] = request["paths"]
    module_name, func_name = request["handler"].rsplit(".", 1)
    module = importlib.import_module(module_name)
    handler = getattr(module, func_name)
    t_import = time.perf_counter()
    imported = list(sys.modules)  # what the handler's import loaded (tests check it stays lean)
    results, durations, first_epoch, first_cpu = [], [], None, None
    for event in request["events"]:
        start = time.perf_counter()
        timeout_ms = request.get("timeout_ms", 29000)
        try:
            result = handler(event, LambdaContext(request.get("function_name", "fn"), timeout_ms))
        except Exception as exc:  # the runtime reports it as the invocation's error
            result = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
        elapsed = time.perf_counter() - start
        if elapsed * 1000 > timeout_ms:
            # Lambda would have killed the invocation: the caller never sees the result.
            result = {
                "errorType": "Sandbox.Timedout",
                "errorMessage": f"Task timed out after {timeout_ms / 1000:.2f} seconds",
            }
        results.append(result)
        durations.append(elapsed)
        first_epoch = first_epoch or time.time()
        # CPU seconds of this process until then: steadier than wall time on a shared host.
        first_cpu = first_cpu or time.process_time()
    t_end = time.perf_counter()
    report = {
        "results": results,
        "timings": {
            "import_s": t_import - T0,
            "first_event_s": (t_import - T0) + (durations[0] if durations else 0.0),
            "event_s": durations,
            "total_s": t_end - T0,
            "first_event_epoch": first_epoch,
            "first_event_cpu_s": first_cpu,
        },
        "sys_path": sys.path,
        "modules_at_import": sorted(imported),
        "modules_at_end": sorted(sys.modules),
    }
    with open(sys.argv[1], "w") as fh:
        json.dump(report, fh)


if __name__ == "__main__":
    main()
