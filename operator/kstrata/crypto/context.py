"""Where a sealed value may be opened: the sealing context and its canonical encoding.

A sealed value is only meaningful at one place in the cluster.  The caller
states that place (taken from the SealedSecret being processed, never from the
token) as a ``SealingContext``; this module validates it and turns it, together
with the token header, into the byte string passed to HPKE as ``info``.  Any
difference in that byte string makes opening fail, which is what stops a token
from being copied to another namespace, another object or another item.

Boundary: this module knows Kubernetes naming rules and the ``info`` layout.
It knows nothing about keys or token text (``sealing`` does that).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from enum import StrEnum

from kstrata.errors import SealingError

#: Domain-separation label that starts every ``info``; it changes with the format.
INFO_LABEL = b"kstrata.dev/sealed/v1"
#: The label of a multi-recipient (v2) token's per-recipient ``info``.
INFO_LABEL_V2 = b"kstrata.dev/sealed/v2"
#: The label of a v2 token's payload AAD.
PAYLOAD_LABEL_V2 = b"kstrata.dev/sealed/v2/payload"

_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_NAMESPACE_RE = re.compile(_DNS_LABEL)
_NAME_RE = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")
_ITEM_RE = re.compile(r"[-._a-zA-Z0-9]+")
_NAMESPACE_MAX = 63
_NAME_MAX = 253
_ITEM_MAX = 253


class Scope(StrEnum):
    """How much of the location a sealed value is bound to (the SealedSecret's ``scope``)."""

    #: Namespace, object name and item key.
    STRICT = "strict"
    #: Namespace and item key; the object may be renamed.
    NAMESPACE = "namespace"
    #: Item key only; the value may move between namespaces.
    CLUSTER = "cluster"


def _invalid(message: str) -> SealingError:
    # The offending value is never quoted: a mistyped field may hold anything.
    return SealingError(message, reason="InvalidSealingContext")


def check_namespace(namespace: str) -> None:
    if not isinstance(namespace, str) or not (
        len(namespace) <= _NAMESPACE_MAX and _NAMESPACE_RE.fullmatch(namespace)
    ):
        raise _invalid("namespace must be an RFC 1123 label of at most 63 characters")


def check_name(name: str) -> None:
    if not isinstance(name, str) or not (len(name) <= _NAME_MAX and _NAME_RE.fullmatch(name)):
        raise _invalid("name must be an RFC 1123 subdomain of at most 253 characters")


def check_item(item: str) -> None:
    # Same rule as Kubernetes' IsConfigMapKey, so every valid Secret key can be sealed.
    if (
        not isinstance(item, str)
        or not (len(item) <= _ITEM_MAX and _ITEM_RE.fullmatch(item))
        or item.startswith("..")
        or item == "."
    ):
        raise _invalid("item key must be a valid Secret data key ([-._a-zA-Z0-9]+, at most 253)")


def length_prefixed(*fields: bytes) -> bytes:
    """Concatenate fields, each preceded by its length as a big-endian uint16.

    The prefix makes the encoding injective: no two field lists share bytes.
    """
    out = bytearray()
    for item in fields:
        if len(item) > 0xFFFF:
            raise ValueError("field too long for a uint16 length prefix")
        out += struct.pack(">H", len(item))
        out += item
    return bytes(out)


@dataclass(frozen=True)
class SealingContext:
    """The location a value is sealed to, exactly as much of it as the scope binds.

    Fields the scope does not bind must be ``None``: a context never carries a
    name it ignores, so two contexts that open the same tokens compare equal.
    Use ``bind`` to build one from a SealedSecret's full coordinates.
    """

    scope: Scope
    item: str
    namespace: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.scope, Scope):
            raise _invalid("scope must be one of strict, namespace, cluster")
        check_item(self.item)
        if self.scope is Scope.CLUSTER:
            if self.namespace is not None or self.name is not None:
                raise _invalid("cluster scope binds neither namespace nor name")
            return
        if self.namespace is None:
            raise _invalid(f"{self.scope.value} scope requires a namespace")
        check_namespace(self.namespace)
        if self.scope is Scope.NAMESPACE:
            if self.name is not None:
                raise _invalid("namespace scope does not bind a name")
            return
        if self.name is None:
            raise _invalid("strict scope requires a name")
        check_name(self.name)

    @classmethod
    def bind(
        cls,
        scope: Scope | str,
        *,
        item: str,
        namespace: str | None = None,
        name: str | None = None,
    ) -> SealingContext:
        """Keep from (namespace, name, item) exactly what ``scope`` binds.

        This is the constructor callers normally want: they know the full
        coordinates of the SealedSecret and the scope from its spec.
        """
        try:
            scope = Scope(scope)
        except ValueError:
            raise _invalid("scope must be one of strict, namespace, cluster") from None
        return cls(
            scope=scope,
            item=item,
            namespace=None if scope is Scope.CLUSTER else namespace,
            name=name if scope is Scope.STRICT else None,
        )

    def hpke_info(
        self, *, version: int, suite_id: int, key_id: bytes, label: bytes = INFO_LABEL
    ) -> bytes:
        """The HPKE ``info`` for this context and the given token header.

        Layout (each field uint16-length-prefixed, absent fields empty):
        label, version byte, suite byte, 16-byte key id, scope, namespace,
        name, item.  See docs/crypto.md (v2 uses ``INFO_LABEL_V2``).
        """
        return length_prefixed(
            label,
            bytes([version]),
            bytes([suite_id]),
            key_id,
            *self._location(),
        )

    def payload_aad(self, header: bytes) -> bytes:
        """A v2 token's payload AAD: label, the whole header, then this context."""
        return length_prefixed(PAYLOAD_LABEL_V2, header, *self._location())

    def _location(self) -> tuple[bytes, bytes, bytes, bytes]:
        return (
            self.scope.value.encode("ascii"),
            (self.namespace or "").encode("ascii"),
            (self.name or "").encode("ascii"),
            self.item.encode("ascii"),
        )
