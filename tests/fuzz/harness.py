"""Run one fuzz target under atheris (libFuzzer):  harness.py TARGET [libFuzzer args].

kstrata (and PyYAML's pure-Python parser) is imported inside
``atheris.instrument_imports`` so libFuzzer sees Python line coverage and
keeps the inputs that reach new code.  Everything after the target name is
passed to libFuzzer as is: corpus directories, ``-max_total_time=``,
``-runs=``, ``-artifact_prefix=`` and so on.  :mod:`fuzz.runner` is the usual
way to call this (``make fuzz``, tests/fuzz/test_fuzz_short.py).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import atheris
from atheris.import_hook import instrument_imports

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with instrument_imports(include=["kstrata", "yaml"]):
    from fuzz.targets import TARGETS


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: harness.py {{{','.join(TARGETS)}}} [libFuzzer args]")
    name = sys.argv[1]
    # libFuzzer re-runs argv[0] through the shell for -merge=1 (and -fork,
    # -jobs), so it must be a whole command: this interpreter, this file, the target.
    program = shlex.join([sys.executable, str(Path(__file__).resolve()), name])
    atheris.Setup([program, *sys.argv[2:]], TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
