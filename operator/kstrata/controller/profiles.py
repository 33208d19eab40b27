"""kopf handlers for ConfigProfiles: thin adapters over ``kstrata.app.profiles``.

What lives here is only the wiring kopf needs:

* create/update/resume of a profile call ``ProfileReconciler.reconcile``;
* in memory (no API calls, no writes): namespace environment labels (a kopf
  index, ``controller.namespaces``) and which profiles live where and extend
  which (``Members``, kept by an event handler), so a change to a base
  re-renders its dependents and a namespace relabel re-renders the
  namespace's profiles; the same handler makes the reconciler forget a
  deleted profile's ConfigMap (``ConfigMapMemory``);
* ``kstrata.errors`` mapped to kopf: invalid input is a ``PermanentError``
  (retrying cannot help; a new generation will be handled), trouble with the
  cluster a ``TemporaryError``.

Namespaces are followed with ``kopf.index`` and ``kopf.on.event`` only: those
never write kopf's bookkeeping annotations onto objects kstrata does not own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import kopf

from kstrata import metrics
from kstrata.app.profiles import ProfileReconciler
from kstrata.app.reload_scheduling import SourceReconciled, status_reporter
from kstrata.controller.namespaces import Members, labels_reader
from kstrata.errors import (
    BudgetExceededError,
    InvalidInputError,
    KstrataError,
    NotFoundError,
    OwnershipError,
)
from kstrata.kube.api import CONFIG_PROFILES, KubeApi, payload_copy
from kstrata.wellknown import (
    CONFIG_PROFILE_KIND,
    CONFIG_PROFILE_PLURAL,
    ENVIRONMENT_LABEL,
    GROUP,
    VERSION,
)

logger = logging.getLogger(__name__)

#: How long to wait before looking again at a ConfigMap that is not ours.
OWNERSHIP_RETRY_SECONDS = 30.0
#: How long to wait before trying again a profile that ran past its time budget.
BUDGET_RETRY_SECONDS = 300.0


def to_kopf_error(error: KstrataError) -> Exception:
    """Map our hierarchy to kopf's retry semantics; messages are already value-free."""
    if isinstance(error, BudgetExceededError):
        # Almost always a schema built to multiply the work, but an overloaded
        # node can also make honest work run long: look again, rarely.
        return kopf.TemporaryError(str(error), delay=BUDGET_RETRY_SECONDS)
    if isinstance(error, InvalidInputError):
        return kopf.PermanentError(str(error))
    if isinstance(error, OwnershipError):
        return kopf.TemporaryError(str(error), delay=OWNERSHIP_RETRY_SECONDS)
    return kopf.TemporaryError(str(error), delay=1.0 if error.transient else 10.0)


def register(
    registry: kopf.OperatorRegistry,
    api: KubeApi,
    reconciler: ProfileReconciler,
    reconciled: SourceReconciled | None = None,
) -> None:
    """Register the ConfigProfile handlers; ``reconciled`` hears of every status written."""
    backoff = reconciler.settings.retry_backoff
    environment_labels: dict[str, str | None] = {}

    members = Members()

    # async: kopf runs plain functions in its thread pool, where this in-memory
    # update would wait behind every reconcile of a burst.
    @kopf.on.event(GROUP, VERSION, CONFIG_PROFILE_PLURAL, id="profile_members", registry=registry)
    async def profile_seen(
        *,
        type: str | None,
        namespace: str | None,
        name: str,
        spec: kopf.Spec,
        body: kopf.Body,
        **_: object,
    ) -> None:
        if not namespace:
            return
        if type == "DELETED":
            members.gone(namespace, name)
            reconciler.memory.forget(body.metadata.uid or "")
            metrics.OBJECTS.forget(CONFIG_PROFILE_KIND, namespace, name)
        else:
            metrics.OBJECTS.observe(CONFIG_PROFILE_KIND, body)
            extends = spec.get("extends")
            members.seen(namespace, name, extends if isinstance(extends, list) else ())

    def reconcile_quietly(namespace: str, names: Iterable[str]) -> None:
        """Re-render other profiles; their failures land in their own status, not ours."""
        for other in names:
            try:
                reconciler.reconcile(api.get(CONFIG_PROFILES, namespace, other))
            except NotFoundError:
                continue
            except KstrataError as error:
                logger.info("re-rendering %s/%s: %s", namespace, other, error.reason)

    @kopf.on.resume(
        GROUP, VERSION, CONFIG_PROFILE_PLURAL, id="reconcile", registry=registry, backoff=backoff
    )
    @kopf.on.create(
        GROUP, VERSION, CONFIG_PROFILE_PLURAL, id="reconcile", registry=registry, backoff=backoff
    )
    # Updates are handled for spec changes only: metadata edits (including the
    # revision annotations this handler writes) never change the output.
    @kopf.on.update(
        GROUP,
        VERSION,
        CONFIG_PROFILE_PLURAL,
        id="reconcile",
        registry=registry,
        backoff=backoff,
        field="spec",
    )
    def reconcile_profile(
        *,
        body: kopf.Body,
        patch: kopf.Patch,
        namespace: str | None,
        name: str,
        reason: str,
        **indexes: object,
    ) -> None:
        assert namespace is not None  # ConfigProfiles are namespaced
        with_index = ProfileReconciler(
            api, reconciler.settings, labels_reader(indexes), reconciler.memory
        )
        try:
            # A first revision index rides on kopf's own patch after the handler.
            profile = payload_copy(CONFIG_PROFILES, body)
            with_index.reconcile(
                profile,
                annotate=patch.metadata.annotations.update,
                status_reported=status_reporter(reconciled, CONFIG_PROFILE_KIND, profile),
            )
        except KstrataError as error:
            raise to_kopf_error(error) from error
        finally:
            # On resume nothing changed for the bases' sake: dependents resume themselves.
            if reason != "resume":
                reconcile_quietly(namespace, members.referring_to(namespace, name))

    @kopf.on.delete(
        GROUP, VERSION, CONFIG_PROFILE_PLURAL, id="dependents", registry=registry, optional=True
    )
    def profile_deleted(*, namespace: str | None, name: str, **indexes: object) -> None:
        # The ConfigMap goes with its owner (garbage collection); dependents now
        # miss a base and must say so.
        if namespace:
            reconcile_quietly(namespace, members.referring_to(namespace, name))

    @kopf.on.event("namespaces", id="namespace_environment", registry=registry)
    async def namespace_changed(
        *, name: str, labels: kopf.Labels, type: str, **indexes: object
    ) -> None:
        label = labels.get(ENVIRONMENT_LABEL)
        previous = environment_labels.get(name, label)
        environment_labels[name] = label
        if type in (None, "ADDED", "DELETED") or previous == label:
            return
        await asyncio.to_thread(reconcile_quietly, name, members.in_namespace(name))
