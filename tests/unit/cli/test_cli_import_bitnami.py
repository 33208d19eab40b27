"""``kstrata import sealedsecret --bitnami-keys``: Bitnami SealedSecrets made by the real kubeseal.

Every Bitnami SealedSecret here is sealed by the pinned ``kubeseal``
(``--cert``, offline) to a key pair in the form Bitnami's controller stores
it (tests/support/secret_tools.py); every imported value is checked by
opening it with kstrata's private key in the context the operator would use,
never by looking at the ciphertext.  No value may appear anywhere else: in
the output, on stderr, in an error, or in a file (a canary scan over every
encoded form, tests/support/leaks.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kstrata.crypto import KeyPair, PublicKeyBundle
from kstrata.crypto.bitnami import BitnamiScope, encryption_label, load_private_key, open_value
from kstrata.errors import TokenFormatError, UnsealError
from support.leaks import Canary, report, scan
from support.offline import cluster_modules_imported
from support.seal_cli import run
from support.secret_tools import (
    BitnamiKey,
    bitnami_key,
    documents,
    install,
    kstrata_key_fixture,  # noqa: F401  (the kstrata_key fixture)
    kubeseal,
    opened,
    secret_manifest,
    write_backup,
)


@pytest.fixture(scope="module")
def kubeseal_binary() -> Path:
    return install("kubeseal")


@pytest.fixture(scope="module")
def old_key() -> BitnamiKey:
    return bitnami_key("sealed-secrets-keyold01")


@pytest.fixture(scope="module")
def new_key() -> BitnamiKey:
    return bitnami_key("sealed-secrets-keynew02")


@pytest.fixture
def work(
    tmp_path: Path, old_key: BitnamiKey, new_key: BitnamiKey, kstrata_key: KeyPair
) -> dict[str, Path]:
    (tmp_path / "old.pem").write_bytes(old_key.cert_pem)
    (tmp_path / "new.pem").write_bytes(new_key.cert_pem)
    (tmp_path / "bundle.json").write_text(PublicKeyBundle.of([kstrata_key]).serialize())
    write_backup(tmp_path / "backup.yaml", old_key, new_key)
    (tmp_path / "sealed").mkdir()
    return {
        "root": tmp_path,
        "old": tmp_path / "old.pem",
        "new": tmp_path / "new.pem",
        "bundle": tmp_path / "bundle.json",
        "backup": tmp_path / "backup.yaml",
        "sealed": tmp_path / "sealed",
    }


def write(path: Path, obj: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(obj))
    return path


# --- the crypto module against kubeseal's own output ------------------------


def test_open_value_opens_kubeseal_raw_values_of_every_scope(
    kubeseal_binary: Path, work: dict[str, Path], new_key: BitnamiKey
) -> None:
    key = load_private_key(__import__("base64").b64decode(new_key.secret["data"]["tls.key"]))
    for scope in BitnamiScope:
        token = subprocess.run(
            [
                str(kubeseal_binary), "--cert", str(work["new"]), "--raw", "--scope", scope.value,
                "--namespace", "shop", "--name", "db", "--from-file", "/dev/stdin",
            ],
            input=b"p\x00ss\xffword",
            capture_output=True,
            check=True,
        ).stdout.decode()  # fmt: skip
        label = encryption_label(scope, "shop", "db")
        assert open_value(token, [key], label)[0] == b"p\x00ss\xffword"
        if scope is not BitnamiScope.CLUSTER_WIDE:
            # The label binds: another name (strict) or namespace does not open.
            with pytest.raises(UnsealError):
                open_value(token, [key], encryption_label(scope, "other", "db"))
    with pytest.raises(TokenFormatError):
        open_value("not base64!", [key], b"")
    with pytest.raises(TokenFormatError):
        open_value("AAE=", [key], b"")


# --- the command -------------------------------------------------------------


def test_every_scope_and_the_template_are_imported(
    kubeseal_binary: Path,
    work: dict[str, Path],
    kstrata_key: KeyPair,
    capsys: pytest.CaptureFixture[str],
) -> None:
    values = {"username": "admin", "password": "pa55-w0rd\n"}
    mapping = {"strict": "strict", "namespace-wide": "namespace", "cluster-wide": "cluster"}
    for scope in mapping:
        secret = secret_manifest(
            f"db-{scope}",
            "shop",
            values,
            type="kubernetes.io/basic-auth",
            immutable=True,
            metadata={"labels": {"app": "shop"}, "annotations": {"team": "payments"}},
        )
        write(
            work["sealed"] / f"{scope}.yaml", kubeseal(kubeseal_binary, work["new"], secret, scope)
        )
    code, out, err = run(
        "import", "sealedsecret", "-f", str(work["sealed"]),
        "--bitnami-keys", str(work["backup"]), "--cert", str(work["bundle"]),
    )  # fmt: skip
    assert code == 0, err
    imported = {d["metadata"]["name"]: d for d in documents(out)}
    assert sorted(imported) == sorted(f"db-{s}" for s in mapping)
    for bitnami_scope, scope in mapping.items():
        manifest = imported[f"db-{bitnami_scope}"]
        assert manifest["apiVersion"] == "kstrata.dev/v1alpha1"
        assert manifest["kind"] == "SealedSecret"
        assert manifest["metadata"]["namespace"] == "shop"
        assert manifest["spec"]["scope"] == scope
        assert manifest["spec"]["template"] == {
            "type": "kubernetes.io/basic-auth",
            "labels": {"app": "shop"},
            "annotations": {"team": "payments"},
            "immutable": True,
        }
        assert opened(manifest, kstrata_key) == {k: v.encode() for k, v in values.items()}
    assert "imported 3 SealedSecret(s)" in capsys.readouterr().err


def test_each_backup_key_is_tried_and_lists_and_nested_directories_are_read(
    kubeseal_binary: Path, work: dict[str, Path], kstrata_key: KeyPair
) -> None:
    nested = work["sealed"] / "apps" / "payments"
    nested.mkdir(parents=True)
    items = [
        kubeseal(kubeseal_binary, work["old"], secret_manifest("a", "pay", {"k": "from-old"})),
        kubeseal(kubeseal_binary, work["new"], secret_manifest("b", "pay", {"k": "from-new"})),
    ]
    write(nested / "list.yaml", {"apiVersion": "v1", "kind": "List", "items": items})
    # Other objects beside them (a kustomization's files) are skipped.
    write(work["sealed"] / "configmap.yaml", {"apiVersion": "v1", "kind": "ConfigMap"})
    out_dir = work["root"] / "out"
    out_dir.mkdir()
    code, out, err = run(
        "import", "sealedsecret", "-f", str(work["sealed"]), "--bitnami-keys", str(work["backup"]),
        "--cert", str(work["bundle"]), "--output-dir", str(out_dir),
    )  # fmt: skip
    assert code == 0, err
    assert "2 SealedSecret(s) written" in out
    assert sorted(p.name for p in out_dir.iterdir()) == ["pay.a.yaml", "pay.b.yaml"]
    for name, expected in (("a", b"from-old"), ("b", b"from-new")):
        manifest = yaml.safe_load((out_dir / f"pay.{name}.yaml").read_text())
        assert opened(manifest, kstrata_key) == {"k": expected}


def test_a_namespace_less_manifest_takes_dash_n_and_strict_binds_it(
    kubeseal_binary: Path, work: dict[str, Path], kstrata_key: KeyPair
) -> None:
    sealed = kubeseal(kubeseal_binary, work["new"], secret_manifest("db", "shop", {"k": "v"}))
    del sealed["metadata"]["namespace"]
    path = write(work["sealed"] / "db.yaml", sealed)
    base = ["import", "sealedsecret", "-f", str(path), "--bitnami-keys", str(work["backup"])]
    code, out, err = run(*base, "--cert", str(work["bundle"]), "-n", "shop")
    assert code == 0, err
    assert opened(documents(out)[0], kstrata_key) == {"k": b"v"}
    # Strict scope bound shop/db: in another namespace it does not open, and says so.
    code, out, err = run(*base, "--cert", str(work["bundle"]), "-n", "other")
    assert code == 1
    assert out == ""
    assert "SealedSecret other/db" in err
    assert "do not open with the 2 backup key(s)" in err


def test_templated_data_in_kstrata_forms_is_carried_and_go_functions_are_refused(
    kubeseal_binary: Path, work: dict[str, Path], kstrata_key: KeyPair
) -> None:
    sealed = kubeseal(
        kubeseal_binary, work["new"], secret_manifest("db", "shop", {"user": "u", "db-pw": "p"})
    )
    sealed["spec"]["template"]["data"] = {"url": 'postgres://{{ .user }}:{{ index . "db-pw" }}@db'}
    path = write(work["sealed"] / "db.yaml", sealed)
    argv = ["import", "sealedsecret", "-f", str(path), "--bitnami-keys", str(work["backup"])]
    code, out, err = run(*argv, "--cert", str(work["bundle"]))
    assert code == 0, err
    manifest = documents(out)[0]
    assert manifest["spec"]["template"]["data"] == sealed["spec"]["template"]["data"]
    from kstrata.domain.secret_template import parse_template_data, render_data

    rendered = render_data(
        parse_template_data(manifest["spec"]["template"]["data"]), opened(manifest, kstrata_key)
    )
    assert rendered["url"] == b"postgres://u:p@db"

    sealed["spec"]["template"]["data"] = {"url": "{{ .user | upper }}"}
    write(path, sealed)
    code, out, err = run(*argv, "--cert", str(work["bundle"]))
    assert code == 1
    assert out == ""
    assert "SealedSecret shop/db" in err
    assert "spec.template.data cannot be imported" in err


def test_refusals_name_the_object_and_print_nothing(
    kubeseal_binary: Path, work: dict[str, Path], tmp_path: Path
) -> None:
    good = kubeseal(kubeseal_binary, work["new"], secret_manifest("ok", "shop", {"k": "v"}))
    write(work["sealed"] / "ok.yaml", good)
    legacy = json.loads(json.dumps(good))
    legacy["metadata"]["name"] = "legacy"
    legacy["spec"] = {"data": "AgBvbGQ="}
    write(work["sealed"] / "legacy.yaml", legacy)
    code, out, err = run(
        "import", "sealedsecret", "-f", str(work["sealed"]),
        "--bitnami-keys", str(work["backup"]), "--cert", str(work["bundle"]),
    )  # fmt: skip
    assert (code, out) == (1, "")
    assert "SealedSecret shop/legacy uses the deprecated spec.data" in err
    # A backup without a key, a source that is not sealedsecret, both imports at once.
    write(
        tmp_path / "nokey.yaml", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}
    )
    code, _, err = run(
        "import", "sealedsecret", "-f", str(work["sealed"] / "ok.yaml"),
        "--bitnami-keys", str(tmp_path / "nokey.yaml"), "--cert", str(work["bundle"]),
    )  # fmt: skip
    assert code == 1
    assert "Secret x has no data.tls.key" in err
    code, _, err = run(
        "import", "configmap/x", "-f", "a.yaml", "--bitnami-keys", str(work["backup"]),
    )  # fmt: skip
    assert code == 2
    code, _, err = run("import", "-f", "a.yaml", "--bitnami-keys", "k", "--sops")
    assert code == 2
    # A secret import's flag on a ConfigProfile import is refused, not ignored.
    code, _, err = run("import", "-f", "a.yaml", "--cert", "keys.json")
    assert code == 2
    assert "--cert are for the secret imports" in err


def test_tampered_truncated_and_foreign_values_do_not_open(
    kubeseal_binary: Path, work: dict[str, Path], new_key: BitnamiKey, old_key: BitnamiKey
) -> None:
    import base64

    sealed = kubeseal(kubeseal_binary, work["new"], secret_manifest("db", "shop", {"k": "v"}))
    token = sealed["spec"]["encryptedData"]["k"]
    keys = [
        load_private_key(base64.b64decode(k.secret["data"]["tls.key"])) for k in (old_key, new_key)
    ]
    label = encryption_label(BitnamiScope.STRICT, "shop", "db")
    assert open_value(token, keys, label) == (b"v", keys[1].key_id)
    raw = bytearray(base64.b64decode(token))
    for index in (3, len(raw) - 1):  # the RSA block, the GCM tag
        tampered = bytearray(raw)
        tampered[index] ^= 1
        with pytest.raises(UnsealError):
            open_value(base64.b64encode(bytes(tampered)).decode(), keys, label)
    with pytest.raises(TokenFormatError):
        open_value(base64.b64encode(bytes(raw[:520])).decode(), keys, label)  # no GCM tag
    with pytest.raises(UnsealError):
        open_value(token, keys[:1], label)  # only the key it was not sealed to


def test_no_value_leaks_into_output_errors_or_files(
    kubeseal_binary: Path, work: dict[str, Path], kstrata_key: KeyPair, tmp_path: Path
) -> None:
    canaries = [Canary.new("bitnami-user"), Canary.new("bitnami-password")]
    values = {"user": canaries[0].text, "password": canaries[1].text}
    write(
        work["sealed"] / "db.yaml",
        kubeseal(kubeseal_binary, work["new"], secret_manifest("db", "shop", values)),
    )
    # A second object sealed to a key the backup does not hold: the run fails.
    stranger = bitnami_key("stranger", bits=2048)
    (tmp_path / "stranger.pem").write_bytes(stranger.cert_pem)
    bad = kubeseal(kubeseal_binary, tmp_path / "stranger.pem", secret_manifest("x", "shop", values))
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    write(bad_dir / "x.yaml", bad)
    write(bad_dir / "db.yaml", yaml.safe_load((work["sealed"] / "db.yaml").read_text()))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    texts: dict[str, str] = {}
    env = dict(os.environ, TMPDIR=str(scratch))
    env.pop("KUBECONFIG", None)
    for label, argv in {
        "stdout": ["-f", str(work["sealed"])],
        "output-dir": ["-f", str(work["sealed"]), "--output-dir", str(out_dir)],
        "failure": ["-f", str(bad_dir)],
        "json": ["-f", str(work["sealed"]), "-o", "json"],
    }.items():
        # A fresh process: what it leaves in TMPDIR is scanned too.
        result = subprocess.run(
            [
                str(Path(sys.executable).parent / "kstrata"), "import", "sealedsecret", *argv,
                "--bitnami-keys", str(work["backup"]), "--cert", str(work["bundle"]),
            ],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        assert result.returncode == (1 if label == "failure" else 0), result.stderr
        texts[f"{label} stdout"] = result.stdout
        texts[f"{label} stderr"] = result.stderr
    assert "1 of 2 SealedSecret(s) could not be imported" in texts["failure stderr"]
    for directory in (scratch, out_dir, work["root"] / "out"):
        for path in directory.rglob("*") if directory.exists() else ():
            if path.is_file():
                texts[str(path)] = path.read_bytes().decode("latin-1")
    assert list(out_dir.iterdir()), "the output directory was written"
    hits = scan(texts, canaries)
    assert not hits, report(hits)
    # ... and the values are all there, sealed to kstrata's key.
    manifest = documents(texts["stdout stdout"])[0]
    assert opened(manifest, kstrata_key) == {k: v.encode() for k, v in values.items()}


def test_offline_import_loads_neither_kopf_nor_the_kubernetes_client(
    kubeseal_binary: Path, work: dict[str, Path]
) -> None:
    write(
        work["sealed"] / "db.yaml",
        kubeseal(kubeseal_binary, work["new"], secret_manifest("db", "shop", {"k": "v"})),
    )
    argv = ["import", "sealedsecret", "-f", str(work["sealed"])]
    argv += ["--bitnami-keys", str(work["backup"]), "--cert", str(work["bundle"])]
    assert cluster_modules_imported(argv) == []


def test_one_key_secret_or_a_bare_pem_key_is_a_backup_too(
    kubeseal_binary: Path, work: dict[str, Path], new_key: BitnamiKey, kstrata_key: KeyPair
) -> None:
    import base64

    path = write(
        work["sealed"] / "db.yaml",
        kubeseal(kubeseal_binary, work["new"], secret_manifest("db", "shop", {"k": "v"})),
    )
    one_secret = write(work["root"] / "one.yaml", new_key.secret)
    pem = work["root"] / "tls.key"
    pem.write_bytes(base64.b64decode(new_key.secret["data"]["tls.key"]))
    for backup in (one_secret, pem):
        code, out, err = run(
            "import", "sealedsecret", "-f", str(path), "--bitnami-keys", str(backup),
            "--cert", str(work["bundle"]),
        )  # fmt: skip
        assert code == 0, err
        assert opened(documents(out)[0], kstrata_key) == {"k": b"v"}
