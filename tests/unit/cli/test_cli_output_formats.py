"""``-o json|yaml`` wherever a command prints data, Kubernetes-shaped (issue 16, item 6).

At ``main(argv)`` level with the app functions replaced (as in
test_history_cmd.py): no cluster is contacted.  An audit walks the parser
tree so a new data-printing command without ``-o`` fails here; lists are
``apiVersion: v1, kind: List``; a SealedSecret diff as data holds item keys
only (canary scan).
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kstrata import __version__
from kstrata.app import history_commands, profile_commands, reloader_migration, sealing_keys
from kstrata.app.history_toolkit import ConfigDiff, SealedSide, compare_sealed
from kstrata.app.profile_commands import SetResult
from kstrata.app.reloader_migration import MigrationReport, SourceMigration
from kstrata.app.sealing_keys import KeyInfo
from kstrata.cli import history_cmd, keys_cmd, migrate_cmd, profile_cmd
from kstrata.cli.examples import command_path
from kstrata.cli.main import build_parser, main
from kstrata.domain.reload_annotations import Migration
from kstrata.payloads import ConfigProfile
from support.leaks import Canary, report, scan

ROOT = Path(__file__).resolve().parents[3]
#: Commands that print no data of their own, and why.
NO_DATA = {
    "operator run": "runs the operator; logs only",
    "watch": "runs until stopped; status lines",
    "completion": "prints a shell script",
    "keys export": "prints the bundle document 'seal --cert' reads, already JSON",
    "keys backup": "writes a 0600 file, never standard output",
}


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def leaves(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found: list[argparse.ArgumentParser] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in {id(p): p for p in action.choices.values()}.values():
                found += leaves(child)
            return found
    return [parser]


def output_choices(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:
        if "-o" in action.option_strings and action.dest == "output":
            return set(action.choices or ())
    return set()


def test_every_command_that_prints_data_takes_o_json_and_yaml() -> None:
    commands = {command_path(p.prog): p for p in leaves(build_parser())}
    assert set(NO_DATA) <= set(commands)
    missing = sorted(
        path
        for path, parser in commands.items()
        if path not in NO_DATA and not {"json", "yaml"} <= output_choices(parser)
    )
    assert missing == []
    # Listing commands also take name (TYPE/NAME lines) and wide, as kubectl's get.
    assert {"name", "wide"} <= output_choices(commands["list"])


def as_list(text: str, fmt: str) -> list[Any]:
    data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    assert (data["apiVersion"], data["kind"]) == ("v1", "List")
    items: list[Any] = data["items"]
    return items


def test_version_as_data() -> None:
    code, out, _ = run("version", "-o", "json")
    assert code == 0
    assert json.loads(out)["clientVersion"]["gitVersion"] == __version__
    code, out, _ = run("version", "-o", "yaml")
    assert yaml.safe_load(out)["clientVersion"]["gitVersion"] == __version__
    assert run("version")[1] == f"kstrata {__version__}\n"


KEYS = [
    KeyInfo("k-old", "x25519", "2026-01-01T00:00:00Z", False),
    KeyInfo("k-new", "mlkem768-x25519", "2026-06-01T00:00:00Z", True),
]


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_keys_list_and_rotate_as_data(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys_cmd, "_api", lambda _args: object())
    monkeypatch.setattr(sealing_keys, "list_keys", lambda _api, _ns: KEYS)
    monkeypatch.setattr(sealing_keys, "rotate_keys", lambda *_a, **_k: KEYS[1])
    code, out, _ = run("keys", "list", "-o", fmt)
    assert code == 0
    assert as_list(out, fmt) == [key.as_data() for key in KEYS]
    code, out, _ = run("keys", "rotate", "-o", fmt)
    assert code == 0
    assert yaml.safe_load(out) == KEYS[1].as_data()  # JSON is YAML too
    assert run("keys", "rotate")[1].startswith("new newest sealing key k-new")


def test_diff_of_a_profile_as_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history_cmd, "_connect", lambda _args: (object(), "shop"))
    found = ConfigDiff(
        "payments",
        "revision 1",
        "revision 2",
        {"config.yaml": "port: 1\n", "OLD": "x", "SAME": "s"},
        {"config.yaml": "port: 2\n", "NEW": "y", "SAME": "s"},
    )
    monkeypatch.setattr(history_commands, "compute_diff", lambda *_a: found)
    code, out, _ = run("diff", "payments", "-o", "json")
    assert code == 1  # differences, as without -o
    data = json.loads(out)
    assert {k: data[k] for k in ("kind", "name", "from", "to", "differs")} == {
        "kind": "ConfigProfile",
        "name": "payments",
        "from": "revision 1",
        "to": "revision 2",
        "differs": True,
    }
    assert [(c["key"], c["change"]) for c in data["changes"]] == [
        ("NEW", "added"),
        ("OLD", "removed"),
        ("config.yaml", "changed"),
    ]
    assert data["changes"][2]["diff"] == (
        "--- payments/config.yaml (revision 1)\n+++ payments/config.yaml (revision 2)\n"
        "@@ -1 +1 @@\n-port: 1\n+port: 2\n"
    )
    same = ConfigDiff("payments", "revision 2", "revision 2", {"k": "v"}, {"k": "v"})
    monkeypatch.setattr(history_commands, "compute_diff", lambda *_a: same)
    code, out, _ = run("diff", "payments", "-o", "yaml")
    assert (code, yaml.safe_load(out)["changes"]) == (0, [])


def test_diff_of_a_sealed_secret_as_data_names_keys_never_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token, fingerprint, resealed, spec_value = (Canary.new(n) for n in ("t", "f", "r", "s"))
    old = SealedSide(
        {"password": f"old-{token.text}", "api": "same", "url": f"a-{resealed.text}"},
        {"url": f"fp-{fingerprint.text}"},
        {"scope": "strict"},
    )
    new = SealedSide(
        {"password": f"new-{token.text}", "api": "same", "url": f"b-{resealed.text}", "x": "t"},
        {"url": f"fp-{fingerprint.text}"},
        {"scope": spec_value.text},
    )
    found = compare_sealed("payments-db", old, new, "revision 1", "revision 2")
    monkeypatch.setattr(history_cmd, "_connect", lambda _args: (object(), "shop"))
    monkeypatch.setattr(history_commands, "compute_diff", lambda *_a: found)
    canaries = [token, fingerprint, resealed, spec_value]
    # Positive control: the scan sees the canaries where they are.
    assert scan({"sides": repr((old, new))}, canaries)
    for fmt in ("json", "yaml"):
        code, out, err = run("diff", "kss/payments-db", "-o", fmt)
        assert code == 1
        hits = scan({f"diff -o {fmt} stdout": out, f"diff -o {fmt} stderr": err}, canaries)
        assert hits == [], report(hits)
        data = yaml.safe_load(out)
        assert data["kind"] == "SealedSecret"
        assert data["changes"] == [
            {"key": "x", "change": "added"},
            {"key": "url", "change": "re-sealed"},
            {"key": "password", "change": "differs"},
        ]
        assert data["specFields"] == ["scope"]


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_history_as_a_kubernetes_list(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = (history_commands.HistoryRow(1, "2026-11-24T01:01:00Z", "", True),)
    found = history_commands.History("ConfigProfile", "shop", "payments", 1, rows)
    monkeypatch.setattr(history_cmd, "_connect", lambda _args: (object(), "shop"))
    monkeypatch.setattr(history_commands, "revision_history", lambda *_a, **_k: found)
    code, out, _ = run("history", "payments", "-o", fmt)
    assert code == 0
    assert as_list(out, fmt) == [rows[0].as_data()]


REPORT = MigrationReport(
    workloads=(
        Migration(
            "Deployment",
            "shop",
            "payments",
            {"reloader.stakater.com/auto": "true"},
            "payments,payments-db",
            ("a note",),
        ),
    ),
    sources=(SourceMigration("ConfigMap", "shop", "orders-config", done=False),),
    applied=False,
)


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_migrate_reloader_as_a_kubernetes_list(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    class Cluster:
        default_namespace = "shop"

    monkeypatch.setattr(migrate_cmd, "connect_from", lambda _args: Cluster())
    monkeypatch.setattr("kstrata.kube.api.KubeApi", lambda _cluster: object())
    seen: list[tuple[str | None, bool]] = []

    def migrate(_api: object, namespace: str | None, *, apply: bool, **_: Any) -> MigrationReport:
        seen.append((namespace, apply))
        return REPORT

    monkeypatch.setattr(reloader_migration, "migrate_reloader", migrate)
    code, out, _ = run("migrate", "reloader", "-A", "-o", fmt)
    assert (code, seen) == (0, [(None, False)])
    workload, source = as_list(out, fmt)
    assert workload["kind"] == "Deployment"
    assert workload["metadata"] == {"namespace": "shop", "name": "payments"}
    assert workload["migration"] == {
        "reloader": {"reloader.stakater.com/auto": "true"},
        "annotations": {"kstrata.dev/reload": "payments,payments-db"},
        "notes": ["a note"],
        "applied": False,
    }
    assert source["metadata"]["name"] == "orders-config"
    assert source["migration"]["annotations"] == {"kstrata.dev/reload-ignore": "true"}


def test_set_prints_the_written_profile_with_o(monkeypatch: pytest.MonkeyPatch) -> None:
    manifest: ConfigProfile = {
        "kind": "ConfigProfile",
        "metadata": {"name": "payments"},
        "spec": {"base": {}},
    }
    monkeypatch.setattr(profile_cmd, "_connect", lambda _args: (object(), "shop"))
    calls: list[dict[str, Any]] = []

    def set_values(_api: object, _ns: str, name: str, _pairs: Any, **options: Any) -> SetResult:
        calls.append(options)
        written = not (options["dry_run"] or options["server_dry_run"])
        return SetResult("shop", name, manifest, "cause", changed=True, written=written)

    monkeypatch.setattr(profile_commands, "set_values", set_values)
    code, out, _ = run("set", "payments", "replicas=3", "-o", "json")
    assert (code, json.loads(out)) == (0, manifest)
    assert calls[-1]["dry_run"] is False
    code, out, _ = run("set", "payments", "replicas=3", "--dry-run")
    assert (code, yaml.safe_load(out)) == (0, manifest)  # --dry-run alone: YAML, as before
    code, out, _ = run("set", "payments", "replicas=3")
    assert out == "configprofile.kstrata.dev/payments configured\n"


def test_import_as_json_is_the_same_manifest() -> None:
    base = ROOT / "examples/migration/checkout/config.yaml"
    prod = ROOT / "examples/migration/checkout/config.prod.yaml"
    argv = ["import", "-f", str(base), "--env", f"prod={prod}", "--full", "--name", "checkout"]
    code, as_yaml, _ = run(*argv)
    assert code == 0
    code, as_json, _ = run(*argv, "-o", "json")
    assert code == 0
    assert json.loads(as_json) == yaml.safe_load(as_yaml)
    assert as_json.startswith("{")
    assert run(*argv, "-o", "yaml")[1] == as_yaml


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_validate_problems_as_a_kubernetes_list(fmt: str) -> None:
    code, out, _ = run("validate", "-f", str(ROOT / "examples/invalid/payments.yaml"), "-o", fmt)
    assert code == 1
    problems = as_list(out, fmt)
    assert problems
    assert {p["profile"] for p in problems} == {"payments"}
    assert all(p["message"] for p in problems)
    code, out, _ = run("validate", "-f", str(ROOT / "examples/config"), "-o", fmt)
    assert (code, as_list(out, fmt)) == (0, [])
