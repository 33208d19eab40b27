"""Schema regular expressions: ECMA-262 patterns matched by RE2, in linear time.

Why a module of its own: a ConfigProfile's schema is untrusted input, and
Python's ``re`` backtracks.  ``^(a+)+$`` against 35 ``a`` and a ``!`` runs
for minutes, holding the GIL, so one profile would freeze every handler of
the operator and time out the admission webhook.  Every ``pattern``,
``patternProperties`` and ``format: regex`` of a schema is therefore compiled
here and matched by RE2 (the ``google-re2`` package), whose automata run in
time linear in the input, whatever the pattern.  There is no fallback to
``re``: a pattern RE2 cannot take is an ``InvalidSchemaError``.

JSON Schema patterns are ECMA-262 regular expressions, and RE2's syntax is not
ECMA-262's, so patterns are translated, not passed through.  The translation
keeps what a user means in ECMA-262 (with the ``u`` flag's code-point view,
and Annex B's leniency for a lone ``{``, ``}`` or ``]``):

* ``\\d``, ``\\w`` and ``\\b`` are ASCII-only; ``\\s`` is ECMA-262's white space and
  line terminators (``\\v``, no-break space, U+2028, U+FEFF, ...), written
  out as explicit ranges so no engine default can differ;
* ``.`` matches anything but a line terminator (``\\n``, ``\\r``, U+2028,
  U+2029), unless a ``(?s:...)`` modifier says otherwise;
* ``$`` matches only at the very end (``re``'s ``$`` also matches before a
  final newline) and ``^`` only at the very start;
* ``\\uXXXX`` (surrogate pairs combined), ``\\u{X}``, ``\\xHH``, ``\\cX``, ``\\0``,
  ``[\\b]``, ``[]`` (matches nothing) and ``[^]`` (matches anything);
* ``(?<name>...)`` groups, lazy quantifiers, ``(?i:...)``/``(?s:...)``
  modifiers, ``\\p{...}`` with a General_Category or ``Script=`` value.

Refused with a message that says why (``InvalidSchemaError``): backreferences
(``\\1``, ``\\k<name>``), lookaround (``(?=``, ``(?!``, ``(?<=``, ``(?<!``), the
``m`` modifier, lone surrogates, repetition counts above RE2's 1,000, inline
flags such as ``(?i)`` (not ECMA-262), escapes ECMA-262 does not define, and
patterns over ``MAX_PATTERN_CHARS`` or too large for RE2's memory bound.

RE2 is imported only when the first pattern is compiled: the offline CLI
renders most profiles without one, and the import costs ~10 ms of its start.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Final, Protocol

from kstrata.errors import InvalidSchemaError

__all__ = ["MAX_PATTERN_CHARS", "Pattern", "compile_pattern", "search", "translate"]

#: Longer patterns are refused before translation (a schema is at most 4 MiB).
MAX_PATTERN_CHARS: Final = 32 * 1024
#: RE2's own bound on ``{n,m}`` counts.
MAX_REPEAT: Final = 1000
#: RE2's memory budget for one compiled pattern (its default); larger is refused.
MAX_PROGRAM_BYTES: Final = 8 << 20

_MAX_CODE_POINT: Final = 0x10FFFF
_MAX_GROUP_DEPTH: Final = 64
_LINE_TERMINATORS: Final = (0x0A, 0x0D, 0x2028, 0x2029)
_Range = tuple[int, int]


def _merged(ranges: list[_Range]) -> list[_Range]:
    out: list[_Range] = []
    for low, high in sorted(ranges):
        if out and low <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], high))
        else:
            out.append((low, high))
    return out


def _complement(ranges: list[_Range]) -> list[_Range]:
    out: list[_Range] = []
    start = 0
    for low, high in _merged(ranges):
        if low > start:
            out.append((start, low - 1))
        start = high + 1
    if start <= _MAX_CODE_POINT:
        out.append((start, _MAX_CODE_POINT))
    return out


_DIGIT: Final = [(0x30, 0x39)]
_WORD: Final = [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)]
# ECMA-262 WhiteSpace and LineTerminator (Unicode's Zs category written out).
_SPACE: Final = _merged(
    [
        (0x09, 0x0D),
        (0x20, 0x20),
        (0xA0, 0xA0),
        (0x1680, 0x1680),
        (0x2000, 0x200A),
        (0x2028, 0x2029),
        (0x202F, 0x202F),
        (0x205F, 0x205F),
        (0x3000, 0x3000),
        (0xFEFF, 0xFEFF),
    ]
)
_CLASS_ESCAPES: Final[dict[str, list[_Range]]] = {
    "d": _DIGIT,
    "D": _complement(_DIGIT),
    "w": _WORD,
    "W": _complement(_WORD),
    "s": _SPACE,
    "S": _complement(_SPACE),
}
_CONTROL_ESCAPES: Final = {"t": 0x09, "n": 0x0A, "v": 0x0B, "f": 0x0C, "r": 0x0D}
_SYNTAX: Final = frozenset("^$\\.*+?()[]{}|/-")
# ECMA-262 General_Category values (short and long names) RE2 knows by the short one.
_CATEGORIES: Final = {
    **{name: name for name in ("L", "Lu", "Ll", "Lt", "Lm", "Lo", "M", "Mn", "Mc", "Me")},
    **{name: name for name in ("N", "Nd", "Nl", "No", "P", "Pc", "Pd", "Ps", "Pe", "Pi")},
    **{name: name for name in ("Pf", "Po", "S", "Sm", "Sc", "Sk", "So", "Z", "Zs", "Zl")},
    **{name: name for name in ("Zp", "C", "Cc", "Cf", "Co", "Cs")},
    "Letter": "L",
    "Uppercase_Letter": "Lu",
    "Lowercase_Letter": "Ll",
    "Mark": "M",
    "Number": "N",
    "Decimal_Number": "Nd",
    "digit": "Nd",
    "Punctuation": "P",
    "punct": "P",
    "Symbol": "S",
    "Separator": "Z",
    "Other": "C",
    "Control": "Cc",
    "cntrl": "Cc",
}


class _Refused(Exception):
    """Why a pattern cannot be translated; becomes ``InvalidSchemaError``."""


def _hex(code: int) -> str:
    return f"\\x{{{code:X}}}"


def _literal(code: int) -> str:
    char = chr(code)
    if char.isascii() and (char.isalnum() or char == "_"):
        return char
    return _hex(code)


def _class_text(ranges: list[_Range], properties: list[str], *, negated: bool) -> str:
    if not ranges and not properties:
        # ECMA-262's [] matches nothing and [^] anything; RE2 has neither spelling.
        everything = f"\\x{{0}}-{_hex(_MAX_CODE_POINT)}"
        return f"[{everything}]" if negated else f"[^{everything}]"
    parts = [
        _hex(low) if low == high else f"{_hex(low)}-{_hex(high)}" for low, high in _merged(ranges)
    ]
    return "[" + ("^" if negated else "") + "".join(parts) + "".join(properties) + "]"


@dataclass
class _Flags:
    dot_all: bool = False


class _Translator:
    """A recursive-descent reader of one ECMA-262 pattern, writing RE2 syntax."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.pos = 0
        self.flags = [_Flags()]
        self.depth = 0

    # -- reading --------------------------------------------------------------

    def _peek(self, offset: int = 0) -> str:
        index = self.pos + offset
        return self.source[index] if index < len(self.source) else ""

    def _take(self) -> str:
        char = self._peek()
        if not char:
            raise _Refused("the pattern ends in the middle of an escape, group or class")
        self.pos += 1
        return char

    def _startswith(self, text: str) -> bool:
        return self.source.startswith(text, self.pos)

    # -- grammar ----------------------------------------------------------------

    def translate(self) -> str:
        out = self._disjunction()
        if self.pos < len(self.source):
            raise _Refused(f"unmatched ')' at offset {self.pos}")
        return out

    def _disjunction(self) -> str:
        alternatives = [self._alternative()]
        while self._peek() == "|":
            self.pos += 1
            alternatives.append(self._alternative())
        return "|".join(alternatives)

    def _alternative(self) -> str:
        out: list[str] = []
        while self._peek() not in ("", "|", ")"):
            out.append(self._term())
        return "".join(out)

    def _term(self) -> str:
        start = self.pos
        atom, quantifiable = self._atom()
        quantifier = self._quantifier()
        if quantifier is None:
            return atom
        if not quantifiable:
            raise _Refused(f"nothing to repeat at offset {start}")
        return atom + quantifier

    def _atom(self) -> tuple[str, bool]:  # noqa: PLR0911
        char = self._peek()
        if char == "^":
            self.pos += 1
            return "\\A", False
        if char == "$":
            self.pos += 1
            return "\\z", False
        if char == ".":
            self.pos += 1
            if self.flags[-1].dot_all:
                return _class_text([(0, _MAX_CODE_POINT)], [], negated=False), True
            return _class_text([(c, c) for c in _LINE_TERMINATORS], [], negated=True), True
        if char == "(":
            return self._group(), True
        if char == "[":
            return self._class(), True
        if char == "\\":
            return self._escape()
        if char in "*+?":
            raise _Refused(f"nothing to repeat at offset {self.pos}")
        if char == "{" and self._counted(self.pos) is not None:
            raise _Refused(f"nothing to repeat at offset {self.pos}")
        self.pos += 1
        return self._code_point_literal(char), True

    def _code_point_literal(self, char: str) -> str:
        code = ord(char)
        if 0xD800 <= code <= 0xDFFF:
            raise _Refused("the pattern holds a lone surrogate, which RE2 cannot match")
        return _literal(code)

    def _counted(self, at: int) -> tuple[int, int | None, int] | None:
        """``{n}``, ``{n,}`` or ``{n,m}`` at ``at``: (n, m or None, end); else None."""
        source = self.source
        index = at + 1
        digits = index
        while index < len(source) and source[index].isdigit() and source[index].isascii():
            index += 1
        if index == digits:
            return None
        low = int(source[digits:index])
        high: int | None = low
        if index < len(source) and source[index] == ",":
            index += 1
            more = index
            while index < len(source) and source[index].isdigit() and source[index].isascii():
                index += 1
            high = int(source[more:index]) if index > more else None
        if index >= len(source) or source[index] != "}":
            return None
        return low, high, index + 1

    def _quantifier(self) -> str | None:
        char = self._peek()
        if char in ("*", "+", "?"):
            self.pos += 1
            text = char
        elif char == "{":
            counted = self._counted(self.pos)
            if counted is None:
                return None
            low, high, end = counted
            if high is not None and high < low:
                raise _Refused(f"numbers out of order in the quantifier at offset {self.pos}")
            if low > MAX_REPEAT or (high is not None and high > MAX_REPEAT):
                raise _Refused(
                    f"the quantifier at offset {self.pos} repeats more than {MAX_REPEAT} "
                    "times, the most RE2 allows"
                )
            self.pos = end
            upper = "" if high is None else str(high)
            text = f"{{{low}}}" if high == low else f"{{{low},{upper}}}"
        else:
            return None
        if self._peek() == "?":
            self.pos += 1
            text += "?"
        return text

    def _group(self) -> str:
        start = self.pos
        self.pos += 1  # (
        if self._startswith("?"):
            for prefix, what in (
                ("?=", "lookahead"),
                ("?!", "negative lookahead"),
                ("?<=", "lookbehind"),
                ("?<!", "negative lookbehind"),
            ):
                if self._startswith(prefix):
                    raise _Refused(
                        f"{what} '({prefix}' at offset {start} cannot be matched in linear "
                        "time (RE2 has no lookaround)"
                    )
            if self._startswith("?:"):
                self.pos += 2
                return self._group_body("(?:")
            if self._startswith("?<"):
                end = self.source.find(">", self.pos)
                name = self.source[self.pos + 2 : end] if end > 0 else ""
                if not name or not all(c.isalnum() or c in "_$" for c in name):
                    raise _Refused(f"invalid group name at offset {start}")
                self.pos = end + 1
                return self._group_body("(?:")
            return self._modifiers(start)
        return self._group_body("(?:")

    def _modifiers(self, start: int) -> str:
        """ECMA-262's ``(?i:...)``, ``(?s:...)``, ``(?-i:...)`` (no ``m``: RE2 differs)."""
        self.pos += 1  # ?
        colon = self.source.find(":", self.pos)
        close = self.source.find(")", self.pos)
        spec = self.source[self.pos : colon] if colon >= 0 else ""
        on, _, off = spec.partition("-")
        if colon < 0 or (0 <= close < colon) or not set(on + off) <= set("ims") or not spec:
            raise _Refused(
                f"unsupported group syntax at offset {start} (inline flags such as '(?i)' are "
                "not ECMA-262: write '(?i:...)')"
            )
        if "m" in on + off:
            raise _Refused(
                f"the 'm' modifier at offset {start} is not supported (ECMA-262's line anchors "
                "differ from RE2's)"
            )
        self.pos = colon + 1
        dot_all = self.flags[-1].dot_all
        if "s" in on:
            dot_all = True
        if "s" in off:
            dot_all = False
        case = ("i" if "i" in on else "") + ("-i" if "i" in off else "")
        self.flags.append(_Flags(dot_all=dot_all))
        try:
            return self._group_body(f"(?{case}:" if case else "(?:")
        finally:
            self.flags.pop()

    def _group_body(self, opening: str) -> str:
        self.depth += 1
        if self.depth > _MAX_GROUP_DEPTH:
            raise _Refused(f"groups nest deeper than {_MAX_GROUP_DEPTH} levels")
        inner = self._disjunction()
        self.depth -= 1
        if self._peek() != ")":
            raise _Refused("a group is not closed")
        self.pos += 1
        return opening + inner + ")"

    # -- escapes ----------------------------------------------------------------

    def _escape(self) -> tuple[str, bool]:
        start = self.pos
        self.pos += 1  # backslash
        char = self._take()
        if char in ("b", "B"):
            return "\\" + char, False
        if char in _CLASS_ESCAPES:
            return _class_text(_CLASS_ESCAPES[char], [], negated=False), True
        if char in ("p", "P"):
            return _class_text([], [self._property(char, start)], negated=False), True
        return _literal(self._character_escape(char, start)), True

    def _character_escape(self, char: str, start: int) -> int:
        """The code point of a character escape (the backslash and ``char`` are read)."""
        if char in _CONTROL_ESCAPES:
            return _CONTROL_ESCAPES[char]
        if char == "0" and not self._peek().isdigit():
            return 0
        if char.isdigit():
            raise _Refused(
                f"backreference '\\{char}' at offset {start} cannot be matched in linear time "
                "(RE2 has no backreferences)"
            )
        if char == "k":
            raise _Refused(
                f"backreference '\\k' at offset {start} cannot be matched in linear time "
                "(RE2 has no backreferences)"
            )
        if char == "c":
            letter = self._peek()
            if letter.isascii() and letter.isalpha():
                self.pos += 1
                return ord(letter) % 32
            raise _Refused(f"'\\c' at offset {start} must be followed by a letter")
        if char == "x":
            return self._hex_digits(2, start)
        if char == "u":
            return self._unicode_escape(start)
        if char in _SYNTAX or not (char.isascii() and char.isalnum()):
            return ord(char)
        raise _Refused(f"'\\{char}' at offset {start} is not an ECMA-262 escape")

    def _hex_digits(self, count: int, start: int) -> int:
        text = self.source[self.pos : self.pos + count]
        if len(text) != count or not all(c in "0123456789abcdefABCDEF" for c in text):
            raise _Refused(f"the escape at offset {start} needs {count} hex digits")
        self.pos += count
        return int(text, 16)

    def _unicode_escape(self, start: int) -> int:
        if self._peek() == "{":
            end = self.source.find("}", self.pos)
            digits = self.source[self.pos + 1 : end] if end > 0 else ""
            if not digits or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise _Refused(f"invalid '\\u{{...}}' escape at offset {start}")
            code = int(digits, 16)
            if code > _MAX_CODE_POINT:
                raise _Refused(f"'\\u{{...}}' at offset {start} is beyond U+10FFFF")
            self.pos = end + 1
        else:
            code = self._hex_digits(4, start)
            if 0xD800 <= code <= 0xDBFF and self._startswith("\\u"):
                saved = self.pos
                self.pos += 2
                try:
                    low = self._hex_digits(4, start)
                except _Refused:
                    low = 0
                if 0xDC00 <= low <= 0xDFFF:
                    return 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                self.pos = saved
        if 0xD800 <= code <= 0xDFFF:
            raise _Refused(f"lone surrogate escape at offset {start}: RE2 cannot match it")
        return code

    def _property(self, char: str, start: int) -> str:
        if self._peek() != "{":
            raise _Refused(f"'\\{char}' at offset {start} needs a '{{...}}' property")
        end = self.source.find("}", self.pos)
        body = self.source[self.pos + 1 : end] if end > 0 else ""
        self.pos = end + 1 if end > 0 else len(self.source)
        name, equals, value = body.partition("=")
        translated: str | None = None
        if not equals:
            translated = _CATEGORIES.get(name)
        elif name in ("General_Category", "gc"):
            translated = _CATEGORIES.get(value)
        elif name in ("Script", "sc") and value.replace("_", "").isalpha():
            translated = value
        if translated is None:
            raise _Refused(
                f"'\\{char}{{{body}}}' at offset {start}: only General_Category values and "
                "Script=... are supported"
            )
        return f"\\{char}{{{translated}}}"

    # -- character classes --------------------------------------------------

    def _class(self) -> str:
        start = self.pos
        self.pos += 1  # [
        negated = self._peek() == "^"
        if negated:
            self.pos += 1
        ranges: list[_Range] = []
        properties: list[str] = []
        while True:
            if self._peek() == "":
                raise _Refused(f"the class at offset {start} is not closed")
            if self._peek() == "]":
                self.pos += 1
                break
            low = self._class_atom(ranges, properties)
            if low is None or self._peek() != "-" or self._peek(1) in ("]", ""):
                if low is not None:
                    ranges.append((low, low))
                continue
            self.pos += 1  # -
            high = self._class_atom(ranges, properties)
            if high is None:
                # Annex B: a class escape after '-' makes the '-' a literal.
                ranges += [(low, low), (0x2D, 0x2D)]
                continue
            if high < low:
                raise _Refused(f"range out of order in the class at offset {start}")
            ranges.append((low, high))
        return _class_text(ranges, properties, negated=negated)

    def _class_atom(self, ranges: list[_Range], properties: list[str]) -> int | None:
        """One class member: its code point, or None after adding a set to the lists."""
        char = self._take()
        if char != "\\":
            code = ord(char)
            if 0xD800 <= code <= 0xDFFF:
                raise _Refused("the pattern holds a lone surrogate, which RE2 cannot match")
            return code
        start = self.pos - 1
        escaped = self._take()
        if escaped in _CLASS_ESCAPES:
            ranges.extend(_CLASS_ESCAPES[escaped])
            return None
        if escaped in ("p", "P"):
            properties.append(self._property(escaped, start))
            return None
        if escaped == "b":
            return 0x08
        if escaped == "B":
            raise _Refused(f"'\\B' at offset {start} is not allowed in a class")
        return self._character_escape(escaped, start)


def translate(pattern: str) -> str:
    """The RE2 syntax for ECMA-262 ``pattern``; raises ``InvalidSchemaError`` if there is none."""
    try:
        return _translate(pattern)
    except _Refused as why:
        raise InvalidSchemaError(f"pattern {_shown(pattern)}: {why}") from None


def _translate(pattern: str) -> str:
    if len(pattern) > MAX_PATTERN_CHARS:
        raise _Refused(f"longer than {MAX_PATTERN_CHARS} characters")
    return _Translator(pattern).translate()


def _shown(pattern: str) -> str:
    # Schemas are not secret (kstrata.domain.schema); long patterns are cut.
    text = json.dumps(pattern, ensure_ascii=False)
    return text if len(text) <= 80 else text[:76] + '..."'


class Pattern:
    """One compiled pattern: ``search`` is ECMA-262's ``RegExp.prototype.test``."""

    __slots__ = ("_search", "source")

    def __init__(self, source: str, search: Callable[[bytes], object]) -> None:
        self.source = source
        self._search = search

    def search(self, text: str) -> bool:
        """True if the pattern matches anywhere in ``text`` (linear in ``len(text)``)."""
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate (JSON allows "\\ud800") is one code point that
            # nothing but '.' and negated classes match; U+FFFD behaves the same.
            data = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text).encode(
                "utf-8"
            )
        return self._search(data) is not None


# google-re2 ships no type information: these Protocols name what is used of it.


class _Options(Protocol):
    max_mem: int
    log_errors: bool


class _Compiled(Protocol):
    def search(self, text: bytes) -> object: ...


class _RE2(Protocol):
    error: type[Exception]

    def Options(self) -> _Options: ...  # re2 spells it so

    def compile(self, pattern: bytes, options: _Options) -> _Compiled: ...


_engine_lock = threading.Lock()
_engine: tuple[_RE2, _Options] | None = None


def _re2() -> tuple[_RE2, _Options]:
    """The ``re2`` module and its options for untrusted patterns, imported once."""
    global _engine  # noqa: PLW0603
    with _engine_lock:
        if _engine is None:
            module: _RE2 = import_module("re2")
            options = module.Options()
            options.max_mem = MAX_PROGRAM_BYTES
            # RE2 would print every refused pattern to stderr.
            options.log_errors = False
            _engine = (module, options)
        return _engine


@functools.lru_cache(maxsize=1024)
def _compile(pattern: str) -> Pattern | str:
    """The compiled pattern, or the reason it cannot be (cached either way)."""
    try:
        translated = _translate(pattern)
    except _Refused as why:
        return str(why)
    module, options = _re2()
    try:
        compiled = module.compile(translated.encode("ascii"), options)
    except module.error as exc:
        detail = exc.args[0] if exc.args else b""
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        if "too large" in str(detail) or "too big" in str(detail):
            return "too large for RE2's memory bound once compiled"
        return f"RE2 cannot compile it ({detail})"
    return Pattern(pattern, compiled.search)


def compile_pattern(pattern: str) -> Pattern:
    """Compile ECMA-262 ``pattern`` for RE2, or raise ``InvalidSchemaError`` saying why."""
    compiled = _compile(pattern)
    if isinstance(compiled, str):
        raise InvalidSchemaError(f"pattern {_shown(pattern)}: {compiled}")
    return compiled


def search(pattern: str, text: str) -> bool:
    """ECMA-262 ``new RegExp(pattern, "u").test(text)``, in linear time."""
    return compile_pattern(pattern).search(text)
