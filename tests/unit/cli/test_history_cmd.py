"""``kstrata history``, ``diff`` and ``rollback``: the exact text they print, and the wiring.

The text is pinned character for character: people read it and scripts
parse it.  The wiring tests run ``main()`` with the app functions replaced,
to check flags, exit codes and streams without a cluster; the real flows
(operator included) are in tests/cluster/test_cli_history.py.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from kstrata.app import history_commands
from kstrata.app import rollback as rollback_module
from kstrata.app.history_commands import DiffRequest, History, HistoryRow
from kstrata.app.history_toolkit import ConfigDiff, SecretDiff
from kstrata.app.rollback import RollbackResult
from kstrata.cli import history_cmd
from kstrata.cli.history_cmd import format_diff, format_history, format_rollback
from kstrata.cli.main import main


def last(calls: list[tuple[str, Any]]) -> tuple[str, Any]:
    """The latest call (a function, so mypy does not narrow it from one assert to the next)."""
    return calls[-1]


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


HISTORY = History(
    "ConfigProfile",
    "shop",
    "payments",
    3,
    (
        HistoryRow(1, "2026-11-24T01:01:00Z", "", False),
        HistoryRow(2, "2026-11-24T01:02:00Z", "kstrata set --env prod log.level", False),
        HistoryRow(3, "2026-11-24T01:03:00Z", "rollback to 1", True),
    ),
)


def test_history_table() -> None:
    assert format_history(HISTORY) == (
        "configprofile.kstrata.dev/payments\n"
        "REVISION   CREATED                CURRENT   CHANGE-CAUSE\n"
        "1          2026-11-24T01:01:00Z   no        <none>\n"
        "2          2026-11-24T01:02:00Z   no        kstrata set --env prod log.level\n"
        "3          2026-11-24T01:03:00Z   yes       rollback to 1\n"
    )


def test_history_of_a_sealed_secret_without_revisions() -> None:
    empty = History("SealedSecret", "shop", "db", None, ())
    assert format_history(empty) == "sealedsecret.kstrata.dev/db\nNo revisions recorded yet.\n"


def test_profile_diff_is_a_unified_diff_per_data_key() -> None:
    diff = ConfigDiff(
        "payments",
        "revision 3",
        "revision 4",
        {
            "config.yaml": "log:\n  level: info\nport: 8080\nregion: eu\n",
            "LOG_LEVEL": "info",
            "PORT": "8080",
        },
        {
            "config.yaml": "log:\n  level: debug\nport: 8080\nregion: eu\n",
            "LOG_LEVEL": "debug",
            "REGION": "eu",
            "PORT": "8080",
        },
    )
    assert format_diff(diff) == (
        "--- payments/LOG_LEVEL (revision 3)\n"
        "+++ payments/LOG_LEVEL (revision 4)\n"
        "@@ -1 +1 @@\n"
        "-info\n"
        "\\ No newline at end of file\n"
        "+debug\n"
        "\\ No newline at end of file\n"
        "--- /dev/null\n"
        "+++ payments/REGION (revision 4)\n"
        "@@ -0,0 +1 @@\n"
        "+eu\n"
        "\\ No newline at end of file\n"
        "--- payments/config.yaml (revision 3)\n"
        "+++ payments/config.yaml (revision 4)\n"
        "@@ -1,4 +1,4 @@\n"
        " log:\n"
        "-  level: info\n"
        "+  level: debug\n"
        " port: 8080\n"
        " region: eu\n"
    )


def test_profile_diff_of_a_removed_key_and_of_nothing() -> None:
    removed = ConfigDiff("web", "live, revision 2", "web.yaml", {"app.env": "A=1\n"}, {})
    assert format_diff(removed) == (
        "--- web/app.env (live, revision 2)\n+++ /dev/null\n@@ -1 +0,0 @@\n-A=1\n"
    )
    same = ConfigDiff("web", "environment dev", "environment prod", {"k": "v\n"}, {"k": "v\n"})
    assert format_diff(same) == ""


def test_secret_diff_lists_keys_only() -> None:
    diff = SecretDiff(
        "db-credentials",
        "revision 3",
        "revision 4",
        added=("api-token", "b-token"),
        removed=("old-key",),
        changed=("password",),
        resealed=("db-url",),
        undetermined=("session",),
        spec_fields=("template",),
    )
    assert format_diff(diff) == (
        "--- db-credentials (revision 3)\n"
        "+++ db-credentials (revision 4)\n"
        "  added     api-token\n"
        "  added     b-token\n"
        "  removed   old-key\n"
        "  changed   password\n"
        "  re-sealed db-url (value unchanged)\n"
        "  differs   session (changed or re-sealed)\n"
        "  spec      template (changed)\n"
    )
    assert format_diff(SecretDiff("db", "revision 1", "revision 1")) == ""


def rollback_result(**overrides: Any) -> RollbackResult:
    fields: dict[str, Any] = {
        "kind": "ConfigProfile",
        "namespace": "shop",
        "name": "payments",
        "target": 2,
        "previous": 3,
        "manifest": {"kind": "ConfigProfile", "spec": {"base": {"port": 1}}},
        "diff": ConfigDiff(
            "payments", "live, revision 3", "revision 2, restored", {"k": "a\n"}, {"k": "b\n"}
        ),
        "changed": True,
        "written": True,
        "revision": 4,
    }
    fields.update(overrides)
    return RollbackResult(**fields)


def test_rollback_summary_lines() -> None:
    assert format_rollback(rollback_result(), dry_run=False) == (
        "configprofile.kstrata.dev/payments rolled back to revision 2 (now revision 4)\n"
    )
    assert format_rollback(rollback_result(revision=None), dry_run=False) == (
        "configprofile.kstrata.dev/payments rolled back to revision 2\n"
    )
    assert format_rollback(rollback_result(written=False), dry_run=True) == (
        "configprofile.kstrata.dev/payments rolled back to revision 2 (dry run)\n"
    )
    unchanged = rollback_result(kind="SealedSecret", name="db", changed=False, written=False)
    assert format_rollback(unchanged, dry_run=False) == (
        "sealedsecret.kstrata.dev/db skipped rollback (the spec already is revision 2's)\n"
    )


# --- the shell: flags, exit codes, streams ---------------------------------------


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Record what the handlers ask of the app layer; no cluster is contacted."""
    recorded: list[tuple[str, Any]] = []
    api = object()

    def connect(_args: Any) -> tuple[object, str]:
        recorded.append(("connect", None))
        return api, "from-context"

    monkeypatch.setattr(history_cmd, "_connect", connect)
    return recorded


def test_diff_exits_1_on_differences_and_0_without(
    calls: list[tuple[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = [
        ConfigDiff("payments", "revision 1", "revision 2", {"k": "a\n"}, {"k": "b\n"}),
        ConfigDiff("payments", "revision 2", "revision 2", {"k": "a\n"}, {"k": "a\n"}),
    ]

    def compute_diff(
        _api: object, namespace: str | None, default: str, request: DiffRequest
    ) -> Any:
        calls.append(("diff", (namespace, default, request)))
        return answers.pop(0)

    monkeypatch.setattr(history_commands, "compute_diff", compute_diff)
    code, out, err = run("diff", "payments", "-n", "shop", "--revision", "1", "--kind", "profile")
    assert (code, err) == (1, "")
    assert out == (
        "--- payments/k (revision 1)\n+++ payments/k (revision 2)\n@@ -1 +1 @@\n-a\n+b\n"
    )
    assert last(calls) == (
        "diff",
        ("shop", "from-context", DiffRequest(name="payments", kind="profile", revision=1)),
    )
    assert run("diff", "payments", "--env", "dev", "--to-env", "prod") == (0, "", "")
    assert last(calls)[1][2] == DiffRequest(
        name="payments", environment="dev", to_environment="prod"
    )


def test_diff_usage_errors_are_reported_before_connecting(calls: list[tuple[str, Any]]) -> None:
    code, out, err = run("diff")
    assert (code, out, err) == (2, "", "error: diff: give NAME, or -f FILE\n")
    code, _, err = run("diff", "x", "--revision", "0")
    assert code == 2
    assert "--revision: a revision number (1, 2, ...)" in err
    code, _, err = run("diff", "x", "-f", "file.yaml")
    assert (code, err) == (2, "error: diff -f FILE takes no NAME, --revision or --env\n")
    assert calls == []


def test_file_diff_passes_the_path(
    calls: list[tuple[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def compute_diff(
        _api: object, namespace: str | None, default: str, request: DiffRequest
    ) -> Any:
        calls.append(("diff", (namespace, default, request)))
        return SecretDiff("db", "live, revision 2", "db.yaml", undetermined=("password",))

    monkeypatch.setattr(history_commands, "compute_diff", compute_diff)
    code, out, _ = run("diff", "-f", "db.yaml")
    assert code == 1
    assert out == (
        "--- db (live, revision 2)\n+++ db (db.yaml)\n  differs   password (changed or re-sealed)\n"
    )
    assert last(calls)[1] == (None, "from-context", DiffRequest(file=Path("db.yaml")))


def test_history_as_table_and_as_data(
    calls: list[tuple[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def revision_history(_api: object, namespace: str, name: str, *, kind: str | None) -> History:
        calls.append(("history", (namespace, name, kind)))
        return HISTORY

    monkeypatch.setattr(history_commands, "revision_history", revision_history)
    code, out, err = run("history", "payments")
    assert (code, out, err) == (0, format_history(HISTORY), "")
    assert last(calls) == ("history", ("from-context", "payments", None))
    code, out, _ = run("history", "payments", "-n", "shop", "--kind", "profile", "-o", "json")
    assert code == 0
    assert json.loads(out) == {
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {},
        "items": [row.as_data() for row in HISTORY.rows],
    }
    assert last(calls) == ("history", ("shop", "payments", "profile"))


def test_rollback_flags_and_output(
    calls: list[tuple[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def rollback(_api: object, namespace: str, name: str, **options: Any) -> RollbackResult:
        assert callable(options.pop("progress"))  # tests/unit/cli/test_cli_progress.py
        calls.append(("rollback", (namespace, name, options)))
        written = options["write"]
        return rollback_result(
            written=written,
            revision=4 if written else None,
            warnings=("revision 2 will render differently than it did",),
        )

    monkeypatch.setattr(rollback_module, "rollback", rollback)
    code, out, _ = run("rollback", "payments", "--to-revision", "2")
    assert (code, out) == (
        0,
        "configprofile.kstrata.dev/payments rolled back to revision 2 (now revision 4)\n",
    )
    assert capsys.readouterr().err == ("warning: revision 2 will render differently than it did\n")
    assert last(calls) == (
        "rollback",
        (
            "from-context",
            "payments",
            {
                "kind": None,
                "to_revision": 2,
                "write": True,
                "server_dry_run": False,
                "wait": True,
                "timeout": 60.0,
            },
        ),
    )

    code, out, _ = run("rollback", "payments", "--dry-run", "--no-wait")
    assert code == 0
    assert out == (
        "--- payments/k (live, revision 3)\n+++ payments/k (revision 2, restored)\n"
        "@@ -1 +1 @@\n-a\n+b\n"
        "configprofile.kstrata.dev/payments rolled back to revision 2 (dry run)\n"
    )
    assert last(calls)[1][2]["write"] is False
    code, out, _ = run("rollback", "payments", "-o", "yaml", "--kind", "profile")
    assert (code, out) == (0, "kind: ConfigProfile\nspec:\n  base:\n    port: 1\n")
    assert last(calls)[1][2]["write"] is False
    assert last(calls)[1][2]["kind"] == "profile"

    code, _, err = run("rollback", "payments", "--timeout", "0")
    assert (code, err) == (2, "error: --timeout must be positive\n")


def test_rollback_dry_run_is_client_or_server_as_kubectl(
    calls: list[tuple[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def rollback(_api: object, namespace: str, name: str, **options: Any) -> RollbackResult:
        options.pop("progress")
        calls.append(("rollback", (namespace, name, options)))
        return rollback_result(written=False)

    monkeypatch.setattr(rollback_module, "rollback", rollback)
    code, out, _ = run("rollback", "payments", "--dry-run", "--no-wait")
    assert code == 0
    # A bare --dry-run is client, as kubectl still takes it.
    assert run("rollback", "payments", "--dry-run=client", "--no-wait") == (code, out, "")
    options: dict[str, Any] = last(calls)[1][2]
    assert (options["write"], options["server_dry_run"]) == (False, False)

    # The server is sent the write with dryRun=All and judges it.
    code, out, _ = run("rollback", "payments", "--dry-run=server")
    assert code == 0
    assert out.endswith(
        "configprofile.kstrata.dev/payments rolled back to revision 2 (server dry run)\n"
    )
    options = last(calls)[1][2]
    assert (options["write"], options["server_dry_run"]) == (True, True)
    code, out, _ = run("rollback", "payments", "--dry-run=server", "-o", "yaml")
    assert (code, out) == (0, "kind: ConfigProfile\nspec:\n  base:\n    port: 1\n")
    assert last(calls)[1][2]["server_dry_run"] is True
    code, _, err = run("rollback", "payments", "--dry-run=none")
    assert code == 2
    assert "--dry-run: invalid choice (choose from client, server)" in err


def test_rollback_help_tells_gitops_users_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rollback", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "If Argo CD or Flux manages the resource, they revert an in-cluster rollback" in text
    assert "print the restored manifest with -o yaml and commit it instead" in text
