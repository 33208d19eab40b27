"""kubectl's habits where they cost little (issue 19), offline: TYPE/NAME, -f, tables.

The cluster side (``get cfp/NAME``, ``list`` with SealedSecrets and ``-o
name|json``) is tests/cluster/test_cli_day_one.py.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
from pathlib import Path

import pytest
import yaml

from kstrata.app.command_toolkit import ProfileSummary
from kstrata.app.suggest import check_environment_declared, did_you_mean
from kstrata.cli.common import kubernetes_list, print_manifests, split_type_name
from kstrata.cli.main import main
from kstrata.cli.profile_cmd import format_table
from kstrata.errors import UsageError
from kstrata.files import expand_files

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "config"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("payments", (None, "payments")),
        ("configprofile/payments", ("ConfigProfile", "payments")),
        ("configprofiles/payments", ("ConfigProfile", "payments")),
        ("cfp/payments", ("ConfigProfile", "payments")),
        ("ConfigProfile/payments", ("ConfigProfile", "payments")),
        ("configprofile.kstrata.dev/payments", ("ConfigProfile", "payments")),
        ("kss/db", ("SealedSecret", "db")),
        ("sealedsecrets.kstrata.dev/db", ("SealedSecret", "db")),
    ],
)
def test_type_name_as_kubectl_spells_it(text: str, expected: tuple[str | None, str]) -> None:
    assert split_type_name(text) == expected


def test_an_unknown_type_is_refused_with_the_closest_one() -> None:
    with pytest.raises(UsageError, match=r"unknown resource type confgprofile \(did you mean"):
        split_type_name("confgprofile/payments")
    with pytest.raises(UsageError, match="unknown resource type deployment: expected"):
        split_type_name("deployment/payments")


def test_get_and_set_refuse_a_sealed_secret_before_connecting() -> None:
    # No kubeconfig is needed to know that: the type says it.
    code, out, err = run("get", "kss/db")
    assert (code, out) == (2, "")
    assert "get works on ConfigProfiles; db is named as a SealedSecret" in err


def test_did_you_mean_and_declared_environments() -> None:
    assert did_you_mean("prdo", ["dev", "prod"]) == " (did you mean prod?)"
    assert did_you_mean("zzz", ["dev", "prod"]) == ""
    check_environment_declared("prod", ["dev", "prod"], "ConfigProfile x")
    with pytest.raises(UsageError) as error:
        check_environment_declared("prodd", ["prod", "dev"], "ConfigProfile x")
    assert str(error.value) == (
        "environment prodd is not declared by ConfigProfile x (did you mean prod?); "
        "declared: dev, prod"
    )


def test_dash_f_takes_a_glob_several_flags_and_directories(tmp_path: Path) -> None:
    files = sorted(str(p) for p in EXAMPLES.glob("*.yaml"))
    assert len(files) >= 3
    # What the shell makes of `kstrata validate -f examples/config/*.yaml`.
    assert run("validate", "-f", *files) == (0, "", "")
    assert run("validate", "-f", files[0], "-f", *files[1:]) == (0, "", "")
    # A directory: its .yaml, .yml and .json files, sorted, as kubectl reads it.
    copy = tmp_path / "config"
    shutil.copytree(EXAMPLES, copy)
    (copy / "notes.txt").write_text("not a manifest\n")
    assert expand_files([copy]) == sorted(copy.glob("*.yaml"))
    assert run("validate", "-f", str(copy)) == (0, "", "")
    missing = str(copy / "notes")
    code, _, err = run("validate", "-f", missing)
    assert code != 0  # the first word after -f is always the file: a missing one is named
    assert missing in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run("validate", "-f", str(empty))[0] == 2


def test_words_after_dash_f_that_are_not_files_are_never_shown(tmp_path: Path) -> None:
    secret = "hunter2-not-a-file"
    code, out, err = run("validate", "-f", str(EXAMPLES / "payments.yaml"), secret)
    assert (code, out) == (2, "")
    assert "1 unrecognized argument after -f" in err
    assert secret not in err


def row(**fields: object) -> ProfileSummary:
    base: dict[str, object] = {
        "namespace": "shop",
        "name": "payments",
        "environment": "prod",
        "revision": 3,
        "ready": "True",
        "config_map": "payments-config",
        "created": "2026-12-01T00:00:00Z",
        "reason": "Rendered",
        "generation": 4,
        "observed_generation": 4,
    }
    return ProfileSummary(**(base | fields))  # type: ignore[arg-type]


def test_the_status_column_tells_stale_and_why_not_ready() -> None:
    now = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)
    rows = [
        row(),
        row(name="stopped", generation=5, observed_generation=4),
        row(name="refused", ready="False", reason="SchemaViolation"),
        row(name="new", ready="Unknown", reason=None, generation=1, observed_generation=None),
    ]
    text = format_table(rows, all_namespaces=False, now=now, wide=True)
    lines = [line.split() for line in text.splitlines()]
    assert lines[0] == [
        "NAME", "ENVIRONMENT", "REVISION", "READY", "STATUS", "CONFIGMAP", "AGE",
        "GENERATION", "OBSERVED",
    ]  # fmt: skip
    assert [(line[0], line[3], line[4]) for line in lines[1:]] == [
        ("payments", "True", "Current"),
        ("stopped", "True", "Stale"),
        ("refused", "False", "SchemaViolation"),
        ("new", "Unknown", "Stale"),
    ]
    assert lines[2][-2:] == ["5", "4"]
    data = row(name="stopped", generation=5, observed_generation=4).as_data()
    assert (data["stale"], data["reason"]) == (True, "Rendered")


def test_lists_are_kubernetes_lists() -> None:
    assert kubernetes_list([{"kind": "ConfigProfile"}]) == {
        "apiVersion": "v1",
        "kind": "List",
        "items": [{"kind": "ConfigProfile"}],
        "metadata": {},
    }


def test_manifests_print_as_one_object_a_yaml_stream_or_a_json_list() -> None:
    first: dict[str, object] = {"kind": "Secret", "metadata": {"name": "a"}}
    second: dict[str, object] = {"kind": "Secret"}

    def printed(objects: list[dict[str, object]], fmt: str) -> str:
        out = io.StringIO()
        print_manifests(objects, fmt, out)
        return out.getvalue()

    assert yaml.safe_load(printed([first], "yaml")) == first
    assert json.loads(printed([first], "json")) == first
    assert printed([first, second], "yaml").count("---\n") == 1
    assert list(yaml.safe_load_all(printed([first, second], "yaml"))) == [first, second]
    assert json.loads(printed([first, second], "json")) == kubernetes_list([first, second])
