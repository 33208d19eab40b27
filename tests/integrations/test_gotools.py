"""tools/gotools/install.py: the pinned manifest, and what the installer prints."""

from __future__ import annotations

import re
import subprocess
import sys

from integration_tools import REPO

INSTALLER = REPO / "tools" / "gotools" / "install.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(INSTALLER), *args], capture_output=True, text=True, timeout=60
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
    }
    for name, kind, package, version in listed:
        assert kind in {"go", "gomod", "apt"}, name
        assert package, name
        if kind in {"go", "gomod"}:
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
