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

import math
from collections.abc import Iterable

from kstrata.domain.jsonvalue import (
    DEFAULT_LIMITS,
    JSONObject,
    JSONValue,
    PathPart,
    deep_copy,
    json_path,
)
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


# --- the inverse: from two configs to the patch between them -------------


def same_json(left: JSONValue, right: JSONValue) -> bool:
    """JSON equality, stricter than ``==``: ``true``, ``1`` and ``1.0`` differ.

    Python's ``==`` calls ``True == 1 == 1.0`` and ``0.0 == -0.0``, but they
    render differently, so for "reproduces exactly" they are different values.
    """
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        assert isinstance(right, dict)
        return left.keys() == right.keys() and all(same_json(left[k], right[k]) for k in left)
    if isinstance(left, list):
        assert isinstance(right, list)
        return len(left) == len(right) and all(
            same_json(a, b) for a, b in zip(left, right, strict=True)
        )
    if isinstance(left, float):
        assert isinstance(right, float)
        return left == right and math.copysign(1.0, left) == math.copysign(1.0, right)
    return left == right


def merge_diff(base: JSONValue, target: JSONValue) -> JSONValue:
    """The smallest RFC 7386 patch with ``merge_patch(base, patch) == target``.

    Keys of ``base`` missing from ``target`` become ``null`` (delete), keys
    whose values differ are replaced (objects recursively, everything else
    whole), equal keys are left out.  Exact only when ``target`` has no
    ``null`` object members (outside arrays): a merge patch cannot set one,
    it deletes the key instead; see :func:`null_member`.
    """
    if not isinstance(base, dict) or not isinstance(target, dict):
        return deep_copy(target)
    patch: JSONObject = {key: None for key in base if key not in target}
    for key, value in target.items():
        if key not in base:
            patch[key] = deep_copy(value)
        elif not same_json(base[key], value):
            patch[key] = merge_diff(base[key], value)
    return patch


def null_member(value: JSONValue, parts: tuple[PathPart, ...] = ()) -> str | None:
    """JSON path of the first ``null`` object member, or None.

    Arrays are not searched: merge patches copy arrays whole, so a ``null``
    inside one survives; a ``null`` member of an object does not.
    """
    if not isinstance(value, dict):
        return None
    for key in sorted(value):
        item = value[key]
        if item is None:
            return json_path((*parts, key))
        found = null_member(item, (*parts, key))
        if found is not None:
            return found
    return None
