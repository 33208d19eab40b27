"""Run fuzz targets for a bounded time and report what they did.

    .venv/bin/python tests/fuzz/runner.py [--seconds N] [--merge] [TARGET ...]

Each target runs in its own process (libFuzzer ends the process when it
stops), reading the committed corpus tests/fuzz/corpus/<target>/ and writing
the inputs it finds to a work directory, never to the committed corpus.
A crash (an exception outside the target's documented error classes, a
failed property, a timeout or memory blow-up) leaves its input in the work
directory as ``crash-*``/``timeout-*``/``oom-*`` and fails the run.

``--merge`` minimises the new inputs into the committed corpus afterwards
(libFuzzer's ``-merge=1``: only inputs that add coverage are copied); review
and commit them.  tests/fuzz/test_fuzz_short.py calls :func:`run_target`
for the short tier of ``make test``; ``make fuzz`` runs this for longer.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
DICTS = HERE / "dicts"
HARNESS = HERE / "harness.py"
TARGET_NAMES = (
    "token",
    "documents",
    "merge_render",
    "schema",
    "env_properties",
    "secret_template",
)
#: Seconds one input may take before libFuzzer calls it a hang.
UNIT_TIMEOUT = 10
#: Inputs longer than this are not generated (documents get their own size limit).
MAX_LEN = 4096
#: Memory one run may use (libFuzzer aborts with an oom-* artifact beyond it).
RSS_LIMIT_MB = 1024

_STAT = re.compile(r"^stat::(\w+):\s*(\d+)", re.MULTILINE)
_ARTIFACT = re.compile(r"Test unit written to (\S+)")


@dataclass(frozen=True)
class Result:
    target: str
    returncode: int
    executions: int
    exec_per_sec: int
    new_units: int
    seconds: float
    artifacts: tuple[str, ...]
    log: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.artifacts

    def summary(self) -> str:
        state = "ok" if self.ok else f"FAILED (exit {self.returncode})"
        return (
            f"{self.target}: {state}, {self.executions} executions in {self.seconds:.0f} s "
            f"({self.exec_per_sec}/s), {self.new_units} new inputs"
        )


def libfuzzer_args(target: str, seconds: int, work: Path) -> list[str]:
    args = [
        f"-max_total_time={seconds}",
        f"-timeout={UNIT_TIMEOUT}",
        f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-max_len={MAX_LEN}",
        "-print_final_stats=1",
        f"-artifact_prefix={work}/",
    ]
    dictionary = DICTS / f"{target}.dict"
    if dictionary.exists():
        args.append(f"-dict={dictionary}")
    return args


def run_target(target: str, seconds: int, work: Path) -> Result:
    """Fuzz ``target`` for ``seconds``, new inputs into ``work``/corpus."""
    found = work / "corpus"
    found.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        str(HARNESS),
        target,
        *libfuzzer_args(target, seconds, work),
        str(found),
        str(CORPUS / target),
    ]
    # Bounded: libFuzzer stops itself after max_total_time; the slack covers
    # start-up, the first pass over the corpus and one slow unit.
    completed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=seconds + UNIT_TIMEOUT + 60,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    log = completed.stderr
    stats = {name: int(value) for name, value in _STAT.findall(log)}
    elapsed = stats.get("number_of_executed_units", 0) / max(
        stats.get("average_exec_per_sec", 0), 1
    )
    return Result(
        target=target,
        returncode=completed.returncode,
        executions=stats.get("number_of_executed_units", 0),
        exec_per_sec=stats.get("average_exec_per_sec", 0),
        new_units=stats.get("new_units_added", 0),
        seconds=elapsed,
        artifacts=tuple(_ARTIFACT.findall(log)),
        log=log,
    )


def merge_into_corpus(target: str, work: Path) -> None:
    """Copy the new inputs that add coverage into the committed corpus."""
    subprocess.run(
        [
            sys.executable,
            str(HARNESS),
            target,
            "-merge=1",
            f"-timeout={UNIT_TIMEOUT}",
            str(CORPUS / target),
            str(work / "corpus"),
        ],
        check=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", metavar="TARGET", help=", ".join(TARGET_NAMES))
    parser.add_argument("--seconds", type=int, default=300, help="per target (default 300)")
    parser.add_argument("--work", type=Path, help="work directory (default: a new temporary one)")
    parser.add_argument("--merge", action="store_true", help="minimise finds into the corpus")
    options = parser.parse_args(argv)
    unknown = sorted(set(options.targets) - set(TARGET_NAMES))
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}")
    work_root = options.work or Path(tempfile.mkdtemp(prefix="kstrata-fuzz-"))
    failed = False
    for target in options.targets or TARGET_NAMES:
        work = work_root / target
        result = run_target(target, options.seconds, work)
        print(result.summary(), flush=True)
        if not result.ok:
            failed = True
            print(result.log[-6000:], file=sys.stderr)
            for artifact in result.artifacts:
                print(f"  crashing input: {artifact}", file=sys.stderr)
        elif options.merge:
            merge_into_corpus(target, work)
    print(f"work directory: {work_root}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
