"""The reconcile toolkit: what every use case of ``kstrata.app`` shares.

The use-case modules (a profile's reconcile, a SealedSecret's unseal, reload
passes, admission, the CLI's commands) are independent of each other: an
import-linter contract (``.importlinter``) forbids one importing another, so
a change to one use case cannot ripple into a sibling.  What they genuinely
share lives here instead: who owns an object and whether it may be adopted,
the ``Ready`` condition and its status patch, the one failure writer (status
plus ONE Warning event), and the RFC 3339 timestamps the API expects.

Nothing here decides a use case's outcome; it only writes what a use case
decided, in the form every kstrata resource uses.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Mapping
from typing import TypeVar

from kstrata.domain.environments import EnvironmentChoice
from kstrata.errors import ClusterError, KstrataError, OwnershipError
from kstrata.kube.api import KubeClient, Resource, post_event
from kstrata.payloads import Condition, ConditionStatus, ConfigProfile, KubeObject, SealedSecret
from kstrata.wellknown import ADOPT_ANNOTATION, READY_CONDITION

logger = logging.getLogger(__name__)

#: kstrata's own resources: what has a Ready condition and a status kstrata writes.
Own = TypeVar("Own", ConfigProfile, SealedSecret)


def rfc3339(when: dt.datetime) -> str:
    """``when`` as the API's timestamps spell it (UTC, whole seconds)."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_rfc3339() -> str:
    """The current time for conditions, events and restart annotations."""
    return rfc3339(dt.datetime.now(dt.UTC))


def is_ours(obj: KubeObject, owner_uid: str) -> bool:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == owner_uid and ref.get("controller") for ref in refs)


def adoptable(obj: KubeObject) -> bool:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return annotations.get(ADOPT_ANNOTATION) == "true"


def check_ownership(existing: KubeObject | None, owner_uid: str, what: str) -> None:
    """Refuse to take over an object that is not ours unless it asks to be adopted."""
    if existing is not None and not is_ours(existing, owner_uid) and not adoptable(existing):
        raise OwnershipError(
            f"{what} exists and is not managed by kstrata; "
            f"annotate it {ADOPT_ANNOTATION}=true to adopt it"
        )


def reconciled_before(obj: ConfigProfile | SealedSecret) -> bool:
    """Whether a reconcile ever recorded an outcome (success or failure) in the status."""
    status = obj.get("status") or {}
    return bool(status.get("conditions") or status.get("observedGeneration"))


def patch_status_if_changed(
    api: KubeClient, resource: Resource[Own], obj: Own, new_status: Mapping[str, object]
) -> Own | None:
    """Merge-patch ``status`` only if a field differs: replays and restarts write nothing.

    Returns the object as the API server answered the write, None if none was made.
    """
    old: Mapping[str, object] = obj.get("status") or {}
    if all(old.get(key) == value for key, value in new_status.items()):
        return None
    meta = obj["metadata"]
    return api.patch(
        resource, meta["namespace"], meta["name"], {"status": new_status}, subresource="status"
    )


def ready_condition(
    previous: list[Condition], *, ok: bool, reason: str, message: str, generation: int
) -> list[Condition]:
    """The conditions list with Ready set; lastTransitionTime moves only on a status change."""
    status: ConditionStatus = "True" if ok else "False"
    old = next((c for c in previous if c.get("type") == READY_CONDITION), None)
    transition = old.get("lastTransitionTime") if old and old.get("status") == status else None
    condition: Condition = {
        "type": READY_CONDITION,
        "status": status,
        "reason": reason,
        "message": message[:1024],
        "observedGeneration": generation,
        "lastTransitionTime": transition or now_rfc3339(),
    }
    return [c for c in previous if c.get("type") != READY_CONDITION] + [condition]


def record_failure(
    api: KubeClient,
    resource: Resource[Own],
    obj: Own,
    error: KstrataError,
    choice: EnvironmentChoice | None,
    *,
    reread: bool = False,
) -> bool:
    """Ready=False with the error's reason, and ONE Warning event per distinct failure.

    The one condition-and-event writer of both reconcilers; it never writes
    data.  ``reread`` decides "new failure or the same one" on the stored
    status rather than on ``obj`` (a quick retry's body may predate the last
    status patch).  A status that cannot be written is logged, not raised:
    the caller re-raises the original error.  Returns True when the failure
    is new (the event was posted).
    """
    meta = obj["metadata"]
    if reread:
        with contextlib.suppress(ClusterError):
            obj = api.get(resource, meta["namespace"], meta["name"])
    status = obj.get("status") or {}
    conditions = status.get("conditions") or []
    previous = next((c for c in conditions if c.get("type") == READY_CONDITION), Condition())
    message = str(error)
    generation = meta.get("generation", 0)
    new_status: dict[str, object] = {"observedGeneration": generation}
    if choice is not None:
        new_status["environment"] = choice.name
        new_status["environmentSource"] = choice.source
    new_status["conditions"] = ready_condition(
        conditions, ok=False, reason=error.reason, message=message, generation=generation
    )
    try:
        patch_status_if_changed(api, resource, obj, new_status)
    except ClusterError as patch_error:
        logger.warning(
            "%s %s/%s: status not recorded: %s",
            resource.kind,
            meta["namespace"],
            meta["name"],
            patch_error.reason,
        )
    is_new = previous.get("reason") != error.reason or previous.get("message") != message[:1024]
    if is_new:
        post_event(
            api, obj, type_="Warning", reason=error.reason, message=message, now=now_rfc3339()
        )
    return is_new
