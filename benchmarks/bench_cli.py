"""Cold start of the offline CLI: ``kstrata render`` and ``kstrata validate``, one process each.

What a CI job or a pre-commit hook pays per invocation: interpreter start,
imports (no kopf, no Kubernetes client; no jsonschema for a schema made of
common keywords), reading the files, merging, schema checks and printing.
Each run is a fresh ``python -m kstrata`` process on the repository's
examples (a profile with a ``spec.schema`` that extends another);
``PYTHONDONTWRITEBYTECODE`` is removed from the child's environment so the
bytecode cache works as it does for a normal user, and one unmeasured warm-up
run per command fills it.  The bare interpreter and ``kstrata version`` run
interleaved with the measured commands, so all see the same machine load.
Target: a median of at most 100 ms (issue 18; 200 ms before).

    .venv/bin/python benchmarks/bench_cli.py [--runs 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "config"
TARGET_MS = 100.0


def commands() -> dict[str, list[str]]:
    kstrata = [sys.executable, "-m", "kstrata"]
    files = ["-f", str(EXAMPLES / "payments.yaml"), "-f", str(EXAMPLES / "platform-defaults.yaml")]
    return {
        "render": [*kstrata, "render", *files, "--env", "prod"],
        "validate": [*kstrata, "validate", *files],
        "version": [*kstrata, "version"],
        "python": [sys.executable, "-c", "pass"],
    }


def _children_cpu_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


def measure(runs: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall-clock and CPU milliseconds of ``runs`` fresh processes per command.

    CPU time (user + system of the child) is reported next to wall time
    because it moves much less with the load other work puts on the machine.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    measured = commands()
    wall: dict[str, list[float]] = {label: [] for label in measured}
    cpu: dict[str, list[float]] = {label: [] for label in measured}
    for command in measured.values():
        subprocess.run(command, env=env, check=True, capture_output=True)
    for _ in range(runs):
        for label, command in measured.items():
            cpu_start, start = _children_cpu_ms(), time.perf_counter()
            result = subprocess.run(command, env=env, capture_output=True)
            wall[label].append((time.perf_counter() - start) * 1000)
            cpu[label].append(_children_cpu_ms() - cpu_start)
            if result.returncode != 0:
                raise SystemExit(f"{label} failed: {result.stderr.decode(errors='replace')}")
    return wall, cpu


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered), 1),
        "p90_ms": round(ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))], 1),
        "min_ms": round(ordered[0], 1),
        "max_ms": round(ordered[-1], 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="measured runs (default 20)")
    parser.add_argument("--json", type=Path, help="write results as JSON here")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    timings, cpu = measure(args.runs)
    results = {label: summary(values) for label, values in timings.items()}
    cpu_results = {label: summary(values) for label, values in cpu.items()}
    report = {
        "benchmark": "cli_cold_start",
        "runs": args.runs,
        "target_ms": TARGET_MS,
        "results": results,
        "within_target": {
            label: results[label]["median_ms"] <= TARGET_MS for label in ("render", "validate")
        },
        "cpu": cpu_results,
        "timings_ms": {label: [round(t, 1) for t in values] for label, values in timings.items()},
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    for label, result in results.items():
        print(
            f"{label:>8}: median {result['median_ms']} ms, p90 {result['p90_ms']} ms, "
            f"min {result['min_ms']} ms, max {result['max_ms']} ms; "
            f"CPU median {cpu_results[label]['median_ms']} ms"
        )
    print(f"target: median <= {TARGET_MS:.0f} ms; load average {load_before[0]:.2f} before")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
