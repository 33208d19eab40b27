"""kopf handlers for ConfigProfiles: thin adapters over ``kstrata.app.profiles``.

What lives here is only the wiring kopf needs:

* create/update/resume of a profile call ``ProfileReconciler.reconcile``;
* in-memory indexes (no API calls, no writes) of namespace environment labels
  and of which profiles extend which, so a change to a base re-renders its
  dependents and a namespace relabel re-renders the namespace's profiles;
* ``kstrata.errors`` mapped to kopf: invalid input is a ``PermanentError``
  (retrying cannot help; a new generation will be handled), trouble with the
  cluster a ``TemporaryError``.

Namespaces are followed with ``kopf.index`` and ``kopf.on.event`` only: those
never write kopf's bookkeeping annotations onto objects kstrata does not own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import kopf

from kstrata.app.profiles import ProfileReconciler
from kstrata.controller.namespaces import labels_reader
from kstrata.domain.environments import ENVIRONMENT_LABEL
from kstrata.errors import InvalidInputError, KstrataError, NotFoundError, OwnershipError
from kstrata.kube.api import CONFIG_PROFILES, JSON, KubeApi

logger = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "kstrata.dev", "v1alpha1", "configprofiles"
#: How long to wait before looking again at a ConfigMap that is not ours.
OWNERSHIP_RETRY_SECONDS = 30.0


def to_kopf_error(error: KstrataError) -> Exception:
    """Map our hierarchy to kopf's retry semantics; messages are already value-free."""
    if isinstance(error, InvalidInputError):
        return kopf.PermanentError(str(error))
    if isinstance(error, OwnershipError):
        return kopf.TemporaryError(str(error), delay=OWNERSHIP_RETRY_SECONDS)
    return kopf.TemporaryError(str(error), delay=1.0 if error.transient else 10.0)


def register(registry: kopf.OperatorRegistry, api: KubeApi, reconciler: ProfileReconciler) -> None:
    backoff = reconciler.settings.retry_backoff
    environment_labels: dict[str, str | None] = {}

    @kopf.index(GROUP, VERSION, PLURAL, id="profiles_by_base", registry=registry)
    def profiles_by_base(*, namespace: str | None, name: str, spec: kopf.Spec, **_: Any) -> object:
        return {(namespace, base): name for base in spec.get("extends") or []}

    @kopf.index(GROUP, VERSION, PLURAL, id="profiles_by_namespace", registry=registry)
    def profiles_by_namespace(*, namespace: str | None, name: str, **_: Any) -> object:
        return {namespace: name}

    def dependents(indexes: dict[str, Any], namespace: str, name: str) -> list[str]:
        """Profiles that extend ``name``, directly or through other bases (cycle-safe)."""
        index: kopf.Index[tuple[str, str], str] = indexes["profiles_by_base"]
        found: list[str] = []
        queue = [name]
        while queue:
            base = queue.pop(0)
            for dependent in sorted(index.get((namespace, base), [])):
                if dependent not in found and dependent != name:
                    found.append(dependent)
                    queue.append(dependent)
        return found

    def reconcile_quietly(namespace: str, names: Iterable[str]) -> None:
        """Re-render other profiles; their failures land in their own status, not ours."""
        for other in names:
            try:
                reconciler.reconcile(api.get(CONFIG_PROFILES, namespace, other))
            except NotFoundError:
                continue
            except KstrataError as error:
                logger.info("re-rendering %s/%s: %s", namespace, other, error.reason)

    @kopf.on.resume(GROUP, VERSION, PLURAL, id="reconcile", registry=registry, backoff=backoff)
    @kopf.on.create(GROUP, VERSION, PLURAL, id="reconcile", registry=registry, backoff=backoff)
    # Updates are handled for spec changes only: metadata edits (including the
    # revision annotations this handler writes) never change the output.
    @kopf.on.update(
        GROUP, VERSION, PLURAL, id="reconcile", registry=registry, backoff=backoff, field="spec"
    )
    def reconcile_profile(
        *, body: kopf.Body, namespace: str | None, name: str, reason: str, **indexes: Any
    ) -> None:
        assert namespace is not None  # ConfigProfiles are namespaced
        with_index = ProfileReconciler(api, reconciler.settings, labels_reader(indexes))
        try:
            with_index.reconcile(_plain(body))
        except KstrataError as error:
            raise to_kopf_error(error) from error
        finally:
            # On resume nothing changed for the bases' sake: dependents resume themselves.
            if reason != "resume":
                reconcile_quietly(namespace, dependents(indexes, namespace, name))

    @kopf.on.delete(GROUP, VERSION, PLURAL, id="dependents", registry=registry, optional=True)
    def profile_deleted(*, namespace: str | None, name: str, **indexes: Any) -> None:
        # The ConfigMap goes with its owner (garbage collection); dependents now
        # miss a base and must say so.
        if namespace:
            reconcile_quietly(namespace, dependents(indexes, namespace, name))

    @kopf.on.event("namespaces", id="namespace_environment", registry=registry)
    def namespace_changed(*, name: str, labels: kopf.Labels, type: str, **indexes: Any) -> None:
        label = labels.get(ENVIRONMENT_LABEL)
        previous = environment_labels.get(name, label)
        environment_labels[name] = label
        if type in (None, "ADDED", "DELETED") or previous == label:
            return
        index: kopf.Index[str, str] = indexes["profiles_by_namespace"]
        reconcile_quietly(name, sorted(index.get(name, [])))


def _plain(body: kopf.Body) -> JSON:
    """A plain dict copy of kopf's read-only body view."""
    import copy

    return copy.deepcopy(dict(body))
