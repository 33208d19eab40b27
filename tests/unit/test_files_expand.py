"""``kstrata.files.expand_files``: the one rule for which files ``-f`` names.

Every command that takes ``-f FILE|DIR`` goes through it (render/validate,
the bulk seal, the secret imports, the recovery unseal), so what a directory
contributes is pinned here once: kubectl's endings, sorted, not recursive
unless asked, never through a link to a directory, and never silently nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kstrata.errors import UsageError
from kstrata.files import MANIFEST_SUFFIXES, STDIN, expand_files


def tree(root: Path) -> Path:
    """b.yaml, a.json, c.yml, notes.txt at the top; a manifest one and two levels down."""
    for name in ("b.yaml", "a.json", "c.yml", "notes.txt"):
        (root / name).write_text("{}\n")
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "sub" / "x.yaml").write_text("{}\n")
    (root / "sub" / "deeper" / "y.json").write_text("{}\n")
    (root / "dir.yaml").mkdir()  # a directory with a manifest's name is not a file
    return root


def test_a_directory_gives_its_own_manifests_sorted_not_those_below(tmp_path: Path) -> None:
    root = tree(tmp_path)
    assert expand_files([root]) == [root / "a.json", root / "b.yaml", root / "c.yml"]


def test_recursive_takes_every_level_in_one_sorted_order(tmp_path: Path) -> None:
    root = tree(tmp_path)
    assert expand_files([root], recursive=True) == [
        root / "a.json",
        root / "b.yaml",
        root / "c.yml",
        root / "sub" / "deeper" / "y.json",
        root / "sub" / "x.yaml",
    ]


def test_files_and_stdin_stay_as_given_in_order_whatever_their_ending(tmp_path: Path) -> None:
    root = tree(tmp_path)
    named = [root / "notes.txt", Path(STDIN), root / "missing.yaml", root / "sub"]
    assert expand_files(named) == [root / "notes.txt", Path(STDIN), root / "missing.yaml",
                                   root / "sub" / "x.yaml"]  # fmt: skip


def test_a_directory_with_nothing_to_read_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x\n")
    (empty / "nested").mkdir()
    (empty / "nested" / "deep.yaml").write_text("{}\n")
    with pytest.raises(UsageError, match=r"empty: no \.yaml, \.yml or \.json files to read"):
        expand_files([tmp_path / "ok.yaml", empty])
    assert expand_files([empty], recursive=True) == [empty / "nested" / "deep.yaml"]


def test_suffixes_and_wanted_choose_within_a_directory_only(tmp_path: Path) -> None:
    root = tree(tmp_path)
    (root / "app.env").write_text("A=1\n")
    asked: list[Path] = []

    def wanted(path: Path) -> bool:
        asked.append(path)
        return path.name != "b.yaml"

    suffixes = (*MANIFEST_SUFFIXES, ".env")
    found = expand_files([root, root / "b.yaml"], suffixes=suffixes, wanted=wanted)
    assert found == [root / "a.json", root / "app.env", root / "c.yml", root / "b.yaml"]
    assert root / "notes.txt" not in asked  # the ending is checked before `wanted` reads
    with pytest.raises(UsageError, match=r"\.json or \.env files to read in the directory"):
        expand_files([root], suffixes=suffixes, wanted=lambda _: False)


def test_links_to_files_count_links_to_directories_are_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside.yaml").write_text("{}\n")
    os.symlink(tmp_path / "outside.yaml", root / "linked.yaml")
    os.symlink(root, root / "loop")  # followed, this would never end
    os.symlink(tmp_path / "gone.yaml", root / "dangling.yaml")
    assert expand_files([root], recursive=True) == [root / "linked.yaml"]
    assert expand_files([root]) == [root / "linked.yaml"]
