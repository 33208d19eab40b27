"""``kstrata.files.write_atomically``: the one way kstrata writes a file for the user.

Key backups, public key bundles, ``seal --merge-into``, ``reseal --in-place``
and ``import --output-dir`` all write through it, so its promises are pinned
here once: the file is whole or untouched, its mode is the one asked for
whatever the umask, an exclusive write never replaces anything, and no
temporary file is left behind either way.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kstrata.files import write_atomically


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_is_0600_by_default_and_leaves_nothing_beside_it(tmp_path: Path) -> None:
    target = tmp_path / "keys.json"
    write_atomically(target, "private\n")
    assert target.read_text() == "private\n"
    assert mode_of(target) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.json"]


def test_the_mode_asked_for_holds_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o077)
    try:
        write_atomically(tmp_path / "public.yaml", "kind: SealedSecret\n", mode=0o644)
    finally:
        os.umask(previous)
    assert mode_of(tmp_path / "public.yaml") == 0o644


def test_a_replace_narrows_an_existing_file_and_keeps_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real.yaml"
    real.write_text("old\n")
    real.chmod(0o644)
    link = tmp_path / "link.yaml"
    link.symlink_to(real)
    write_atomically(link, "new\n")
    assert link.is_symlink()
    assert real.read_text() == "new\n"
    assert mode_of(real) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.yaml", "real.yaml"]


def test_an_exclusive_write_never_replaces_a_name(tmp_path: Path) -> None:
    target = tmp_path / "backup.json"
    target.write_text("earlier backup\n")
    with pytest.raises(FileExistsError):
        write_atomically(target, "new keys\n", exclusive=True)
    assert target.read_text() == "earlier backup\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.json"]
    write_atomically(tmp_path / "fresh.json", "new keys\n", exclusive=True)
    assert (tmp_path / "fresh.json").read_text() == "new keys\n"


def test_a_write_that_fails_halfway_leaves_the_old_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "config.yaml"
    target.write_text("good\n")
    # A lone surrogate cannot be encoded: the write fails after the file was opened.
    with pytest.raises(UnicodeEncodeError):
        write_atomically(target, "half" + "\ud800")
    assert target.read_text() == "good\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


def test_a_missing_directory_is_an_oserror_for_the_caller_to_word(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomically(tmp_path / "absent" / "keys.json", "x")
