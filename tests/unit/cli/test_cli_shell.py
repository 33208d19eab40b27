"""The CLI shell: exit codes, error mapping, and what offline commands import."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from kstrata import __version__
from kstrata.cli.main import EXIT_CLUSTER, EXIT_INVALID, EXIT_USAGE, exit_code_for, main
from kstrata.errors import (
    ConflictError,
    KstrataError,
    RevisionNotFoundError,
    SchemaViolationError,
    UsageError,
    Violation,
)


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_version_prints_and_succeeds() -> None:
    assert run("version") == (0, f"kstrata {__version__}\n", "")


def test_unknown_command_is_a_usage_error() -> None:
    code, out, err = run("frobnicate")
    assert code == EXIT_USAGE
    assert out == ""
    assert err.startswith("error: kstrata: argument COMMAND: invalid choice (choose from render")
    assert "frobnicate" not in err  # a usage error never repeats what was typed


def test_missing_command_is_a_usage_error() -> None:
    code, _, err = run()
    assert code == EXIT_USAGE
    assert "required" in err


def test_help_returns_zero_instead_of_exiting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "usage: kstrata" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (UsageError("bad flag"), EXIT_USAGE),
        (RevisionNotFoundError("revision 9 is not in the retained history"), EXIT_USAGE),
        (ConflictError("lost a race"), EXIT_CLUSTER),
        (SchemaViolationError([Violation("prod", "$.port", "type", "must be integer")]), 1),
        (KstrataError("anything else"), EXIT_INVALID),
    ],
)
def test_errors_map_to_exit_codes_in_one_place(error: KstrataError, expected: int) -> None:
    assert exit_code_for(error) == expected


def test_operator_run_with_a_missing_kubeconfig_is_a_usage_error(tmp_path: object) -> None:
    code, _, err = run("--kubeconfig", "/nonexistent/kubeconfig", "operator", "run")
    assert code == EXIT_USAGE
    assert "kubeconfig /nonexistent/kubeconfig does not exist" in err


def test_the_cli_shell_imports_neither_kopf_nor_the_kubernetes_client() -> None:
    probe = (
        "import sys, io\n"
        "from kstrata.cli.main import main\n"
        "assert main(['version'], out=io.StringIO()) == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kopf', 'kubernetes')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
