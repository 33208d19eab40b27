"""Update a local directory exactly the way the kubelet updates a ConfigMap volume.

    python kubelet_sim.py DIR KEY=FILE [KEY=FILE ...]

Makes DIR hold KEY (the content of FILE) and nothing else, the kubelet's way
(its AtomicWriter): write a new timestamped directory completely, point
``..data_tmp`` at it, rename that over ``..data`` (the one atomic step), add
the per-key symlinks ``KEY -> ..data/KEY``, drop keys that are gone, delete
the old timestamped directory.  Lets you try ``kstrata watch`` and
``kstrata.watch`` without a cluster; demo.py uses it.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path


def project(root: Path, payload: dict[str, bytes]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime())
    staged = root / f"..{stamp}.{time.time_ns() % 1_000_000_000:09d}"
    staged.mkdir()
    for key, content in payload.items():
        (staged / key).write_bytes(content)
    data = root / "..data"
    old = os.readlink(data) if data.is_symlink() else None
    os.symlink(staged.name, root / "..data_tmp")
    os.replace(root / "..data_tmp", data)
    for key in payload:
        if not (root / key).is_symlink():
            os.symlink(f"..data/{key}", root / key)
    for entry in root.iterdir():
        if not entry.name.startswith("..") and entry.name not in payload:
            entry.unlink()
    if old is not None:
        shutil.rmtree(root / old)


def main(argv: list[str]) -> int:
    if len(argv) < 2 or not all("=" in item for item in argv[1:]):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    payload = {}
    for item in argv[1:]:
        key, _, source = item.partition("=")
        payload[key] = Path(source).read_bytes()
    project(Path(argv[0]), payload)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
