"""`make cluster` / `make cluster-down` semantics: idempotent, no orphans, stale runs recovered.

Starts its own detached control plane in a temporary state dir (beside the
session's one), the way `make cluster` does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import controlplane
from support.waiting import wait_for

LAUNCHER = str(Path(controlplane.__file__).resolve())


def _launcher(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, LAUNCHER, *args], capture_output=True, text=True, timeout=300
    )


def _kubectl_get_ns(kubeconfig: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(controlplane.bin_dir() / "kubectl"), "--kubeconfig", kubeconfig, "get", "ns"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_up_is_idempotent_survives_a_crash_and_down_leaves_nothing(tmp_path: Path) -> None:
    state_dir = tmp_path / "cluster"
    first = _launcher("up", "--state-dir", str(state_dir))
    assert first.returncode == 0, first.stderr
    export = next(line for line in first.stdout.splitlines() if line.startswith("export KUBE"))
    kubeconfig = export.split("=", 1)[1]
    assert Path(kubeconfig).is_absolute()
    listed = _kubectl_get_ns(kubeconfig)
    assert listed.returncode == 0, listed.stderr
    assert "kube-system" in listed.stdout

    # A second `up` reuses the running control plane.
    supervisor = json.loads((state_dir / "state.json").read_text())["supervisor"]
    again = _launcher("up", "--state-dir", str(state_dir))
    assert again.returncode == 0, again.stderr
    assert json.loads((state_dir / "state.json").read_text())["supervisor"] == supervisor

    # The supervisor dies hard: its components must not outlive it.
    components = controlplane.pids_of(str(state_dir))
    assert len(components) == 3
    os.kill(supervisor, signal.SIGKILL)
    wait_for(
        lambda: not controlplane.pids_of(str(state_dir)),
        timeout=30,
        what="components to exit after their supervisor was killed",
    )

    # The next `up` recovers from the stale state it left behind.
    assert (state_dir / "state.json").exists()
    recovered = _launcher("up", "--state-dir", str(state_dir))
    assert recovered.returncode == 0, recovered.stderr
    assert _kubectl_get_ns(kubeconfig).returncode == 0

    down = _launcher("down", "--state-dir", str(state_dir))
    assert down.returncode == 0, down.stderr
    assert controlplane.pids_of(str(state_dir)) == []
    assert not state_dir.exists()
