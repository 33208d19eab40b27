"""Shell completion of object names from the real control plane, and its deadline.

``kstrata __complete`` (what the completion scripts call at each TAB) is run
in-process and as the installed program against the session's API server;
objects are created with the Kubernetes client, so the names completed are
what the server holds.  A server that accepts connections and never answers
must give no names within the deadline, never a stalled prompt.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kstrata.app.completion import NAMES_DEADLINE, script
from kstrata.cli.completion_cmd import TIMEOUT_VARIABLE
from kstrata.cli.main import main
from support.cluster import TestCluster

GROUP, VERSION = "kstrata.dev", "v1alpha1"
KSTRATA = Path(sys.executable).with_name("kstrata")
INSTALLER = Path(__file__).resolve().parents[2] / "tools" / "gotools" / "install.py"
#: How much later than the lookup's own deadline the call may return (Python's
#: overhead on a busy shared 2-core machine); still far from a stalled prompt,
#: which a silent server would otherwise cause for as long as TCP waits.
SLACK = 0.25

pytestmark = pytest.mark.usefixtures("kstrata_crds")


@pytest.fixture(autouse=True)
def generous_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Which names: asserted with a deadline no busy machine misses.

    The default deadline (0.12 s, imports and kubeconfig parsing included) is
    what the deadline tests below use; on a machine running several test
    sessions at once it may pass with no names, which is its purpose.
    """
    monkeypatch.setenv(TIMEOUT_VARIABLE, "10")


@pytest.fixture
def default_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TIMEOUT_VARIABLE)


def complete(*words: str) -> list[str]:
    out = io.StringIO()
    assert main(["__complete", *words], out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0] == "words"
    return lines[1:]


def create(cluster: TestCluster, namespace: str, kind: str, name: str, spec: Any) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }
    cluster.custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, f"{kind.lower()}s", body
    )


@pytest.fixture
def objects(cluster: TestCluster, namespace: str) -> str:
    for name in ("alpha-web", "alpha-db", "beta"):
        create(cluster, namespace, "ConfigProfile", name, {"base": {"port": 8080}})
    create(cluster, namespace, "SealedSecret", "alpha-token", {"encryptedData": {}})
    return namespace


def test_profile_names_complete_from_the_namespace_given(
    cluster: TestCluster, objects: str
) -> None:
    kubeconfig = str(cluster.kubeconfig)
    assert complete("get", "--kubeconfig", kubeconfig, "-n", objects, "al") == [
        "alpha-db",
        "alpha-web",
    ]
    assert complete("get", "--kubeconfig", kubeconfig, "-n", objects, "") == [
        "alpha-db",
        "alpha-web",
        "beta",
    ]
    # The same names are not in another namespace.
    assert complete("get", "--kubeconfig", kubeconfig, "-n", "default", "al") == []


def test_history_completes_both_kinds_and_kind_narrows_them(
    cluster: TestCluster, objects: str
) -> None:
    kubeconfig = f"--kubeconfig={cluster.kubeconfig}"
    assert complete("history", kubeconfig, "--namespace", objects, "alpha") == [
        "alpha-db",
        "alpha-token",
        "alpha-web",
    ]
    assert complete("rollback", kubeconfig, "-n", objects, "--kind", "secret", "") == [
        "alpha-token"
    ]
    assert complete("diff", kubeconfig, "-n", objects, "--kind=profile", "alpha-w") == ["alpha-web"]


def test_namespaces_complete_after_dash_n(cluster: TestCluster, objects: str) -> None:
    found = complete("list", "--kubeconfig", str(cluster.kubeconfig), "-n", "")
    assert objects in found
    assert "kube-system" in found
    assert complete("list", "--kubeconfig", str(cluster.kubeconfig), f"--namespace={objects}") == [
        f"--namespace={objects}"
    ]


def test_the_kubeconfig_from_the_environment_and_its_context_namespace(
    cluster: TestCluster, objects: str, tmp_path: Path
) -> None:
    """No flags on the line: $KUBECONFIG and its context's namespace, as kubectl does."""
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    for context in config["contexts"]:
        context["context"]["namespace"] = objects
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    timings = []
    for _ in range(5):
        started = time.monotonic()
        result = subprocess.run(
            [str(KSTRATA), "__complete", "set", "b"],
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
            capture_output=True,
            text=True,
            timeout=30,
        )
        timings.append(time.monotonic() - started)
        assert (result.returncode, result.stdout, result.stderr) == (0, "words\nbeta\n", "")
    timings.sort()
    print(
        f"kstrata __complete set b (names from the cluster, whole process): "
        f"min {timings[0] * 1000:.0f} ms, median {timings[2] * 1000:.0f} ms"
    )


def test_real_bash_and_fish_complete_names_from_the_cluster(
    cluster: TestCluster, objects: str, tmp_path: Path
) -> None:
    """The whole path a person uses: the shell's script, kstrata __complete, the API server."""
    fish = subprocess.run(
        [sys.executable, str(INSTALLER), "fish"], capture_output=True, text=True, timeout=900
    )
    assert fish.returncode == 0, fish.stderr
    env = {
        **os.environ,
        "PATH": f"{KSTRATA.parent}{os.pathsep}{os.environ['PATH']}",
        "KUBECONFIG": str(cluster.kubeconfig),
    }
    (tmp_path / "kstrata.bash").write_text(script("bash"))
    (tmp_path / "kstrata.fish").write_text(script("fish"))
    bash = subprocess.run(
        [
            "bash",
            "-c",
            'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); '
            '_kstrata_complete; printf "%s\\n" "${COMPREPLY[@]}"',
            "bash",
            str(tmp_path / "kstrata.bash"),
            *("kstrata", "rollback", "-n", objects, "alpha"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bash.stdout.split() == ["alpha-db", "alpha-token", "alpha-web"]
    fish_run = subprocess.run(
        [
            fish.stdout.strip().splitlines()[-1],
            "--no-config",
            "-c",
            "source $argv[1]; complete -C $argv[2]",
            str(tmp_path / "kstrata.fish"),
            f"kstrata get -n {objects} ",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (fish_run.stdout.split(), fish_run.stderr) == (["alpha-db", "alpha-web", "beta"], "")


@pytest.mark.usefixtures("default_deadline")
def test_a_lookup_returns_within_its_deadline(cluster: TestCluster, objects: str) -> None:
    """With the default deadline: in time, and only real names (perhaps none, if late)."""
    kubeconfig = str(cluster.kubeconfig)
    timings = []
    for _ in range(5):
        started = time.monotonic()
        found = complete("history", "--kubeconfig", kubeconfig, "-n", objects, "")
        timings.append(time.monotonic() - started)
        assert set(found) <= {"alpha-db", "alpha-token", "alpha-web", "beta"}
    timings.sort()
    print(
        f"in-process lookup of both kinds: min {timings[0] * 1000:.0f} ms, "
        f"median {timings[2] * 1000:.0f} ms, max {timings[-1] * 1000:.0f} ms"
    )
    assert timings[-1] < NAMES_DEADLINE + SLACK, timings


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections (the kernel's backlog) and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


@pytest.mark.usefixtures("default_deadline")
def test_a_server_that_never_answers_gives_no_names_within_the_deadline(
    cluster: TestCluster, silent_server: int, tmp_path: Path
) -> None:
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    for entry in config["clusters"]:
        entry["cluster"]["server"] = f"https://127.0.0.1:{silent_server}"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    for words in (["get", ""], ["history", "a"], ["list", "-n", ""]):
        started = time.monotonic()
        found = complete("--kubeconfig", str(kubeconfig), *words)
        elapsed = time.monotonic() - started
        assert found == []
        assert elapsed < NAMES_DEADLINE + SLACK, (words, elapsed)


def test_a_refused_connection_gives_no_names_and_no_error(tmp_path: Path) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
                "clusters": [{"name": "k", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
            }
        )
    )
    err = io.StringIO()
    out = io.StringIO()
    assert main(["__complete", "get", "--kubeconfig", str(kubeconfig), ""], out=out, err=err) == 0
    assert (out.getvalue(), err.getvalue()) == ("words\n", "")
