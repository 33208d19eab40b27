"""What a kstrata process imports, and what each import costs: time and memory.

A tool for trimming start-up, not a target (``run.py`` does not run it).  Two
measures, each over fresh interpreters so nothing is cached in-process:

* ``time``: ``python -X importtime`` of a command, ``--runs`` times; each
  module's self and cumulative microseconds as the *minimum* over the runs
  (the least noisy estimate on a shared machine), largest cumulative first.
* ``rss``: for the operator's entry imports (``cli.operator_cmd.operator_imports``)
  or a given list of modules, the VmRSS a fresh interpreter gains by importing
  each top-level package on top of the ones before it (order as given).

    .venv/bin/python benchmarks/importcost.py time -- -m kstrata seal --cert C -n a --name b \\
        --from-literal k=v
    .venv/bin/python benchmarks/importcost.py rss [MODULE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def import_times(argv: list[str], runs: int) -> dict[str, tuple[int, int, int]]:
    """module -> (min self µs, min cumulative µs, nesting depth), over ``runs`` processes."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    best: dict[str, tuple[int, int, int]] = {}
    for _ in range(runs + 1):  # the first run fills the bytecode cache
        result = subprocess.run(
            [sys.executable, "-X", "importtime", *argv],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        for line in result.stderr.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            own, cumulative, name = line.removeprefix("import time:").split("|")
            depth = (len(name) - len(name.lstrip())) // 2
            key = name.strip()
            current = (int(own), int(cumulative), depth)
            if key in best:
                current = (min(best[key][0], current[0]), min(best[key][1], current[1]), depth)
            best[key] = current
    return best


_RSS_PROBE = """
import importlib, json, sys
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
steps = [('python', rss())]
sys.modules['kubernetes'] = None  # as the operator's entry does: kopf then skips the client
for name in sys.argv[1:]:
    if name == 'operator':
        from kstrata.cli.operator_cmd import operator_imports
        operator_imports()
    else:
        importlib.import_module(name)
    steps.append((name, rss()))
steps.append(('modules', len(sys.modules)))
print(json.dumps(steps))
"""


def import_rss(modules: list[str]) -> list[tuple[str, float]]:
    result = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE, *modules],
        capture_output=True,
        text=True,
        check=True,
    )
    steps: list[tuple[str, float]] = json.loads(result.stdout)
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    timing = sub.add_parser("time", help="import time of a command (after --)")
    timing.add_argument("--runs", type=int, default=10)
    timing.add_argument("--top", type=int, default=40)
    timing.add_argument("command", nargs=argparse.REMAINDER)
    memory = sub.add_parser("rss", help="RSS added by each import, in order")
    memory.add_argument(
        "modules",
        nargs="*",
        default=["ssl", "asyncio", "aiohttp", "kopf", "cryptography.hazmat.primitives.hpke",
                 "urllib3", "prometheus_client", "yaml", "operator"],
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.what == "time":
        command = [a for a in args.command if a != "--"]
        best = import_times(command, args.runs)
        total = sum(own for own, _, _ in best.values())
        print(f"{len(best)} modules, sum of self times {total / 1000:.1f} ms (min over runs)")
        ranked = sorted(best.items(), key=lambda kv: kv[1][1], reverse=True)
        for name, (own, cumulative, depth) in ranked[: args.top]:
            indent = "  " * depth
            print(f"{cumulative / 1000:8.1f} ms cum {own / 1000:7.1f} ms self  {indent}{name}")
        return 0
    steps = import_rss(args.modules)
    previous = None
    for name, value in steps:
        if name == "modules":
            print(f"{value:.0f} modules loaded")
            continue
        added = "" if previous is None else f"+{value - previous:5.1f}"
        print(f"{value:7.1f} MiB {added:>7}  {name}")
        previous = value
    return 0


if __name__ == "__main__":
    sys.exit(main())
