"""Hostile inputs shared by the unit and cluster tests of the time budget."""

from __future__ import annotations

from typing import Any


def multiplying_schema(depth: int = 24) -> dict[str, Any]:
    """A schema whose validation of one value costs 2**depth: small, loop-free, exponential.

    Each definition is ``anyOf`` two references to the next; the last one
    refuses the value, so every alternative is tried all the way down.
    """
    defs: dict[str, Any] = {
        f"l{i}": {"anyOf": [{"$ref": f"#/$defs/l{i + 1}"}, {"$ref": f"#/$defs/l{i + 1}"}]}
        for i in range(depth)
    }
    defs[f"l{depth}"] = {"type": "string"}
    return {"$defs": defs, "type": "object", "properties": {"x": {"$ref": "#/$defs/l0"}}}
