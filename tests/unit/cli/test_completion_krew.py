"""plugins/krew: the real krew installs the manifest, the real kubectl runs the plugin.

krew (pinned in tools/gotools/tools.toml, built by tools/gotools/install.py)
installs plugins/krew/kstrata.yaml with ``--archive`` into a throwaway
KREW_ROOT: that is krew's own manifest validation, its sha256 check of the
archive, and its file layout.  The kubectl built with the local control plane
then runs ``kubectl kstrata`` through the installed link, and completes
``kubectl kstrata ge<TAB>`` through ``kubectl_complete-kstrata`` (kubectl's
plugin completion).  No cluster and no network: the archive is built here,
reproducibly, by plugins/krew/archive.py.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kstrata import __version__

REPO = Path(__file__).resolve().parents[3]
KREW_DIR = REPO / "plugins" / "krew"
MANIFEST = KREW_DIR / "kstrata.yaml"
INSTALLER = REPO / "tools" / "gotools" / "install.py"
VENV_BIN = Path(sys.executable).parent
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"

sys.path.insert(0, str(KREW_DIR))
import archive  # noqa: E402


@pytest.fixture(scope="module")
def krew() -> Path:
    result = subprocess.run(
        [sys.executable, str(INSTALLER), "krew"], capture_output=True, text=True, timeout=1900
    )
    if result.returncode != 0:
        pytest.fail(f"tools/gotools/install.py krew failed:\n{result.stderr}", pytrace=False)
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def kubectl() -> Path:
    import controlplane

    return Path(controlplane.ensure_built(quiet=True)) / "kubectl"


def manifest() -> dict[str, object]:
    loaded: dict[str, object] = yaml.safe_load(MANIFEST.read_text())
    return loaded


def platform() -> dict[str, object]:
    spec = manifest()["spec"]
    assert isinstance(spec, dict)
    (only,) = spec["platforms"]
    assert isinstance(only, dict)
    return only


def test_the_archive_is_reproducible_and_is_the_one_the_manifest_pins(tmp_path: Path) -> None:
    first = archive.build(tmp_path / "a.zip")
    second = archive.build(tmp_path / "b.zip")
    assert first == second == hashlib.sha256((tmp_path / "a.zip").read_bytes()).hexdigest()
    assert platform()["sha256"] == first, "run plugins/krew/archive.py and update kstrata.yaml"


def test_the_manifest_names_this_version_and_its_file() -> None:
    loaded = manifest()
    assert loaded["metadata"] == {"name": MANIFEST.stem}
    spec = loaded["spec"]
    assert isinstance(spec, dict)
    assert spec["version"] == f"v{__version__}"


@pytest.fixture
def krew_root(krew: Path, tmp_path: Path) -> Path:
    """kstrata installed by krew into a fresh KREW_ROOT, from the archive built here."""
    built = tmp_path / "kubectl-kstrata.zip"
    archive.build(built)
    root = tmp_path / "krew"
    result = subprocess.run(
        [str(krew), "install", f"--manifest={MANIFEST}", f"--archive={built}"],
        env=krew_env(root),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert "Installed plugin: kstrata" in result.stderr
    return root


def krew_env(root: Path) -> dict[str, str]:
    return {
        "PATH": SYSTEM_PATH,
        "HOME": str(root.parent),
        "KREW_ROOT": str(root),
        "KREW_NO_UPGRADE_CHECK": "1",
    }


def test_krew_installs_the_wrapper_where_kubectl_finds_it(krew_root: Path) -> None:
    link = krew_root / "bin" / "kubectl-kstrata"
    assert link.is_symlink()
    installed = link.resolve()
    assert installed.read_bytes() == (KREW_DIR / "kubectl-kstrata").read_bytes()
    assert os.access(installed, os.X_OK)
    assert os.access(installed.with_name("kubectl_complete-kstrata"), os.X_OK)


def test_kubectl_kstrata_runs_the_installed_python_package(
    krew_root: Path, kubectl: Path, tmp_path: Path
) -> None:
    result = subprocess.run(
        [str(kubectl), "kstrata", "version"],
        env={"PATH": f"{krew_root / 'bin'}:{VENV_BIN}:{SYSTEM_PATH}", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (0, f"kstrata {__version__}\n")


def test_without_the_package_the_wrapper_says_what_to_install(
    krew_root: Path, kubectl: Path, tmp_path: Path
) -> None:
    result = subprocess.run(
        [str(kubectl), "kstrata", "version"],
        env={"PATH": f"{krew_root / 'bin'}:{SYSTEM_PATH}", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 127
    assert "kstrata Python package is not installed" in result.stderr
    assert "pipx install" in result.stderr


def test_kubectl_completes_the_plugin_through_kubectl_complete(
    krew_root: Path, kubectl: Path, tmp_path: Path
) -> None:
    """kubectl's own completion (`kubectl __complete`) asks kubectl_complete-kstrata."""
    store = (krew_root / "bin" / "kubectl-kstrata").resolve().parent
    env = {"PATH": f"{krew_root / 'bin'}:{store}:{VENV_BIN}:{SYSTEM_PATH}", "HOME": str(tmp_path)}

    def kubectl_complete(*words: str) -> list[str]:
        result = subprocess.run(
            [str(kubectl), "__complete", "kstrata", *words],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    assert kubectl_complete("ge") == ["get", ":4"]  # 4: no file completion
    assert kubectl_complete("render", "-o", "j") == ["json", ":4"]
    assert kubectl_complete("render", "-f", "") == [":0"]  # 0: the shell completes files


def test_krew_refuses_an_archive_the_manifest_does_not_pin(krew: Path, tmp_path: Path) -> None:
    """krew checks the checksum: a changed wrapper needs a changed manifest."""
    tampered = tmp_path / "kstrata.yaml"
    body = manifest()
    spec = body["spec"]
    assert isinstance(spec, dict)
    spec["platforms"][0]["sha256"] = "0" * 64
    tampered.write_text(yaml.safe_dump(body))
    built = tmp_path / "kubectl-kstrata.zip"
    archive.build(built)
    result = subprocess.run(
        [str(krew), "install", f"--manifest={tampered}", f"--archive={built}"],
        env=krew_env(tmp_path / "krew"),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode != 0
    assert "sha256" in result.stderr.lower() or "checksum" in result.stderr.lower()
    assert not (tmp_path / "krew" / "bin" / "kubectl-kstrata").exists()
