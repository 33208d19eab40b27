"""A ``--context`` the kubeconfig does not have: kstrata's own message, on every path (issue 19).

Before, a bad context surfaced as the Kubernetes client's raw text or a bare
``no context named``; now every command that reads a kubeconfig says which
file, which name, the contexts it has (with the closest one) and how to pick
one, with the usage exit code.  That holds whether the kubeconfig's users
hold tokens (kstrata's own reader) or authenticate with an ``exec`` plugin
(the client's loader): the exec test writes a real plugin, a script printing
an ExecCredential, and proves it runs for a context that exists.

No cluster: a context that exists points at a closed port, and only the
errors before and after connecting are looked at.
"""

from __future__ import annotations

import io
import json
import stat
import sys
from pathlib import Path

import pytest
import yaml

from kstrata.cli.main import main

#: Commands that read the kubeconfig, one per command group.
COMMANDS = [
    ("list",),
    ("get", "payments"),
    ("set", "payments", "replicas=2"),
    ("history", "payments"),
    ("rollback", "payments"),
    ("diff", "payments"),
    ("keys", "list"),
    ("seal", "--name", "db", "--from-literal", "password=x"),
    ("operator", "run"),
]


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def kubeconfig(path: Path, users: dict[str, dict[str, object]], current: str = "dev") -> Path:
    """Contexts dev and prod on one unreachable server, each with its own user."""
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": current,
        "clusters": [{"name": "local", "cluster": {"server": "https://127.0.0.1:9"}}],
        "contexts": [
            {"name": name, "context": {"cluster": "local", "user": name, "namespace": "shop"}}
            for name in users
        ],
        "users": [{"name": name, "user": user} for name, user in users.items()],
    }
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def exec_plugin(tmp_path: Path) -> tuple[dict[str, object], Path]:
    """A user's credential plugin: prints an ExecCredential and leaves a mark that it ran."""
    marker = tmp_path / "plugin-ran"
    script = tmp_path / "credential-plugin"
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": "plugin-token"},
    }
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, pathlib\n"
        f"pathlib.Path({str(marker)!r}).touch()\n"
        f"print(json.dumps({json.dumps(credential)}))\n",
        encoding="utf-8",
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    user: dict[str, object] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": str(script),
            "interactiveMode": "Never",
        }
    }
    return user, marker


def expect_unknown_context(err: str, config: Path, name: str) -> None:
    assert f"kubeconfig {config}" in err or f"kubeconfig {config.name}" in err, err
    assert f"context {name!r} does not exist; its contexts: dev, prod" in err, err
    assert "pick one with --context NAME" in err, err
    assert "ConfigException" not in err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c[:2]) for c in COMMANDS])
def test_a_bad_context_is_named_with_the_ones_there_are(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    config = kubeconfig(tmp_path / "kubeconfig", {"dev": {"token": "t"}, "prod": {"token": "t"}})
    code, out, err = run(*command, "--kubeconfig", str(config), "--context", "staging")
    assert (code, out) == (2, ""), err
    expect_unknown_context(err, config, "staging")


def test_a_near_miss_gets_did_you_mean_and_global_flags_count_too(tmp_path: Path) -> None:
    config = kubeconfig(tmp_path / "kubeconfig", {"dev": {"token": "t"}, "prod": {"token": "t"}})
    code, _, err = run("--kubeconfig", str(config), "--context", "prd", "list")
    assert code == 2
    expect_unknown_context(err, config, "prd")
    assert "(did you mean 'prod'?)" in err


def test_a_current_context_that_is_not_there_says_so(tmp_path: Path) -> None:
    config = kubeconfig(
        tmp_path / "kubeconfig", {"dev": {"token": "t"}, "prod": {"token": "t"}}, current="gone"
    )
    code, _, err = run("list", "--kubeconfig", str(config))
    assert code == 2
    assert "its current-context 'gone' does not exist; its contexts: dev, prod" in err


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c[:2]) for c in COMMANDS])
def test_a_bad_context_with_exec_plugin_users_gets_the_same_message(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    user, marker = exec_plugin(tmp_path)
    config = kubeconfig(tmp_path / "kubeconfig", {"dev": user, "prod": user})
    code, out, err = run(*command, "--kubeconfig", str(config), "--context", "staging")
    assert (code, out) == (2, ""), err
    expect_unknown_context(err, config, "staging")
    assert not marker.exists()  # refused before any plugin ran


def test_the_exec_plugin_runs_for_a_context_that_exists(tmp_path: Path) -> None:
    """The exec path is the one taken: the plugin runs, then the (closed) server fails."""
    user, marker = exec_plugin(tmp_path)
    config = kubeconfig(tmp_path / "kubeconfig", {"dev": {"token": "t"}, "prod": user})
    code, _, err = run("list", "--kubeconfig", str(config), "--context", "prod")
    assert marker.exists(), err
    assert code == 3, err  # a cluster error, not a usage error
    assert "plugin-token" not in err
