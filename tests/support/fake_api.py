"""One in-memory Kubernetes API for the use cases' unit tests, typed as ``KubeClient``.

The use cases type against :class:`kstrata.kube.api.KubeClient`, so this
class is checked by mypy as one (the assignment at the bottom), with no
``cast``.  It keeps the API server's rules the use cases rely on, and no
more: ``create`` on a taken name and ``PUT`` with a stale ``resourceVersion``
are ``ConflictError``; a missing object is ``NotFoundError``; every write
stamps a new ``resourceVersion`` and a ``uid``; lists filter on equality label
selectors; a merge patch that carries ``metadata.resourceVersion`` is
``ConflictError`` when the object has changed since; a ``PUT`` bumps
``metadata.generation`` when the spec changed and cannot change ``status``
(the subresource); ``dry_run`` is recorded in ``writes`` but stores nothing;
patches are JSON merge patches (RFC 7386); a ``generateName`` gets a suffix,
as an Event posted by a pass has.  Reload passes patch from a
thread pool, so writes hold a lock.  The same use cases run against the real
API server in the cluster tier.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping

from kstrata.domain.merge import merge_patch
from kstrata.errors import ConflictError, NotFoundError
from kstrata.kube.api import JSON, MERGE_PATCH, KubeClient, P, Patch, Resource, as_payload
from kstrata.payloads import KubeObject

Key = tuple[str, str, str]


def _wire(body: Mapping[str, object]) -> JSON:
    """A copy of ``body`` as the API server keeps it: plain JSON."""
    wire: JSON = {}
    wire.update(copy.deepcopy(body))
    return wire


class FakeApi:
    """Objects by (plural, namespace, name); ``writes`` says what was written, in order.

    ``patches`` keeps each patch as sent (plural, namespace, name, subresource,
    body), for tests that count what a pass wrote to which object;
    ``conflicts`` counts the writes refused with ``ConflictError``.
    """

    def __init__(self, objects: dict[Key, JSON] | None = None) -> None:
        self.objects: dict[Key, JSON] = {} if objects is None else objects
        self.writes: list[str] = []
        self.patches: list[tuple[str, str, str, str | None, Patch]] = []
        self.conflicts = 0
        self._version = 0
        self._lock = threading.Lock()

    def stored(self, resource: Resource[KubeObject], namespace: str | None, name: str) -> JSON:
        """The stored object itself (a test's look behind the API; ``KeyError`` if absent)."""
        return self.objects[(resource.plural, namespace or "", name)]

    def _stamp(self, body: JSON) -> JSON:
        self._version += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(self._version)
        stored["metadata"].setdefault("uid", f"uid-{body['metadata']['name']}")
        return stored

    def get(self, resource: Resource[P], namespace: str | None, name: str) -> P:
        found = self.get_or_none(resource, namespace, name)
        if found is None:
            raise NotFoundError(f"{resource.kind} {name} not found")
        return found

    def get_or_none(self, resource: Resource[P], namespace: str | None, name: str) -> P | None:
        found = self.objects.get((resource.plural, namespace or "", name))
        return None if found is None else as_payload(resource, copy.deepcopy(found))

    def list(
        self,
        resource: Resource[P],
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
    ) -> list[P]:
        wanted = dict(term.split("=", 1) for term in (label_selector or "").split(",") if term)
        return [
            as_payload(resource, copy.deepcopy(obj))
            for (plural, ns, _), obj in sorted(self.objects.items())
            if plural == resource.plural
            and namespace in (None, ns)
            and wanted.items() <= (obj["metadata"].get("labels") or {}).items()
        ]

    def create(self, resource: Resource[P], namespace: str | None, body: P) -> P:
        with self._lock:
            wire = _wire(body)
            metadata = wire["metadata"]
            if "name" not in metadata and "generateName" in metadata:
                metadata["name"] = f"{metadata['generateName']}{self._version + 1}"
            key = (resource.plural, namespace or "", metadata["name"])
            if key in self.objects:
                self.conflicts += 1
                raise ConflictError(f"{resource.kind} {key[2]} already exists")
            self.objects[key] = self._stamp(wire)
            self.writes.append(f"create {resource.plural}")
            return as_payload(resource, copy.deepcopy(self.objects[key]))

    def replace(
        self, resource: Resource[P], namespace: str | None, body: P, *, dry_run: bool = False
    ) -> P:
        wire = _wire(body)
        key = (resource.plural, namespace or "", wire["metadata"]["name"])
        current = self.objects.get(key)
        if current is None:
            raise NotFoundError(f"{resource.kind} {key[2]} not found")
        if current["metadata"]["resourceVersion"] != wire["metadata"].get("resourceVersion"):
            self.conflicts += 1
            raise ConflictError(f"{resource.kind} {key[2]}: stale resourceVersion")
        if "generation" in current["metadata"]:
            changed = wire.get("spec") != current.get("spec")
            wire["metadata"]["generation"] = current["metadata"]["generation"] + changed
        if "status" in current:
            # The status subresource: a PUT of the main resource cannot change it.
            wire["status"] = copy.deepcopy(current["status"])
        stamped = self._stamp(wire)
        if dry_run:  # the API server's dryRun=All: judged, not stored
            self.writes.append(f"dry-run replace {resource.plural}")
        else:
            self.objects[key] = stamped
            self.writes.append(f"replace {resource.plural}")
        return as_payload(resource, copy.deepcopy(stamped))

    def patch(
        self,
        resource: Resource[P],
        namespace: str | None,
        name: str,
        patch: Patch,
        *,
        subresource: str | None = None,
        content_type: str = MERGE_PATCH,
    ) -> P:
        assert content_type == MERGE_PATCH, "the fake takes merge patches only"
        assert isinstance(patch, Mapping), "a merge patch is an object"
        with self._lock:
            key = (resource.plural, namespace or "", name)
            current = self.objects.get(key)
            if current is None:
                raise NotFoundError(f"{resource.kind} {name} not found")
            wanted = _wire(patch).get("metadata", {}).get("resourceVersion")
            if wanted is not None and wanted != current["metadata"]["resourceVersion"]:
                self.conflicts += 1
                raise ConflictError(f"{resource.kind} {name}: stale resourceVersion")
            merged = merge_patch(copy.deepcopy(current), _wire(patch))
            assert isinstance(merged, dict)
            self.objects[key] = self._stamp(merged)
            self.writes.append(
                f"patch {resource.plural}" + (f"/{subresource}" if subresource else "")
            )
            self.patches.append(
                (resource.plural, namespace or "", name, subresource, copy.deepcopy(patch))
            )
            return as_payload(resource, copy.deepcopy(self.objects[key]))

    def delete(self, resource: Resource[P], namespace: str | None, name: str) -> None:
        if self.objects.pop((resource.plural, namespace or "", name), None) is not None:
            self.writes.append(f"delete {resource.plural}")


# mypy checks here that the fake is a KubeClient; a drift in either is a lint error.
_CHECKED: KubeClient = FakeApi()
