"""Offline CLI cold start of two checkouts, interleaved run by run: before and after a change.

A tool for judging a start-up change on a shared machine, not a target
(``run.py`` does not run it).  ``bench_cli.py`` measures one tree at a time,
so load that comes and goes between two of its runs reads as a difference;
here every run of ``render``, ``validate`` and ``seal --cert`` alternates
between the two trees (the order flipping each round), with ``python -c
pass`` in each round for the machine's state.  Each tree is an ``operator/``
directory put first on ``PYTHONPATH`` (``git archive REV operator | tar -x``).
Reported: median, p90, min and max wall time and the median CPU time (user +
system of the child), which moves less with other work on the machine, and
the load average at the start and the end.

    .venv/bin/python benchmarks/cli_before_after.py BEFORE/operator AFTER/operator [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from kstrata.crypto import PublicKeyBundle, generate_keypair

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "config"


def commands(cert: Path) -> dict[str, list[str]]:
    files = ["-f", str(EXAMPLES / "payments.yaml"), "-f", str(EXAMPLES / "platform-defaults.yaml")]
    return {
        "render": ["render", *files, "--env", "prod"],
        "validate": ["validate", *files],
        "seal --cert": [
            "seal",
            "--cert",
            str(cert),
            "-n",
            "a",
            "--name",
            "b",
            "--from-literal",
            "k=v",
        ],
    }


def _children_cpu_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="the before tree's operator/ directory")
    parser.add_argument("after", type=Path, help="the after tree's operator/ directory")
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args(argv)

    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    trees = {
        "before": {**base, "PYTHONPATH": str(args.before.resolve())},
        "after": {**base, "PYTHONPATH": str(args.after.resolve())},
    }
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="kstrata-cli-before-after-") as scratch:
        cert = Path(scratch) / "cert.json"
        cert.write_text(
            PublicKeyBundle.of([generate_keypair(created=datetime.now(UTC))]).serialize()
        )
        measured = commands(cert)
        wall: dict[tuple[str, str], list[float]] = {(t, c): [] for t in trees for c in measured}
        cpu: dict[tuple[str, str], list[float]] = {(t, c): [] for t in trees for c in measured}
        python: list[float] = []
        kstrata = [sys.executable, "-m", "kstrata"]
        for env in trees.values():  # warm-up: bytecode cache, page cache
            for words in measured.values():
                subprocess.run([*kstrata, *words], env=env, capture_output=True, check=True)
        for round_ in range(args.runs):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            python.append((time.perf_counter() - started) * 1000)
            order = ("before", "after") if round_ % 2 else ("after", "before")
            for label, words in measured.items():
                for tree in order:
                    cpu_start, started = _children_cpu_ms(), time.perf_counter()
                    subprocess.run(
                        [*kstrata, *words], env=trees[tree], capture_output=True, check=True
                    )
                    wall[(tree, label)].append((time.perf_counter() - started) * 1000)
                    cpu[(tree, label)].append(_children_cpu_ms() - cpu_start)
    print(
        f"n = {args.runs} per tree and command; python -c pass median "
        f"{statistics.median(python):.1f} ms (p90 {_p90(python):.1f}); load average "
        f"{load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"
    )
    for label in measured:
        for tree in trees:
            times, cpus = wall[(tree, label)], cpu[(tree, label)]
            print(
                f"{label:12} {tree:6} wall median {statistics.median(times):6.1f} ms, "
                f"p90 {_p90(times):6.1f} ({min(times):.1f}-{max(times):.1f}), "
                f"CPU median {statistics.median(cpus):5.1f} ms"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
