"""The HPKE cipher suites kstrata seals with, and how their keys become bytes.

Two suites exist, chosen per key pair (never per token by the sender):

* ``x25519`` (default): DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM.
* ``mlkem768-x25519``: the post-quantum hybrid KEM ML-KEM-768 + X25519 with
  HKDF-SHA256 and AES-256-GCM, for clusters that want harvest-now-decrypt-later
  protection.

This module owns everything suite-specific: wire id, HPKE parameters, raw key
encodings, and the key id derivation.  Adding a suite means adding one entry
here and a format version bump only if the token layout changes.

Boundary: no token text, no JSON, no key ring; pyca objects never leave the
crypto package.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.hpke import (
    AEAD,
    KDF,
    KEM,
    MLKEM768X25519PrivateKey,
    MLKEM768X25519PublicKey,
)
from cryptography.hazmat.primitives.hpke import Suite as HpkeSuite

from kstrata.crypto.context import length_prefixed

HpkePrivateKey = x25519.X25519PrivateKey | MLKEM768X25519PrivateKey
HpkePublicKey = x25519.X25519PublicKey | MLKEM768X25519PublicKey

#: Domain-separation label for key ids.
KEY_ID_LABEL = b"kstrata.dev/key-id/v1"
KEY_ID_BYTES = 16
AEAD_TAG_BYTES = 16

_X25519_BYTES = 32
_MLKEM768_SEED_BYTES = 64
_MLKEM768_PUBLIC_BYTES = 1184


class Suite(StrEnum):
    """A sealing suite, named as it appears in key files and on the command line."""

    X25519 = "x25519"
    MLKEM768_X25519 = "mlkem768-x25519"


DEFAULT_SUITE = Suite.X25519


@dataclass(frozen=True)
class SuiteSpec:
    """The fixed parameters of one suite."""

    suite: Suite
    #: One byte in the token header and in ``info``.
    wire_id: int
    hpke: HpkeSuite
    enc_bytes: int
    public_key_bytes: int
    private_key_bytes: int


_SPECS: dict[Suite, SuiteSpec] = {
    Suite.X25519: SuiteSpec(
        suite=Suite.X25519,
        wire_id=0x01,
        hpke=HpkeSuite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM),
        enc_bytes=KEM.X25519.enc_length(),
        public_key_bytes=_X25519_BYTES,
        private_key_bytes=_X25519_BYTES,
    ),
    Suite.MLKEM768_X25519: SuiteSpec(
        suite=Suite.MLKEM768_X25519,
        wire_id=0x02,
        hpke=HpkeSuite(KEM.MLKEM768_X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM),
        enc_bytes=KEM.MLKEM768_X25519.enc_length(),
        # ML-KEM-768 encapsulation key || X25519 public key (X-Wing order).
        public_key_bytes=_MLKEM768_PUBLIC_BYTES + _X25519_BYTES,
        # ML-KEM-768 64-byte seed (d || z) || X25519 private key.
        private_key_bytes=_MLKEM768_SEED_BYTES + _X25519_BYTES,
    ),
}
_BY_WIRE_ID: dict[int, SuiteSpec] = {spec.wire_id: spec for spec in _SPECS.values()}

#: The largest ``enc`` of any suite; bounds the token length.
MAX_ENC_BYTES = max(spec.enc_bytes for spec in _SPECS.values())


def spec(suite: Suite) -> SuiteSpec:
    return _SPECS[suite]


def spec_by_wire_id(wire_id: int) -> SuiteSpec | None:
    return _BY_WIRE_ID.get(wire_id)


def key_id_bytes(suite: Suite, public_key: bytes) -> bytes:
    """SHA-256(LP(label) || suite wire id || public key)[:16].

    The suite is hashed in so the same X25519 component can never produce the
    same id under two suites.
    """
    digest = hashlib.sha256(
        length_prefixed(KEY_ID_LABEL) + bytes([_SPECS[suite].wire_id]) + public_key
    ).digest()
    return digest[:KEY_ID_BYTES]


def generate_private_bytes(suite: Suite) -> bytes:
    """Fresh private key material in the raw encoding of ``suite``."""
    if suite is Suite.X25519:
        return x25519.X25519PrivateKey.generate().private_bytes_raw()
    return (
        mlkem.MLKEM768PrivateKey.generate().private_bytes_raw()
        + x25519.X25519PrivateKey.generate().private_bytes_raw()
    )


def load_private(suite: Suite, raw: bytes) -> tuple[HpkePrivateKey, bytes]:
    """Build the pyca private key and the raw public key from raw private bytes.

    Raises ``ValueError`` (message free of key material) if ``raw`` is unusable.
    """
    if len(raw) != _SPECS[suite].private_key_bytes:
        raise ValueError("private key has the wrong length for its suite")
    if suite is Suite.X25519:
        key = x25519.X25519PrivateKey.from_private_bytes(raw)
        return key, key.public_key().public_bytes_raw()
    ml = mlkem.MLKEM768PrivateKey.from_seed_bytes(raw[:_MLKEM768_SEED_BYTES])
    xk = x25519.X25519PrivateKey.from_private_bytes(raw[_MLKEM768_SEED_BYTES:])
    public = ml.public_key().public_bytes_raw() + xk.public_key().public_bytes_raw()
    return MLKEM768X25519PrivateKey(ml, xk), public


def load_public(suite: Suite, raw: bytes) -> HpkePublicKey:
    """Build the pyca public key from its raw encoding; ``ValueError`` if invalid."""
    if len(raw) != _SPECS[suite].public_key_bytes:
        raise ValueError("public key has the wrong length for its suite")
    if suite is Suite.X25519:
        return x25519.X25519PublicKey.from_public_bytes(raw)
    ml = mlkem.MLKEM768PublicKey.from_public_bytes(raw[:_MLKEM768_PUBLIC_BYTES])
    xk = x25519.X25519PublicKey.from_public_bytes(raw[_MLKEM768_PUBLIC_BYTES:])
    return MLKEM768X25519PublicKey(ml, xk)
