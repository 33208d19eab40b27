"""JSON values: the one data model every configuration layer is reduced to.

Whatever a layer comes from (a YAML file, a JSON file, a custom resource read
through the API, where kopf hands out ``Mapping`` views), it is normalised here
into plain ``dict``/``list``/scalar trees with string keys and finite numbers,
inside the same safety bounds as the document loader.  Everything above (merge,
schema, render) can then recurse without guarding against odd types, cycles or
unbounded depth.

This module also owns the JSON path notation used in every error message, so
paths read the same whether they come from the loader, the schema validator
or the renderer.  Paths name keys and indexes, never values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from kstrata.errors import DocumentError, InputLimitError, InvalidInputError

JSONScalar: TypeAlias = bool | int | float | str | None
JSONValue: TypeAlias = "JSONScalar | list[JSONValue] | dict[str, JSONValue]"
JSONObject: TypeAlias = dict[str, JSONValue]
PathPart: TypeAlias = str | int


@dataclass(frozen=True)
class Limits:
    """Safety bounds for one input (a document stream or one spec field).

    ``max_depth`` counts values on the way from the root to the deepest one
    (a bare scalar has depth 1); ``max_nodes`` counts values after alias
    expansion, so a YAML alias bomb is measured by what it would become.
    """

    max_bytes: int = 4 * 1024 * 1024
    max_depth: int = 64
    max_nodes: int = 100_000


DEFAULT_LIMITS = Limits()

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")


def _quote_key(key: str) -> str:
    out = ["'"]
    for ch in key:
        if ch in "'\\":
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append("'")
    return "".join(out)


def json_path(parts: Iterable[PathPart]) -> str:
    """Render a path as ``$.server.port``, ``$.items[2]`` or ``$['a.b']``."""
    out = ["$"]
    for part in parts:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _IDENTIFIER.match(part):
            out.append("." + part)
        else:
            out.append("[" + _quote_key(part) + "]")
    return "".join(out)


def describe_where(where: str, parts: Sequence[PathPart]) -> str:
    """Join a field name (``spec.base``) and a path below it for messages."""
    if not parts:
        return where
    return where + json_path(parts)[1:]


class _Counter:
    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


def normalize(value: object, *, where: str, limits: Limits = DEFAULT_LIMITS) -> JSONValue:
    """Validate ``value`` as JSON and return a plain, independent copy of it.

    Accepts any ``Mapping`` (string keys only) and any non-string ``Sequence``,
    so read-only views from kopf or the Kubernetes client work.  Raises
    ``DocumentError`` for non-JSON types, non-string keys and non-finite
    floats, and ``InputLimitError`` beyond ``limits``; messages name ``where``
    and the path, never the value.
    """
    return _Normalizer(where, limits).visit(value, 1)


class _Normalizer:
    def __init__(self, where: str, limits: Limits) -> None:
        self.where = where
        self.limits = limits
        self.path: list[PathPart] = []
        self.count = 0

    def _here(self) -> str:
        return describe_where(self.where, self.path)

    def visit(self, value: object, depth: int) -> JSONValue:
        if depth > self.limits.max_depth:
            raise InputLimitError(
                f"{self._here()}: nesting deeper than {self.limits.max_depth} levels"
            )
        self.count += 1
        if self.count > self.limits.max_nodes:
            raise InputLimitError(f"{self.where}: more than {self.limits.max_nodes} values")
        # bool before int: bool is an int subclass but renders differently.
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            if not math.isfinite(value):
                raise DocumentError(
                    f"{self._here()}: non-finite number (NaN or infinity) "
                    "cannot be represented in JSON"
                )
            return float(value)
        if isinstance(value, Mapping):
            result: JSONObject = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    raise DocumentError(
                        f"{self._here()}: mapping key is not a string "
                        "(JSON objects need string keys; quote the key)"
                    )
                self.path.append(key)
                result[key] = self.visit(item, depth + 1)
                self.path.pop()
            return result
        if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
            items: list[JSONValue] = []
            for index, item in enumerate(value):
                self.path.append(index)
                items.append(self.visit(item, depth + 1))
                self.path.pop()
            return items
        raise DocumentError(f"{self._here()}: value of type {type(value).__name__} is not JSON")


def string_map(value: object, where: str) -> dict[str, str]:
    """``value`` as a map of strings to strings; ``None`` (a field left out) is empty.

    Labels, annotations and a SealedSecret's ``encryptedData`` all have this
    shape.  Anything else is an ``InvalidInputError`` naming ``where``, never
    the value: a mistyped field may hold a secret.
    """
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidInputError(f"{where} must map strings to strings")
    return dict(value)


def deep_copy(value: JSONValue) -> JSONValue:
    """Copy a JSON tree that is already known to be valid and bounded."""
    if isinstance(value, dict):
        return {key: deep_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [deep_copy(item) for item in value]
    return value
