"""The rules shield on a 2 kB message (DESIGN/issue target: sub-millisecond), in-process.

    .venv/bin/python scripts/bench/rules.py [--runs 5000] [--write]

Every built-in PII detector is on; half the messages carry findings. No peer runs this kind
of check locally (Llama Stack's safety providers call a model), so the number is absolute.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from llamda.providers.safety.config import RulesConfig
from llamda.providers.safety.rules import RulesProvider

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scripts.bench._report import append_report  # noqa: E402

FILLER = "The quarterly report covers revenue, churn and hiring plans for 2025 across regions. "
CLEAN = (FILLER * 30)[:2048]
DIRTY = (
    FILLER * 12 + "Contact jane@corp.com or +1 (415) 555-0100; card 4111 1111 1111 1111; "
    "IBAN GB82 WEST 1234 5698 7654 32; key AKIAIOSFODNN7EXAMPLE. " + FILLER * 12
)[:2048]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    provider = RulesProvider("rules", "inline::rules", RulesConfig())
    results = {}
    for name, text, params in (
        ("clean, block", CLEAN, {}),
        ("with PII, block", DIRTY, {}),
        ("with PII, redact", DIRTY, {"action": "redact"}),
    ):
        provider.judge(text, params)
        samples = []
        for _ in range(args.runs):
            start = time.perf_counter()
            provider.judge(text, params)
            samples.append((time.perf_counter() - start) * 1e6)
        results[name] = (statistics.median(samples), statistics.quantiles(samples, n=100)[98])
    lines = [f"rules shield on a 2 kB message, {args.runs} runs each (target: < 1000 µs)"]
    lines += [
        f"{name:<20}p50 {p50:>7.0f} µs   p99 {p99:>7.0f} µs" for name, (p50, p99) in results.items()
    ]
    report = "\n".join(lines)
    print(report)
    if args.write:
        append_report(
            "Rules shield",
            f".venv/bin/python scripts/bench/rules.py {' '.join(sys.argv[1:])}",
            report,
        )


if __name__ == "__main__":
    main()
