"""A fresh clone, following only the README, gets from nothing to a sealed secret in a pod.

Issue 19's acceptance, as a test: ``git clone`` of this repository's HEAD
(committed work only) into a temporary directory, then every line of the
README's Quick start shell blocks, parsed from README.md so the README
cannot drift from what is run, executed as printed, in order, by bash, in
the clone, as one shell session would (each line's environment and working
directory carry on to the next, so ``. .venv/bin/activate`` and ``export``
work as they do for a person).  Two instructions the README gives in
comments are followed as a person follows them:

* ``# then run the two export lines it prints``: the ``export`` lines the
  command printed run next, as printed;
* ``# in a second terminal; Ctrl-C stops it``: the line runs in the
  background in its own process group, and gets SIGINT (Ctrl-C) when its
  block ends; it must stop cleanly.

The first block is the no-root path (control plane, operator in the
foreground, a profile served, changed and rolled back); the second, on a
real node, installs kstrata as pods, seals a value with the cluster's public
key and runs a pod that mounts the Secret kstrata opened from it: the
sealed value must reach that pod's log, and nowhere else (the sealed file,
the commands' output, the cluster's objects and events, the operator's
logs), checked with the canary scanner of tests/support/leaks.py.

The clone makes its own venv from the hashed lock (``make``), and reuses
the machine's control-plane, tool and image caches under ~/.cache/kstrata,
as a second clone on the same machine would.  The node is the README's
own (``make node`` in the clone), so this test must run while no other
node is up: tests/e2e/conftest.py runs it first in the session, before the
session's node starts, and it checks.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kstrata.kube.connection import connect
from support.cluster import TestCluster
from support.leaks import Canary, cluster_texts, report, scan

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"
sys.path.insert(0, str(REPO_ROOT / "tools" / "node"))

import node  # noqa: E402

EXPORTS_NOTE = "run the two export lines it prints"
SECOND_TERMINAL = "in a second terminal"
#: One line's limit: `make node` on a warm cache is about two minutes; a fresh venv adds one.
LINE_TIMEOUT = 900
#: The value the README seals (parsed from its seal line); the pod must print it.
SEAL_LITERAL = re.compile(r"--from-literal\s+(\S+?)=(\S+)")


def quick_start_blocks(text: str) -> list[list[str]]:
    """The shell lines of each fenced ``sh`` block under ``## Quick start``."""
    section = text.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```sh\n(.*?)^```", section, flags=re.M | re.S)
    return [[line for line in block.splitlines() if line.strip()] for block in blocks]


@dataclass
class Session:
    """One shell session in the clone: environment and directory carried from line to line."""

    cwd: Path
    env: dict[str, str]
    #: Where each line leaves its environment and directory for the next (outside the clone).
    state: Path
    transcript: list[tuple[str, str]] = field(default_factory=list)
    background: list[tuple[str, subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def run(self, line: str) -> str:
        """Run one line as printed; fail with its output unless it exits 0."""
        env_file, pwd_file = self.state / "env", self.state / "pwd"
        keep = f"env -0 > {shlex.quote(str(env_file))}; pwd > {shlex.quote(str(pwd_file))}"
        started = time.monotonic()
        result = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", f"{line}\n{keep}\n"],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=LINE_TIMEOUT,
            check=False,
        )
        took = time.monotonic() - started
        output = result.stdout + result.stderr
        self.transcript.append((f"{line}  ({took:.1f} s, exit {result.returncode})", output))
        if result.returncode != 0:
            pytest.fail(f"README line failed (exit {result.returncode}): {line}\n{output[-4000:]}")
        entries = env_file.read_bytes().split(b"\0")
        self.env = dict(e.decode().split("=", 1) for e in entries if b"=" in e)
        self.cwd = Path(pwd_file.read_text().strip())
        return result.stdout

    def start(self, line: str) -> None:
        """A line the README runs in a second terminal: its own process group, logged."""
        log = self.state / f"second-terminal-{len(self.background)}.log"
        process = subprocess.Popen(
            ["bash", "-c", f"exec {line}"],
            cwd=self.cwd,
            env=self.env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.background.append((line, process, log))
        self.transcript.append((f"{line}  (in a second terminal)", ""))

    def interrupt_background(self) -> None:
        """Ctrl-C in each second terminal; each must stop cleanly within a minute."""
        for line, process, log in self.background:
            if process.poll() is not None:
                pytest.fail(f"the second terminal's command died early: {line}\n{log.read_text()}")
            os.killpg(process.pid, signal.SIGINT)
            try:
                code = process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                pytest.fail(f"Ctrl-C did not stop: {line}\n{log.read_text()[-4000:]}")
            self.transcript.append((f"Ctrl-C: {line} (exit {code})", log.read_text()))
            assert code in (0, -signal.SIGINT, 128 + signal.SIGINT), log.read_text()[-4000:]
        self.background.clear()

    def kill_background(self) -> None:
        for _, process, _ in self.background:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


def test_quick_start_blocks_are_found() -> None:
    blocks = quick_start_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) == 2
    assert blocks[0][0].startswith("make cluster")
    assert blocks[1][0].startswith("make node")
    assert EXPORTS_NOTE in blocks[0][0]
    assert EXPORTS_NOTE in blocks[1][0]
    assert blocks[1][-1].startswith("make cluster-down")
    assert any(SEAL_LITERAL.search(line) for line in blocks[1])
    assert any(SECOND_TERMINAL in line for line in blocks[0])


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """``git clone`` of HEAD: what a fresh clone holds, uncommitted work left out."""
    target = tmp_path / "kstrata"
    subprocess.run(
        ["git", "clone", "--quiet", "--no-hardlinks", str(REPO_ROOT), str(target)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return target


def fresh_shell_environment(home: Path) -> dict[str, str]:
    """A login shell's environment: no venv, no kubeconfig, no kstrata on PATH."""
    venv_bin = str(Path(sys.executable).parent)
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin]
    keep = ("HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TERM", "TMPDIR", "GOPATH", "GOCACHE")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env["PATH"] = os.pathsep.join(path)
    # The machine's caches, as a second clone on the same machine finds them.
    for name in ("KSTRATA_CONTROLPLANE_CACHE", "KSTRATA_IMAGE_CACHE", "PIP_CACHE_DIR"):
        if name in os.environ:
            env[name] = os.environ[name]
    env.setdefault("HOME", str(home))
    return env


@pytest.mark.timeout(3600)
def test_a_fresh_clone_follows_the_readme_to_a_sealed_secret_in_a_pod(
    clone: Path, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        message = "the README's node path runs pods on a real node, which needs root"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    up = node.leftovers()
    assert not up, f"another node is up ({up}); this test brings up the README's own node"
    blocks = quick_start_blocks((clone / "README.md").read_text(encoding="utf-8"))
    value = next(m[2] for b in blocks for ln in b if (m := SEAL_LITERAL.search(ln)))
    canary = Canary("readme", value.encode())
    (tmp_path / "shell").mkdir()
    session = Session(clone, fresh_shell_environment(tmp_path), tmp_path / "shell")
    printed: dict[str, str] = {}
    started = time.monotonic()
    try:
        for number, block in enumerate(blocks, start=1):
            for line in block:
                if SECOND_TERMINAL in line:
                    session.start(line)
                    continue
                if line.startswith("make cluster-down"):
                    # Before the node goes: where the value is, and where it must not be.
                    check_the_value_reached_the_pod_and_nowhere_else(
                        session, printed, canary, clone
                    )
                out = session.run(line)
                printed[f"block {number}: {line}"] = out
                if line.startswith("kstrata list"):
                    # As its comment says: READY True, STATUS Current, for every profile.
                    rows = [row.split() for row in out.splitlines()[1:]]
                    assert rows, out
                    assert all(row[3:5] == ["True", "Current"] for row in rows), out
                if EXPORTS_NOTE in line:
                    exports = [x for x in out.splitlines() if x.startswith("export ")]
                    assert len(exports) == 2, f"{line} printed {exports}"
                    for export in exports:
                        session.run(export)
            session.interrupt_background()
    finally:
        took = time.monotonic() - started
        session.kill_background()
        subprocess.run(
            ["make", "cluster-down"], cwd=clone, capture_output=True, timeout=600, check=False
        )
        print(f"README walk: {took:.0f} s")
        for what, output in session.transcript:
            print(f"$ {what}\n{_redacted(output, canary)}")
    assert not node.leftovers(), "make cluster-down left the node's changes behind"


def _redacted(text: str, canary: Canary) -> str:
    return text.replace(canary.text, "<the sealed value>")


def check_the_value_reached_the_pod_and_nowhere_else(
    session: Session, printed: dict[str, str], canary: Canary, clone: Path
) -> None:
    logs = {where: out for where, out in printed.items() if "kubectl logs" in where}
    assert logs, "the README shows no pod's log"
    assert any(canary.text in out for out in logs.values()), (
        "the pod did not print the sealed value"
    )
    kubeconfig = Path(session.env["KUBECONFIG"])
    kubectl = str(Path(session.env["PATH"].split(os.pathsep)[0]) / "kubectl")
    if not Path(kubectl).is_file():
        kubectl = next(
            str(Path(p) / "kubectl")
            for p in session.env["PATH"].split(os.pathsep)
            if (Path(p) / "kubectl").is_file()
        )
    cluster = TestCluster(kubeconfig, kubectl, connect(kubeconfig))
    dump = cluster_texts(cluster, ["hello", "kstrata-system"])
    texts = dict(dump.texts)
    texts |= {f"README output: {where}": out for where, out in printed.items() if where not in logs}
    for path in clone.glob("*.yaml"):  # what the README wrote: greeting.yaml
        texts[f"file {path.name}"] = path.read_text(encoding="utf-8")
    for pod in cluster.kubectl("get", "pods", "-n", "kstrata-system", "-o", "name").stdout.split():
        texts[f"operator log {pod}"] = cluster.kubectl(
            "logs", "-n", "kstrata-system", pod, "--all-containers"
        ).stdout
    assert "file greeting.yaml" in texts, "the README's seal line wrote no greeting.yaml"
    assert "hello/greeting" in dump.produced_secrets, "no Secret was opened from the SealedSecret"
    assert dump.produced_data, "the opened Secret holds no data"
    hits = scan(texts, [canary])
    assert not hits, report(hits)
