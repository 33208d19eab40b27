"""JSON Merge Patch (RFC 7386), the one way configuration layers combine.

Every layer (a base profile's effective config, ``spec.base``, the selected
``spec.environments.<env>`` overlay) is applied on top of the result so far
with :func:`merge_patch`: objects merge recursively, arrays and scalars
replace, ``null`` deletes a key.  RFC 7386 is used instead of a home-grown
deep merge so the semantics are the documented, well-known ones (the same as
``kubectl patch --type merge``).

The functions here are pure: they never mutate their inputs and the result
shares no containers with them, so callers may cache inputs and hand results
to code that edits them.
"""

from __future__ import annotations

from collections.abc import Iterable

from kstrata.domain.jsonvalue import DEFAULT_LIMITS, JSONObject, JSONValue, deep_copy
from kstrata.errors import InputLimitError, MergeError


def merge_patch(target: JSONValue, patch: JSONValue) -> JSONValue:
    """Apply ``patch`` to ``target`` as RFC 7386 defines and return a new value."""
    return _merge(target, patch, 1, copy_target=True)


def _merge(target: JSONValue, patch: JSONValue, depth: int, *, copy_target: bool) -> JSONValue:
    # Inputs are normally bounded already (documents and specs are normalised);
    # the guard keeps a hand-built deep value from ending in RecursionError.
    if depth > DEFAULT_LIMITS.max_depth:
        raise InputLimitError(f"merge: nesting deeper than {DEFAULT_LIMITS.max_depth} levels")
    if not isinstance(patch, dict):
        return deep_copy(patch)
    base: JSONObject = target if isinstance(target, dict) else {}
    result: JSONObject = {}
    # Target keys first, in target order, so the result reads like the target.
    for key, value in base.items():
        if key in patch:
            change = patch[key]
            if change is not None:
                result[key] = _merge(value, change, depth + 1, copy_target=copy_target)
        else:
            result[key] = deep_copy(value) if copy_target else value
    for key, change in patch.items():
        if key not in base and change is not None:
            result[key] = _merge(None, change, depth + 1, copy_target=False)
    return result


def merge_layers(layers: Iterable[tuple[str, JSONValue]]) -> JSONObject:
    """Merge-patch named object layers, in order, onto an empty object.

    Each layer must be a JSON object: a top-level array or scalar would
    replace the whole configuration, which is never what an overlay means.
    The name (for example ``spec.environments.prod``) is used in the error.
    """
    result: JSONObject = {}
    for name, layer in layers:
        if not isinstance(layer, dict):
            raise MergeError(f"{name}: an overlay must be an object")
        # ``result`` is our own intermediate: its subtrees need no copying.
        merged = _merge(result, layer, 1, copy_target=False)
        assert isinstance(merged, dict)  # an object patch always yields an object
        result = merged
    return result
