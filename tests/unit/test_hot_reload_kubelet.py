"""A stand-in for the kubelet's volume writer, and tests that it writes like the real one.

The hot-reload tests (test_hot_reload_watch.py, test_hot_reload_cli.py)
import :class:`KubeletVolume` from here.  It follows the kubelet's
``AtomicWriter`` (pkg/volume/util/atomic_writer.go) step by step: write the
payload into a new timestamped directory, point ``..data_tmp`` at it, rename
``..data_tmp`` over ``..data``, create the per-key symlinks, remove keys that
are gone, remove the old timestamped directory.  ``stage`` and ``swap`` are
separate so a test can leave a half-written file in a directory that is not
linked yet, which is exactly the state a watcher must never read.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

DATA = "..data"
DATA_TMP = "..data_tmp"

Payload = Mapping[str, str | bytes]


class KubeletVolume:
    """A ConfigMap/Secret volume mount directory, written the kubelet's way."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self._serial = 0

    def stage(self, payload: Payload) -> Path:
        """Write ``payload`` completely into a new timestamped directory; do not link it."""
        self._serial += 1
        stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime())
        staged = self.root / f"..{stamp}.{self._serial:09d}"
        staged.mkdir()
        for key, content in payload.items():
            target = staged / key
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content.encode() if isinstance(content, str) else content)
        return staged

    def swap(self, staged: Path) -> None:
        """Make ``staged`` the live version, atomically, and clean up as the kubelet does."""
        data = self.root / DATA
        old = os.readlink(data) if data.is_symlink() else None
        tmp = self.root / DATA_TMP
        os.symlink(staged.name, tmp)
        os.replace(tmp, data)  # the one atomic step readers can observe
        keys = {path.relative_to(staged).parts[0] for path in staged.rglob("*")}
        for key in keys:
            link = self.root / key
            if not link.is_symlink():
                os.symlink(f"{DATA}/{key}", link)
        for link in self.root.iterdir():
            if not link.name.startswith("..") and link.name not in keys:
                link.unlink()
        if old is not None:
            shutil.rmtree(self.root / old)

    def project(self, payload: Payload) -> None:
        """One complete update: stage, then swap."""
        self.swap(self.stage(payload))

    def live_dir(self) -> Path:
        return self.root / os.readlink(self.root / DATA)


def test_layout_matches_the_kubelets(tmp_path: Path) -> None:
    volume = KubeletVolume(tmp_path / "vol")
    volume.project({"config.yaml": "a: 1\n", "app.env": "A=1\n"})
    first = volume.live_dir()
    assert first.name.startswith("..")
    assert first.is_dir()
    assert (tmp_path / "vol" / "config.yaml").is_symlink()
    assert os.readlink(tmp_path / "vol" / "config.yaml") == "..data/config.yaml"
    assert (tmp_path / "vol" / "config.yaml").read_text() == "a: 1\n"

    volume.project({"config.yaml": "a: 2\n"})
    assert volume.live_dir() != first
    assert not first.exists(), "the old timestamped directory is removed after the swap"
    assert not (tmp_path / "vol" / DATA_TMP).exists()
    assert not (tmp_path / "vol" / "app.env").exists(), "a key that is gone loses its symlink"
    assert (tmp_path / "vol" / "config.yaml").read_text() == "a: 2\n"


def test_a_staged_directory_is_invisible_until_the_swap(tmp_path: Path) -> None:
    volume = KubeletVolume(tmp_path / "vol")
    volume.project({"config.yaml": "a: 1\n"})
    staged = volume.stage({"config.yaml": "a: 2\n"})
    assert (tmp_path / "vol" / "config.yaml").read_text() == "a: 1\n"
    volume.swap(staged)
    assert (tmp_path / "vol" / "config.yaml").read_text() == "a: 2\n"
