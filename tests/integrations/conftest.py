"""The real third-party tools, installed by the project's own installer.

Each fixture runs ``tools/gotools/install.py NAME`` once per session: a no-op
when the pinned version is already in the tool cache, a ``go install`` (or
``apt-get install``) otherwise, so ``make test`` on a fresh machine installs
what it needs.  An install that happened is reported on the terminal with the
time it took.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALLER = REPO / "tools" / "gotools" / "install.py"


def install_tool(config: pytest.Config, name: str) -> Path:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(INSTALLER), name],
        capture_output=True,
        text=True,
        timeout=1900,
    )
    if result.returncode != 0:
        pytest.fail(f"tools/gotools/install.py {name} failed:\n{result.stderr}", pytrace=False)
    if "installed" in result.stderr:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"tools/gotools: installed {name} in {time.monotonic() - started:.0f} s"
            )
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def helm(request: pytest.FixtureRequest) -> Path:
    return install_tool(request.config, "helm")


@pytest.fixture(scope="session")
def promtool(request: pytest.FixtureRequest) -> Path:
    return install_tool(request.config, "promtool")


@pytest.fixture(scope="session")
def lua(request: pytest.FixtureRequest) -> Path:
    return install_tool(request.config, "lua5.1")


@pytest.fixture(scope="session")
def kubectl() -> Path:
    """The kubectl built with the local control plane (its kustomize renders manifests/)."""
    import controlplane

    return Path(controlplane.ensure_built(quiet=True)) / "kubectl"


@pytest.fixture(scope="session")
def flux_source_controller(request: pytest.FixtureRequest) -> Path:
    return install_tool(request.config, "flux-source-controller")


@pytest.fixture(scope="session")
def flux_kustomize_controller(request: pytest.FixtureRequest) -> Path:
    return install_tool(request.config, "flux-kustomize-controller")
