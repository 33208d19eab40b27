"""`kstrata seal --template KEY=TEMPLATE` / `--template-file KEY=PATH`: spec.template.data.

A template written by ``seal`` is checked offline with the operator's own
parser and reference check (kstrata.domain.secret_template), so a template
that would be refused at admission is a usage error (exit 2) here, before
anything is sealed or written.  What the operator will render is checked by
opening the printed tokens and rendering the printed templates with the
operator's code; no message may carry an item's value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kstrata.crypto import KeyPair, KeyRing, SealingContext
from kstrata.domain.secret_template import check_sealed_spec, parse_template_data, render_data
from support.seal_cli import (  # noqa: F401  (fixtures)
    cert_fixture,
    keypair_fixture,
    no_ambient_kubeconfig,
    run,
)

#: Stands for a secret value; it must never appear in an error.
CANARY = "canary-7f3a-s3cret"
DSN = 'DSN=postgres://{{ .user }}:{{ index . "pass-word" }}@db.shop:5432/app'


ITEMS = ("--from-literal", "user=app", "--from-literal", f"pass-word={CANARY}")
WHERE = ("-n", "shop", "--name", "db")


def rendered(keypair: KeyPair, manifest: dict[str, Any]) -> dict[str, bytes]:
    """The Secret data the operator would write: opened items, rendered templates."""
    spec = manifest["spec"]
    ring = KeyRing([keypair])
    meta = manifest["metadata"]
    items = {
        item: ring.open(
            token,
            SealingContext.bind(
                spec["scope"], item=item, namespace=meta["namespace"], name=meta["name"]
            ),
        )
        for item, token in spec["encryptedData"].items()
    }
    return render_data(parse_template_data(spec["template"]["data"]), items)


def test_template_is_written_and_renders_what_the_operator_renders(
    tmp_path: Path, cert: Path, keypair: KeyPair
) -> None:
    (tmp_path / "pool.tmpl").write_bytes(b"mode={{ .user }}\n")
    code, out, err = run(
        "seal", "--cert", str(cert), *WHERE, *ITEMS, "--template", DSN,
        "--template-file", f"POOL={tmp_path / 'pool.tmpl'}", "--template", "PLAIN=transaction",
    )  # fmt: skip
    assert (code, err) == (0, ""), err
    manifest = yaml.safe_load(out)
    assert manifest["spec"]["template"]["data"] == {
        "DSN": DSN.removeprefix("DSN="),
        "PLAIN": "transaction",
        "POOL": "mode={{ .user }}\n",  # the file byte for byte
    }
    check_sealed_spec(manifest["spec"], ["dev"])  # what `kstrata validate` runs
    data = rendered(keypair, manifest)
    assert data["DSN"] == f"postgres://app:{CANARY}@db.shop:5432/app".encode()
    assert data["POOL"] == b"mode=app\n"
    assert CANARY not in out  # the combination is rendered by the operator only


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("DSN={{ .usr }}", ["spec.template.data.DSN", "usr", "no such item"]),
        ('DSN={{ index . "nope" }}', ["spec.template.data.DSN", "nope"]),
        ("DSN=x{{ .user | upper }}", ["--template #1", "DSN", "at character 11", "'|'"]),
        ("DSN=x{{ .user", ["--template #1", "DSN", "at character 2"]),
        ("DSN", ["--template #1", "expected KEY=TEMPLATE"]),
        ("b@d={{ .user }}", ["--template #1", "not a valid Secret data key"]),
    ],
)
def test_a_bad_template_is_a_usage_error_naming_key_and_position(
    cert: Path, template: str, expected: list[str]
) -> None:
    code, out, err = run("seal", "--cert", str(cert), *WHERE, *ITEMS, "--template", template)
    assert code == 2, err
    assert out == ""
    for word in expected:
        assert word in err
    assert CANARY not in err


def test_template_file_errors_name_the_flag_not_the_path_or_content(
    tmp_path: Path, cert: Path
) -> None:
    secret_path = tmp_path / CANARY
    secret_path.write_bytes(b"\xff{{ .user }}")
    code, _, err = run(
        "seal", "--cert", str(cert), *WHERE, *ITEMS, "--template-file", f"K={secret_path}"
    )
    assert code == 2
    assert "--template-file #1 (K)" in err
    assert "not UTF-8" in err
    assert CANARY not in err
    code, _, err = run(
        "seal", "--cert", str(cert), *WHERE, *ITEMS, "--template", "K=a", "--template", "K=b"
    )
    assert code == 2
    assert "template K is given twice" in err


def test_merge_into_counts_the_files_items_and_keeps_its_templates(
    tmp_path: Path, cert: Path, keypair: KeyPair
) -> None:
    target = tmp_path / "db.yaml"
    code, out, err = run("seal", "--cert", str(cert), *WHERE, *ITEMS, "--template", "A=a")
    assert code == 0, err
    target.write_text(out)
    # The template names items already in the file; only `host` is sealed now.
    code, _, err = run(
        "seal", "--cert", str(cert), "--merge-into", str(target), "--from-literal", "host=db",
        "--template", 'DSN={{ .user }}@{{ .host }}/{{ index . "pass-word" }}',
    )  # fmt: skip
    assert code == 0, err
    manifest = yaml.safe_load(target.read_text())
    assert sorted(manifest["spec"]["template"]["data"]) == ["A", "DSN"]
    assert rendered(keypair, manifest)["DSN"] == f"app@db/{CANARY}".encode()

    # A template the file's items do not satisfy leaves the file as it was.
    before = target.read_bytes()
    code, _, err = run(
        "seal", "--cert", str(cert), "--merge-into", str(target), "--from-literal", "x=1",
        "--template", "B={{ .missing }}",
    )  # fmt: skip
    assert code == 2
    assert "spec.template.data.B references item(s) missing" in err
    assert target.read_bytes() == before


def test_environment_items_count_for_that_environment(cert: Path) -> None:
    code, out, err = run(
        "seal", "--cert", str(cert), *WHERE, "--env", "prod", "--from-literal", "user=app",
        "--template", "U=u={{ .user }}",
    )  # fmt: skip
    assert code == 0, err
    assert yaml.safe_load(out)["spec"]["template"]["data"] == {"U": "u={{ .user }}"}


def test_template_is_refused_where_it_has_no_one_manifest(tmp_path: Path, cert: Path) -> None:
    secret = tmp_path / "s.yaml"
    secret.write_text("apiVersion: v1\nkind: Secret\nmetadata: {name: a, namespace: b}\n")
    code, _, err = run("seal", "--cert", str(cert), "-f", str(secret), "--template", "A=a")
    assert code == 2
    assert "--merge-into" in err
    code, _, err = run(
        "seal", "--cert", str(cert), "--raw", "--key", "k", "-n", "n", "--name", "a",
        "--template", "A=a",
    )  # fmt: skip
    assert code == 2
    assert "--raw cannot be combined with --template" in err


def test_template_is_checked_before_the_cluster_is_asked(tmp_path: Path) -> None:
    # No --cert: keys would come from the cluster, whose kubeconfig does not exist.
    missing = str(tmp_path / "no-kubeconfig")
    code, _, err = run(
        "seal", *WHERE, *ITEMS, "--template", "K={{ .nope }}", "--kubeconfig", missing
    )
    assert code == 2
    assert "references item(s) nope" in err
    assert "does not exist" not in err
