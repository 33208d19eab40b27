"""Open values sealed by Bitnami's sealed-secrets, for ``kstrata import sealedsecret``.

Why this exists: teams moving from Bitnami sealed-secrets have SealedSecrets
in Git sealed to their controller's RSA keys.  With a backup of those keys
(the controller's ``kubernetes.io/tls`` Secrets) each value is opened here, in
memory, and handed straight to kstrata's own sealing; it is never written out.

The format, as Bitnami documents it (docs/developer/crypto.md of
bitnami-labs/sealed-secrets), implemented here from that description:

* a value is ``base64(len || rsa || aes)``, standard base64 with padding;
* ``len`` is the length of ``rsa`` as a big-endian 16-bit integer;
* ``rsa`` is a fresh 32-byte session key encrypted with RSA-OAEP (SHA-256,
  MGF1 with SHA-256) to the controller's public key, with the scope's label
  as the OAEP label: ``namespace/name`` for strict scope, ``namespace`` for
  namespace-wide, empty for cluster-wide;
* ``aes`` is the value encrypted with AES-256-GCM under that session key,
  with a 12-byte all-zero nonce (the key is used once) and no AAD.

Pure: no kopf, no Kubernetes client, no files.  As in the rest of
:mod:`kstrata.crypto`, every cryptographic failure (wrong key, wrong scope,
tampering) is one opaque :class:`~kstrata.errors.UnsealError`; only structure
that is public (bad base64, a length that does not fit) is a
:class:`~kstrata.errors.TokenFormatError`.  No message quotes a value, a
token or a key.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kstrata.crypto.context import Scope
from kstrata.errors import SealingError, TokenFormatError, UnsealError

__all__ = [
    "CLUSTER_WIDE_ANNOTATION",
    "NAMESPACE_WIDE_ANNOTATION",
    "BitnamiKey",
    "BitnamiScope",
    "encryption_label",
    "load_private_key",
    "open_value",
]

#: The SealedSecret annotations that choose a scope other than strict.
CLUSTER_WIDE_ANNOTATION: Final = "sealedsecrets.bitnami.com/cluster-wide"
NAMESPACE_WIDE_ANNOTATION: Final = "sealedsecrets.bitnami.com/namespace-wide"

_SESSION_KEY_BYTES: Final = 32
_NONCE: Final = bytes(12)
_LENGTH_BYTES: Final = 2
#: The largest RSA key any sealed-secrets controller makes is far below this
#: (4096 bits by default); a private key PEM above it is refused unread.
_MAX_KEY_PEM_BYTES: Final = 64 * 1024
#: A sealed value is at most a Secret's size (1 MiB) plus the RSA block, in base64.
MAX_VALUE_CHARS: Final = 2 * 1024 * 1024


class BitnamiScope(StrEnum):
    """Bitnami's three scopes, and the kstrata scope each one is imported as."""

    STRICT = "strict"
    NAMESPACE_WIDE = "namespace-wide"
    CLUSTER_WIDE = "cluster-wide"

    @classmethod
    def from_annotations(cls, annotations: dict[str, str]) -> BitnamiScope:
        # As Bitnami's controller reads them: cluster-wide wins over namespace-wide.
        if annotations.get(CLUSTER_WIDE_ANNOTATION) == "true":
            return cls.CLUSTER_WIDE
        if annotations.get(NAMESPACE_WIDE_ANNOTATION) == "true":
            return cls.NAMESPACE_WIDE
        return cls.STRICT

    @property
    def kstrata_scope(self) -> Scope:
        """strict -> strict (namespace, name, and also the item key);
        namespace-wide -> namespace (namespace and item key);
        cluster-wide -> cluster (item key only).  kstrata always binds the
        item key too, which Bitnami never does: an imported value opens only
        under the key it was imported as.
        """
        return {
            BitnamiScope.STRICT: Scope.STRICT,
            BitnamiScope.NAMESPACE_WIDE: Scope.NAMESPACE,
            BitnamiScope.CLUSTER_WIDE: Scope.CLUSTER,
        }[self]


def encryption_label(scope: BitnamiScope, namespace: str, name: str) -> bytes:
    """The RSA-OAEP label a value of this scope was sealed with."""
    if scope is BitnamiScope.CLUSTER_WIDE:
        return b""
    if scope is BitnamiScope.NAMESPACE_WIDE:
        return namespace.encode()
    return f"{namespace}/{name}".encode()


@dataclass(frozen=True)
class BitnamiKey:
    """One of the controller's RSA private keys, with a public id to report.

    ``key_id`` is the first 16 hex digits of SHA-256 over the public key's
    DER encoding: it says which backup key opened a value, and reveals nothing.
    """

    key_id: str
    private_key: rsa.RSAPrivateKey = field(repr=False)


def load_private_key(pem: bytes) -> BitnamiKey:
    """The key of a ``tls.key`` entry (PKCS#1 ``RSA PRIVATE KEY`` or PKCS#8 PEM)."""
    if len(pem) > _MAX_KEY_PEM_BYTES:
        raise SealingError("the private key entry is too large", reason="InvalidKey")
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        # cryptography's message may describe the content: not repeated.
        raise SealingError("not a PEM private key", reason="InvalidKey") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SealingError("not an RSA private key", reason="InvalidKey")
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(public)
    return BitnamiKey(digest.finalize().hex()[:16], key)


def _split(value: str) -> tuple[bytes, bytes]:
    if not isinstance(value, str) or len(value) > MAX_VALUE_CHARS:
        raise TokenFormatError("the sealed value is not a base64 string of a sealed size")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise TokenFormatError("the sealed value is not valid base64") from None
    if len(raw) < _LENGTH_BYTES:
        raise TokenFormatError("the sealed value is truncated")
    length = int.from_bytes(raw[:_LENGTH_BYTES], "big")
    # GCM's tag is 16 bytes: an empty value still leaves a 16-byte AES part.
    if length == 0 or len(raw) < _LENGTH_BYTES + length + 16:
        raise TokenFormatError("the sealed value is truncated")
    return raw[_LENGTH_BYTES : _LENGTH_BYTES + length], raw[_LENGTH_BYTES + length :]


def open_value(value: str, keys: Sequence[BitnamiKey], label: bytes) -> tuple[bytes, str]:
    """The plaintext of one ``encryptedData`` value and the id of the key that opened it.

    Every key is tried, as Bitnami's controller does (a backup holds the
    current key and every rotated one).
    """
    wrapped, sealed = _split(value)
    oaep = padding.OAEP(
        mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=label
    )
    for key in keys:
        if key.private_key.key_size // 8 != len(wrapped):
            continue
        try:
            session = key.private_key.decrypt(wrapped, oaep)
        except ValueError:
            continue
        if len(session) != _SESSION_KEY_BYTES:
            continue
        try:
            return AESGCM(session).decrypt(_NONCE, sealed, None), key.key_id
        except InvalidTag:
            continue
    raise UnsealError()
