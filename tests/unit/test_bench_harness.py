"""The benchmarks' child processes: how they are stopped and what their logs leave in /tmp.

benchmarks/harness.py stops every process a benchmark starts (the operator,
the kopf floor, the sealed-secrets controller) one way, and removes their
logs unless something went wrong: when every log was kept, hundreds piled up
in /tmp.  Real child processes, no cluster.
"""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import IO

import pytest

HARNESS = Path(__file__).resolve().parents[2] / "benchmarks" / "harness.py"

#: A child that announces itself once its SIGTERM handling is in place, then waits.
_CHILD = "import signal, sys, time\n{handler}\nprint('ready', flush=True)\ntime.sleep(120)\n"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_harness", HARNESS)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Its dataclasses look their module up by name while they are built.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


harness = _load()


@pytest.fixture(autouse=True)
def _private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The logs go where tempfile puts them: here, not the machine's shared /tmp.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def _child(handler: str, log: IO[bytes] | None = None) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-c", _CHILD.format(handler=handler)],
        stdout=subprocess.PIPE,
        stderr=log,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"
    return process


def test_a_log_is_removed_when_the_block_ends_normally(tmp_path: Path) -> None:
    with harness.process_log("kstrata-operator-") as log:
        log.file.write(b"started\n")
        path = Path(log.path)
        assert path.parent == tmp_path
        assert path.name.startswith("kstrata-operator-")
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_log_is_kept_and_named_when_the_block_raised(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def failing_benchmark() -> None:
        with harness.process_log("kstrata-operator-") as log:
            log.file.write(b"last words\n")
            kept.append(log.path)
            raise TimeoutError("timed out waiting for operator liveness")

    kept: list[str] = []
    with pytest.raises(TimeoutError, match="liveness"):
        failing_benchmark()
    assert Path(kept[0]).read_bytes() == b"last words\n"
    assert kept[0] in capsys.readouterr().err


def test_a_process_stopped_by_sigterm_leaves_no_log() -> None:
    with harness.process_log("kstrata-kopf-floor-") as log:
        process = _child("", log.file)
        log.keep_unless_stopped(harness.stop_process(process), "the child")
    assert process.returncode == -signal.SIGTERM
    assert not Path(log.path).exists()


def test_a_process_that_exits_badly_keeps_its_log_and_says_where(
    capsys: pytest.CaptureFixture[str],
) -> None:
    handler = (
        "signal.signal(signal.SIGTERM, lambda *_: (sys.stderr.write('bad exit\\n'), sys.exit(3)))"
    )
    with harness.process_log("sealed-secrets-") as log:
        process = _child(handler, log.file)
        log.keep_unless_stopped(harness.stop_process(process), "the child")
    assert process.returncode == 3
    assert Path(log.path).read_bytes() == b"bad exit\n"
    assert f"the child exited 3: {log.path}" in capsys.readouterr().err


def test_a_process_that_ignores_sigterm_is_killed_after_the_timeout() -> None:
    process = _child("signal.signal(signal.SIGTERM, signal.SIG_IGN)")
    assert harness.stop_process(process, timeout=0.5) == -signal.SIGKILL
