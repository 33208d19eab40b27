"""Keyed fingerprints of secret values, for diffs and history.

When a SealedSecret changes, reviewers need to know whether a value changed or
was merely re-sealed (every seal produces a new token).  A plain hash would
answer that but also let anyone confirm a guessed value, so the fingerprint is
an HMAC-SHA256 under a key only the operator holds, over the value's location
(namespace, name, item) and the value.  Binding the location means the same
password in two Secrets does not show up as the same fingerprint.

Output: ``hmac-sha256:`` + 16 bytes (truncated MAC) in unpadded base64url.
128 bits is ample for telling changes apart; nobody verifies these as MACs.

Boundary: independent of the sealing format; it shares only the context
validation and the length-prefixed encoding.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import NoReturn

from kstrata.crypto import _strict
from kstrata.crypto.context import check_item, check_name, check_namespace, length_prefixed
from kstrata.errors import InputLimitError, SealingError

FINGERPRINT_PREFIX = "hmac-sha256:"
FINGERPRINT_LABEL = b"kstrata.dev/fingerprint/v1"
FINGERPRINT_KEY_FORMAT = "kstrata.dev/fingerprint-key/v1"
FINGERPRINT_KEY_BYTES = 32
SOURCE_FINGERPRINT_LABEL = b"kstrata.dev/source-fingerprint/v1"
#: Characters of a source fingerprint (base64url of 9 MAC bytes: 72 bits).
SOURCE_FINGERPRINT_CHARS = 12
_FINGERPRINT_MAC_BYTES = 16
_MAX_KEY_ENTRY_BYTES = 1024
_KEY_MEMBERS = frozenset({"format", "created", "key"})


def _key_error(message: str) -> SealingError:
    return SealingError(message, reason="InvalidKeyMaterial")


@dataclass(frozen=True, eq=False)
class FingerprintKey:
    """The operator's HMAC key for fingerprints (32 random bytes)."""

    key: bytes = field(repr=False)
    created: datetime

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes) or len(self.key) != FINGERPRINT_KEY_BYTES:
            raise _key_error(f"a fingerprint key is {FINGERPRINT_KEY_BYTES} bytes")
        try:
            object.__setattr__(self, "created", _strict.normalize_time(self.created))
        except (ValueError, AttributeError, TypeError):
            raise _key_error("created must be a timezone-aware datetime") from None

    @classmethod
    def generate(cls, *, created: datetime) -> FingerprintKey:
        return cls(secrets.token_bytes(FINGERPRINT_KEY_BYTES), created)

    def to_secret_entry(self) -> bytes:
        """A small JSON document for one entry of the operator's key Secret."""
        document = {
            "format": FINGERPRINT_KEY_FORMAT,
            "created": _strict.format_time(self.created),
            "key": _strict.b64_encode(self.key),
        }
        return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8")

    @classmethod
    def from_secret_entry(cls, data: bytes | str) -> FingerprintKey:
        if len(data) > _MAX_KEY_ENTRY_BYTES:
            raise InputLimitError(f"fingerprint key entry exceeds {_MAX_KEY_ENTRY_BYTES} bytes")
        try:
            doc: dict[str, object] = _strict.expect_object(
                _strict.loads_json(data), _KEY_MEMBERS, "fingerprint key"
            )
            _strict.expect_const(doc, "format", FINGERPRINT_KEY_FORMAT, "fingerprint key")
            created = _strict.parse_time(_strict.expect_str(doc, "created", "fingerprint key"))
            key = _strict.b64_decode(_strict.expect_str(doc, "key", "fingerprint key"))
        except ValueError as exc:
            raise _key_error(f"invalid fingerprint key entry: {exc}") from None
        return cls(key, created)

    def __reduce__(self) -> NoReturn:
        raise TypeError("FingerprintKey cannot be pickled")


def fingerprint(key: FingerprintKey, *, namespace: str, name: str, item: str, value: bytes) -> str:
    """The keyed fingerprint of ``value`` stored at namespace/name[item]."""
    if not isinstance(key, FingerprintKey):
        raise _key_error("fingerprint needs a FingerprintKey")
    check_namespace(namespace)
    check_name(name)
    check_item(item)
    if not isinstance(value, bytes | bytearray | memoryview):
        raise SealingError("value must be bytes", reason="InvalidSealingInput")
    mac = hmac.new(key.key, digestmod=hashlib.sha256)
    mac.update(
        length_prefixed(
            FINGERPRINT_LABEL,
            namespace.encode("ascii"),
            name.encode("ascii"),
            item.encode("ascii"),
        )
    )
    # The value is last and the fields before it are length-prefixed, so no
    # prefix is needed for it and values up to any size work.
    mac.update(value)
    return FINGERPRINT_PREFIX + _strict.b64url_encode(mac.digest()[:_FINGERPRINT_MAC_BYTES])


def fingerprints_equal(a: str, b: str) -> bool:
    """Compare two fingerprints in constant time (for equal lengths)."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def verify_fingerprint(
    key: FingerprintKey, expected: str, *, namespace: str, name: str, item: str, value: bytes
) -> bool:
    """Whether ``expected`` is the fingerprint of ``value`` at namespace/name[item]."""
    actual = fingerprint(key, namespace=namespace, name=name, item=item, value=value)
    return fingerprints_equal(actual, expected)


def source_fingerprint(
    key: FingerprintKey, *, namespace: str, kind: str, name: str, entries: Mapping[str, bytes]
) -> str:
    """A short keyed fingerprint of a whole ConfigMap's or Secret's data (reload records).

    Why: a workload that follows a ConfigMap or Secret kstrata does not produce
    records what it runs as this fingerprint (``configmap/NAME=<fp>``), on the
    workload where anyone who can read Deployments sees it.  Keyed with the
    operator's fingerprint key, it tells "changed" from "unchanged" without
    letting a reader confirm a guessed value; bound to namespace, kind and
    name so the same data elsewhere gives another fingerprint.  Every entry's
    key and value are length-prefixed (values up to any size), in key order.
    72 bits: change detection only, nobody verifies it as a MAC.
    """
    if not isinstance(key, FingerprintKey):
        raise _key_error("source_fingerprint needs a FingerprintKey")
    check_namespace(namespace)
    check_name(name)
    mac = hmac.new(key.key, digestmod=hashlib.sha256)
    mac.update(
        length_prefixed(
            SOURCE_FINGERPRINT_LABEL,
            namespace.encode("ascii"),
            kind.encode("utf-8"),
            name.encode("ascii"),
        )
    )
    for item in sorted(entries):
        value = entries[item]
        if not isinstance(value, bytes | bytearray | memoryview):
            raise SealingError("value must be bytes", reason="InvalidSealingInput")
        encoded = item.encode("utf-8")
        mac.update(struct.pack(">Q", len(encoded)) + encoded)
        mac.update(struct.pack(">Q", len(value)))
        mac.update(value)
    return _strict.b64url_encode(mac.digest())[:SOURCE_FINGERPRINT_CHARS]
