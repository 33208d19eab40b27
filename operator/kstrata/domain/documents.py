"""Safe, bounded loading of YAML and JSON documents into JSON values.

Configuration files and profile manifests come from users, so loading must
be safe against hostile input, not just malformed input:

* Only the JSON-compatible YAML core types are produced (null, bool, int,
  float, str, sequences, string-keyed mappings).  Any other tag is refused,
  and timestamps stay strings: a date is not JSON and would break rendering.
* Bounds from :class:`~kstrata.domain.jsonvalue.Limits`: input size, nesting
  depth and the number of values *after alias expansion*.  An alias counts
  as the whole subtree it stands for, so a "billion laughs" document fails
  after a handful of events, before anything large is built.  Recursive
  aliases are refused (JSON has no cycles).  Merge keys (``<<``) only ever
  merge values already counted, so they cannot amplify beyond the bound.
* Duplicate keys are errors rather than "last one wins".

We take only the event stream from PyYAML (libyaml's parser when available:
a non-recursive state machine) and build values ourselves with an explicit
stack, so no input can exhaust the Python or C stack and no PyYAML
constructor runs.  Errors are ``DocumentError``/``InputLimitError`` with the
file name, line and JSON path; they never quote document content.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from re import Pattern
from typing import Any, Final, Protocol

import yaml
from yaml import events
from yaml.constructor import SafeConstructor
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

from kstrata.domain.jsonvalue import (
    DEFAULT_LIMITS,
    JSONObject,
    JSONValue,
    Limits,
    PathPart,
    deep_copy,
    json_path,
    normalize,
)
from kstrata.errors import DocumentError, InputLimitError

__all__ = [
    "load_documents",
    "load_json",
    "load_yaml",
    "load_yaml_documents",
    "objects_of",
]

_TAG = "tag:yaml.org,2002:"
_STR: Final = _TAG + "str"
_INT: Final = _TAG + "int"
_FLOAT: Final = _TAG + "float"
_BOOL: Final = _TAG + "bool"
_NULL: Final = _TAG + "null"
_SEQ: Final = _TAG + "seq"
_MAP: Final = _TAG + "map"
_MERGE: Final = _TAG + "merge"

_SCALAR_TAGS = frozenset({_STR, _INT, _FLOAT, _BOOL, _NULL})

# PyYAML's implicit resolvers minus timestamp (dates are not JSON), "=" and
# the "yaml" tag, which have no JSON meaning.  Kept: null, bool, int, float and
# the merge key.  YAML 1.1 spellings (yes/no, 0x1F) resolve as PyYAML does.
_KEEP = frozenset({_NULL, _BOOL, _INT, _FLOAT, _MERGE})
_IMPLICIT: dict[str | None, list[tuple[str, Pattern[str]]]] = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag in _KEEP]
    for first, resolvers in Resolver.yaml_implicit_resolvers.items()
}

# The scalar converters only read ``node.value``; one shared instance is safe.
_CONVERT = SafeConstructor()


def _resolve_plain(value: str) -> str:
    for tag, regexp in _IMPLICIT.get(value[0] if value else "", []):
        if regexp.match(value):
            return tag
    return _STR


class _MergeKey:
    """Marks a ``<<`` merge key in key position."""


_MERGE_KEY: Final = _MergeKey()
_NO_KEY: Final = object()


class _Frame:
    __slots__ = ("anchor", "container", "depth", "key", "merges", "reach", "start_count")

    def __init__(
        self, container: JSONObject | list[JSONValue], anchor: str | None, depth: int, count: int
    ) -> None:
        self.container = container
        self.anchor = anchor
        self.depth = depth
        self.start_count = count
        # Deepest depth reached below this frame, counting alias expansion.
        self.reach = depth
        self.key: object = _NO_KEY
        self.merges: list[JSONObject] = []


class _PurePythonParser(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):
    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)


class _EventParser(Protocol):
    """What :func:`_build` needs of a parser: libyaml's and the pure-Python one alike."""

    def get_event(self) -> events.Event | None: ...


def _parser(text: str) -> _EventParser:
    # libyaml's parser is faster and non-recursive; the pure-Python one is the
    # fallback when PyYAML was built without it.  Both yield the same events.
    if yaml.__with_libyaml__:
        return yaml.cyaml.CParser(text)  # type: ignore[attr-defined]
    return _PurePythonParser(text)


_QUOTED = re.compile(r"""(['"]).*?\1""")


def _safe_problem(problem: str | None) -> str:
    # libyaml's problems are fixed phrases (its quotes hold grammar tokens like
    # ',' or ']'), but the pure-Python scanner quotes the offending input:
    # there, drop anything quoted.
    text = problem or "syntax error"
    if not yaml.__with_libyaml__:
        text = _QUOTED.sub("...", text)
    return text[:120]


class _Builder:
    """Turns one YAML event stream into JSON values, enforcing the bounds."""

    def __init__(self, source: str, limits: Limits) -> None:
        self.source = source
        self.limits = limits
        self.stack: list[_Frame] = []
        self.count = 0
        self.anchors: dict[str, tuple[JSONValue, int, int]] = {}
        self.open_anchors: set[str] = set()
        self.root: JSONValue = None
        self.line = 0
        # Where the last event began (a character index): see _replay_for_limits.
        self.index = 0

    # --- errors -------------------------------------------------------------

    def _path(self) -> list[PathPart]:
        parts: list[PathPart] = []
        for frame in self.stack:
            if isinstance(frame.container, dict):
                if isinstance(frame.key, str):
                    parts.append(frame.key)
                elif frame.key is _MERGE_KEY:
                    parts.append("<<")
            else:
                parts.append(len(frame.container))
        return parts

    def _where(self) -> str:
        return f"{self.source}:{self.line}: {json_path(self._path())}"

    def _fail(self, message: str) -> DocumentError:
        return DocumentError(f"{self._where()}: {message}")

    def _limit(self, message: str) -> InputLimitError:
        return InputLimitError(f"{self._where()}: {message}")

    # --- bounds -------------------------------------------------------------

    def _add_count(self, weight: int) -> None:
        self.count += weight
        if self.count > self.limits.max_nodes:
            raise self._limit(f"more than {self.limits.max_nodes} values after alias expansion")

    def _check_depth(self, depth: int) -> None:
        if depth > self.limits.max_depth:
            raise self._limit(f"nesting deeper than {self.limits.max_depth} levels")

    # --- events -------------------------------------------------------------

    def _in_key_position(self) -> bool:
        return (
            bool(self.stack)
            and isinstance(self.stack[-1].container, dict)
            and (self.stack[-1].key is _NO_KEY)
        )

    def scalar(self, event: events.ScalarEvent) -> None:
        tag = event.tag
        if tag == "!":
            # The non-specific tag "!" marks a scalar as not plain: a string
            # (libyaml and the pure-Python parser report its implicit flags
            # differently, so they must not decide).
            tag = _STR
        elif tag is None:
            tag = _resolve_plain(event.value) if event.implicit[0] else _STR
        key_position = self._in_key_position()
        value: JSONValue | _MergeKey
        if tag == _MERGE:
            value = _MERGE_KEY if key_position else "<<"
        elif tag not in _SCALAR_TAGS:
            raise self._fail("unsupported YAML tag (only JSON-compatible core tags are allowed)")
        else:
            value = self._convert(tag, event.value)
        depth = len(self.stack) + 1
        self._check_depth(depth)
        if not key_position:
            self._add_count(1)
        if event.anchor is not None:
            if isinstance(value, _MergeKey):
                raise self._fail("an anchor on a merge key is not supported")
            self.anchors[event.anchor] = (value, 1, 1)
        self._emit(value, 1)

    def _convert(self, tag: str, text: str) -> JSONValue:
        if tag == _STR:
            return text
        if tag == _NULL:
            return None
        node = ScalarNode(tag, text)
        try:
            if tag == _BOOL:
                return bool(_CONVERT.construct_yaml_bool(node))
            if tag == _INT:
                return int(_CONVERT.construct_yaml_int(node))
            number = float(_CONVERT.construct_yaml_float(node))
        except (ValueError, KeyError, IndexError):
            raise self._fail(f"value is not a valid {tag.removeprefix(_TAG)}") from None
        if not math.isfinite(number):
            raise self._fail("non-finite number (NaN or infinity) cannot be represented in JSON")
        return number

    def start(self, event: events.CollectionStartEvent, *, mapping: bool) -> None:
        expected = _MAP if mapping else _SEQ
        if event.tag not in (None, "!", expected):
            raise self._fail("unsupported YAML tag (only JSON-compatible core tags are allowed)")
        if self._in_key_position():
            raise self._fail("mapping key is not a string (JSON objects need string keys)")
        depth = len(self.stack) + 1
        self._check_depth(depth)
        count_before = self.count
        self._add_count(1)
        container: JSONObject | list[JSONValue] = {} if mapping else []
        if event.anchor is not None:
            self.open_anchors.add(event.anchor)
        self.stack.append(_Frame(container, event.anchor, depth, count_before))

    def end(self) -> None:
        frame = self.stack.pop()
        value: JSONValue = frame.container
        if isinstance(value, dict) and frame.merges:
            # Explicit keys win; among merged mappings the first listed wins.
            merged: JSONObject = {}
            for source in reversed(frame.merges):
                merged.update(source)
            merged.update(value)
            value = merged
        height = frame.reach - frame.depth + 1
        if frame.anchor is not None:
            self.open_anchors.discard(frame.anchor)
            self.anchors[frame.anchor] = (value, self.count - frame.start_count, height)
        self._emit(value, height)

    def alias(self, event: events.AliasEvent) -> None:
        anchor = event.anchor
        if anchor in self.open_anchors:
            raise self._fail("recursive alias (JSON values cannot contain cycles)")
        if anchor not in self.anchors:
            raise self._fail("alias to an undefined anchor")
        value, weight, height = self.anchors[anchor]
        self._check_depth(len(self.stack) + height)
        if not self._in_key_position():
            self._add_count(weight)
        # A real copy: the loaded tree never shares containers between places.
        self._emit(deep_copy(value), height)

    def _emit(self, value: object, height: int) -> None:
        if not self.stack:
            self.root = value  # type: ignore[assignment]
            return
        frame = self.stack[-1]
        frame.reach = max(frame.reach, frame.depth + height)
        container = frame.container
        if isinstance(container, list):
            container.append(value)  # type: ignore[arg-type]
            return
        if frame.key is _NO_KEY:
            if not isinstance(value, str | _MergeKey):
                raise self._fail(
                    "mapping key is not a string (JSON objects need string keys; quote the key)"
                )
            if isinstance(value, str) and value in container:
                frame.key = value
                raise self._fail("duplicate key")
            frame.key = value
            return
        if frame.key is _MERGE_KEY:
            self._merge(frame, value)
        else:
            assert isinstance(frame.key, str)
            container[frame.key] = value  # type: ignore[assignment]
        frame.key = _NO_KEY

    def _merge(self, frame: _Frame, value: object) -> None:
        if frame.merges:
            raise self._fail("more than one merge key '<<' in one mapping")
        sources = value if isinstance(value, list) else [value]
        if not sources or not all(isinstance(source, dict) for source in sources):
            raise self._fail("merge key '<<' needs a mapping or a list of mappings")
        frame.merges = [source for source in sources if isinstance(source, dict)]

    def document_start(self) -> None:
        # Anchors are scoped to one document.
        self.anchors = {}
        self.open_anchors = set()
        self.root = None


# Any: each handler takes the event class it is keyed by, which one callable
# type cannot say (a handler of ScalarEvent is not a handler of every Event).
_HANDLERS: Final[dict[type[events.Event], Callable[[_Builder, Any], None]]] = {
    events.ScalarEvent: _Builder.scalar,
    events.MappingStartEvent: lambda builder, event: builder.start(event, mapping=True),
    events.SequenceStartEvent: lambda builder, event: builder.start(event, mapping=False),
    events.MappingEndEvent: lambda builder, _event: builder.end(),
    events.SequenceEndEvent: lambda builder, _event: builder.end(),
    events.AliasEvent: _Builder.alias,
    events.DocumentStartEvent: lambda builder, _event: builder.document_start(),
}


def _decode(data: str | bytes, source: str, limits: Limits) -> str:
    if isinstance(data, bytes):
        size = len(data)
        if size > limits.max_bytes:
            raise InputLimitError(
                f"{source}: document is {size} bytes, over the limit of {limits.max_bytes}"
            )
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DocumentError(f"{source}: not valid UTF-8 (byte offset {exc.start})") from None
    # A character is at least one byte: only long texts need the exact count.
    if len(data) * 4 > limits.max_bytes:
        try:
            size = len(data.encode("utf-8"))
        except UnicodeEncodeError:
            raise DocumentError(f"{source}: text is not valid Unicode") from None
        if size > limits.max_bytes:
            raise InputLimitError(
                f"{source}: document is {size} bytes, over the limit of {limits.max_bytes}"
            )
    return data.removeprefix("\ufeff")


def load_yaml_documents(
    data: str | bytes, *, source: str = "<input>", limits: Limits = DEFAULT_LIMITS
) -> list[JSONValue]:
    """Load every document of a YAML stream (``---`` separated), in order.

    An empty document yields ``None``; an empty stream yields ``[]``.
    """
    text = _decode(data, source, limits)
    builder = _Builder(source, limits)
    parser: _EventParser | None = None
    try:
        # Inside the try: the pure-Python reader checks the whole text for
        # unprintable characters as it is built, and raises ReaderError then.
        parser = _parser(text)
        return _build(parser, builder)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if yaml.__with_libyaml__ and mark is not None:
            _replay_for_limits(text[: mark.index + 1], builder, limits)
        line = f"{mark.line + 1}" if mark is not None else "?"
        raise DocumentError(
            f"{source}:{line}: invalid YAML: {_safe_problem(exc.problem)}"
        ) from None
    except yaml.reader.ReaderError as exc:
        raise DocumentError(
            f"{source}: invalid YAML: unacceptable character at position {exc.position}"
        ) from None
    except yaml.YAMLError:
        raise DocumentError(f"{source}: invalid YAML") from None
    finally:
        dispose = getattr(parser, "dispose", None)
        if dispose is not None:
            dispose()


def _build(parser: _EventParser, builder: _Builder) -> list[JSONValue]:
    documents: list[JSONValue] = []
    while True:
        event = parser.get_event()
        if event is None or isinstance(event, events.StreamEndEvent):
            return documents
        if event.start_mark is not None:
            builder.line = event.start_mark.line + 1
            builder.index = event.start_mark.index
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(builder, event)
        elif isinstance(event, events.DocumentEndEvent):
            documents.append(builder.root)


def _replay_for_limits(prefix: str, failed: _Builder, limits: Limits) -> None:
    """Raise InputLimitError if the nesting bound, not the syntax, stopped libyaml.

    libyaml scans up to a simple key's length (1,024 characters) ahead of the
    events it hands out, and its own nesting limit (1,000 levels in PyYAML
    6.0.4's build) can fire inside that window before the builder has seen
    our lower bound.  Which bound was crossed is decided by structure, not
    by libyaml's wording: only flow openers can stack up that fast, so unless
    the window holds enough of them to cross the bound, the error stands as
    a syntax error.  Otherwise the pure-Python parser, which yields every
    event before the one that fails, replays the input up to the error into
    a fresh builder, which raises InputLimitError at the bound.
    """
    window = prefix[failed.index :]
    openers = window.count("[") + window.count("{")
    if len(failed.stack) + openers <= limits.max_depth:
        return
    try:
        _build(_PurePythonParser(prefix), _Builder(failed.source, limits))
    except yaml.YAMLError:
        return


def load_yaml(
    data: str | bytes, *, source: str = "<input>", limits: Limits = DEFAULT_LIMITS
) -> JSONValue:
    """Load a single YAML document (``None`` if the stream is empty)."""
    documents = load_yaml_documents(data, source=source, limits=limits)
    if len(documents) > 1:
        raise DocumentError(f"{source}: expected one YAML document, found {len(documents)}")
    return documents[0] if documents else None


class _DuplicateKeyError(Exception):
    pass


class _NonFiniteError(Exception):
    pass


def _unique_pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _DuplicateKeyError
    return result


def _reject_constant(_name: str) -> None:
    raise _NonFiniteError


def load_json(
    data: str | bytes, *, source: str = "<input>", limits: Limits = DEFAULT_LIMITS
) -> JSONValue:
    """Load one JSON document (strict: no NaN/Infinity, no duplicate keys)."""
    text = _decode(data, source, limits)
    try:
        raw = json.loads(text, object_pairs_hook=_unique_pairs, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        # ``exc.msg`` is a fixed phrase; ``str(exc)`` is too, but stay explicit.
        raise DocumentError(
            f"{source}:{exc.lineno}: invalid JSON (column {exc.colno}): {exc.msg}"
        ) from None
    except _DuplicateKeyError:
        raise DocumentError(f"{source}: duplicate key in a JSON object") from None
    except _NonFiniteError:
        raise DocumentError(f"{source}: NaN and Infinity cannot be represented in JSON") from None
    except RecursionError:
        raise InputLimitError(f"{source}: nesting deeper than {limits.max_depth} levels") from None
    except ValueError:
        # Integers beyond Python's digit limit.
        raise DocumentError(f"{source}: number too large") from None
    return normalize(raw, where=f"{source}: $", limits=limits)


def objects_of(
    document: JSONValue, source: str, *, expected: str = "Kubernetes objects"
) -> list[JSONObject]:
    """The objects one document stands for: none (an empty document), itself, or a ``List``'s items.

    ``kubectl get -o yaml`` prints several objects as a ``v1`` ``List``, so
    every ``-f`` reader accepts one wherever it accepts objects (nested lists
    included).  Anything but a mapping is a ``DocumentError`` saying what was
    ``expected`` (the caller's words, such as "SealedSecret manifests").
    """
    if document is None:
        return []
    if not isinstance(document, dict):
        raise DocumentError(f"{source}: expected {expected}")
    items = document.get("items")
    if document.get("kind") == "List" and isinstance(items, list):
        return [obj for item in items for obj in objects_of(item, source, expected=expected)]
    return [document]


def load_documents(
    data: str | bytes, *, source: str = "<input>", limits: Limits = DEFAULT_LIMITS
) -> list[JSONValue]:
    """Load a file's documents, choosing JSON or YAML by the file name."""
    if source.lower().endswith(".json"):
        return [load_json(data, source=source, limits=limits)]
    return load_yaml_documents(data, source=source, limits=limits)
