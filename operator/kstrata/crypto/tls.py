"""Self-signed TLS for the admission webhook, made with ``cryptography``.

Why here and not kopf's own: kopf's self-signed path depends on ``oscrypto``,
which fails with OpenSSL 3.  The operator makes a short-lived CA and a serving
certificate at start-up (unless certificates are mounted, e.g. by
cert-manager) and publishes the CA in its ValidatingWebhookConfiguration.
Pure: it writes files and returns paths; it knows nothing of Kubernetes.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kstrata.files import read_regular

#: A CA bundle is a few KiB; a mounted file is read up to this.
_MAX_PEM_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ServingCertificate:
    """Files a TLS server needs, plus the CA bundle clients must trust."""

    certfile: Path
    keyfile: Path
    ca_pem: bytes


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def issue_serving_certificate(
    directory: Path, hosts: list[str], *, valid_days: int = 365
) -> ServingCertificate:
    """A fresh CA and a certificate for ``hosts`` (DNS names or IPs), written to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    until = now + dt.timedelta(days=valid_days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kstrata-webhook-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    certfile, keyfile = directory / "tls.crt", directory / "tls.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + ca_pem)
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    keyfile.chmod(0o600)
    (directory / "ca.crt").write_bytes(ca_pem)
    return ServingCertificate(certfile=certfile, keyfile=keyfile, ca_pem=ca_pem)


def load_serving_certificate(directory: Path) -> ServingCertificate:
    """Certificates mounted by someone else (cert-manager): tls.crt, tls.key, ca.crt."""
    return ServingCertificate(
        certfile=directory / "tls.crt",
        keyfile=directory / "tls.key",
        ca_pem=read_regular(directory / "ca.crt", _MAX_PEM_BYTES),
    )
