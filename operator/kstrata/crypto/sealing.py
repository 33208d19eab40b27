"""The sealed token: its text layout, ``seal``, and opening with one known key.

A v1 token is ``kss1:`` followed by unpadded base64url of

    suite id (1) || key id (16) || HPKE enc || AES-256-GCM ciphertext and tag

A v2 (multi-recipient) token is ``kss2:`` followed by unpadded base64url of

    0x02 || n || n x (suite id || key id || HPKE enc || sealed data key) || payload

so one value opens in several clusters, each finding its own slot by key id
(docs/crypto.md §4a).

Parsing is done in a fixed order so the error class depends only on public
structure, never on secret-dependent work: length bound, version prefix,
canonical base64url, known suite, minimum and maximum sizes.  Only then does
the key ring look up the key id (``UnknownKeyError``), and only then is HPKE
run; every HPKE failure becomes the single opaque ``UnsealError``.

The header is authenticated by putting all of it (version, suite, key id)
into HPKE ``info`` next to the caller's context, so changing any header byte,
or opening under a different context, fails exactly like a forged ciphertext.
(pyca's public HPKE API offers ``info`` but no AAD, so ``info`` carries both.)

Boundary: this module sees one recipient public key or one ``KeyPair``;
choosing among keys is ``keyring``'s job.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kstrata.crypto import _strict, suites
from kstrata.crypto.context import INFO_LABEL_V2, SealingContext
from kstrata.crypto.keys import KeyPair, PublicKey
from kstrata.crypto.suites import AEAD_TAG_BYTES, KEY_ID_BYTES, Suite, SuiteSpec
from kstrata.errors import InputLimitError, SealingError, TokenFormatError, UnsealError

FORMAT_VERSION = 1
TOKEN_PREFIX = "kss1:"  # noqa: S105 (a format marker, not a credential)
#: The multi-recipient layout (docs/crypto.md §4a): one value, several recipient keys.
FORMAT_VERSION_MULTI = 2
TOKEN_PREFIX_MULTI = "kss2:"  # noqa: S105 (a format marker, not a credential)
#: Most recipients one v2 token may name.
MAX_RECIPIENTS = 16
#: Largest value that can be sealed (1 MiB, the size limit of a Kubernetes Secret).
MAX_PLAINTEXT_BYTES = 1024 * 1024
HEADER_BYTES = 1 + KEY_ID_BYTES
MAX_BODY_BYTES = HEADER_BYTES + suites.MAX_ENC_BYTES + MAX_PLAINTEXT_BYTES + AEAD_TAG_BYTES
#: No valid token of any version is longer; longer text is refused before it is decoded.
#: (A v2 body is held to ``MAX_BODY_BYTES`` too, so one bound serves every version.)
MAX_TOKEN_CHARS = len(TOKEN_PREFIX) + (4 * MAX_BODY_BYTES + 2) // 3
#: v2: the data key each recipient's HPKE seal wraps, and its sealed size.
DATA_KEY_BYTES = 32
WRAPPED_KEY_BYTES = DATA_KEY_BYTES + AEAD_TAG_BYTES
#: v2: the payload nonce.  The data key is fresh and random per token and
#: encrypts exactly one message, so a fixed nonce never repeats under a key.
PAYLOAD_NONCE = bytes(12)

_VERSIONED_PREFIX = re.compile(r"kss([0-9]{1,3}):")


@dataclass(frozen=True)
class Recipient:
    """One recipient key a token names: its suite and key id (public)."""

    suite: Suite
    key_id: str


@dataclass(frozen=True)
class TokenHeader:
    """The public part of a token: enough to name the keys it needs, nothing else.

    ``suite`` and ``key_id`` are the first recipient's; ``recipients`` lists
    all of them in token order (one for a v1 token).
    """

    version: int
    suite: Suite
    key_id: str
    recipients: tuple[Recipient, ...] = ()

    def __post_init__(self) -> None:
        if not self.recipients:
            object.__setattr__(self, "recipients", (Recipient(self.suite, self.key_id),))

    @property
    def key_id_bytes(self) -> bytes:
        return bytes.fromhex(self.key_id)

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(r.key_id for r in self.recipients)


@dataclass(frozen=True)
class Slot:
    """One recipient's part of a token: v1 seals the value, v2 the data key."""

    recipient: Recipient
    spec: SuiteSpec = field(repr=False)
    # enc || ciphertext, exactly what pyca's Suite.decrypt takes.  Public, but long.
    sealed: bytes = field(repr=False)


@dataclass(frozen=True)
class ParsedToken:
    """A structurally valid token, split; produced only by ``parse_sealed``."""

    header: TokenHeader
    slots: tuple[Slot, ...] = field(repr=False)
    #: v2 only: every body byte before the payload (authenticated as AAD).
    header_bytes: bytes = field(default=b"", repr=False)
    #: v2 only: the AES-256-GCM payload and tag.
    payload: bytes = field(default=b"", repr=False)

    @property
    def spec(self) -> SuiteSpec:
        return self.slots[0].spec

    @property
    def sealed(self) -> bytes:
        return self.slots[0].sealed

    def slot_for(self, key_id: str) -> Slot | None:
        return next((s for s in self.slots if s.recipient.key_id == key_id), None)


def _format_error(message: str) -> TokenFormatError:
    # Messages describe structure only; the token text is never quoted.
    return TokenFormatError(message)


def _check_ciphertext_size(size: int) -> None:
    if size < AEAD_TAG_BYTES:
        raise _format_error("sealed token is too short for its suite")
    if size > MAX_PLAINTEXT_BYTES + AEAD_TAG_BYTES:
        raise _format_error("sealed token is longer than the largest sealable value")


def parse_sealed(token: str) -> ParsedToken:
    """Split a token after checking all of its public structure (``TokenFormatError``)."""
    if not isinstance(token, str):
        raise _format_error("a sealed token must be text")
    if len(token) > MAX_TOKEN_CHARS:
        raise _format_error(f"sealed token is longer than {MAX_TOKEN_CHARS} characters")
    if token.startswith(TOKEN_PREFIX_MULTI):
        return _parse_multi(_decode_body(token[len(TOKEN_PREFIX_MULTI) :]))
    if not token.startswith(TOKEN_PREFIX):
        versioned = _VERSIONED_PREFIX.match(token)
        if versioned:
            raise _format_error(f"unsupported sealed token version {int(versioned.group(1))}")
        raise _format_error(f"not a kstrata sealed token (expected prefix {TOKEN_PREFIX})")
    body = _decode_body(token[len(TOKEN_PREFIX) :])
    if len(body) < HEADER_BYTES:
        raise _format_error("sealed token is too short to hold a header")
    spec = suites.spec_by_wire_id(body[0])
    if spec is None:
        raise _format_error(f"unknown sealing suite id {body[0]}")
    _check_ciphertext_size(len(body) - HEADER_BYTES - spec.enc_bytes)
    recipient = Recipient(spec.suite, body[1:HEADER_BYTES].hex())
    header = TokenHeader(version=FORMAT_VERSION, suite=spec.suite, key_id=recipient.key_id)
    return ParsedToken(header=header, slots=(Slot(recipient, spec, body[HEADER_BYTES:]),))


def _decode_body(text: str) -> bytes:
    try:
        return _strict.b64url_decode(text)
    except ValueError:
        raise _format_error("sealed token body is not canonical unpadded base64url") from None


def _parse_multi(body: bytes) -> ParsedToken:
    """v2: version byte, recipient count, the recipients, then the payload."""
    if len(body) < 2:
        raise _format_error("sealed token is too short to hold a header")
    if body[0] != FORMAT_VERSION_MULTI:
        raise _format_error("sealed token version byte does not match its kss2 prefix")
    count = body[1]
    if not 1 <= count <= MAX_RECIPIENTS:
        raise _format_error(f"sealed token must name 1 to {MAX_RECIPIENTS} recipients")
    offset = 2
    slots: list[Slot] = []
    for _ in range(count):
        if len(body) < offset + HEADER_BYTES:
            raise _format_error("sealed token is too short for its recipients")
        spec = suites.spec_by_wire_id(body[offset])
        if spec is None:
            raise _format_error(f"unknown sealing suite id {body[offset]}")
        key_id = body[offset + 1 : offset + HEADER_BYTES].hex()
        end = offset + HEADER_BYTES + spec.enc_bytes + WRAPPED_KEY_BYTES
        if len(body) < end:
            raise _format_error("sealed token is too short for its recipients")
        if any(s.recipient.key_id == key_id for s in slots):
            raise _format_error(f"sealed token names recipient key {key_id} twice")
        slots.append(Slot(Recipient(spec.suite, key_id), spec, body[offset + HEADER_BYTES : end]))
        offset = end
    _check_ciphertext_size(len(body) - offset)
    first = slots[0].recipient
    header = TokenHeader(
        version=FORMAT_VERSION_MULTI,
        suite=first.suite,
        key_id=first.key_id,
        recipients=tuple(s.recipient for s in slots),
    )
    return ParsedToken(
        header=header, slots=tuple(slots), header_bytes=body[:offset], payload=body[offset:]
    )


def parse_token(token: str) -> TokenHeader:
    """Check a token's structure and return its header, without any key.

    Raises ``TokenFormatError`` for anything that is not a well-formed v1 or
    v2 token.  Useful to report which key(s) a token needs.
    """
    return parse_sealed(token).header


def _check_seal_inputs(plaintext: object, context: object) -> None:
    if not isinstance(plaintext, bytes | bytearray | memoryview):
        raise SealingError("plaintext must be bytes", reason="InvalidSealingInput")
    if len(plaintext) > MAX_PLAINTEXT_BYTES:
        raise InputLimitError(f"value exceeds the sealing limit of {MAX_PLAINTEXT_BYTES} bytes")
    if not isinstance(context, SealingContext):
        raise SealingError("context must be a SealingContext", reason="InvalidSealingInput")


def _hpke_seal(spec: SuiteSpec, recipient: PublicKey, data: bytes, info: bytes) -> bytes:
    try:
        return spec.hpke.encrypt(data, recipient.hpke_key, info=info)
    except ValueError:
        # A low-order X25519 point yields no shared secret; the key is unusable.
        raise SealingError(
            f"public key {recipient.key_id} cannot be used for sealing",
            reason="InvalidKeyMaterial",
        ) from None


def seal_multi(plaintext: bytes, recipients: Sequence[PublicKey], context: SealingContext) -> str:
    """Seal ``plaintext`` once so that each of ``recipients`` can open it under ``context``.

    A v2 (``kss2:``) token: a fresh data key encrypts the value once, and
    each recipient gets the data key sealed to its public key (docs/crypto.md
    §4a).  Raises ``InputLimitError`` when the token would exceed
    ``MAX_TOKEN_CHARS`` and ``SealingError`` for 0 or more than
    ``MAX_RECIPIENTS`` recipients, a key named twice, or an unusable key.
    """
    _check_seal_inputs(plaintext, context)
    recipients = list(recipients)
    if not 1 <= len(recipients) <= MAX_RECIPIENTS:
        raise SealingError(
            f"a value can be sealed to 1 to {MAX_RECIPIENTS} recipients",
            reason="InvalidSealingInput",
        )
    if not all(isinstance(r, PublicKey) for r in recipients):
        raise SealingError("recipients must be PublicKey objects", reason="InvalidSealingInput")
    if len({r.key_id for r in recipients}) != len(recipients):
        raise SealingError("a recipient key is named twice", reason="InvalidSealingInput")
    header = bytearray([FORMAT_VERSION_MULTI, len(recipients)])
    data_key = AESGCM.generate_key(bit_length=8 * DATA_KEY_BYTES)
    for recipient in recipients:
        spec = suites.spec(recipient.suite)
        key_id = bytes.fromhex(recipient.key_id)
        info = context.hpke_info(
            version=FORMAT_VERSION_MULTI,
            suite_id=spec.wire_id,
            key_id=key_id,
            label=INFO_LABEL_V2,
        )
        header += bytes([spec.wire_id]) + key_id + _hpke_seal(spec, recipient, data_key, info)
    if len(header) + len(plaintext) + AEAD_TAG_BYTES > MAX_BODY_BYTES:
        raise InputLimitError(
            f"value too large to seal to {len(recipients)} recipients within the token "
            f"limit of {MAX_TOKEN_CHARS} characters"
        )
    payload = AESGCM(data_key).encrypt(
        PAYLOAD_NONCE, bytes(plaintext), context.payload_aad(bytes(header))
    )
    return TOKEN_PREFIX_MULTI + _strict.b64url_encode(bytes(header) + payload)


def seal(plaintext: bytes, recipient: PublicKey, context: SealingContext) -> str:
    """Seal ``plaintext`` to ``recipient`` for opening only under ``context``.

    Raises ``InputLimitError`` above ``MAX_PLAINTEXT_BYTES`` and
    ``SealingError`` if the recipient key cannot be used.
    """
    _check_seal_inputs(plaintext, context)
    if not isinstance(recipient, PublicKey):
        raise SealingError("recipient must be a PublicKey", reason="InvalidSealingInput")
    spec = suites.spec(recipient.suite)
    key_id = bytes.fromhex(recipient.key_id)
    info = context.hpke_info(version=FORMAT_VERSION, suite_id=spec.wire_id, key_id=key_id)
    sealed = _hpke_seal(spec, recipient, plaintext, info)
    return TOKEN_PREFIX + _strict.b64url_encode(bytes([spec.wire_id]) + key_id + sealed)


def open_with(keypair: KeyPair, token: str, context: SealingContext) -> bytes:
    """Open ``token`` with one given key pair, whatever key id the token names.

    Raises ``TokenFormatError`` for a malformed token or one whose suite is not
    ``keypair``'s, and ``UnsealError`` for every other failure (including a
    token sealed to another key).  ``KeyRing.open`` is the usual entry point.
    """
    return open_parsed(keypair, parse_sealed(token), context)


def open_parsed(keypair: KeyPair, parsed: ParsedToken, context: SealingContext) -> bytes:
    """Open an already parsed token with ``keypair`` (see ``open_with``).

    For a v2 token the slot naming ``keypair``'s key id is used; a token that
    names no slot for it fails like any other wrong key (``UnsealError``).
    """
    if not isinstance(context, SealingContext):
        raise SealingError("context must be a SealingContext", reason="InvalidSealingInput")
    found = parsed.slots[0] if parsed.header.version == FORMAT_VERSION else None
    found = found or parsed.slot_for(keypair.key_id)
    if found is None:
        raise UnsealError() from None
    slot = found
    if slot.recipient.suite is not keypair.suite:
        raise _format_error(
            f"token names suite {slot.recipient.suite.value} but key {keypair.key_id}"
            f" is {keypair.suite.value}"
        )
    if parsed.header.version == FORMAT_VERSION:
        info = context.hpke_info(
            version=FORMAT_VERSION,
            suite_id=slot.spec.wire_id,
            key_id=bytes.fromhex(slot.recipient.key_id),
        )
        return _hpke_open(slot, keypair, info)
    info = context.hpke_info(
        version=FORMAT_VERSION_MULTI,
        suite_id=slot.spec.wire_id,
        key_id=bytes.fromhex(slot.recipient.key_id),
        label=INFO_LABEL_V2,
    )
    data_key = _hpke_open(slot, keypair, info)
    if len(data_key) != DATA_KEY_BYTES:
        raise UnsealError() from None
    try:
        return AESGCM(data_key).decrypt(
            PAYLOAD_NONCE, parsed.payload, context.payload_aad(parsed.header_bytes)
        )
    except (InvalidTag, ValueError):
        raise UnsealError() from None


def _hpke_open(slot: Slot, keypair: KeyPair, info: bytes) -> bytes:
    try:
        return slot.spec.hpke.decrypt(slot.sealed, keypair.hpke_key, info=info)
    except (InvalidTag, ValueError):
        # One error, no cause chained: wrong key, wrong context, tampering and
        # truncation must be indistinguishable to whoever sees the error.
        raise UnsealError() from None
