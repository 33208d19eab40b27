"""What configuration a rendered file is the reading of: ``render``, inverted.

Why: ``kstrata get`` compares what a ConfigMap serves with what its profile
renders, and ``kstrata import`` turns a ConfigMap key or a file into a
ConfigProfile; both start from the text of a YAML, JSON, ``.env`` or
``.properties`` file and need the configuration it renders from.  For YAML
and JSON that is the document; ``.env`` values stay strings; a
``.properties`` file has two readings, nested (``a.b=1`` as ``{a: {b: "1"}}``,
what ``kstrata get --key a.b`` and ``set a.b=...`` expect) and flat, and
``candidates`` returns the useful one first.  Pure: no file or cluster.
"""

from __future__ import annotations

import re

from kstrata.domain.documents import load_json, load_yaml
from kstrata.domain.flat_formats import parse_env, parse_properties
from kstrata.domain.jsonvalue import DEFAULT_LIMITS, JSONObject, JSONValue, PathPart
from kstrata.domain.render import OutputFormat
from kstrata.errors import DocumentError


class _NotNestable(Exception):
    """A properties file whose keys do not form one tree (``a=1`` and ``a.b=2``)."""


_PROPERTY_SEGMENT = re.compile(r"([^.\[\]]+)((?:\[\d+\])*)\Z")


def _property_path(key: str) -> list[PathPart]:
    path: list[PathPart] = []
    for segment in key.split("."):
        match = _PROPERTY_SEGMENT.match(segment)
        if match is None:
            raise _NotNestable
        path.append(match.group(1))
        path.extend(int(index) for index in re.findall(r"\[(\d+)\]", match.group(2)))
        # Deeper than a document may nest: the flat keys are the only reading
        # (and the tree below is built recursively).
        if len(path) >= DEFAULT_LIMITS.max_depth:
            raise _NotNestable
    return path


def _nest_properties(flat: dict[str, str]) -> JSONObject:
    """``a.b[0].c=x`` lines as the tree kstrata would flatten back into them."""
    root: dict[PathPart, object] = {}
    for key, value in flat.items():
        path = _property_path(key)
        node = root
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise _NotNestable
            node = child
        if path[-1] in node:
            raise _NotNestable
        node[path[-1]] = value

    def build(node: object) -> JSONValue:
        if not isinstance(node, dict):
            assert isinstance(node, str)
            return node
        keys = list(node)
        if all(isinstance(k, int) for k in keys):
            if sorted(keys) != list(range(len(keys))):
                raise _NotNestable
            return [build(node[index]) for index in range(len(keys))]
        if any(isinstance(k, int) for k in keys):
            raise _NotNestable
        return {str(k): build(v) for k, v in node.items()}

    if not root:
        return {}  # no keys at all (an empty file, or only comments): an empty map
    tree = build(root)
    assert isinstance(tree, dict)
    return tree


def candidates(text: str, fmt: OutputFormat, source: str) -> list[JSONObject]:
    """Configurations ``text`` may be the rendering of, most useful reading first."""
    if fmt in ("yaml", "json"):
        loaded = load_yaml(text, source=source) if fmt == "yaml" else load_json(text, source=source)
        if not isinstance(loaded, dict):
            raise DocumentError(f"{source}: the top level must be an object (key: value pairs)")
        return [loaded]
    data = text.encode("utf-8")
    if fmt == "env":
        # Values stay strings: that is all an env file holds, and it renders back the same.
        return [dict(parse_env(data, source))]
    flat = parse_properties(data, source)
    try:
        # Nested first: ``a.b=1`` as {a: {b: "1"}} is what ``kstrata get --key a.b``
        # and ``kstrata set a.b=...`` expect; flat keys are the fallback.
        return [_nest_properties(flat), dict(flat)]
    except _NotNestable:
        return [dict(flat)]
