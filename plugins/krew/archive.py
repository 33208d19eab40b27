#!/usr/bin/env python3
"""Build the archive plugins/krew/kstrata.yaml points at, byte for byte the same each time.

    python plugins/krew/archive.py OUT.zip    write it; print its sha256

krew checks the archive against the manifest's ``sha256``, so the archive
must not depend on when or where it was built: a zip with stored (not
compressed) entries, fixed timestamps and modes, in a fixed order.  A
compressed archive would vary with the machine's zlib.  The unit test builds it
and compares the checksum with the manifest, so a changed wrapper without a
changed manifest fails before a release does.
"""

from __future__ import annotations

import hashlib
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: (name in the archive, file here, mode): what krew's `files` and `bin` name.
CONTENTS = (
    ("kubectl-kstrata", HERE / "kubectl-kstrata", 0o755),
    ("kubectl_complete-kstrata", HERE / "kubectl_complete-kstrata", 0o755),
)
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry


def build(out: Path) -> str:
    """Write the archive to ``out`` and return its sha256 (hex)."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, source, mode in CONTENTS:
            entry = zipfile.ZipInfo(name, date_time=_EPOCH)
            entry.external_attr = (0o100000 | mode) << 16  # a regular file, this mode
            entry.create_system = 3  # unix, so the mode is honoured
            archive.writestr(entry, source.read_bytes())
    return hashlib.sha256(out.read_bytes()).hexdigest()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.split("\n\n")[1].strip(), file=sys.stderr)
        return 2
    print(build(Path(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
