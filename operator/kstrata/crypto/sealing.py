"""The sealed token: its text layout, ``seal``, and opening with one known key.

A token is ``kss1:`` followed by unpadded base64url of

    suite id (1) || key id (16) || HPKE enc || AES-256-GCM ciphertext and tag

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
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag

from kstrata.crypto import _strict, suites
from kstrata.crypto.context import SealingContext
from kstrata.crypto.keys import KeyPair, PublicKey
from kstrata.crypto.suites import AEAD_TAG_BYTES, KEY_ID_BYTES, Suite, SuiteSpec
from kstrata.errors import InputLimitError, SealingError, TokenFormatError, UnsealError

FORMAT_VERSION = 1
TOKEN_PREFIX = "kss1:"  # noqa: S105 (a format marker, not a credential)
#: Largest value that can be sealed (1 MiB, the size limit of a Kubernetes Secret).
MAX_PLAINTEXT_BYTES = 1024 * 1024
HEADER_BYTES = 1 + KEY_ID_BYTES
MAX_BODY_BYTES = HEADER_BYTES + suites.MAX_ENC_BYTES + MAX_PLAINTEXT_BYTES + AEAD_TAG_BYTES
#: No valid token is longer; longer text is refused before it is decoded.
MAX_TOKEN_CHARS = len(TOKEN_PREFIX) + (4 * MAX_BODY_BYTES + 2) // 3

_VERSIONED_PREFIX = re.compile(r"kss([0-9]{1,3}):")


@dataclass(frozen=True)
class TokenHeader:
    """The public part of a token: enough to name the key it needs, nothing else."""

    version: int
    suite: Suite
    key_id: str

    @property
    def key_id_bytes(self) -> bytes:
        return bytes.fromhex(self.key_id)


@dataclass(frozen=True)
class ParsedToken:
    """A structurally valid token, split; produced only by ``parse_sealed``."""

    header: TokenHeader
    spec: SuiteSpec = field(repr=False)
    # enc || ciphertext, exactly what pyca's Suite.decrypt takes.  Public, but long.
    sealed: bytes = field(repr=False)


def _format_error(message: str) -> TokenFormatError:
    # Messages describe structure only; the token text is never quoted.
    return TokenFormatError(message)


def parse_sealed(token: str) -> ParsedToken:
    """Split a token after checking all of its public structure (``TokenFormatError``)."""
    if not isinstance(token, str):
        raise _format_error("a sealed token must be text")
    if len(token) > MAX_TOKEN_CHARS:
        raise _format_error(f"sealed token is longer than {MAX_TOKEN_CHARS} characters")
    if not token.startswith(TOKEN_PREFIX):
        versioned = _VERSIONED_PREFIX.match(token)
        if versioned:
            raise _format_error(f"unsupported sealed token version {int(versioned.group(1))}")
        raise _format_error(f"not a kstrata sealed token (expected prefix {TOKEN_PREFIX})")
    try:
        body = _strict.b64url_decode(token[len(TOKEN_PREFIX) :])
    except ValueError:
        raise _format_error("sealed token body is not canonical unpadded base64url") from None
    if len(body) < HEADER_BYTES:
        raise _format_error("sealed token is too short to hold a header")
    spec = suites.spec_by_wire_id(body[0])
    if spec is None:
        raise _format_error(f"unknown sealing suite id {body[0]}")
    ciphertext_bytes = len(body) - HEADER_BYTES - spec.enc_bytes
    if ciphertext_bytes < AEAD_TAG_BYTES:
        raise _format_error("sealed token is too short for its suite")
    if ciphertext_bytes > MAX_PLAINTEXT_BYTES + AEAD_TAG_BYTES:
        raise _format_error("sealed token is longer than the largest sealable value")
    header = TokenHeader(
        version=FORMAT_VERSION,
        suite=spec.suite,
        key_id=body[1:HEADER_BYTES].hex(),
    )
    return ParsedToken(header=header, spec=spec, sealed=body[HEADER_BYTES:])


def parse_token(token: str) -> TokenHeader:
    """Check a token's structure and return its header, without any key.

    Raises ``TokenFormatError`` for anything that is not a well-formed v1 token.
    Useful to report which key a token needs.
    """
    return parse_sealed(token).header


def seal(plaintext: bytes, recipient: PublicKey, context: SealingContext) -> str:
    """Seal ``plaintext`` to ``recipient`` for opening only under ``context``.

    Raises ``InputLimitError`` above ``MAX_PLAINTEXT_BYTES`` and
    ``SealingError`` if the recipient key cannot be used.
    """
    if not isinstance(plaintext, bytes | bytearray | memoryview):
        raise SealingError("plaintext must be bytes", reason="InvalidSealingInput")
    if len(plaintext) > MAX_PLAINTEXT_BYTES:
        raise InputLimitError(f"value exceeds the sealing limit of {MAX_PLAINTEXT_BYTES} bytes")
    if not isinstance(recipient, PublicKey):
        raise SealingError("recipient must be a PublicKey", reason="InvalidSealingInput")
    if not isinstance(context, SealingContext):
        raise SealingError("context must be a SealingContext", reason="InvalidSealingInput")
    spec = suites.spec(recipient.suite)
    key_id = bytes.fromhex(recipient.key_id)
    info = context.hpke_info(version=FORMAT_VERSION, suite_id=spec.wire_id, key_id=key_id)
    try:
        sealed = spec.hpke.encrypt(plaintext, recipient.hpke_key, info=info)
    except ValueError:
        # A low-order X25519 point yields no shared secret; the key is unusable.
        raise SealingError(
            f"public key {recipient.key_id} cannot be used for sealing",
            reason="InvalidKeyMaterial",
        ) from None
    return TOKEN_PREFIX + _strict.b64url_encode(bytes([spec.wire_id]) + key_id + sealed)


def open_with(keypair: KeyPair, token: str, context: SealingContext) -> bytes:
    """Open ``token`` with one given key pair, whatever key id the token names.

    Raises ``TokenFormatError`` for a malformed token or one whose suite is not
    ``keypair``'s, and ``UnsealError`` for every other failure (including a
    token sealed to another key).  ``KeyRing.open`` is the usual entry point.
    """
    return open_parsed(keypair, parse_sealed(token), context)


def open_parsed(keypair: KeyPair, parsed: ParsedToken, context: SealingContext) -> bytes:
    """Open an already parsed token with ``keypair`` (see ``open_with``)."""
    if not isinstance(context, SealingContext):
        raise SealingError("context must be a SealingContext", reason="InvalidSealingInput")
    if parsed.header.suite is not keypair.suite:
        raise _format_error(
            f"token names suite {parsed.header.suite.value} but key {keypair.key_id}"
            f" is {keypair.suite.value}"
        )
    info = context.hpke_info(
        version=parsed.header.version,
        suite_id=parsed.spec.wire_id,
        key_id=parsed.header.key_id_bytes,
    )
    try:
        return parsed.spec.hpke.decrypt(parsed.sealed, keypair.hpke_key, info=info)
    except (InvalidTag, ValueError):
        # One error, no cause chained: wrong key, wrong context, tampering and
        # truncation must be indistinguishable to whoever sees the error.
        raise UnsealError() from None
