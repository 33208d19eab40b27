"""Strict, bounded decoders shared by the token, key and bundle parsers.

Everything the crypto layer reads from outside (tokens, key Secrets, public key
bundles) goes through these helpers so that each external encoding has exactly
one accepted spelling.  A lenient decoder would make tokens malleable: two
different strings opening to the same value, which breaks "never succeeds after
a bit flip" and makes diffs lie.

The helpers raise ``Malformed`` (a ``ValueError``) with fixed messages; the public parsers
translate that into the right ``kstrata.errors`` class, because only they know
whether the input was a token, a key entry or a bundle.  No message quotes the
input.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import UTC, datetime
from typing import NoReturn


class Malformed(ValueError):
    """A document or encoding is not in the one accepted form (message quotes no input)."""


_B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_URL_TO_STD = bytes.maketrans(b"-_", b"+/")
_B64_STD = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_RFC3339_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url: the shortest YAML-safe spelling of a token body."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url, accepting only the canonical spelling.

    Python's default decoder silently skips foreign characters and ignores the
    unused low bits of the last character; both would give one body several
    textual forms, so both are refused here.  (This sits on the unseal hot
    path, hence binascii in strict mode rather than a regex and a re-encode.)
    """
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise Malformed("not canonical unpadded base64url") from None
    tail = len(raw) % 4
    # '+' and '/' would survive the translation below as valid; '=' is not unpadded.
    if tail == 1 or b"+" in raw or b"/" in raw or b"=" in raw:
        raise Malformed("not canonical unpadded base64url")
    try:
        data = binascii.a2b_base64(
            raw.translate(_URL_TO_STD) + b"=" * (-len(raw) % 4), strict_mode=True
        )
    except binascii.Error:
        raise Malformed("not canonical unpadded base64url") from None
    # A final group of 2 (3) characters carries 4 (2) unused bits, which must be zero.
    if tail and _B64URL_ALPHABET.index(text[-1]) & (0x0F if tail == 2 else 0x03):
        raise Malformed("not canonical unpadded base64url")
    return data


def b64_encode(data: bytes) -> str:
    """Standard padded base64, the encoding people expect in JSON key files."""
    return base64.b64encode(data).decode("ascii")


def b64_decode(text: str) -> bytes:
    """Decode standard padded base64, accepting only the canonical spelling."""
    if not _B64_STD.fullmatch(text):
        raise Malformed("not canonical base64")
    try:
        data = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise Malformed("not canonical base64") from exc
    if b64_encode(data) != text:
        raise Malformed("not canonical base64")
    return data


def format_time(when: datetime) -> str:
    """RFC 3339 in UTC with second precision, the one spelling we write.

    Written field by field: ``strftime("%Y")`` gives years before 1000 fewer
    than four digits, which ``parse_time`` (and RFC 3339) refuse.
    """
    t = when.astimezone(UTC)
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}Z"


def parse_time(text: str) -> datetime:
    """Parse exactly the spelling ``format_time`` writes."""
    if not _RFC3339_UTC.fullmatch(text):
        raise Malformed("timestamp must look like 2006-01-02T15:04:05Z")
    # fromisoformat, not strptime: strptime imports _strptime (and locale, calendar) on
    # first use, ~1 ms of every offline seal's start; the pattern above fixed the spelling.
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def normalize_time(when: datetime) -> datetime:
    """UTC, whole seconds: what survives a round trip through ``format_time``."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise Malformed("timestamp must be timezone-aware")
    return when.astimezone(UTC).replace(microsecond=0)


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise Malformed("duplicate member in JSON object")
        result[key] = value
    return result


def _no_constants(_name: str) -> NoReturn:
    raise Malformed("NaN and Infinity are not allowed")


def loads_json(data: bytes | str) -> object:
    """Parse JSON with duplicate members and non-finite numbers refused.

    The caller bounds the size before calling; deep nesting within that bound
    surfaces as ``RecursionError`` from the json module and is mapped here.
    """
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Malformed("document is not UTF-8") from exc
    else:
        text = data
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except RecursionError as exc:
        raise Malformed("document is nested too deeply") from exc
    except json.JSONDecodeError as exc:
        # JSONDecodeError's message quotes no input, only a position.
        raise Malformed(f"not valid JSON ({exc.msg} at line {exc.lineno})") from exc


def expect_object(value: object, members: frozenset[str], what: str) -> dict[str, object]:
    """Check that ``value`` is an object with exactly ``members``."""
    if not isinstance(value, dict):
        raise Malformed(f"{what} must be a JSON object")
    keys = frozenset(value)
    if keys != members:
        missing = sorted(members - keys)
        unknown = sorted(keys - members)
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing))
        if unknown:
            # Counted, not named: a stray member name could be anything the author pasted.
            parts.append(f"{len(unknown)} unknown member(s)")
        raise Malformed(f"{what}: " + "; ".join(parts))
    return value


def expect_str(obj: dict[str, object], member: str, what: str) -> str:
    value = obj[member]
    if not isinstance(value, str):
        raise Malformed(f"{what}.{member} must be a string")
    return value


def expect_const(obj: dict[str, object], member: str, expected: str, what: str) -> None:
    if expect_str(obj, member, what) != expected:
        raise Malformed(f"{what}.{member} must be {expected}")


def expect_list(obj: dict[str, object], member: str, what: str) -> list[object]:
    value = obj[member]
    if not isinstance(value, list):
        raise Malformed(f"{what}.{member} must be a list")
    return value
