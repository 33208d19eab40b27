"""`kstrata seal -f` with many Secrets: files, directories, streams, one process.

Issue 18 item 5: sealing a repository of Secret manifests must not cost an
interpreter start per manifest.  Every sealed value is checked by opening it
with the bundle's private key under the context the operator would bind, and
every output and error is scanned for the plaintext in each encoded form
(``tests/support/leaks.py``).
"""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kstrata.crypto import KeyPair, KeyRing, SealingContext
from support.leaks import Canary, report, scan
from support.seal_cli import (  # noqa: F401  (fixtures)
    cert_fixture,
    keypair_fixture,
    no_ambient_kubeconfig,
    run,
)


@pytest.fixture
def canaries() -> dict[str, Canary]:
    return {name: Canary.new(name) for name in ("one", "two", "three", "four")}


def secret(name: str, value: Canary, namespace: str | None = "apps") -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": {"app": name}}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "data": {"password": base64.b64encode(value.value).decode()},
        "stringData": {"user": f"{name}-{value.text}"},
    }


def opened(keypair: KeyPair, manifest: dict[str, Any]) -> dict[str, bytes]:
    ring = KeyRing([keypair])
    metadata = manifest["metadata"]
    return {
        item: ring.open(
            token,
            SealingContext.bind(
                manifest["spec"]["scope"],
                item=item,
                namespace=metadata.get("namespace"),
                name=metadata["name"],
            ),
        )
        for item, token in manifest["spec"]["encryptedData"].items()
    }


def no_leak(canaries: dict[str, Canary], **texts: str) -> None:
    hits = scan(texts, canaries.values())
    assert not hits, report(hits)


def test_several_files_one_sealedsecret_each(
    tmp_path: Path, cert: Path, keypair: KeyPair, canaries: dict[str, Canary]
) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.json"
    first.write_text(yaml.safe_dump(secret("alpha", canaries["one"])))
    second.write_text(json.dumps(secret("beta", canaries["two"], namespace="other")))
    code, out, err = run("seal", "--cert", str(cert), "-f", str(first), "-f", str(second))
    assert (code, err) == (0, "")
    manifests = list(yaml.safe_load_all(out))
    assert [(m["metadata"]["namespace"], m["metadata"]["name"]) for m in manifests] == [
        ("apps", "alpha"),
        ("other", "beta"),
    ]
    assert opened(keypair, manifests[0]) == {
        "password": canaries["one"].value,
        "user": b"alpha-" + canaries["one"].value,
    }
    assert opened(keypair, manifests[1])["password"] == canaries["two"].value
    assert manifests[0]["spec"]["template"] == {"type": "Opaque", "labels": {"app": "alpha"}}
    no_leak(canaries, out=out, err=err)


def test_a_directory_is_read_recursively_and_in_order(
    tmp_path: Path, cert: Path, keypair: KeyPair, canaries: dict[str, Canary]
) -> None:
    root = tmp_path / "secrets"
    (root / "team" / "deep").mkdir(parents=True)
    (root / "b.yml").write_text(yaml.safe_dump(secret("b", canaries["one"])))
    (root / "team" / "a.yaml").write_text(yaml.safe_dump(secret("a", canaries["two"])))
    (root / "team" / "deep" / "c.json").write_text(json.dumps(secret("c", canaries["three"])))
    # Not a manifest by its name: ignored, as by kubectl -f DIR.
    (root / "README.md").write_text(canaries["four"].text)
    code, out, err = run("seal", "--cert", str(cert), "-f", str(root), "-o", "json")
    assert (code, err) == (0, "")
    listed = json.loads(out)
    assert listed["kind"] == "List"
    assert [m["metadata"]["name"] for m in listed["items"]] == ["b", "a", "c"]
    assert opened(keypair, listed["items"][2])["password"] == canaries["three"].value
    no_leak(canaries, out=out, err=err)


def test_a_multi_document_stream_on_stdin(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    cert: Path,
    keypair: KeyPair,
    canaries: dict[str, Canary],
) -> None:
    stream = yaml.safe_dump_all(
        [secret("one", canaries["one"], None), None, secret("two", canaries["two"], None)]
    )
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stream.encode())))
    out_dir = tmp_path / "sealed"
    code, out, err = run(
        "seal", "--cert", str(cert), "-n", "team", "-f", "-", "--output-dir", str(out_dir)
    )
    assert (code, err) == (0, "")
    written = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*.yaml"))
    assert written == ["team/one.yaml", "team/two.yaml"]
    assert f"sealedsecret.kstrata.dev/two sealed into {out_dir / 'team' / 'two.yaml'}" in out
    manifest = yaml.safe_load((out_dir / "team" / "two.yaml").read_text())
    # -n gives the namespace to Secrets that state none; it is bound into every token.
    assert manifest["metadata"] == {"name": "two", "namespace": "team"}
    assert opened(keypair, manifest)["user"] == b"two-" + canaries["two"].value
    texts = {str(p): p.read_text() for p in out_dir.rglob("*.yaml")}
    no_leak(canaries, out=out, err=err, **texts)


def test_a_document_of_another_kind_is_refused_by_name(
    tmp_path: Path, cert: Path, canaries: dict[str, Canary]
) -> None:
    stream = tmp_path / "mixed.yaml"
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cm", "namespace": "apps"},
        "data": {"password": canaries["two"].text},
    }
    stream.write_text(yaml.safe_dump_all([secret("ok", canaries["one"]), config_map]))
    out_dir = tmp_path / "out"
    code, out, err = run(
        "seal", "--cert", str(cert), "-f", str(stream), "--output-dir", str(out_dir)
    )
    assert (code, out) == (1, "")
    assert f"{stream} (document 2): expected a Secret (apiVersion v1, kind Secret)" in err
    # All or nothing: the good document before it was not written either.
    assert not out_dir.exists()
    no_leak(canaries, out=out, err=err)


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("two Secrets, one name", 1, "(document 2): the same namespace and name as"),
        ("--name with several", 2, "--name names one SealedSecret, but -f gave 2 Secrets"),
        ("bad base64", 1, "(document 2): data.password is not valid base64"),
        ("empty directory", 2, "empty: no .yaml, .yml or .json files to read"),
        ("stdin twice", 2, "standard input) can be given only once"),
        ("--output-dir without -f", 2, "--output-dir is for -f"),
        ("with --from-literal", 2, "-f cannot be combined with --from-literal"),
        ("merge with several", 2, "--merge-into takes one Secret manifest"),
    ],
)
def test_bulk_errors_are_clear_and_quote_no_value(
    tmp_path: Path, cert: Path, canaries: dict[str, Canary], case: str, code: int, message: str
) -> None:
    twice = tmp_path / "twice.yaml"
    twice.write_text(
        yaml.safe_dump_all([secret("same", canaries["one"]), secret("same", canaries["two"])])
    )
    broken = secret("broken", canaries["three"])
    broken["data"]["password"] = canaries["three"].text + "!"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump_all([secret("fine", canaries["one"]), broken]))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text(canaries["four"].text)
    argv = {
        "two Secrets, one name": ["-f", str(twice)],
        "--name with several": ["-f", str(twice), "--name", "x"],
        "bad base64": ["-f", str(bad)],
        "empty directory": ["-f", str(empty)],
        "stdin twice": ["-f", "-", "-f", "-"],
        "--output-dir without -f": ["-n", "a", "--name", "b", "--from-literal",
                                    f"k={canaries['four'].text}", "--output-dir", str(empty)],
        "with --from-literal": ["-f", str(twice), "--from-literal", f"k={canaries['four'].text}"],
        "merge with several": ["-f", str(twice), "-f", str(bad), "--merge-into", str(bad)],
    }[case]  # fmt: skip
    got, out, err = run("seal", "--cert", str(cert), *argv)
    assert (got, out) == (code, "")
    assert message in err
    no_leak(canaries, out=out, err=err)


def test_one_file_with_one_secret_prints_one_manifest_as_before(
    tmp_path: Path, cert: Path, keypair: KeyPair, canaries: dict[str, Canary]
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(secret("solo", canaries["one"])))
    code, out, err = run(
        "seal", "--cert", str(cert), "-f", str(path), "-o", "json", "--name", "solo"
    )
    assert (code, err) == (0, "")
    manifest = json.loads(out)
    assert manifest["kind"] == "SealedSecret"
    assert opened(keypair, manifest)["password"] == canaries["one"].value
