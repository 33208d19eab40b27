"""`kstrata seal` for several clusters (--cert twice), --raw, and the context's namespace.

Tokens are checked by opening them with each recipient's private key under
the context the operator would use.  No value may appear in any output but
as ciphertext, nor in any error.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from kstrata.crypto import (
    KeyPair,
    KeyRing,
    PublicKeyBundle,
    SealingContext,
    generate_keypair,
    parse_token,
)
from kstrata.errors import UnknownKeyError
from support.seal_cli import no_ambient_kubeconfig, run  # noqa: F401  (a fixture)

CANARY = "canary multi 9d2c s3cret!"
T0 = datetime(2025, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def staging() -> KeyPair:
    return generate_keypair(created=T0)


@pytest.fixture(scope="module")
def prod() -> KeyPair:
    return generate_keypair(created=T0)


def bundle(tmp_path: Path, name: str, *pairs: KeyPair) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(PublicKeyBundle.of(pairs).serialize())
    return path


def strict(item: str, namespace: str = "payments", name: str = "db") -> SealingContext:
    return SealingContext.bind("strict", namespace=namespace, name=name, item=item)


def kubeconfig(tmp_path: Path, current: str, contexts: dict[str, str | None]) -> Path:
    path = tmp_path / "kubeconfig"
    entries: list[dict[str, Any]] = []
    for name, namespace in contexts.items():
        context: dict[str, Any] = {"cluster": "c", "user": "u"}
        if namespace is not None:
            context["namespace"] = namespace
        entries.append({"name": name, "context": context})
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {}}],
                "contexts": entries,
                "current-context": current,
            }
        )
    )
    return path


# --- several recipients ----------------------------------------------------------


def test_two_certs_seal_every_item_for_both_clusters(
    tmp_path: Path, staging: KeyPair, prod: KeyPair
) -> None:
    older = generate_keypair(created=datetime(2024, 1, 1, tzinfo=UTC))
    a = bundle(tmp_path, "staging", older, staging)  # the newest key of each bundle is used
    b = bundle(tmp_path, "prod", prod)
    secret = tmp_path / "pw"
    secret.write_text(CANARY)
    code, out, err = run(
        "seal", "--cert", str(a), "--cert", str(b), "-n", "payments", "--name", "db",
        "--from-literal", "username=app", "--from-file", f"password={secret}",
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert CANARY not in out
    tokens = yaml.safe_load(out)["spec"]["encryptedData"]
    for item, token in tokens.items():
        assert token.startswith("kss2:")
        assert parse_token(token).key_ids == (staging.key_id, prod.key_id)
        for pair in (staging, prod):
            value = KeyRing([pair]).open(token, strict(item))
            assert value == (b"app" if item == "username" else CANARY.encode())
        with pytest.raises(UnknownKeyError):
            KeyRing([older]).open(token, strict(item))


def test_one_cert_keeps_writing_v1_tokens(tmp_path: Path, staging: KeyPair) -> None:
    code, out, _ = run(
        "seal", "--cert", str(bundle(tmp_path, "s", staging)), "-n", "payments", "--name", "db",
        "--from-literal", "k=v",
    )  # fmt: skip
    assert code == 0
    assert yaml.safe_load(out)["spec"]["encryptedData"]["k"].startswith("kss1:")


def test_the_same_key_twice_is_a_usage_error(tmp_path: Path, staging: KeyPair) -> None:
    a = bundle(tmp_path, "a", staging)
    b = bundle(tmp_path, "b", staging)
    code, out, err = run(
        "seal", "--cert", str(a), "--cert", str(b), "-n", "payments", "--name", "db",
        "--from-literal", f"k={CANARY}",
    )  # fmt: skip
    assert (code, out) == (2, "")
    assert "same newest key" in err
    assert CANARY not in err


def test_merge_into_with_two_certs_reports_both_keys(
    tmp_path: Path, staging: KeyPair, prod: KeyPair
) -> None:
    a, b = bundle(tmp_path, "a", staging), bundle(tmp_path, "b", prod)
    target = tmp_path / "sealed.yaml"
    code, out, _ = run("seal", "--cert", str(a), "-n", "payments", "--name", "db",
                       "--from-literal", "one=1")  # fmt: skip
    target.write_text(out)
    code, out, err = run("seal", "--cert", str(a), "--cert", str(b), "--merge-into", str(target),
                         "--from-literal", f"two={CANARY}")  # fmt: skip
    assert (code, err) == (0, "")
    assert staging.key_id in out
    assert prod.key_id in out
    data = yaml.safe_load(target.read_text())["spec"]["encryptedData"]
    assert data["one"].startswith("kss1:")
    assert KeyRing([prod]).open(data["two"], strict("two")) == CANARY.encode()


# --- --raw ---------------------------------------------------------------------------


def test_raw_from_a_file_prints_one_token(tmp_path: Path, staging: KeyPair) -> None:
    value = tmp_path / "value"
    value.write_bytes(CANARY.encode() + b"\n")
    code, out, err = run(
        "seal", "--raw", "--cert", str(bundle(tmp_path, "s", staging)), "-n", "payments",
        "--name", "db", "--key", "password", "--from-file", str(value),
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert out.count("\n") == 1
    token = out.strip()
    assert CANARY not in out
    # The bytes as given: a trailing newline is part of the value, as with kubectl.
    assert KeyRing([staging]).open(token, strict("password")) == CANARY.encode() + b"\n"


def test_raw_from_stdin_with_two_certs_and_namespace_scope(
    tmp_path: Path, staging: KeyPair, prod: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(CANARY.encode())))
    code, out, err = run(
        "seal", "--raw", "--cert", str(bundle(tmp_path, "a", staging)),
        "--cert", str(bundle(tmp_path, "b", prod)), "-n", "payments", "--scope", "namespace",
        "--name", "db", "--key", "token",
    )  # fmt: skip
    assert (code, err) == (0, "")
    token = out.strip()
    assert token.startswith("kss2:")
    context = SealingContext.bind("namespace", namespace="payments", item="token")
    for pair in (staging, prod):
        assert KeyRing([pair]).open(token, context) == CANARY.encode()


def test_raw_needs_no_name_where_the_scope_does_not_bind_one(
    tmp_path: Path, staging: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert = bundle(tmp_path, "s", staging)
    for scope, context in (
        ("namespace", SealingContext.bind("namespace", namespace="payments", item="k")),
        ("cluster", SealingContext.bind("cluster", item="k")),
    ):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"v")))
        code, out, err = run("seal", "--raw", "--cert", str(cert), "-n", "payments",
                             "--scope", scope, "--key", "k")  # fmt: skip
        assert (code, err) == (0, ""), scope
        assert KeyRing([staging]).open(out.strip(), context) == b"v"
    code, _, err = run("seal", "--raw", "--cert", str(cert), "-n", "payments", "--key", "k")
    assert code == 2
    assert "--name is required" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--key", "k", "--from-literal", f"k={CANARY}"], "--raw cannot be combined"),
        (["--key", "k", "-f", "secret.yaml"], "--raw cannot be combined"),
        (["--key", "k", "--env", "prod"], "--raw cannot be combined"),
        ([], "--raw needs --key"),
        (["--key", "k", "--from-file", "a", "--from-file", "b"], "once"),
        (["--key", "bad key!"], "not a valid Secret data key"),
    ],
)
def test_raw_usage_errors(tmp_path: Path, staging: KeyPair, extra: list[str], message: str) -> None:
    cert = bundle(tmp_path, "s", staging)
    code, out, err = run("seal", "--raw", "--cert", str(cert), "-n", "ns", "--name", "db", *extra)
    assert out == ""
    assert code in (1, 2)
    assert message in err
    assert CANARY not in err


def test_key_without_raw_is_refused(tmp_path: Path, staging: KeyPair) -> None:
    code, _, err = run("seal", "--cert", str(bundle(tmp_path, "s", staging)), "-n", "ns",
                       "--name", "db", "--key", "k", "--from-literal", "k=v")  # fmt: skip
    assert code == 2
    assert "--key is for --raw" in err


def test_raw_with_cert_imports_neither_kopf_nor_the_kubernetes_client(
    tmp_path: Path, staging: KeyPair
) -> None:
    cert = bundle(tmp_path, "s", staging)
    probe = (
        "import sys\n"
        "from kstrata.cli.main import main\n"
        f"argv = ['seal', '--raw', '--cert', {str(cert)!r}, '-n', 'ns', '--name', 'a', "
        "'--key', 'k']\n"
        "code = main(argv)\n"
        "assert code == 0, code\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kopf', 'kubernetes')\n"
        "             or m.startswith(('kstrata.kube', 'kstrata.controller'))), file=sys.stderr)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    result = subprocess.run(
        [sys.executable, "-c", probe], input=b"v", capture_output=True, check=True, env=env
    )
    assert result.stdout.decode().startswith("kss1:")
    assert result.stderr.decode().strip() == "[]"


# --- the namespace from the kubeconfig context -------------------------------------


def test_namespace_defaults_to_the_contexts(tmp_path: Path, staging: KeyPair) -> None:
    cert = bundle(tmp_path, "s", staging)
    config = kubeconfig(tmp_path, "dev", {"dev": "team-a", "ops": "team-b", "bare": None})
    for extra, expected in (
        ([], "team-a"),
        (["--context", "ops"], "team-b"),
        (["--context", "bare"], "default"),  # kubectl's default
        (["-n", "explicit"], "explicit"),  # -n wins
    ):
        code, out, err = run("seal", "--kubeconfig", str(config), *extra, "--cert", str(cert),
                             "--name", "db", "--from-literal", "k=v")  # fmt: skip
        assert (code, err) == (0, ""), extra
        manifest = yaml.safe_load(out)
        assert manifest["metadata"]["namespace"] == expected
        token = manifest["spec"]["encryptedData"]["k"]
        assert KeyRing([staging]).open(token, strict("k", namespace=expected)) == b"v"


def test_a_secret_manifests_namespace_wins_over_the_context(
    tmp_path: Path, staging: KeyPair
) -> None:
    config = kubeconfig(tmp_path, "dev", {"dev": "team-a"})
    secret = tmp_path / "secret.yaml"
    secret.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "db", "namespace": "own"},
                "stringData": {"k": "v"},
            }
        )
    )
    code, out, _ = run("seal", "--kubeconfig", str(config), "--cert",
                       str(bundle(tmp_path, "s", staging)), "-f", str(secret))  # fmt: skip
    assert code == 0
    assert yaml.safe_load(out)["metadata"]["namespace"] == "own"


def test_kubectl_dry_run_output_without_namespace_takes_the_contexts(
    tmp_path: Path, staging: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What `kubectl create secret generic db --from-literal=... --dry-run=client -o yaml` prints.
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db",
              "creationTimestamp": None}, "data": {"k": "dg=="}}  # fmt: skip
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(yaml.safe_dump(secret).encode())))
    config = kubeconfig(tmp_path, "dev", {"dev": "team-a"})
    code, out, err = run("seal", "--kubeconfig", str(config), "--cert",
                         str(bundle(tmp_path, "s", staging)), "-f", "-")  # fmt: skip
    assert (code, err) == (0, "")
    assert yaml.safe_load(out)["metadata"]["namespace"] == "team-a"


def test_no_kubeconfig_still_asks_for_the_namespace(tmp_path: Path, staging: KeyPair) -> None:
    code, _, err = run("seal", "--cert", str(bundle(tmp_path, "s", staging)), "--name", "db",
                       "--from-literal", "k=v")  # fmt: skip
    assert code == 2
    assert "--namespace is required" in err


def test_an_unknown_context_is_a_usage_error(tmp_path: Path, staging: KeyPair) -> None:
    config = kubeconfig(tmp_path, "dev", {"dev": "team-a"})
    code, _, err = run("seal", "--kubeconfig", str(config), "--context", "nope", "--cert",
                       str(bundle(tmp_path, "s", staging)), "--name", "db",
                       "--from-literal", "k=v")  # fmt: skip
    assert code == 2
    assert "context 'nope' does not exist; its contexts: dev" in err
