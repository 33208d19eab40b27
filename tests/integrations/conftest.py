"""The real third-party tools, installed by the project's own installer.

Each fixture runs ``tools/gotools/install.py NAME`` once per session: a no-op
when the pinned version is already in the tool cache, a ``go install`` (or
``apt-get install``) otherwise, so ``make test`` on a fresh machine installs
what it needs.  An install that happened is reported on the terminal with the
time it took.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support.gotools import install_tool


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
