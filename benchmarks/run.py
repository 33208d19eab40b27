"""Run every benchmark (``make bench``) and keep the results with the machine they ran on.

Benchmarks measure; tests assert.  Each ``bench_*.py`` here is a standalone
script that accepts ``--json PATH``; this runner calls them one after another
(never in parallel: two cores) and writes ``benchmarks/results/<name>.json``.
The numbers go into docs/performance.md by hand, with the machine description
printed here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
#: Benchmarks that take ``--quick`` (smaller sizes, one repetition): bench_peers.py
#: builds and runs the peer programs beside kstrata, minutes at full size.
QUICK = {"peers"}


def machine() -> dict[str, object]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="bench_<name>.py to run (default: all)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smaller sizes for the benchmarks that have them ({', '.join(sorted(QUICK))})",
    )
    args = parser.parse_args(argv)
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.names:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in args.names]
    RESULTS.mkdir(exist_ok=True)
    print(json.dumps({"machine": machine()}, indent=2))
    failed = []
    for script in scripts:
        name = script.stem.removeprefix("bench_")
        print(f"\n=== {name} ===", flush=True)
        started = time.monotonic()
        quick = ["--quick"] if args.quick and name in QUICK else []
        result = subprocess.run(
            [sys.executable, str(script), "--json", str(RESULTS / f"{name}.json"), *quick],
            check=False,
        )
        print(f"({time.monotonic() - started:.0f} s)", flush=True)
        if result.returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
