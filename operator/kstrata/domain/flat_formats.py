"""The ``.env`` and ``.properties`` formats, read into flat maps of strings.

Why a module of its own: two use cases read them, and neither owns the
format.  ``kstrata.watch`` parses a mounted ``.env`` or ``.properties`` file
for an application's hot reload; ``kstrata import`` reads a ConfigMap key or a
file in either format to prove that a ConfigProfile reproduces it.  Both must
read a file the same way, so the parsers live here, pure (bytes in, a dict or
a ``DocumentError`` naming the source and line out), and the rest of
``kstrata.watch`` (polling, signals, commands) stays out of ``import``'s way.

Bounds: the input is bounded in bytes by its reader; the number of keys is
bounded here (as many as a document may hold values).  Messages name the
source, line numbers and keys, never a value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from kstrata.domain.jsonvalue import DEFAULT_LIMITS
from kstrata.errors import DocumentError, InputLimitError

#: As many keys as a document may hold values (the input is bounded in bytes too).
_MAX_KEYS: Final = DEFAULT_LIMITS.max_nodes


def decode_text(data: bytes, source: str) -> str:
    """``data`` as UTF-8 text (a leading byte order mark dropped); an error names the offset."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"{source}: not valid UTF-8 (byte offset {exc.start})") from None


_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")
_ENV_ESCAPES: Final = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def _unescape_double_quoted(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ENV_ESCAPES.get(m.group(1), m.group(0)), value)


def parse_env(data: bytes, source: str = "<input>") -> dict[str, str]:
    """Parse a ``.env`` file: ``KEY=VALUE`` lines into a dict of strings.

    Deliberately simple (no interpolation, no multi-line values): blank lines
    and ``#`` comments are skipped, an ``export`` prefix is allowed, a value
    in matching single quotes is literal, in double quotes ``\\n``, ``\\t``,
    ``\\"`` and ``\\\\`` are unescaped, and an unquoted value ends at `` #``.
    A duplicate key is an error, as it is for YAML here: "last one wins"
    hides mistakes.  Errors give the line number, never the line.
    """
    result: dict[str, str] = {}
    for number, line in enumerate(decode_text(data, source).splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith(("export ", "export\t")):
            text = text[len("export") :].lstrip()
        key, separator, value = text.partition("=")
        key = key.strip()
        if not separator or not _ENV_KEY.match(key):
            raise DocumentError(f"{source}:{number}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            quote, value = value[0], value[1:-1]
            if quote == '"':
                value = _unescape_double_quoted(value)
        elif value.startswith(("'", '"')):
            raise DocumentError(f"{source}:{number}: unterminated quoted value for key '{key}'")
        else:
            value = re.split(r"\s#", value, maxsplit=1)[0].rstrip()
        if key in result:
            raise DocumentError(f"{source}:{number}: duplicate key '{key}'")
        result[key] = value
        _check_count(result, source)
    return result


def _check_count(result: Mapping[str, str], source: str) -> None:
    if len(result) > _MAX_KEYS:
        raise InputLimitError(f"{source}: more than {_MAX_KEYS} keys")


_PROPERTY_ESCAPES: Final = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join Java-properties continuation lines (an odd number of trailing backslashes)."""
    joined: list[tuple[int, str]] = []
    pending: str | None = None
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.lstrip(" \t\f")
        if pending is None:
            if not line or line[0] in "#!":
                continue
            start, pending = number, ""
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:
            pending += line[:-1]
            continue
        joined.append((start, pending + line))
        pending = None
    if pending is not None:
        joined.append((start, pending))
    return joined


def _is_low_surrogate(digits: str) -> bool:
    return (
        all(c in "0123456789abcdefABCDEF" for c in digits) and 0xDC00 <= int(digits, 16) <= 0xDFFF
    )


def _unescape_property(text: str, source: str, number: int) -> str:
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char != "\\" or index + 1 >= len(text):
            out.append(char)
            index += 1
            continue
        escaped = text[index + 1]
        if escaped == "u":
            digits = text[index + 2 : index + 6]
            if len(digits) != 4 or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise DocumentError(f"{source}:{number}: malformed \\uXXXX escape")
            code = int(digits, 16)
            low = text[index + 8 : index + 12] if text[index + 6 : index + 8] == "\\u" else ""
            if 0xD800 <= code <= 0xDBFF and len(low) == 4 and _is_low_surrogate(low):
                # A pair, as kstrata's renderer and Java's Properties.store write
                # a character above U+FFFF: one character, not two halves.
                code = 0x10000 + ((code - 0xD800) << 10) + (int(low, 16) - 0xDC00)
                index += 6
            out.append(chr(code))
            index += 6
            continue
        out.append(_PROPERTY_ESCAPES.get(escaped, escaped))
        index += 2
    return "".join(out)


def _split_property(line: str) -> tuple[str, str]:
    """Split a logical line at the first unescaped ``=``, ``:`` or whitespace."""
    index = 0
    while index < len(line):
        char = line[index]
        if char == "\\":
            index += 2
            continue
        if char in "=: \t\f":
            break
        index += 1
    key, rest = line[:index], line[index:].lstrip(" \t\f")
    if rest[:1] in ("=", ":"):
        rest = rest[1:].lstrip(" \t\f")
    return key, rest


def parse_properties(data: bytes, source: str = "<input>") -> dict[str, str]:
    """Parse a Java-style ``.properties`` file into a dict of strings.

    Supports what real files use: ``#``/``!`` comments, ``=``, ``:`` or
    whitespace separators, backslash continuation lines and the escapes
    ``\\t \\n \\r \\f \\uXXXX``.  (Files are read as UTF-8, not ISO-8859-1.)
    A duplicate key is an error rather than "last one wins".
    """
    result: dict[str, str] = {}
    for number, line in _logical_lines(decode_text(data, source)):
        raw_key, raw_value = _split_property(line)
        key = _unescape_property(raw_key, source, number)
        value = _unescape_property(raw_value, source, number)
        if key in result:
            raise DocumentError(f"{source}:{number}: duplicate key '{key}'")
        result[key] = value
        _check_count(result, source)
    return result
