"""kstrata's sealing format: HPKE tokens bound to where they may be opened.

This package is pure: it turns plaintext into YAML-safe tokens and back,
manages key pairs, key rings and the public key bundle, and computes keyed
fingerprints.  It never talks to the cluster and imports nothing from kstrata
but ``kstrata.errors``; the app layer reads and writes the key Secret and the
public key ConfigMap and hands their contents to the parsers here.

The format is specified in docs/crypto.md.  Public surface::

    seal(plaintext, recipient, context) -> str
    seal_multi(plaintext, recipients, context) -> str   (one value, several clusters)
    KeyRing.open(token, context) -> bytes
    generate_keypair(suite=..., created=...) -> KeyPair
    PublicKeyBundle.parse(...) / .serialize() / .newest
    fingerprint(key, namespace=..., name=..., item=..., value=...) -> str
"""

from __future__ import annotations

from kstrata.crypto.context import Scope, SealingContext
from kstrata.crypto.fingerprint import (
    FingerprintKey,
    fingerprint,
    fingerprints_equal,
    verify_fingerprint,
)
from kstrata.crypto.keyring import KeyRing
from kstrata.crypto.keys import KeyPair, PublicKey, PublicKeyBundle, generate_keypair
from kstrata.crypto.sealing import (
    MAX_PLAINTEXT_BYTES,
    MAX_RECIPIENTS,
    MAX_TOKEN_CHARS,
    Recipient,
    TokenHeader,
    parse_token,
    seal,
    seal_multi,
)
from kstrata.crypto.suites import DEFAULT_SUITE, Suite

__all__ = [
    "DEFAULT_SUITE",
    "MAX_PLAINTEXT_BYTES",
    "MAX_RECIPIENTS",
    "MAX_TOKEN_CHARS",
    "FingerprintKey",
    "KeyPair",
    "KeyRing",
    "PublicKey",
    "PublicKeyBundle",
    "Recipient",
    "Scope",
    "SealingContext",
    "Suite",
    "TokenHeader",
    "fingerprint",
    "fingerprints_equal",
    "generate_keypair",
    "parse_token",
    "seal",
    "seal_multi",
    "verify_fingerprint",
]
