"""`kstrata seal`: tokens that open where they are bound, manifests, merging, no leaks.

Every sealed value is checked by opening it with the private key of the bundle
it was sealed to (``KeyRing.open`` with the context the operator would use),
never by looking at the ciphertext.  The CLI runs in-process through
``kstrata.cli.main.main`` except where a fresh interpreter is the point
(``sys.modules``, standard input).
"""

from __future__ import annotations

import base64
import json
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from kstrata.app import sealing_toolkit
from kstrata.cli import seal_cmd
from kstrata.crypto import (
    MAX_PLAINTEXT_BYTES,
    KeyPair,
    KeyRing,
    PublicKeyBundle,
    SealingContext,
    generate_keypair,
    parse_token,
)
from kstrata.domain import crds
from kstrata.errors import UnsealError
from support.offline import cluster_modules_imported
from support.seal_cli import (  # noqa: F401  (fixtures)
    cert_fixture,
    keypair_fixture,
    no_ambient_kubeconfig,
    run,
)

#: Stands for a secret value.  Spaces and '!' make it invalid as an item key, a
#: namespace, an environment name and base64, so it can probe every error path.
CANARY = "canary 5e1f s3cret!"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def seal(cert: Path, *argv: str) -> dict[str, Any]:
    """Run a seal that must succeed; return the printed manifest."""
    code, out, err = run("seal", "--cert", str(cert), *argv)
    assert (code, err) == (0, ""), err
    manifest: dict[str, Any] = yaml.safe_load(out)
    return manifest


def opened(
    keypair: KeyPair,
    tokens: dict[str, str],
    scope: str,
    *,
    namespace: str | None = None,
    name: str | None = None,
) -> dict[str, bytes]:
    ring = KeyRing([keypair])
    return {
        item: ring.open(
            token, SealingContext.bind(scope, item=item, namespace=namespace, name=name)
        )
        for item, token in tokens.items()
    }


# --- sealing and the manifest ------------------------------------------------


def test_round_trip_literals_and_files(tmp_path: Path, cert: Path, keypair: KeyPair) -> None:
    binary = bytes(range(256))
    (tmp_path / "blob").write_bytes(binary)
    (tmp_path / "ca.crt").write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    code, out, err = run(
        "seal", "--cert", str(cert), "--namespace", "payments", "--name", "db",
        "--from-literal", "username=admin",
        "--from-literal", "password=p=ss w0rd",
        "--from-literal", "empty=",
        "--from-file", f"blob={tmp_path / 'blob'}",
        "--from-file", str(tmp_path / "ca.crt"),
    )  # fmt: skip
    assert (code, err) == (0, "")
    manifest = yaml.safe_load(out)
    assert manifest["apiVersion"] == "kstrata.dev/v1alpha1"
    assert manifest["kind"] == "SealedSecret"
    assert manifest["metadata"] == {"name": "db", "namespace": "payments"}
    assert set(manifest["spec"]) == {"scope", "encryptedData"}
    assert manifest["spec"]["scope"] == "strict"
    tokens = manifest["spec"]["encryptedData"]
    assert list(tokens) == ["blob", "ca.crt", "empty", "password", "username"]
    assert opened(keypair, tokens, "strict", namespace="payments", name="db") == {
        "blob": binary,
        "ca.crt": b"-----BEGIN CERTIFICATE-----\n",
        "empty": b"",
        "password": b"p=ss w0rd",
        "username": b"admin",
    }
    # Deterministic layout: top-level and spec keys in one fixed (sorted) order.
    top = [line.split(":")[0] for line in out.splitlines() if not line.startswith(" ")]
    assert top == ["apiVersion", "kind", "metadata", "spec"]
    assert out.index("  encryptedData:") < out.index("  scope: strict")


def test_json_output_is_the_same_manifest(cert: Path, keypair: KeyPair) -> None:
    code, out, _ = run(
        "seal", "--cert", str(cert), "-n", "ns", "--name", "app", "--from-literal", "k=v",
        "-o", "json",
    )  # fmt: skip
    assert code == 0
    manifest = json.loads(out)
    assert list(manifest) == ["apiVersion", "kind", "metadata", "spec"]
    tokens = manifest["spec"]["encryptedData"]
    assert opened(keypair, tokens, "strict", namespace="ns", name="app") == {"k": b"v"}


def test_seals_to_the_newest_key_of_the_bundle(tmp_path: Path, keypair: KeyPair) -> None:
    newer = generate_keypair(created=datetime(2025, 7, 1, tzinfo=UTC))
    cert = tmp_path / "two.json"
    cert.write_text(PublicKeyBundle.of([newer, keypair]).serialize())
    manifest = seal(cert, "-n", "ns", "--name", "app", "--from-literal", "k=v")
    token = manifest["spec"]["encryptedData"]["k"]
    assert parse_token(token).key_id == newer.key_id
    assert opened(newer, {"k": token}, "strict", namespace="ns", name="app") == {"k": b"v"}


def test_strict_scope_binds_namespace_name_and_item(cert: Path, keypair: KeyPair) -> None:
    manifest = seal(cert, "-n", "ns", "--name", "app", "--from-literal", "pw=v")
    token = manifest["spec"]["encryptedData"]["pw"]
    ring = KeyRing([keypair])
    for moved in (
        SealingContext.bind("strict", namespace="other", name="app", item="pw"),
        SealingContext.bind("strict", namespace="ns", name="other", item="pw"),
        SealingContext.bind("strict", namespace="ns", name="app", item="username"),
        SealingContext.bind("namespace", namespace="ns", item="pw"),
    ):
        with pytest.raises(UnsealError):
            ring.open(token, moved)


def test_namespace_scope_leaves_the_name_out(cert: Path, keypair: KeyPair) -> None:
    manifest = seal(
        cert, "-n", "ns", "--name", "app", "--scope", "namespace", "--from-literal", "pw=v"
    )
    assert manifest["spec"]["scope"] == "namespace"
    tokens = manifest["spec"]["encryptedData"]
    assert opened(keypair, tokens, "namespace", namespace="ns") == {"pw": b"v"}
    ring = KeyRing([keypair])
    with pytest.raises(UnsealError):
        ring.open(tokens["pw"], SealingContext.bind("namespace", namespace="other", item="pw"))
    with pytest.raises(UnsealError):
        ring.open(
            tokens["pw"], SealingContext.bind("strict", namespace="ns", name="app", item="pw")
        )


def test_cluster_scope_binds_only_the_item(cert: Path, keypair: KeyPair) -> None:
    manifest = seal(cert, "--name", "app", "--scope", "cluster", "--from-literal", "pw=v")
    # No namespace given: cluster scope needs none, so the manifest stays portable.
    assert manifest["metadata"] == {"name": "app"}
    tokens = manifest["spec"]["encryptedData"]
    assert opened(keypair, tokens, "cluster") == {"pw": b"v"}
    with pytest.raises(UnsealError):
        KeyRing([keypair]).open(tokens["pw"], SealingContext.bind("cluster", item="other"))


def test_env_places_the_items_under_the_environment(cert: Path, keypair: KeyPair) -> None:
    manifest = seal(cert, "-n", "ns", "--name", "app", "--env", "prod", "--from-literal", "k=v")
    assert set(manifest["spec"]) == {"scope", "environments"}
    tokens = manifest["spec"]["environments"]["prod"]["encryptedData"]
    assert opened(keypair, tokens, "strict", namespace="ns", name="app") == {"k": b"v"}


def test_the_output_passes_the_crd_schema(cert: Path) -> None:
    manifest = seal(cert, "-n", "ns", "--name", "app", "--env", "prod", "--from-literal", "k=v")
    assert crds.validate_structure(manifest, source="out") == []


# --- -f secret.yaml ---------------------------------------------------------


def secret_manifest(**overrides: Any) -> dict[str, Any]:
    secret: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "db",
            "namespace": "payments",
            "uid": "3f0e9a8c-0000-4000-8000-000000000001",
            "resourceVersion": "12345",
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "managedFields": [{"manager": "kubectl", "operation": "Update"}],
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u"}],
            "labels": {"app": "db", "tier": "data"},
            "annotations": {
                "team": "payments",
                LAST_APPLIED: json.dumps({"stringData": {"password": CANARY}}),
            },
        },
        "type": "kubernetes.io/basic-auth",
        "data": {
            "username": base64.b64encode(b"admin").decode(),
            "password": base64.b64encode(b"replaced by stringData").decode(),
        },
        "stringData": {"password": CANARY},
    }
    secret.update(overrides)
    return secret


def test_secret_manifest_items_and_template_without_identity(
    tmp_path: Path, cert: Path, keypair: KeyPair
) -> None:
    path = tmp_path / "secret.yaml"
    path.write_text(yaml.safe_dump(secret_manifest()))
    code, out, err = run("seal", "--cert", str(cert), "-f", str(path))
    assert (code, err) == (0, "")
    assert CANARY not in out
    manifest = yaml.safe_load(out)
    # Name and namespace come from the Secret when no flag gives them.
    assert manifest["metadata"] == {"name": "db", "namespace": "payments"}
    assert manifest["spec"]["template"] == {
        "type": "kubernetes.io/basic-auth",
        "labels": {"app": "db", "tier": "data"},
        "annotations": {"team": "payments"},
    }
    for dropped in ("uid", "resourceVersion", "creationTimestamp", "managedFields",
                    "ownerReferences", "last-applied", "12345"):  # fmt: skip
        assert dropped not in out
    tokens = manifest["spec"]["encryptedData"]
    # As on the API server, stringData replaces a data item of the same key.
    assert opened(keypair, tokens, "strict", namespace="payments", name="db") == {
        "password": CANARY.encode(),
        "username": b"admin",
    }


def test_secret_manifest_from_stdin_and_immutable(tmp_path: Path, cert: Path) -> None:
    secret = secret_manifest(immutable=True, type="Opaque")
    result = subprocess.run(
        [sys.executable, "-m", "kstrata", "seal", "--cert", str(cert), "-f", "-", "-o", "json"],
        input=json.dumps(secret).encode(),
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout)
    assert manifest["spec"]["template"]["immutable"] is True
    assert manifest["spec"]["template"]["type"] == "Opaque"


@pytest.mark.parametrize(
    "secret_type", ["kubernetes.io/service-account-token", "bootstrap.kubernetes.io/token"]
)
def test_credential_secret_types_are_refused(tmp_path: Path, cert: Path, secret_type: str) -> None:
    path = tmp_path / "token.yaml"
    path.write_text(yaml.safe_dump(secret_manifest(type=secret_type)))
    code, out, err = run("seal", "--cert", str(cert), "-f", str(path))
    assert (code, out) == (1, "")
    assert "cannot be sealed" in err
    assert CANARY not in err


def test_secret_location_must_agree_with_the_flags(tmp_path: Path, cert: Path) -> None:
    path = tmp_path / "secret.yaml"
    path.write_text(yaml.safe_dump(secret_manifest()))
    code, out, err = run("seal", "--cert", str(cert), "-f", str(path), "-n", "other")
    assert (code, out) == (1, "")
    assert "namespace differs between --namespace and metadata.namespace" in err
    # Agreeing flags are fine.
    assert run("seal", "--cert", str(cert), "-f", str(path), "-n", "payments")[0] == 0


# --- --merge-into -------------------------------------------------------------


@pytest.fixture
def existing(tmp_path: Path, cert: Path) -> Path:
    """A SealedSecret file with items a and b, a prod overlay and a template, mode 0644."""
    path = tmp_path / "sealed.yaml"
    base = seal(cert, "-n", "ns", "--name", "app", "--from-literal", "a=1", "--from-literal", "b=2")
    prod = seal(cert, "-n", "ns", "--name", "app", "--env", "prod", "--from-literal", "a=p")
    base["spec"]["environments"] = prod["spec"]["environments"]
    base["spec"]["template"] = {"labels": {"app": "x"}}
    base["spec"]["reload"] = {"targets": [{"kind": "Deployment", "name": "web"}]}
    path.write_text(yaml.safe_dump(base))
    path.chmod(0o644)
    return path


def test_merge_adds_and_replaces_only_the_given_items(
    existing: Path, cert: Path, keypair: KeyPair
) -> None:
    before = yaml.safe_load(existing.read_text())
    code, out, err = run(
        "seal", "--cert", str(cert), "-n", "ns", "--name", "app",
        "--from-literal", "b=two", "--from-literal", "c=3", "--merge-into", str(existing),
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert out == (
        f"sealedsecret.kstrata.dev/app sealed into {existing}: b, c (key {keypair.key_id})\n"
    )
    after = yaml.safe_load(existing.read_text())
    tokens = after["spec"]["encryptedData"]
    assert tokens["a"] == before["spec"]["encryptedData"]["a"]  # untouched, not re-sealed
    assert opened(keypair, tokens, "strict", namespace="ns", name="app") == {
        "a": b"1",
        "b": b"two",
        "c": b"3",
    }
    # Everything else is kept as it was.
    for key in ("environments", "template", "reload", "scope"):
        assert after["spec"][key] == before["spec"][key]
    assert {k: v for k, v in after.items() if k != "spec"} == {
        k: v for k, v in before.items() if k != "spec"
    }
    assert stat.S_IMODE(existing.stat().st_mode) == 0o600
    assert sorted(p.name for p in existing.parent.iterdir()) == ["cert.json", "sealed.yaml"]


def test_merge_with_env_and_the_files_own_scope(
    tmp_path: Path, cert: Path, keypair: KeyPair
) -> None:
    path = tmp_path / "sealed.json"
    path.write_text(
        json.dumps(
            seal(cert, "-n", "ns", "--name", "app", "--scope", "namespace", "--from-literal", "a=1")
        )
    )
    # No --scope: the file's scope is used; the file stays JSON.
    code, _, err = run(
        "seal", "--cert", str(cert), "-n", "ns", "--name", "app", "--env", "staging",
        "--from-literal", "a=s", "--merge-into", str(path),
    )  # fmt: skip
    assert (code, err) == (0, "")
    after = json.loads(path.read_text())
    assert after["spec"]["scope"] == "namespace"
    staged = after["spec"]["environments"]["staging"]["encryptedData"]
    assert opened(keypair, staged, "namespace", namespace="ns") == {"a": b"s"}
    assert opened(keypair, after["spec"]["encryptedData"], "namespace", namespace="ns") == {
        "a": b"1"
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_merge_with_a_secret_manifest_updates_the_template(
    existing: Path, tmp_path: Path, cert: Path
) -> None:
    secret = tmp_path / "secret.yaml"
    secret.write_text(
        yaml.safe_dump(
            secret_manifest(metadata={"name": "app", "namespace": "ns", "labels": {"tier": "t"}})
        )
    )
    code, _, err = run(
        "seal", "--cert", str(cert), "-f", str(secret), "--merge-into", str(existing)
    )
    assert (code, err) == (0, "")
    after = yaml.safe_load(existing.read_text())
    assert after["spec"]["template"] == {
        "labels": {"app": "x", "tier": "t"},
        "type": "kubernetes.io/basic-auth",
    }
    assert set(after["spec"]["encryptedData"]) == {"a", "b", "password", "username"}


def test_merge_through_a_symlink_replaces_the_target(existing: Path, cert: Path) -> None:
    link = existing.parent / "link.yaml"
    link.symlink_to(existing.name)
    code, _, err = run(
        "seal", "--cert", str(cert), "-n", "ns", "--name", "app", "--from-literal", "z=1",
        "--merge-into", str(link),
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert link.is_symlink()
    assert "z" in yaml.safe_load(existing.read_text())["spec"]["encryptedData"]
    assert stat.S_IMODE(existing.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "flags",
    [
        ["-n", "other", "--name", "app"],
        ["-n", "ns", "--name", "other"],
        ["-n", "ns", "--name", "app", "--scope", "cluster"],
    ],
    ids=["namespace", "name", "scope"],
)
def test_merge_refuses_another_location_and_writes_nothing(
    existing: Path, cert: Path, flags: list[str]
) -> None:
    before = existing.read_bytes()
    code, out, err = run(
        "seal", "--cert", str(cert), *flags, "--from-literal", f"c={CANARY}",
        "--merge-into", str(existing),
    )  # fmt: skip
    assert (code, out) == (1, "")
    assert "differs between" in err
    assert CANARY not in err
    assert existing.read_bytes() == before
    assert stat.S_IMODE(existing.stat().st_mode) == 0o644


# --- usage --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-n", "ns", "--name", "app"], "nothing to seal"),
        (["-n", "ns", "--from-literal", "k=v"], "--name is required"),
        (["--name", "app", "--from-literal", "k=v"], "--namespace is required for strict"),
        (["-n", "ns", "--name", "app", "-f", "s.yaml", "--from-literal", "k=v"], "cannot be"),
        (["-n", "ns", "--name", "app", "--scope", "global", "--from-literal", "k=v"], "invalid"),
    ],
)
def test_usage_errors(cert: Path, argv: list[str], message: str) -> None:
    code, out, err = run("seal", "--cert", str(cert), *argv)
    assert (code, out) == (2, "")
    assert message in err


def test_scope_and_crd_constants_agree() -> None:
    assert seal_cmd.SCOPE_CHOICES == crds.SCOPES == sealing_toolkit.SCOPES
    assert sealing_toolkit.MAX_SEALED_ITEMS == crds.MAX_SEALED_ITEMS


def test_public_key_location_matches_the_operator() -> None:
    from kstrata.app import sealing_keys
    from kstrata.settings import Settings

    assert sealing_toolkit.PUBLIC_KEYS_CONFIGMAP == sealing_keys.PUBLIC_KEYS_CONFIG_MAP
    assert sealing_toolkit.PUBLIC_KEYS_ITEM == sealing_keys.PUBLIC_KEYS_DATA_KEY
    assert Settings().operator_namespace == sealing_toolkit.DEFAULT_OPERATOR_NAMESPACE


def test_merge_into_a_file_without_spec(tmp_path: Path, cert: Path, keypair: KeyPair) -> None:
    path = tmp_path / "bare.yaml"
    path.write_text(
        "apiVersion: kstrata.dev/v1alpha1\nkind: SealedSecret\n"
        "metadata: {name: app, namespace: ns}\nspec:\n"
    )
    code, _, err = run(
        "seal", "--cert", str(cert), "--from-literal", "k=v", "--merge-into", str(path)
    )
    assert (code, err) == (0, "")
    tokens = yaml.safe_load(path.read_text())["spec"]["encryptedData"]
    assert opened(keypair, tokens, "strict", namespace="ns", name="app") == {"k": b"v"}


def test_too_many_items(cert: Path) -> None:
    literals = [arg for i in range(257) for arg in ("--from-literal", f"k{i}=v")]
    code, _, err = run("seal", "--cert", str(cert), "-n", "ns", "--name", "a", *literals)
    assert code == 1
    assert "at most 256" in err


def test_input_is_checked_before_the_cluster_is_asked(tmp_path: Path) -> None:
    # No --cert: public keys would come from the cluster, but a bad key name is
    # reported first, with no connection attempted (the kubeconfig does not exist).
    missing = str(tmp_path / "no-kubeconfig")
    code, _, err = run("seal", "-n", "ns", "--name", "a", "--from-literal", "b@d=v",
                       "--kubeconfig", missing)  # fmt: skip
    assert code == 1
    assert "not a valid Secret data key" in err
    code, _, err = run("seal", "-n", "ns", "--name", "a", "--from-literal", "k=v",
                       "--kubeconfig", missing)  # fmt: skip
    assert code == 2
    assert "does not exist" in err


# --- no value ever appears in a message --------------------------------------


def _write(path: Path, data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return str(path)


BIG = "x" * (MAX_PLAINTEXT_BYTES + 1)


def _error_cases(tmp: Path, cert: str) -> dict[str, tuple[list[str], int]]:
    """Each case: argv after ``seal`` and the exit code; every one carries the canary."""
    where = ["-n", "ns", "--name", "app"]
    loc = ["--cert", cert, *where]
    lit = ["--from-literal", f"ok={CANARY}"]
    b64 = base64.b64encode(CANARY.encode()).decode()
    value_file = _write(tmp / "v", CANARY)

    def with_cert(name: str, text: str) -> list[str]:
        return ["--cert", _write(tmp / name, text), *where, *lit]

    def with_secret(name: str, document: dict[str, Any] | str) -> list[str]:
        text = document if isinstance(document, str) else yaml.safe_dump(document)
        return ["--cert", cert, "-f", _write(tmp / name, text)]

    def merging(name: str, text: str, *flags: str) -> list[str]:
        return ["--cert", cert, *flags, *lit, "--merge-into", _write(tmp / name, text)]

    bad_bundle_key = {
        "format": "kstrata.dev/sealing-public-keys/v1",
        "keys": [
            {
                "keyId": CANARY,
                "suite": "x25519",
                "created": "2025-01-01T00:00:00Z",
                "publicKey": b64,
            }
        ],
    }
    other_location = {
        "apiVersion": "kstrata.dev/v1alpha1",
        "kind": "SealedSecret",
        "metadata": {"name": "app", "namespace": "ns"},
        "spec": {"encryptedData": {"x": "kss1:AAAA"}},
    }
    forbidden = secret_manifest(type="kubernetes.io/service-account-token")
    return {
        "bad key name": ([*loc, *lit, "--from-literal", f"{CANARY}=v"], 1),
        "dot key": ([*loc, *lit, "--from-literal", f"..x={CANARY}"], 1),
        "no equals sign": ([*loc, *lit, "--from-literal", CANARY], 2),
        "duplicate literal": ([*loc, *lit, *lit], 1),
        "duplicate literal and file": ([*loc, *lit, "--from-file", f"ok={value_file}"], 1),
        "bad file key": ([*loc, *lit, "--from-file", f"{CANARY}={value_file}"], 1),
        "missing file": ([*loc, *lit, "--from-file", f"f={tmp / CANARY}"], 2),
        "directory as file": ([*loc, *lit, "--from-file", f"f={tmp}"], 2),
        "oversize literal": ([*loc, *lit, "--from-literal", f"big={CANARY}{BIG}"], 1),
        "oversize file": ([*loc, *lit, "--from-file", f"b={_write(tmp / 'b', CANARY + BIG)}"], 1),
        "bad env": ([*loc, *lit, "--env", CANARY], 1),
        "bad namespace": (["--cert", cert, "-n", CANARY, "--name", "app", *lit], 1),
        "bad name": (["--cert", cert, "-n", "ns", "--name", CANARY, *lit], 1),
        "bundle is not json": (with_cert("c1.json", CANARY), 1),
        "bundle with a bad key": (with_cert("c2.json", json.dumps(bad_bundle_key)), 1),
        "bundle too large": (with_cert("c3.json", CANARY * 20000), 1),
        "empty bundle": (with_cert("c4.json", PublicKeyBundle(()).serialize()), 1),
        "secret is not yaml": (with_secret("s1.yaml", f"a: [{CANARY}"), 1),
        "secret data not base64": (with_secret("s2.yaml", secret_manifest(data={"k": CANARY})), 1),
        "secret data not a string": (
            with_secret("s3.yaml", secret_manifest(data={"k": [CANARY]})),
            1,
        ),
        "secret bad key": (with_secret("s4.yaml", secret_manifest(data={CANARY: b64})), 1),
        "secret stringData not a string": (
            with_secret("s5.yaml", secret_manifest(stringData={"k": {"v": CANARY}})),
            1,
        ),
        "secret oversize value": (
            with_secret("s6.yaml", secret_manifest(stringData={"k": CANARY + BIG})),
            1,
        ),
        "secret of a forbidden type": (with_secret("s7.yaml", forbidden), 1),
        "secret with a bad label": (
            with_secret("s8.yaml", secret_manifest(metadata={"labels": {"a": [CANARY]}})),
            1,
        ),
        "not a secret": (
            with_secret("s9.yaml", {"apiVersion": "v1", "kind": CANARY, "data": {"k": b64}}),
            1,
        ),
        "secret name disagrees": (
            [*with_secret("s10.yaml", secret_manifest()), "-n", "payments", "--name", "other"],
            1,
        ),
        "two documents": (with_secret("s11.yaml", f"a: 1\n---\nb: {CANARY}\n"), 1),
        "merge into a file that is not a SealedSecret": (
            merging("notsealed.yaml", f"kind: Secret\ndata: {CANARY}\n", *where),
            1,
        ),
        "merge into another location": (
            merging("sealed.yaml", yaml.safe_dump(other_location), "-n", "ns", "--name", "other"),
            1,
        ),
        "merge into a missing file": ([*loc, *lit, "--merge-into", str(tmp / "nope.yaml")], 2),
    }


def test_no_error_echoes_a_value(tmp_path: Path, cert: Path) -> None:
    cases = _error_cases(tmp_path, str(cert))
    outcomes = {}
    for label, (argv, _) in cases.items():
        code, out, err = run("seal", *argv)
        assert CANARY not in out, label
        assert CANARY not in err, label
        assert err.startswith("error: "), label
        assert out == "", label
        outcomes[label] = code
    assert outcomes == {label: code for label, (_, code) in cases.items()}
    # The files merged into are untouched.
    assert "SealedSecret" in (tmp_path / "sealed.yaml").read_text()
    assert "kind: Secret" in (tmp_path / "notsealed.yaml").read_text()


def test_successful_output_holds_only_ciphertext(tmp_path: Path, cert: Path) -> None:
    value = tmp_path / "v"
    value.write_text(CANARY)
    for fmt in ("yaml", "json"):
        code, out, err = run(
            "seal", "--cert", str(cert), "-n", "ns", "--name", "app", "-o", fmt,
            "--from-literal", f"a={CANARY}", "--from-file", f"b={value}",
        )  # fmt: skip
        assert (code, err) == (0, "")
        assert CANARY not in out
        assert "canary" not in out.lower()


# --- offline and fast ---------------------------------------------------------


def test_seal_with_cert_imports_neither_kopf_nor_the_kubernetes_client(cert: Path) -> None:
    argv = ["seal", "--cert", str(cert), "-n", "ns", "--name", "a", "--from-literal", "k=v"]
    assert cluster_modules_imported(argv) == []
