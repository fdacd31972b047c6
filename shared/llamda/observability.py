"""One Powertools Logger for the package: JSON lines, request id on every line."""

from __future__ import annotations

import os
import threading
from collections import defaultdict

from aws_lambda_powertools import Logger

logger = Logger(
    service=os.environ.get("POWERTOOLS_SERVICE_NAME", "llamda"),
    level=os.environ.get("LLAMDA_LOG_LEVEL") or os.environ.get("POWERTOOLS_LOG_LEVEL") or "INFO",
)


Labels = tuple[tuple[str, str], ...]


class LocalMetrics:
    """What ``GET /metrics`` serves on the local server (Prometheus text format): the same
    metrics Lambda emits as EMF, as counters, and latencies as histograms."""

    BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[str, dict[Labels, float]] = defaultdict(lambda: defaultdict(float))
        self.histograms: dict[str, dict[Labels, list[float]]] = defaultdict(dict)

    def add(self, name: str, labels: dict[str, str], value: float) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            if name.endswith("_ms"):
                buckets = self.histograms[name].setdefault(key, [0.0] * (len(self.BUCKETS_MS) + 2))
                for i, bound in enumerate(self.BUCKETS_MS):
                    if value <= bound:
                        buckets[i] += 1
                buckets[-2] += value  # sum
                buckets[-1] += 1  # count
            else:
                self.counters[name][key] += value

    def render(self, gauges: dict[str, dict[Labels, float]] | None = None) -> str:
        """Prometheus text exposition (version 0.0.4)."""
        lines: list[str] = []
        with self._lock:
            for name, series in sorted(self.counters.items()):
                metric = f"llamda_{name}_total"
                lines.append(f"# TYPE {metric} counter")
                lines += [f"{metric}{_labels(k)} {v:g}" for k, v in sorted(series.items())]
            for name, series in sorted(self.histograms.items()):
                metric = f"llamda_{name.removesuffix('_ms')}_milliseconds"
                lines.append(f"# TYPE {metric} histogram")
                for key, buckets in sorted(series.items()):
                    for bound, count in zip(self.BUCKETS_MS, buckets, strict=False):
                        lines.append(f"{metric}_bucket{_labels(key, ('le', str(bound)))} {count:g}")
                    lines.append(f"{metric}_bucket{_labels(key, ('le', '+Inf'))} {buckets[-1]:g}")
                    lines.append(f"{metric}_sum{_labels(key)} {buckets[-2]:g}")
                    lines.append(f"{metric}_count{_labels(key)} {buckets[-1]:g}")
        for name, series in sorted((gauges or {}).items()):
            lines.append(f"# TYPE llamda_{name} gauge")
            lines += [f"llamda_{name}{_labels(k)} {v:g}" for k, v in sorted(series.items())]
        return "\n".join(lines) + "\n"


def _labels(key: Labels, *extra: tuple[str, str]) -> str:
    pairs = [*key, *extra]
    if not pairs:
        return ""
    escaped = (v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for _, v in pairs)
    return "{" + ",".join(f'{k}="{v}"' for (k, _), v in zip(pairs, escaped, strict=True)) + "}"


local_metrics = LocalMetrics()


def record_metrics(dimensions: dict[str, str], **values: float) -> None:
    """CloudWatch metrics as EMF lines in Lambda; elsewhere the local /metrics counters."""
    if not os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        for name, value in values.items():
            local_metrics.add(name, dimensions, value)
        return
    from aws_lambda_powertools import single_metric
    from aws_lambda_powertools.metrics import MetricUnit

    namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Llamda")
    for name, value in values.items():
        unit = MetricUnit.Milliseconds if name.endswith("_ms") else MetricUnit.Count
        with single_metric(
            name=name, unit=unit, value=value, namespace=namespace, default_dimensions=dimensions
        ):
            pass
