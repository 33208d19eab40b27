"""Tests that :class:`support.kubelet_volume.KubeletVolume` writes like the kubelet."""

from __future__ import annotations

import os
from pathlib import Path

from support.kubelet_volume import DATA_TMP, KubeletVolume


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
