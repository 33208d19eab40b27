"""The operator's private key ring: every sealing key it holds, indexed by key id.

Tokens name their key, so opening is one dictionary lookup followed by one
HPKE open (a multi-recipient token names several keys: the ring uses the
first it holds, and the recipients of other clusters are simply skipped).
The ring never tries keys one after another: trial decryption
costs a public-key operation per held key and turns "which key fits" into a
timing signal.  Old keys stay in the ring after rotation so old tokens keep
opening; the newest key is the one published for sealing.

Boundary: the ring is built from ``KeyPair`` objects (the app layer reads the
key Secret and hands over its entries); it never talks to the cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from kstrata.crypto.context import SealingContext
from kstrata.crypto.keys import KeyPair, PublicKeyBundle, _newest, _printable_key_id
from kstrata.crypto.sealing import ParsedToken, open_parsed, parse_sealed
from kstrata.errors import SealingError, UnknownKeyError


class KeyRing:
    """Private sealing keys by key id.  Immutable after construction."""

    __slots__ = ("_keys",)

    def __init__(self, keys: Iterable[KeyPair] = ()) -> None:
        by_id: dict[str, KeyPair] = {}
        for key in keys:
            if not isinstance(key, KeyPair):
                raise SealingError("a key ring holds KeyPair objects", reason="InvalidKeyMaterial")
            if key.key_id in by_id:
                raise SealingError(
                    f"key ring given key {key.key_id} twice", reason="InvalidKeyMaterial"
                )
            by_id[key.key_id] = key
        self._keys: Mapping[str, KeyPair] = by_id

    @classmethod
    def from_secret_data(cls, data: Mapping[str, bytes | str]) -> KeyRing:
        """Build a ring from a key Secret's decoded ``data`` (entry name -> entry).

        Entry names are not interpreted; each entry is self-describing.
        """
        return cls(KeyPair.from_secret_entry(entry) for entry in data.values())

    def to_secret_data(self) -> dict[str, bytes]:
        """The key Secret's ``data`` (entry name -> entry), one entry per key."""
        return {key.secret_entry_name: key.to_secret_entry() for key in self._keys.values()}

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(sorted(self._keys))

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def __repr__(self) -> str:
        return f"KeyRing(key_ids={list(self.key_ids)!r})"

    def get(self, key_id: str) -> KeyPair:
        try:
            return self._keys[key_id]
        except KeyError:
            raise UnknownKeyError(
                f"no sealing key with id {_printable_key_id(key_id)}",
            ) from None

    @property
    def newest(self) -> KeyPair:
        """The key new values are sealed to (largest ``created``, ties by key id)."""
        newest = _newest(self._keys.values())
        if newest is None:
            raise UnknownKeyError("the key ring holds no sealing keys")
        return newest

    def public_bundle(self) -> PublicKeyBundle:
        """The public halves of every key, for the ConfigMap and ``--cert``."""
        return PublicKeyBundle.of(self._keys.values())

    def with_key(self, key: KeyPair) -> KeyRing:
        """A new ring with ``key`` added (rotation keeps the old keys)."""
        return KeyRing([*self._keys.values(), key])

    def open(self, token: str, context: SealingContext) -> bytes:
        """Open a token sealed to one of this ring's keys under ``context``.

        Raises ``TokenFormatError`` (malformed, checked before any key work),
        ``UnknownKeyError`` (the named key is not held; its id is public and
        appears in the message), or ``UnsealError`` (anything else, opaque).
        """
        parsed = parse_sealed(token)
        return open_parsed(self._key_for(parsed), parsed, context)

    def key_id_for(self, token: str) -> str:
        """The id of the key this ring would open ``token`` with.

        For a multi-recipient token, the first recipient (in token order)
        this ring holds; recipients of other clusters are skipped, not errors.
        Raises like ``open`` when the token is malformed or no key is held.
        """
        return self._key_for(parse_sealed(token)).key_id

    def _key_for(self, parsed: ParsedToken) -> KeyPair:
        key_ids = parsed.header.key_ids
        if len(key_ids) == 1:
            return self.get(key_ids[0])
        for key_id in key_ids:
            if key_id in self._keys:
                return self._keys[key_id]
        raise UnknownKeyError(
            f"sealed to {len(key_ids)} recipients (key ids "
            f"{', '.join(_printable_key_id(k) for k in key_ids)}), none of them a key held here"
        )
