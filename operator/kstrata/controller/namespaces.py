"""One in-memory index of namespace labels, shared by every kind of handler.

The environment rule reads the namespace label ``kstrata.dev/environment``.
Each kopf index over namespaces is a watch plus a copy of every namespace's
labels, so ConfigProfiles and SealedSecrets share this one instead of each
keeping their own.  An index reads only; it writes nothing onto namespaces.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import kopf

INDEX_ID: Final = "namespace_labels"


def register(registry: kopf.OperatorRegistry) -> None:
    @kopf.index("namespaces", id=INDEX_ID, registry=registry)
    def namespace_labels(*, name: str, labels: kopf.Labels, **_: Any) -> object:
        return {name: dict(labels)}


def labels_reader(indexes: dict[str, Any]) -> Callable[[str], dict[str, str] | None]:
    """A lookup of a namespace's labels from the handler's index kwargs."""
    index: kopf.Index[str, dict[str, str]] = indexes[INDEX_ID]

    def read(namespace: str) -> dict[str, str] | None:
        for labels in index.get(namespace, []):
            return labels
        return None

    return read
