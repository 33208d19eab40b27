"""One in-memory index of namespace labels, shared by every kind of handler.

The environment rule reads the namespace label ``kstrata.dev/environment``.
Each kopf index over namespaces is a watch plus a copy of every namespace's
labels, so ConfigProfiles and SealedSecrets share this one instead of each
keeping their own.  An index reads only; it writes nothing onto namespaces.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Final, cast

import kopf

INDEX_ID: Final = "namespace_labels"


def register(registry: kopf.OperatorRegistry) -> None:
    # async: kopf runs plain functions in its thread pool, where an index update
    # would queue behind every slow reconcile of a burst.
    @kopf.index("namespaces", id=INDEX_ID, registry=registry)
    async def namespace_labels(
        *, name: str, labels: kopf.Labels, **_: object
    ) -> dict[str, dict[str, str]]:
        return {name: dict(labels)}


def labels_reader(indexes: Mapping[str, object]) -> Callable[[str], dict[str, str] | None]:
    """A lookup of a namespace's labels from the handler's index kwargs."""
    # kopf hands each index to handlers as a keyword argument named by its id;
    # what it holds is what namespace_labels returns, which kopf's types cannot carry.
    index = cast("kopf.Index[str, dict[str, str]]", indexes[INDEX_ID])

    def read(namespace: str) -> dict[str, str] | None:
        for labels in index.get(namespace, []):
            return labels
        return None

    return read


class Members:
    """Which objects of one kind live in which namespace, and what each refers to.

    Kept in memory from the kind's watch by an async ``kopf.on.event`` handler
    rather than with ``kopf.index``: kopf holds every object's handlers until
    *all* indexes are filled, and that wait wakes every waiting object for
    each object listed, which stalled a cold start of 1,000 profiles for ~7 s
    before the first reconcile.  Namespace labels stay a kopf index: a profile
    must never be rendered for the wrong environment because its namespace
    was not seen yet; these maps only find *other* objects to re-render, and
    every object is reconciled on its own at start-up anyway.

    Read from handler threads, written from the event loop: a lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Only objects that extend others: most refer to none, and an empty
        # frozenset and its key cost ~300 bytes each (20,000 objects at 10x scale).
        self._refs: dict[tuple[str, str], frozenset[str]] = {}
        self._names: dict[str, set[str]] = {}
        self._referrers: dict[tuple[str, str], set[str]] = {}

    def seen(self, namespace: str, name: str, refs: Iterable[object] = ()) -> None:
        wanted = frozenset(ref for ref in refs if isinstance(ref, str))
        with self._lock:
            self._forget(namespace, name)
            if wanted:
                self._refs[(namespace, name)] = wanted
            self._names.setdefault(namespace, set()).add(name)
            for ref in wanted:
                self._referrers.setdefault((namespace, ref), set()).add(name)

    def gone(self, namespace: str, name: str) -> None:
        with self._lock:
            self._forget(namespace, name)

    def _forget(self, namespace: str, name: str) -> None:
        for ref in self._refs.pop((namespace, name), ()):
            referrers = self._referrers.get((namespace, ref))
            if referrers is not None:
                referrers.discard(name)
                if not referrers:
                    del self._referrers[(namespace, ref)]
        names = self._names.get(namespace)
        if names is not None:
            names.discard(name)
            if not names:
                del self._names[namespace]

    def in_namespace(self, namespace: str) -> list[str]:
        with self._lock:
            return sorted(self._names.get(namespace, ()))

    def referring_to(self, namespace: str, name: str) -> list[str]:
        """Objects whose refs name ``name``, directly or through others (nearest first)."""
        found: list[str] = []
        queue = [name]
        with self._lock:
            while queue:
                target = queue.pop(0)
                for other in sorted(self._referrers.get((namespace, target), ())):
                    if other not in found and other != name:
                        found.append(other)
                        queue.append(other)
        return found
