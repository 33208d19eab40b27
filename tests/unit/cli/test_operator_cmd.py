"""``kstrata operator settings|run``: where settings come from, and what stops start-up."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kstrata.cli.main import EXIT_INVALID, EXIT_OK, EXIT_USAGE, main
from kstrata.cli.operator_cmd import CONFIG_DIR_ENV, ENVIRONMENT_ENV
from kstrata.settings import Settings, load_settings, settings_document

CONFIG_DIR = Path(__file__).resolve().parents[3] / "config"
CANARY = "canary-value-7f3a"


@pytest.fixture(autouse=True)
def no_settings_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start without the variables, whatever the shell running them has."""
    monkeypatch.delenv(CONFIG_DIR_ENV, raising=False)
    monkeypatch.delenv(ENVIRONMENT_ENV, raising=False)


@pytest.fixture
def config_copy(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, target)
    return target


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def shown(*argv: str) -> dict[str, Any]:
    """The settings ``kstrata operator settings ARGV`` prints, parsed."""
    code, out, err = run("operator", "settings", *argv)
    assert (code, err) == (EXIT_OK, ""), err
    assert out.startswith("# effective kstrata operator settings from defaults")
    document = yaml.safe_load(out)
    assert isinstance(document, dict)
    return document


# --- where settings come from ---------------------------------------------


def test_without_a_settings_directory_the_defaults_apply() -> None:
    assert shown() == settings_document(Settings())


@pytest.mark.parametrize("environment", ["dev", "staging", "prod"])
def test_flags_choose_the_directory_and_environment(environment: str) -> None:
    document = shown("--config-dir", str(CONFIG_DIR), "--environment", environment)
    assert document == settings_document(load_settings(CONFIG_DIR, environment))


def test_environment_variables_choose_them_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_DIR_ENV, str(CONFIG_DIR))
    monkeypatch.setenv(ENVIRONMENT_ENV, "prod")
    assert shown() == settings_document(load_settings(CONFIG_DIR, "prod"))


def test_flags_win_over_the_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_DIR_ENV, "/nonexistent")
    monkeypatch.setenv(ENVIRONMENT_ENV, "prod")
    document = shown("--config-dir", str(CONFIG_DIR), "--environment", "dev")
    assert document == settings_document(load_settings(CONFIG_DIR, "dev"))


def test_empty_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_DIR_ENV, "")
    monkeypatch.setenv(ENVIRONMENT_ENV, "")
    assert shown() == settings_document(Settings())


def test_flags_for_single_settings_win_over_the_files() -> None:
    files = ("--config-dir", str(CONFIG_DIR), "--environment", "dev")
    dev = load_settings(CONFIG_DIR, "dev")
    # What the flags below override:
    assert (dev.standalone, dev.log_level) == (True, "debug")
    document = shown(
        *files,
        "--no-standalone",
        "--log-level",
        "warning",
        "-n",
        "team-a",
        "-n",
        "team-b",
        "--no-webhook",
        "--metrics-address",
        "127.0.0.1:0",
    )
    expected = dev.with_overrides(
        standalone=False,
        log_level="warning",
        namespaces=("team-a", "team-b"),
        webhook_address=None,
        metrics_address="127.0.0.1:0",
    )
    assert document == settings_document(expected)


def test_all_namespaces_overrides_namespaces_from_a_file(config_copy: Path) -> None:
    (config_copy / "qa.yaml").write_text("namespaces: [team-a]\n", encoding="utf-8")
    files = ("--config-dir", str(config_copy), "--environment", "qa")
    assert shown(*files)["namespaces"] == ["team-a"]
    assert shown(*files, "-A")["namespaces"] == []


def test_json_output_is_the_same_document() -> None:
    code, out, _ = run(
        "operator",
        "settings",
        "--config-dir",
        str(CONFIG_DIR),
        "--environment",
        "prod",
        "-o",
        "json",
    )
    assert code == EXIT_OK
    assert json.loads(out) == settings_document(load_settings(CONFIG_DIR, "prod"))


def test_the_header_names_the_sources_in_order() -> None:
    _, out, _ = run(
        "operator",
        "settings",
        "--config-dir",
        str(CONFIG_DIR),
        "--environment",
        "prod",
        "--standalone",
    )
    first_line = out.splitlines()[0]
    assert first_line == (
        f"# effective kstrata operator settings from defaults, then {CONFIG_DIR}/base.yaml, "
        f"then {CONFIG_DIR}/prod.yaml, then flags (later wins)"
    )


def test_printing_settings_loads_neither_kopf_nor_the_client() -> None:
    program = (
        "import sys, io\n"
        "from kstrata.cli.main import main\n"
        f"code = main(['operator', 'settings', '--config-dir', {str(CONFIG_DIR)!r}, "
        "'--environment', 'prod'], out=io.StringIO())\n"
        "loaded = sorted(m for m in ('kopf', 'kubernetes') if m in sys.modules)\n"
        "print(code, loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "0 []"


# --- invalid settings stop start-up ---------------------------------------


@pytest.mark.parametrize("command", ["run", "settings"])
@pytest.mark.parametrize(
    ("overlay", "expected"),
    [
        (f"retry_backoff: {CANARY}\n", "$.retry_backoff: must be of type number (rule 'type')"),
        (
            f"colour: {CANARY}\n",
            "$.colour: property is not allowed (rule 'additionalProperties')",
        ),
        (f"log_level: [debug,\n  {CANARY}\n", "invalid YAML"),
    ],
    ids=["wrong-type", "unknown-key", "yaml-syntax"],
)
def test_a_broken_file_stops_start_up_naming_file_and_path(
    config_copy: Path, command: str, overlay: str, expected: str
) -> None:
    broken = config_copy / "prod.yaml"
    broken.write_text(overlay, encoding="utf-8")
    code, out, err = run(
        "operator", command, "--config-dir", str(config_copy), "--environment", "prod"
    )
    assert code == EXIT_INVALID
    assert out == ""
    assert err.startswith("error: ")
    assert str(broken) in err
    assert expected in err
    assert CANARY not in err


@pytest.mark.parametrize("command", ["run", "settings"])
def test_a_missing_overlay_lists_the_environments(config_copy: Path, command: str) -> None:
    code, _, err = run("operator", command, "--config-dir", str(config_copy), "--environment", "qa")
    assert code == EXIT_INVALID
    assert err == (
        f"error: settings directory {config_copy}: no overlay for environment 'qa'; "
        "available: dev, prod, staging\n"
    )


def test_a_directory_without_an_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(CONFIG_DIR_ENV, str(CONFIG_DIR))
    code, _, err = run("operator", "run")
    assert code == EXIT_INVALID
    assert f"settings directory {CONFIG_DIR}: no environment chosen" in err
    assert "(available: dev, prod, staging)" in err


def test_an_environment_without_a_directory_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENVIRONMENT_ENV, "prod")
    code, _, err = run("operator", "settings")
    assert code == EXIT_INVALID
    assert "no settings directory: pass --config-dir or set $KSTRATA_CONFIG_DIR" in err


def test_conflicting_scope_flags_are_a_usage_error() -> None:
    code, _, _ = run("operator", "settings", "-A", "-n", "team-a")
    assert code == EXIT_USAGE
