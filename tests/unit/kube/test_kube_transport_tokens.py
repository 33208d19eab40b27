"""The transport's token file re-reading, and the operator entry's imports.

A ServiceAccount's bound token rotates (about hourly): the transport reads
the file again once its copy is a minute old, and keeps the last token when
the file is briefly missing mid-rotation.  The operator's entry imports kopf
without the ``kubernetes`` client (issue 18, memory).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kstrata.kube.transport import HttpStatusError, TokenSource


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_fixed_token_needs_no_file() -> None:
    assert TokenSource("fixed", None).current() == "fixed"
    assert TokenSource(None, None).current() is None


def test_the_file_is_read_again_once_a_minute(tmp_path: Path) -> None:
    path, clock = tmp_path / "token", Clock()
    path.write_text("one\n")
    tokens = TokenSource(None, str(path), refresh_seconds=60, clock=clock)
    assert tokens.current() == "one"
    path.write_text("two\n")
    clock.now += 59
    assert tokens.current() == "one"
    clock.now += 1
    assert tokens.current() == "two"


def test_a_file_missing_mid_rotation_keeps_the_last_token(tmp_path: Path) -> None:
    path, clock = tmp_path / "token", Clock()
    path.write_text("one")
    tokens = TokenSource(None, str(path), refresh_seconds=60, clock=clock)
    assert tokens.current() == "one"
    path.unlink()
    clock.now += 61
    assert tokens.current() == "one"
    path.write_text("two")
    assert tokens.current() == "two"  # tried again on the next call, not a minute later


def test_a_file_missing_from_the_start_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        TokenSource(None, str(tmp_path / "absent")).current()


def test_a_status_error_shows_the_status_line_not_the_body() -> None:
    error = HttpStatusError(422, "Unprocessable Entity", b'{"message": "s3cr3t echoed"}')
    assert str(error) == "422 Unprocessable Entity"
    assert (error.status, error.reason) == (422, "Unprocessable Entity")


def test_the_operator_entry_imports_kopf_without_the_kubernetes_client() -> None:
    program = (
        "import sys\n"
        "from kstrata.cli.operator_cmd import operator_imports\n"
        "runner = operator_imports()\n"
        "print(runner.__name__, 'kopf' in sys.modules,\n"
        "      sorted(n for n, m in sys.modules.items()\n"
        "             if m is not None and n.split('.')[0] == 'kubernetes'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["kstrata.controller.runner", "True", "[]"]


def test_a_process_that_already_has_the_client_keeps_it() -> None:
    program = (
        "import sys\n"
        "import kubernetes.client\n"
        "from kstrata.cli.operator_cmd import operator_imports\n"
        "operator_imports()\n"
        "import kubernetes.config\n"
        "print(sys.modules['kubernetes'] is not None)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "True"
