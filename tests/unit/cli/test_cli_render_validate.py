"""`kstrata render` and `kstrata validate`: offline, exact output, exit codes, no leaks."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from kstrata.cli.main import main

APP = """\
apiVersion: kstrata.dev/v1alpha1
kind: ConfigProfile
metadata:
  name: app
spec:
  extends: [shared]
  schema:
    type: object
    properties:
      port: {type: integer, maximum: 65535}
    required: [port]
  base:
    port: 8080
    db: {host: localhost, pool: 5}
  environments:
    prod:
      db: {host: db.prod.internal}
"""

SHARED = """\
apiVersion: kstrata.dev/v1alpha1
kind: ConfigProfile
metadata:
  name: shared
spec:
  base:
    region: eu-west-1
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: ignored
"""


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), out=out, err=err), out.getvalue(), err.getvalue()


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    app, shared = tmp_path / "app.yaml", tmp_path / "shared.yaml"
    app.write_text(APP)
    shared.write_text(SHARED)
    return app, shared


def test_render_merges_bases_and_the_overlay(files: tuple[Path, Path]) -> None:
    app, shared = files
    code, out, err = run("render", "-f", str(app), "-f", str(shared), "--env", "prod")
    assert (code, err) == (0, "")
    assert out == "db:\n  host: db.prod.internal\n  pool: 5\nport: 8080\nregion: eu-west-1\n"


def test_render_defaults_to_dev_and_other_formats(files: tuple[Path, Path]) -> None:
    app, shared = files
    code, out, _ = run("render", "-f", str(app), "-f", str(shared), "-o", "env")
    assert code == 0
    assert out == "DB_HOST=localhost\nDB_POOL=5\nPORT=8080\nREGION=eu-west-1\n"
    code, out, _ = run("render", "-f", str(app), "-f", str(shared), "-o", "properties")
    assert out == "db.host=localhost\ndb.pool=5\nport=8080\nregion=eu-west-1\n"


def test_render_refuses_a_missing_base(files: tuple[Path, Path]) -> None:
    app, _ = files
    code, out, err = run("render", "-f", str(app))
    assert (code, out) == (1, "")
    assert "shared" in err
    assert err.startswith("error: ")


def test_validate_reports_one_line_per_problem_without_values(tmp_path: Path) -> None:
    canary = "canary-9f2d-secret-looking-value"
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        APP.replace("extends: [shared]\n  ", "").replace(
            "db: {host: db.prod.internal}", f"port: {canary}\n      db: {{host: x}}"
        )
        + "    staging:\n      port: 70000\n"
    )
    code, out, err = run("validate", "-f", str(bad))
    assert (code, err) == (1, "")
    assert out.splitlines() == [
        f"{bad}: ConfigProfile app: environment prod: $.port: must be of type integer",
        f"{bad}: ConfigProfile app: environment staging: $.port: must be <= 65535",
    ]
    assert canary not in out


def test_validate_passes_clean_files_and_checks_only_the_asked_environment(
    files: tuple[Path, Path],
) -> None:
    app, shared = files
    assert run("validate", "-f", str(app), "-f", str(shared)) == (0, "", "")
    assert run("validate", "-f", str(app), "-f", str(shared), "--env", "prod") == (0, "", "")


def test_validate_reports_malformed_yaml_with_the_file_name(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [unclosed\n")
    code, out, _ = run("validate", "-f", str(broken))
    assert code == 1
    assert out.startswith(f"{broken}: ")


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = run("render", "-f", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert "cannot read" in err


@pytest.mark.parametrize("command", ["render", "validate"])
def test_offline_commands_import_neither_kopf_nor_the_kubernetes_client(
    files: tuple[Path, Path], command: str
) -> None:
    app, shared = files
    probe = (
        "import sys, io\n"
        "from kstrata.cli.main import main\n"
        f"argv = [{command!r}, '-f', {str(app)!r}, '-f', {str(shared)!r}]\n"
        "code = main(argv, out=io.StringIO())\n"
        "assert code == 0, code\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kopf', 'kubernetes')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
