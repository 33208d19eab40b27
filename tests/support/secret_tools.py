"""The other secrets tools kstrata imports from: Bitnami's kubeseal and keys, SOPS and age.

Why this exists: ``kstrata import`` is only proven against what those tools
really make.  The tools are the pinned real ones (``tools/gotools/tools.toml``,
installed by ``tools/gotools/install.py``, a no-op once in the tool cache);
nothing here imitates their formats.  The one thing made here is a Bitnami
key pair *in the form its controller stores it*: a ``kubernetes.io/tls``
Secret labelled ``sealedsecrets.bitnami.com/sealed-secrets-key``, holding a
self-signed certificate (``tls.crt``) and a PKCS#1 RSA key (``tls.key``), as
``kubectl get secret -l ... -o yaml`` prints it for a backup.  Sealing to it
is always done by the real ``kubeseal --cert``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from kstrata.crypto import KeyPair, KeyRing, SealingContext, generate_keypair

REPO = Path(__file__).resolve().parents[2]
INSTALLER = REPO / "tools" / "gotools" / "install.py"
KEY_LABEL = "sealedsecrets.bitnami.com/sealed-secrets-key"


def install(name: str) -> Path:
    """The pinned tool's executable (built once per machine by the project's installer)."""
    result = subprocess.run(
        [sys.executable, str(INSTALLER), name], capture_output=True, text=True, timeout=1900
    )
    if result.returncode != 0:
        raise RuntimeError(f"tools/gotools/install.py {name} failed:\n{result.stderr}")
    return Path(result.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class BitnamiKey:
    """A sealed-secrets key pair: the key Secret as the controller stores it, and its cert."""

    secret: dict[str, Any]
    cert_pem: bytes


def bitnami_key(name: str = "sealed-secrets-keyq7x2m", *, bits: int = 4096) -> BitnamiKey:
    """An RSA key pair in the controller's own form (4096 bits, its default)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "sealed-secret"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sealed-secret"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # "RSA PRIVATE KEY", as the controller
        serialization.NoEncryption(),
    )
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": "kube-system",
            "labels": {KEY_LABEL: "active"},
        },
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": base64.b64encode(cert_pem).decode(),
            "tls.key": base64.b64encode(key_pem).decode(),
        },
    }
    return BitnamiKey(secret, cert_pem)


def write_backup(path: Path, *keys: BitnamiKey) -> Path:
    """The backup as Bitnami's docs take it: ``kubectl get secret -l KEY_LABEL -o yaml``."""
    path.write_text(
        yaml.safe_dump(
            {"apiVersion": "v1", "kind": "List", "items": [k.secret for k in keys]},
            sort_keys=False,
        )
    )
    return path


def kubeseal(
    binary: Path, cert: Path, secret: dict[str, Any], scope: str = "strict"
) -> dict[str, Any]:
    """The real ``kubeseal --cert CERT --scope SCOPE`` on a Secret manifest (offline)."""
    out = subprocess.run(
        [str(binary), "--cert", str(cert), "--scope", scope, "--format", "json"],
        input=json.dumps(secret),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    sealed: dict[str, Any] = json.loads(out.stdout)
    return sealed


def secret_manifest(
    name: str, namespace: str, values: dict[str, str], **extra: Any
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    metadata.update(extra.pop("metadata", {}))
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "stringData": values,
        **extra,
    }


# --- kstrata's side of an import ---------------------------------------------

#: When the tests' kstrata key pairs are made (key ids depend on it).
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module", name="kstrata_key")
def kstrata_key_fixture() -> KeyPair:
    """The kstrata key pair imported values are sealed to, one per test module.

    A test module takes it with ``from support.secret_tools import
    kstrata_key_fixture`` and asks for ``kstrata_key``.
    """
    return generate_keypair(created=T0)


def opened(manifest: dict[str, Any], key: KeyPair) -> dict[str, bytes]:
    """Every item of a kstrata SealedSecret, opened as the operator would open it."""
    spec, metadata = manifest["spec"], manifest["metadata"]
    ring = KeyRing([key])
    return {
        item: ring.open(
            token,
            SealingContext.bind(
                spec["scope"], item=item, namespace=metadata.get("namespace"), name=metadata["name"]
            ),
        )
        for item, token in spec["encryptedData"].items()
    }


def documents(text: str) -> list[dict[str, Any]]:
    """The YAML documents a command printed, empty ones left out."""
    return [d for d in yaml.safe_load_all(text) if d is not None]
