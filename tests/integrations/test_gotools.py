"""tools/gotools/install.py: the pinned manifest, and what the installer prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from support.gotools import REPO

INSTALLER = REPO / "tools" / "gotools" / "install.py"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(INSTALLER), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_every_tool_is_pinned_to_an_exact_version() -> None:
    listed = [line.split("\t") for line in run("--list").stdout.splitlines()]
    assert {row[0] for row in listed} == {
        "helm",
        "promtool",
        "lua5.1",
        "zsh",
        "fish",
        "krew",
        "sealed-secrets-controller",
        "kubeseal",
        "flux-source-controller",
        "flux-kustomize-controller",
        "argo-rollouts",
        "sops",
        "age-keygen",
    }
    for name, kind, package, version in listed:
        assert kind in {"go", "gomod", "gosource", "apt"}, name
        assert package, name
        if kind in {"go", "gomod", "gosource"}:
            assert re.fullmatch(r"v\d+\.\d+\.\d+", version), (name, version)
            assert "@" not in package, name
        else:
            assert version[0].isdigit(), (name, version)


def test_paths_name_the_version_and_install_nothing() -> None:
    result = run("--path", "helm", "promtool")
    helm, promtool = result.stdout.splitlines()
    assert helm.endswith("/helm-v3.22.0/helm")
    assert promtool.endswith("/promtool-v0.316.0/promtool")
    assert not result.stderr


def test_an_unknown_tool_is_a_usage_error() -> None:
    result = run("kubectl")
    assert result.returncode == 2
    assert "unknown tool 'kubectl'" in result.stderr
    assert not result.stdout


def test_prometheus_module_versions_map_to_releases() -> None:
    sys.path.insert(0, str(INSTALLER.parent))
    try:
        import install
    finally:
        sys.path.remove(str(INSTALLER.parent))
    tool = install.load_tools()["promtool"]
    assert tool.module_version == "3.16.0"
    assert install.Tool("x", "go", "p", "v1.2.3", "x").module_version == "1.2.3"


def test_a_go_source_is_the_pinned_module_in_the_module_cache(tmp_path: Path) -> None:
    # A module cache of its own: the download really happens, checked by go.
    env = dict(os.environ, GOMODCACHE=str(tmp_path / "mod"))
    try:
        listed = run("--path", "argo-rollouts", env=env).stdout.strip()
        result = run("argo-rollouts", env=env)
        assert result.returncode == 0, result.stderr
        directory = Path(result.stdout.strip())
        assert str(directory) == listed
        assert directory == tmp_path / "mod" / "github.com/argoproj/argo-rollouts@v1.10.1"
        assert "installed argo-rollouts v1.10.1" in result.stderr
        crd = (directory / "manifests/crds/rollout-crd.yaml").read_text()
        assert "name: rollouts.argoproj.io" in crd
        again = run("argo-rollouts", env=env)
        assert again.stdout == result.stdout
        assert "installed" not in again.stderr
    finally:
        # The module cache is written read-only.
        for path in tmp_path.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)


def test_a_go_source_names_capitals_as_the_module_cache_does() -> None:
    sys.path.insert(0, str(INSTALLER.parent))
    try:
        import install
    finally:
        sys.path.remove(str(INSTALLER.parent))
    assert install._escape_module("github.com/BurntSushi/toml") == "github.com/!burnt!sushi/toml"
    tool = install.Tool("x", "gosource", "example.com/Pkg", "v1.0.0", "x")
    assert install.tool_path(tool).name == "!pkg@v1.0.0"
