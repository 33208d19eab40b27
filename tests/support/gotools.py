"""The project's pinned third-party tools, and the real helm run apart from the user's own.

Shared by tests/integrations (the tools against the embedded control plane)
and tests/e2e (the chart installed on the real node), so both install the same
pinned helm the same way: ``tools/gotools/install.py NAME``, a no-op when the
pinned version is in the tool cache, a ``go install`` (or ``apt-get install``)
otherwise, so ``make test`` on a fresh machine installs what it needs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
INSTALLER = REPO / "tools" / "gotools" / "install.py"
CHART = REPO / "charts" / "kstrata"

Object = dict[str, Any]


def install_tool(config: pytest.Config, name: str) -> Path:
    """The pinned ``name``'s executable; an install that happened is reported with its time."""
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


def documents(text: str) -> list[Object]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@dataclass
class Helm:
    path: Path
    #: Helm's config, cache and data directories: never the user's own.
    home: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kstrata-helm-")))

    def __enter__(self) -> Helm:
        return self

    def __exit__(self, *_: object) -> None:
        # Helm's config, cache and data directories go with the fixture.
        shutil.rmtree(self.home, ignore_errors=True)

    def env(self) -> dict[str, str]:
        return dict(
            os.environ,
            HELM_CONFIG_HOME=str(self.home / "config"),
            HELM_CACHE_HOME=str(self.home / "cache"),
            HELM_DATA_HOME=str(self.home / "data"),
        )

    def run(
        self, *args: str, kubeconfig: Path | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command = [str(self.path), *args]
        if kubeconfig is not None:
            command += ["--kubeconfig", str(kubeconfig)]
        result = subprocess.run(
            command, capture_output=True, text=True, env=self.env(), timeout=180
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )
        return result

    def values_file(self, values: Object) -> Path:
        with tempfile.NamedTemporaryFile(
            "w", suffix=".yaml", dir=self.home, delete=False, encoding="utf-8"
        ) as handle:
            json.dump(values, handle)
        return Path(handle.name)

    def template_text(self, values: Object | None = None, *, include_crds: bool = True) -> str:
        args = ["template", "kstrata", str(CHART)]
        if include_crds:
            args.append("--include-crds")
        if values:
            args += ["--values", str(self.values_file(values))]
        return self.run(*args).stdout

    def template(self, values: Object | None = None, *, include_crds: bool = True) -> list[Object]:
        return documents(self.template_text(values, include_crds=include_crds))
