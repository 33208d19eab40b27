"""A stand-in for the kubelet's volume writer, for the hot-reload tests.

tests/unit/test_hot_reload_kubelet.py checks that it writes like the real one;
test_hot_reload_watch.py and test_hot_reload_cli.py use it.  It follows the kubelet's
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
