"""``kstrata import -f FILE --sops``: files encrypted by the real sops to a real age key.

sops and age-keygen are the pinned real tools (tools/gotools/tools.toml).
The files are encrypted by ``sops --encrypt --age`` and kstrata runs the same
``sops`` to decrypt them (``--sops-binary``; ``SOPS_AGE_KEY_FILE`` names the
age identity, as a user sets it).  Each imported value is checked by opening
it with kstrata's private key; a canary scan covers everything the command
prints and every file it could leave behind.
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
from support.leaks import Canary, report, scan
from support.offline import cluster_modules_imported
from support.seal_cli import run
from support.secret_tools import (
    documents,
    install,
    kstrata_key_fixture,  # noqa: F401  (the kstrata_key fixture)
    opened,
)


@pytest.fixture(scope="module")
def sops() -> Path:
    return install("sops")


@pytest.fixture(scope="module")
def age_keygen() -> Path:
    return install("age-keygen")


def age_identity(age_keygen: Path, path: Path) -> str:
    """A fresh age identity file; returns its public key (the recipient)."""
    subprocess.run([str(age_keygen), "-o", str(path)], check=True, capture_output=True)
    for line in path.read_text().splitlines():
        if line.startswith("# public key: "):
            return line.removeprefix("# public key: ")
    raise AssertionError("age-keygen wrote no public key")


@pytest.fixture
def work(
    tmp_path: Path, sops: Path, age_keygen: Path, kstrata_key: KeyPair, monkeypatch: Any
) -> dict[str, Any]:
    recipient = age_identity(age_keygen, tmp_path / "age.txt")
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(tmp_path / "age.txt"))
    (tmp_path / "bundle.json").write_text(PublicKeyBundle.of([kstrata_key]).serialize())
    for name in ("plain", "enc"):
        (tmp_path / name).mkdir()
    return {"root": tmp_path, "recipient": recipient, "bundle": tmp_path / "bundle.json"}


def encrypt(sops: Path, work: dict[str, Any], name: str, text: str, *extra: str) -> Path:
    """``sops --encrypt --age RECIPIENT`` of a plaintext file into enc/; the plaintext removed."""
    plain = work["root"] / "plain" / name
    plain.write_text(text)
    encrypted = subprocess.run(
        [str(sops), "--disable-version-check", "--encrypt", "--age", work["recipient"], *extra,
         str(plain)],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    plain.unlink()
    target: Path = work["root"] / "enc" / name
    target.write_bytes(encrypted)
    return target


def test_secret_manifests_dotenv_and_json_files_are_imported(
    sops: Path, work: dict[str, Any], kstrata_key: KeyPair
) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": "shop", "labels": {"app": "shop"}},
        "type": "kubernetes.io/basic-auth",
        "stringData": {"username": "admin", "password": "pa55"},
        "data": {"blob": "AAEC/w=="},
    }
    encrypt(sops, work, "db.enc.yaml", yaml.safe_dump(secret),
            "--encrypted-regex", "^(data|stringData)$")  # fmt: skip
    encrypt(sops, work, "app.env", "API_TOKEN=t0ken\nDEBUG=false\n")
    encrypt(sops, work, "cache.json", json.dumps({"port": 6379, "password": "r3dis"}))
    # Beside them, as in a repository: sops' settings and a plain file, both skipped.
    (work["root"] / "enc" / ".sops.yaml").write_text("creation_rules:\n  - age: x\n")
    (work["root"] / "enc" / "kustomization.yaml").write_text("resources: []\n")
    code, out, err = run(
        "import", "-f", str(work["root"] / "enc"), "--sops", "--sops-binary", str(sops),
        "--cert", str(work["bundle"]), "-n", "shop",
    )  # fmt: skip
    assert code == 0, err
    imported = {d["metadata"]["name"]: d for d in documents(out)}
    assert sorted(imported) == ["app", "cache", "db"]
    assert imported["db"]["spec"]["template"] == {
        "type": "kubernetes.io/basic-auth",
        "labels": {"app": "shop"},
    }
    assert opened(imported["db"], kstrata_key) == {
        "username": b"admin",
        "password": b"pa55",
        "blob": b"\x00\x01\x02\xff",
    }
    assert opened(imported["app"], kstrata_key) == {"API_TOKEN": b"t0ken", "DEBUG": b"false"}
    assert opened(imported["cache"], kstrata_key) == {"port": b"6379", "password": b"r3dis"}
    assert {d["spec"]["scope"] for d in imported.values()} == {"strict"}
    assert {d["metadata"]["namespace"] for d in imported.values()} == {"shop"}


def test_name_scope_and_output_dir(sops: Path, work: dict[str, Any], kstrata_key: KeyPair) -> None:
    path = encrypt(sops, work, "creds.yaml", "user: u\npass: p\n")
    out_dir = work["root"] / "out"
    out_dir.mkdir()
    code, out, err = run(
        "import", "-f", str(path), "--sops", "--sops-binary", str(sops), "--name", "api",
        "--scope", "cluster", "--cert", str(work["bundle"]), "--output-dir", str(out_dir),
    )  # fmt: skip
    assert code == 0, err
    assert "1 SealedSecret(s) written" in out
    manifest = yaml.safe_load((out_dir / "api.yaml").read_text())
    assert manifest["spec"]["scope"] == "cluster"
    assert opened(manifest, kstrata_key) == {"user": b"u", "pass": b"p"}


def test_failures_are_clear_and_print_nothing(
    sops: Path, age_keygen: Path, work: dict[str, Any], monkeypatch: Any
) -> None:
    path = encrypt(sops, work, "creds.yaml", "user: u\n")
    base = ["import", "-f", str(path), "--sops", "--cert", str(work["bundle"]), "-n", "shop"]
    code, out, err = run(*base, "--sops-binary", str(work["root"] / "no-such-sops"))
    assert (code, out) == (2, "")
    assert "sops not found" in err
    age_identity(age_keygen, work["root"] / "other-age.txt")
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(work["root"] / "other-age.txt"))
    code, out, err = run(*base, "--sops-binary", str(sops))
    assert (code, out) == (1, "")
    assert "sops -d failed" in err
    nested = encrypt(sops, work, "nested.yaml", "db:\n  user: u\n")
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(work["root"] / "age.txt"))
    code, out, err = run(
        "import", "-f", str(nested), "--sops", "--sops-binary", str(sops),
        "--cert", str(work["bundle"]), "-n", "shop",
    )  # fmt: skip
    assert (code, out) == (1, "")
    assert "db is not a string or number" in err


def test_a_secret_whose_data_is_not_a_mapping_is_refused_clearly(
    sops: Path, work: dict[str, Any]
) -> None:
    # Read as a mapping without a check, a string here was an AttributeError.
    manifest = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\ndata: c2VjcmV0\n"
    path = encrypt(sops, work, "creds.yaml", manifest)
    code, out, err = run(
        "import", "-f", str(path), "--sops", "--sops-binary", str(sops),
        "--cert", str(work["bundle"]), "-n", "shop",
    )  # fmt: skip
    assert (code, out) == (1, "")
    assert "data must be a mapping" in err
    assert "c2VjcmV0" not in err


def test_a_string_value_sops_read_as_a_number_says_to_quote_it(
    sops: Path, work: dict[str, Any]
) -> None:
    # YAML 1.2 reads an unquoted 0018 as a number: the value is not echoed, the fix is named.
    manifest = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  pin: 0018\n"
    path = encrypt(sops, work, "creds.yaml", manifest)
    code, out, err = run(
        "import", "-f", str(path), "--sops", "--sops-binary", str(sops),
        "--cert", str(work["bundle"]), "-n", "shop",
    )  # fmt: skip
    assert (code, out) == (1, "")
    assert "stringData.pin must be a string (sops read a number" in err
    assert "quote the value" in err
    assert "0018" not in err


def test_no_value_leaks_into_output_errors_or_files(
    sops: Path, work: dict[str, Any], kstrata_key: KeyPair, tmp_path: Path
) -> None:
    canaries = [Canary.new("sops-token"), Canary.new("sops-password")]
    encrypt(sops, work, "app.env", f"TOKEN={canaries[0].text}\n")
    encrypt(
        sops,
        work,
        "db.yaml",
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "db"},
                "stringData": {"password": canaries[1].text},
            }
        ),
    )
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    (bad_dir / "x.yaml").write_bytes((work["root"] / "enc" / "db.yaml").read_bytes())
    encrypt(sops, work, "nested.yaml", f"outer:\n  inner: {canaries[0].text}\n")
    (bad_dir / "y.yaml").write_bytes((work["root"] / "enc" / "nested.yaml").read_bytes())
    (work["root"] / "enc" / "nested.yaml").unlink()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    env = dict(os.environ, TMPDIR=str(scratch))
    env.pop("KUBECONFIG", None)
    texts: dict[str, str] = {}
    kstrata = str(Path(sys.executable).parent / "kstrata")
    for label, argv in {
        "stdout": ["-f", str(work["root"] / "enc")],
        "output-dir": ["-f", str(work["root"] / "enc"), "--output-dir", str(out_dir)],
        "failure": ["-f", str(bad_dir)],
    }.items():
        result = subprocess.run(
            [kstrata, "import", "--sops", "--sops-binary", str(sops), "-n", "shop",
             "--cert", str(work["bundle"]), *argv],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        assert result.returncode == (1 if label == "failure" else 0), result.stderr
        texts[f"{label} stdout"] = result.stdout
        texts[f"{label} stderr"] = result.stderr
    assert "outer is not a string or number" in texts["failure stderr"]
    for directory in (scratch, out_dir):
        for path in directory.rglob("*"):
            if path.is_file():
                texts[str(path)] = path.read_bytes().decode("latin-1")
    assert len(list(out_dir.iterdir())) == 2
    hits = scan(texts, canaries)
    assert not hits, report(hits)
    imported = {d["metadata"]["name"]: d for d in documents(texts["stdout stdout"])}
    assert opened(imported["app"], kstrata_key) == {"TOKEN": canaries[0].value}
    assert opened(imported["db"], kstrata_key) == {"password": canaries[1].value}


def test_offline_sops_import_loads_neither_kopf_nor_the_kubernetes_client(
    sops: Path, work: dict[str, Any]
) -> None:
    path = encrypt(sops, work, "creds.yaml", "user: u\n")
    argv = ["import", "-f", str(path), "--sops", "--sops-binary", str(sops)]
    argv += ["-n", "shop", "--cert", str(work["bundle"])]
    assert cluster_modules_imported(argv) == []


def test_sops_is_found_on_path(
    sops: Path, work: dict[str, Any], kstrata_key: KeyPair, monkeypatch: Any
) -> None:
    path = encrypt(sops, work, "creds.yaml", "user: u\n")
    monkeypatch.setenv("PATH", f"{sops.parent}{os.pathsep}{os.environ['PATH']}")
    code, out, err = run(
        "import", "-f", str(path), "--sops", "-n", "shop", "--cert", str(work["bundle"])
    )
    assert code == 0, err
    assert opened(documents(out)[0], kstrata_key) == {"user": b"u"}
