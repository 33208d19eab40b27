"""Sealing key pairs, their storage encodings, and the public key bundle.

Two stored forms exist and both are parsed strictly and with size bounds,
because both cross a trust boundary:

* A private key entry: one small JSON document per key pair, stored as one
  entry of the operator's key Secret.  It carries the suite and creation time
  next to the key, so a key ring can be rebuilt from the Secret alone.
* The public key bundle: the list of public keys that ``kstrata seal --cert``
  reads and the operator publishes in the ConfigMap
  ``kstrata-sealing-public-keys``.  Anyone may hold it.

Boundary: no token handling here (``sealing``) and no key ring (``keyring``).
Key rotation policy (when to generate) belongs to the app layer; this module
only makes ``created`` available so the newest key can be chosen.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import NoReturn, TypeVar

from kstrata.crypto import _strict, suites
from kstrata.crypto.suites import HpkePrivateKey, HpkePublicKey, Suite
from kstrata.errors import InputLimitError, SealingError, UnknownKeyError

KEY_ENTRY_FORMAT = "kstrata.dev/sealing-key/v1"
BUNDLE_FORMAT = "kstrata.dev/sealing-public-keys/v1"

#: A hybrid private entry is about 300 bytes; anything far larger is not ours.
MAX_KEY_ENTRY_BYTES = 4 * 1024
#: Sixty-four hybrid keys fit in about 110 KiB.
MAX_BUNDLE_BYTES = 256 * 1024
MAX_BUNDLE_KEYS = 64

_ENTRY_MEMBERS = frozenset({"format", "keyId", "suite", "created", "privateKey"})
_BUNDLE_MEMBERS = frozenset({"format", "keys"})
_BUNDLE_KEY_MEMBERS = frozenset({"keyId", "suite", "created", "publicKey"})


def _bounded_bytes(data: bytes | str, limit: int, what: str) -> bytes:
    # A str is measured before encoding (cheap) and again after (UTF-8 may grow it).
    if len(data) > limit:
        raise InputLimitError(f"{what} exceeds {limit} bytes")
    if isinstance(data, str):
        try:
            data = data.encode("utf-8")
        except UnicodeEncodeError:
            raise _key_error(f"{what} is not valid text") from None
        if len(data) > limit:
            raise InputLimitError(f"{what} exceeds {limit} bytes")
    return bytes(data)


def _key_error(message: str) -> SealingError:
    return SealingError(message, reason="InvalidKeyMaterial")


def _bundle_error(message: str) -> SealingError:
    return SealingError(message, reason="InvalidPublicKeyBundle")


def _parse_suite(text: str, what: str) -> Suite:
    try:
        return Suite(text)
    except ValueError:
        allowed = ", ".join(s.value for s in Suite)
        raise _strict.Malformed(f"{what}.suite must be one of {allowed}") from None


def _normalized_created(when: datetime) -> datetime:
    if not isinstance(when, datetime):
        raise _key_error("created must be a datetime")
    try:
        return _strict.normalize_time(when)
    except ValueError as exc:
        raise _key_error(f"created: {exc}") from None


@dataclass(frozen=True)
class PublicKey:
    """A recipient public key: what sealing needs, safe to publish.

    ``created`` is normalised to UTC whole seconds so a key survives a round
    trip through the bundle unchanged.
    """

    suite: Suite
    # Not secret, but 1.2 KiB for the hybrid suite: kept out of repr for legibility.
    public_bytes: bytes = field(repr=False)
    created: datetime
    key_id: str = field(init=False)
    _hpke: HpkePublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.suite, Suite):
            raise _key_error("suite must be a kstrata Suite")
        try:
            hpke_key = suites.load_public(self.suite, bytes(self.public_bytes))
        except ValueError:
            raise _key_error(f"public key is not a valid {self.suite.value} key") from None
        object.__setattr__(self, "public_bytes", bytes(self.public_bytes))
        object.__setattr__(self, "created", _normalized_created(self.created))
        object.__setattr__(self, "_hpke", hpke_key)
        object.__setattr__(self, "key_id", suites.key_id_bytes(self.suite, self.public_bytes).hex())

    @property
    def hpke_key(self) -> HpkePublicKey:
        """The pyca key object (for the sealing module)."""
        return self._hpke


@dataclass(frozen=True, eq=False)
class KeyPair:
    """A private sealing key with its public half.

    Equality is identity (``eq=False``): comparing private keys byte by byte
    is never needed, and compare ``key_id`` when identity of the key matters.
    """

    suite: Suite
    private_bytes: bytes = field(repr=False)
    created: datetime
    public: PublicKey = field(init=False)
    _hpke: HpkePrivateKey = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.suite, Suite):
            raise _key_error("suite must be a kstrata Suite")
        raw = bytes(self.private_bytes)
        try:
            hpke_key, public_raw = suites.load_private(self.suite, raw)
        except ValueError:
            # pyca's message is about lengths only, but stay fixed and obviously safe.
            raise _key_error(f"private key is not a valid {self.suite.value} key") from None
        created = _normalized_created(self.created)
        object.__setattr__(self, "private_bytes", raw)
        object.__setattr__(self, "created", created)
        object.__setattr__(self, "_hpke", hpke_key)
        object.__setattr__(self, "public", PublicKey(self.suite, public_raw, created))

    @property
    def key_id(self) -> str:
        return self.public.key_id

    @property
    def hpke_key(self) -> HpkePrivateKey:
        """The pyca key object (for the sealing module)."""
        return self._hpke

    @property
    def secret_entry_name(self) -> str:
        """A Secret data key for this key pair's entry (valid under Kubernetes rules)."""
        return f"{self.key_id}.json"

    def to_secret_entry(self) -> bytes:
        """The JSON document stored as this key's entry in the key Secret."""
        document = {
            "format": KEY_ENTRY_FORMAT,
            "keyId": self.key_id,
            "suite": self.suite.value,
            "created": _strict.format_time(self.created),
            "privateKey": _strict.b64_encode(self.private_bytes),
        }
        return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8")

    @classmethod
    def from_secret_entry(cls, data: bytes | str) -> KeyPair:
        """Parse one key Secret entry; ``keyId`` must match the key it holds.

        Raises ``InputLimitError`` if the entry is too large and
        ``SealingError`` (reason ``InvalidKeyMaterial``) if it is malformed.
        """
        data = _bounded_bytes(data, MAX_KEY_ENTRY_BYTES, "sealing key entry")
        try:
            doc = _strict.expect_object(_strict.loads_json(data), _ENTRY_MEMBERS, "key entry")
            _strict.expect_const(doc, "format", KEY_ENTRY_FORMAT, "key entry")
            suite = _parse_suite(_strict.expect_str(doc, "suite", "key entry"), "key entry")
            created = _strict.parse_time(_strict.expect_str(doc, "created", "key entry"))
            claimed_id = _strict.expect_str(doc, "keyId", "key entry")
            raw = _strict.b64_decode(_strict.expect_str(doc, "privateKey", "key entry"))
        except ValueError as exc:
            raise _key_error(f"invalid sealing key entry: {exc}") from None
        pair = cls(suite, raw, created)
        if claimed_id != pair.key_id:
            # The claimed id is unverified input: name only the one we computed.
            raise _key_error(f"sealing key entry does not match its key id (key is {pair.key_id})")
        return pair

    def __reduce__(self) -> NoReturn:
        # Private keys are not meant to be pickled into caches or task queues.
        raise TypeError("KeyPair cannot be pickled")


def generate_keypair(*, suite: Suite = suites.DEFAULT_SUITE, created: datetime) -> KeyPair:
    """A fresh key pair; ``created`` (timezone-aware) orders keys for sealing."""
    if not isinstance(suite, Suite):
        raise _key_error("suite must be a kstrata Suite")
    return KeyPair(suite, suites.generate_private_bytes(suite), created)


_K = TypeVar("_K", "PublicKey", "KeyPair")


def _newest(keys: Iterable[_K]) -> _K | None:
    # Ties on created (same second) are broken by key id so every replica agrees.
    return max(keys, key=lambda k: (k.created, k.key_id), default=None)


@dataclass(frozen=True)
class PublicKeyBundle:
    """The published public keys; the newest seals, the others are kept for reference.

    Key ids are unique within a bundle.  Order is normalised (oldest first) so
    serialising is deterministic.
    """

    keys: tuple[PublicKey, ...]

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.keys, key=lambda k: (k.created, k.key_id)))
        if len({k.key_id for k in ordered}) != len(ordered):
            raise _bundle_error("public key bundle lists a key id twice")
        if len(ordered) > MAX_BUNDLE_KEYS:
            raise InputLimitError(f"public key bundle holds more than {MAX_BUNDLE_KEYS} keys")
        object.__setattr__(self, "keys", ordered)

    @classmethod
    def of(cls, keys: Iterable[PublicKey | KeyPair]) -> PublicKeyBundle:
        return cls(tuple(k.public if isinstance(k, KeyPair) else k for k in keys))

    @property
    def newest(self) -> PublicKey:
        """The key to seal new values to."""
        newest = _newest(self.keys)
        if newest is None:
            raise UnknownKeyError("the public key bundle holds no keys")
        return newest

    def get(self, key_id: str) -> PublicKey:
        for key in self.keys:
            if key.key_id == key_id:
                return key
        raise UnknownKeyError(f"no public key with id {_printable_key_id(key_id)}")

    def __iter__(self) -> Iterator[PublicKey]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)

    def serialize(self) -> str:
        """JSON text for the ConfigMap and ``--cert`` files."""
        document = {
            "format": BUNDLE_FORMAT,
            "keys": [
                {
                    "keyId": key.key_id,
                    "suite": key.suite.value,
                    "created": _strict.format_time(key.created),
                    "publicKey": _strict.b64_encode(key.public_bytes),
                }
                for key in self.keys
            ],
        }
        return json.dumps(document, indent=2) + "\n"

    @classmethod
    def parse(cls, data: bytes | str) -> PublicKeyBundle:
        """Parse a bundle; every ``keyId`` must match the key it labels.

        Raises ``InputLimitError`` when too large or holding too many keys and
        ``SealingError`` (reason ``InvalidPublicKeyBundle``) when malformed.
        """
        data = _bounded_bytes(data, MAX_BUNDLE_BYTES, "public key bundle")
        try:
            doc = _strict.expect_object(_strict.loads_json(data), _BUNDLE_MEMBERS, "bundle")
            _strict.expect_const(doc, "format", BUNDLE_FORMAT, "bundle")
            entries = _strict.expect_list(doc, "keys", "bundle")
        except ValueError as exc:
            raise _bundle_error(f"invalid public key bundle: {exc}") from None
        if len(entries) > MAX_BUNDLE_KEYS:
            raise InputLimitError(f"public key bundle holds more than {MAX_BUNDLE_KEYS} keys")
        keys = [_parse_bundle_entry(entry, index) for index, entry in enumerate(entries)]
        return cls(tuple(keys))


def _parse_bundle_entry(entry: object, index: int) -> PublicKey:
    what = f"bundle.keys[{index}]"
    try:
        obj = _strict.expect_object(entry, _BUNDLE_KEY_MEMBERS, what)
        suite = _parse_suite(_strict.expect_str(obj, "suite", what), what)
        created = _strict.parse_time(_strict.expect_str(obj, "created", what))
        claimed_id = _strict.expect_str(obj, "keyId", what)
        raw = _strict.b64_decode(_strict.expect_str(obj, "publicKey", what))
    except ValueError as exc:
        raise _bundle_error(f"invalid public key bundle: {exc}") from None
    try:
        key = PublicKey(suite, raw, created)
    except SealingError as exc:
        raise _bundle_error(f"invalid public key bundle: {what}: {exc.message}") from None
    if claimed_id != key.key_id:
        raise _bundle_error(f"invalid public key bundle: {what}.keyId does not match its key")
    return key


def _printable_key_id(key_id: str) -> str:
    # Key ids are public, but one from a caller may be arbitrary text: show it only if it
    # looks like a key id, so a message can never carry something pasted by mistake.
    if len(key_id) == 2 * suites.KEY_ID_BYTES and all(c in "0123456789abcdef" for c in key_id):
        return key_id
    return "(not a key id)"
