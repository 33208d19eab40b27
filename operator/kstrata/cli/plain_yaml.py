"""PyYAML's block output for plain data, without importing PyYAML.

Why it exists: ``kstrata seal --cert`` prints one small manifest as YAML,
and importing PyYAML costs that command ~9 ms of its ~90 ms cold start
(``yaml.reader`` alone compiles a large Unicode character class on import;
issue 18 item 5), although the command reads no YAML.  :func:`dump` writes
exactly what ``yaml.safe_dump(value, sort_keys=True, allow_unicode=True,
default_flow_style=False)`` writes, byte for byte, for the data it accepts,
and returns None for anything else, so the caller falls back to PyYAML.

It accepts only what it can render without PyYAML's analysis: a ``dict``
at the top; ``dict`` (``str`` keys), ``list``, ``bool``, ``int``, ``None``
and ``str`` inside; strings only when PyYAML writes them plain (ASCII
letters, digits and ``_./:=+-``, starting with a letter, ``_`` or ``/``,
not ending in ``:``, and not a word PyYAML reads as a bool or null), keys
shorter than PyYAML's simple-key limit, and no container that appears
twice (PyYAML would write an anchor).  A unit test compares it with
PyYAML on the accepted shapes and on near misses.
"""

from __future__ import annotations

import re
from typing import Final

#: What PyYAML writes plain in block context and resolves back to a string:
#: the first character keeps the int, float, timestamp, merge and value
#: resolvers out; no space, ``#`` or quote character can start a comment or
#: a quoted scalar; a ``:`` must be followed by a non-space.
_PLAIN: Final = re.compile(r"[A-Za-z_/][A-Za-z0-9_./:=+-]*(?<!:)\Z")
#: PyYAML's bool and null words (its resolver; YAML 1.1 without y/n).
_RESERVED: Final = frozenset(
    word
    for base in ("yes", "no", "true", "false", "on", "off", "null")
    for word in (base, base.capitalize(), base.upper())
)
#: PyYAML writes a longer key as a complex ``? key`` entry.
_SIMPLE_KEY_MAX: Final = 100


class _Unsupported(Exception):
    """The value holds something only PyYAML can render exactly."""


def dump(value: object) -> str | None:
    """``value`` as PyYAML's ``safe_dump`` would write it, or None if not sure."""
    if type(value) is not dict or not value:
        return None
    lines: list[str] = []
    try:
        _mapping(value, 0, lines, set())
    except _Unsupported:
        return None
    return "".join(lines)


def _scalar(value: object) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:
        return str(value)
    if type(value) is str and _PLAIN.match(value) and value not in _RESERVED:
        return value
    raise _Unsupported


def _check_once(value: dict[object, object] | list[object], seen: set[int]) -> None:
    if id(value) in seen:
        raise _Unsupported  # PyYAML would write an anchor and an alias
    seen.add(id(value))


def _mapping(value: dict[object, object], indent: int, lines: list[str], seen: set[int]) -> None:
    _check_once(value, seen)
    pad = " " * indent
    keys = list(value)
    if not all(type(key) is str for key in keys):
        raise _Unsupported
    for key in sorted(keys):  # type: ignore[type-var]  # all str, checked above
        text = _scalar(key)
        if len(text) >= _SIMPLE_KEY_MAX:
            raise _Unsupported
        item = value[key]
        if type(item) is dict:
            if not item:
                _check_once(item, seen)
                lines.append(f"{pad}{text}: {{}}\n")
            else:
                lines.append(f"{pad}{text}:\n")
                _mapping(item, indent + 2, lines, seen)
        elif type(item) is list:
            if not item:
                _check_once(item, seen)
                lines.append(f"{pad}{text}: []\n")
            else:
                lines.append(f"{pad}{text}:\n")
                _sequence(item, indent, lines, seen)  # PyYAML does not indent it
        else:
            lines.append(f"{pad}{text}: {_scalar(item)}\n")


def _sequence(value: list[object], indent: int, lines: list[str], seen: set[int]) -> None:
    _check_once(value, seen)
    pad = " " * indent
    for item in value:
        if type(item) is dict and item:
            nested: list[str] = []
            _mapping(item, indent + 2, nested, seen)
            lines.append(f"{pad}- {nested[0][indent + 2 :]}")
            lines.extend(nested[1:])
        elif type(item) is list and item:
            nested = []
            _sequence(item, indent + 2, nested, seen)
            lines.append(f"{pad}- {nested[0][indent + 2 :]}")
            lines.extend(nested[1:])
        elif type(item) is dict or type(item) is list:
            _check_once(item, seen)
            lines.append(f"{pad}- {'{}' if type(item) is dict else '[]'}\n")
        else:
            lines.append(f"{pad}- {_scalar(item)}\n")
