"""Typed, JSON-in/JSON-out access to the Kubernetes REST API.

Why raw REST (over :mod:`kstrata.kube.transport`) instead of the ``kubernetes``
client's generated models: kstrata handles objects as plain JSON (the domain layer works on
JSON), the generated model round trip costs milliseconds per object, and one
small surface (get/list/create/replace/patch/delete on a ``Resource``) is easy
to keep correct.  Every client error is translated here into
``kstrata.errors``: callers never see transport exceptions or HTTP codes, and no
response body (which may echo object data) is ever put into a message.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, Literal, Protocol, TypeAlias, TypeVar, cast

from kstrata.errors import (
    ClusterError,
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    TransientClusterError,
)
from kstrata.kube.connection import Cluster
from kstrata.kube.transport import HttpStatusError
from kstrata.payloads import (
    ConfigMap,
    ConfigProfile,
    ControllerRevision,
    Event,
    KubeObject,
    Namespace,
    ObjectReference,
    OwnerReference,
    Pod,
    SealedSecret,
    Secret,
    ValidatingWebhookConfiguration,
    Workload,
)
from kstrata.wellknown import (
    ARGO_ROLLOUTS_GROUP,
    ARGO_ROLLOUTS_VERSION,
    CONFIG_PROFILE_KIND,
    CONFIG_PROFILE_PLURAL,
    FIELD_MANAGER,
    GROUP,
    MANAGER,
    SEALED_SECRET_KIND,
    SEALED_SECRET_PLURAL,
    VERSION,
)

logger = logging.getLogger(__name__)

#: Untyped wire JSON: only this package handles it.  Everything it hands out
#: is one of the :mod:`kstrata.payloads` shapes (the one cast is in ``_typed``).
JSON = dict[str, Any]

#: The payload type a :class:`Resource` reads and writes (a ``payloads`` TypedDict).
P = TypeVar("P", bound=Mapping[str, object])
#: ``Resource``'s own parameter: covariant, as it only labels what the API
#: answers, so ``Resource[ConfigProfile]`` is a ``Resource[KubeObject]`` (code
#: that handles any kind) and a ``Resource[ConfigProfile | SealedSecret]``.
P_co = TypeVar("P_co", bound=Mapping[str, object], covariant=True)

#: A JSON merge patch (a partial object) or a JSON patch (a list of operations).
Patch: TypeAlias = Mapping[str, object] | Sequence[Mapping[str, object]]

#: Every write is attributed to this field manager (visible in managedFields).
_MANAGER: Final = [("fieldManager", FIELD_MANAGER)]

MERGE_PATCH: Final = "application/merge-patch+json"
JSON_PATCH: Final = "application/json-patch+json"


@dataclass(frozen=True)
class Resource(Generic[P_co]):
    """Where a kind lives in the REST API; ``P_co`` is the payload type of its objects.

    The type parameter is what makes ``api.get(CONFIG_MAPS, ...)`` a
    :class:`~kstrata.payloads.ConfigMap` for mypy: the constants below are
    declared with their payload type, and the API methods are generic in it.
    """

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace is not None:
            root += f"/namespaces/{namespace}"
        root += f"/{self.plural}"
        return root + (f"/{name}" if name else "")


CONFIG_MAPS: Final[Resource[ConfigMap]] = Resource("", "v1", "configmaps", "ConfigMap")
SECRETS: Final[Resource[Secret]] = Resource("", "v1", "secrets", "Secret")
NAMESPACES: Final[Resource[Namespace]] = Resource(
    "", "v1", "namespaces", "Namespace", namespaced=False
)
EVENTS: Final[Resource[Event]] = Resource("", "v1", "events", "Event")
CONFIG_PROFILES: Final[Resource[ConfigProfile]] = Resource(
    GROUP, VERSION, CONFIG_PROFILE_PLURAL, CONFIG_PROFILE_KIND
)
SEALED_SECRETS: Final[Resource[SealedSecret]] = Resource(
    GROUP, VERSION, SEALED_SECRET_PLURAL, SEALED_SECRET_KIND
)
CONTROLLER_REVISIONS: Final[Resource[ControllerRevision]] = Resource(
    "apps", "v1", "controllerrevisions", "ControllerRevision"
)
DEPLOYMENTS: Final[Resource[Workload]] = Resource("apps", "v1", "deployments", "Deployment")
STATEFUL_SETS: Final[Resource[Workload]] = Resource("apps", "v1", "statefulsets", "StatefulSet")
DAEMON_SETS: Final[Resource[Workload]] = Resource("apps", "v1", "daemonsets", "DaemonSet")
PODS: Final[Resource[Pod]] = Resource("", "v1", "pods", "Pod")
#: Workloads whose pod template is ``spec.template``.
WORKLOADS: Final = (DEPLOYMENTS, STATEFUL_SETS, DAEMON_SETS)
#: CronJobs: the pod template is ``spec.jobTemplate.spec.template``; rolling it
#: makes the next Job run with the new configuration (running Jobs finish as
#: they started).
CRON_JOBS: Final[Resource[Workload]] = Resource("batch", "v1", "cronjobs", "CronJob")
#: Argo Rollouts (a CRD that may be absent: listing it then finds none).  The
#: pod template is ``spec.template``, as a Deployment's; rolling it starts the
#: Rollout's own canary or blue-green update.  A Rollout that takes its
#: template from a Deployment (``spec.workloadRef``) has none to patch: kstrata
#: sets ``spec.restartAt`` instead, Argo Rollouts' own restart (it replaces
#: the pods one at a time, without the canary steps).  ``auto`` finds nothing
#: to follow on such a Rollout (its references are in the Deployment's
#: template): annotate the referenced Deployment instead, whose template
#: change Argo Rollouts then rolls out as a new version.
ROLLOUTS: Final[Resource[Workload]] = Resource(
    ARGO_ROLLOUTS_GROUP, ARGO_ROLLOUTS_VERSION, "rollouts", "Rollout"
)
#: Everything a reload pass may roll (``kstrata.domain.reload_decision.WORKLOAD_KINDS``).
RELOADABLE: Final = (*WORKLOADS, CRON_JOBS, ROLLOUTS)
VALIDATING_WEBHOOKS: Final[Resource[ValidatingWebhookConfiguration]] = Resource(
    "admissionregistration.k8s.io",
    "v1",
    "validatingwebhookconfigurations",
    "ValidatingWebhookConfiguration",
    namespaced=False,
)


def _translate(exc: BaseException, what: str) -> ClusterError | InvalidInputError:
    """Map a client failure to our hierarchy by status code; never quote the body."""
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None) or type(exc).__name__
    if status == 404:
        return NotFoundError(f"{what}: not found")
    if status == 409:
        return ConflictError(f"{what}: conflict (the object changed meanwhile)")
    if status in (401, 403):
        return ForbiddenError(f"{what}: forbidden")
    if status in (400, 422):
        message = _status_message(exc)
        return InvalidInputError(f"{what}: rejected by the API server: {message}", reason="Invalid")
    if status is None or status == 429 or status >= 500:
        return _unavailable(exc, what, status, reason)
    return ClusterError(f"{what}: API error {status} ({reason})")


def _unavailable(
    exc: BaseException, what: str, status: int | None, reason: str
) -> TransientClusterError:
    if status is not None and status >= 500 and (failure := _status(exc)) is not None:
        # The API server answered with a Status (an admission webhook it could
        # not call, an internal error): its own words and reason, not "unavailable".
        message, status_reason = failure
        return TransientClusterError(
            f"{what}: the API server failed the request: {message}", reason=status_reason
        )
    return TransientClusterError(f"{what}: API server unavailable ({reason})")


def _status(exc: BaseException) -> tuple[str, str] | None:
    """A 5xx answer's Status message and reason, if the body is one (field paths, no data)."""
    try:
        body = json.loads(getattr(exc, "body", "") or "{}")
    except ValueError:
        return None
    if not isinstance(body, dict) or body.get("kind") != "Status" or not body.get("message"):
        return None
    return str(body["message"])[:500], str(body.get("reason") or "InternalError")


def _status_message(exc: BaseException) -> str:
    """The apiserver's own message for a 4xx (field paths and rules; it echoes no data)."""
    try:
        body = json.loads(getattr(exc, "body", "") or "{}")
    except ValueError:
        return "invalid request"
    message = body.get("message") if isinstance(body, dict) else None
    return str(message)[:500] if message else "invalid request"


class KubeClient(Protocol):
    """The API calls the use cases make, as a type: what ``KubeApi`` does over HTTP.

    Use cases type against this protocol rather than the HTTP class, so the
    in-memory API of the unit tests (``tests/support/fake_api.py``) is checked
    by mypy as one, with no ``cast``.  Errors are kstrata's
    (``NotFoundError``, ``ConflictError``, ...), as ``KubeApi`` translates them.
    """

    def get(self, resource: Resource[P], namespace: str | None, name: str) -> P: ...

    def get_or_none(self, resource: Resource[P], namespace: str | None, name: str) -> P | None: ...

    def list(
        self,
        resource: Resource[P],
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
    ) -> list[P]: ...

    def create(self, resource: Resource[P], namespace: str | None, body: P) -> P: ...

    def replace(
        self, resource: Resource[P], namespace: str | None, body: P, *, dry_run: bool = False
    ) -> P: ...

    def patch(
        self,
        resource: Resource[P],
        namespace: str | None,
        name: str,
        patch: Patch,
        *,
        subresource: str | None = None,
        content_type: str = MERGE_PATCH,
    ) -> P: ...

    def delete(self, resource: Resource[P], namespace: str | None, name: str) -> None: ...


class KubeApi:
    """The operations kstrata needs, on plain JSON objects (a ``KubeClient`` over HTTP)."""

    def __init__(self, cluster: Cluster, *, timeout: float = 30.0) -> None:
        self._transport = cluster.transport
        self._timeout = timeout

    def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        body: object = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> JSON:
        from urllib3.exceptions import HTTPError

        try:
            response = self._transport.request(
                method,
                path,
                query=query,
                body=body,
                content_type=content_type,
                timeout=self._timeout,
            )
        except (HTTPError, OSError) as exc:
            raise TransientClusterError(f"{what}: cannot reach the API server") from exc
        raw = response.data
        if not 200 <= response.status < 300:
            raise _translate(HttpStatusError(response.status, response.reason, raw), what)
        result: JSON = json.loads(raw) if raw else {}
        return result

    def get(self, resource: Resource[P], namespace: str | None, name: str) -> P:
        what = f"get {resource.kind} {_where(namespace, name)}"
        return _typed(resource, self._call("GET", resource.path(namespace, name), what))

    def get_or_none(self, resource: Resource[P], namespace: str | None, name: str) -> P | None:
        try:
            return self.get(resource, namespace, name)
        except NotFoundError:
            return None

    def list(
        self,
        resource: Resource[P],
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
    ) -> list[P]:
        query = [("labelSelector", label_selector)] if label_selector else []
        what = f"list {resource.plural}" + (f" in {namespace}" if namespace else "")
        items: list[P] = []
        continue_token = ""
        while True:
            page = [*query, ("limit", "500")]
            if continue_token:
                page.append(("continue", continue_token))
            result = self._call("GET", resource.path(namespace), what, query=page)
            items.extend(_typed(resource, item) for item in result.get("items") or [])
            continue_token = (result.get("metadata") or {}).get("continue") or ""
            if not continue_token:
                return items

    def create(self, resource: Resource[P], namespace: str | None, body: P) -> P:
        name = _name(body)
        what = f"create {resource.kind} {_where(namespace, name)}"
        created = self._call("POST", resource.path(namespace), what, body=body, query=_MANAGER)
        return _typed(resource, created)

    def replace(
        self, resource: Resource[P], namespace: str | None, body: P, *, dry_run: bool = False
    ) -> P:
        """PUT with the body's ``resourceVersion``: a stale one raises ``ConflictError``.

        ``dry_run``: the API server validates and admits the write (webhooks
        included) and answers with the object it would store, storing nothing.
        """
        name = _name(body)
        what = f"update {resource.kind} {_where(namespace, name)}"
        query = [*_MANAGER, ("dryRun", "All")] if dry_run else _MANAGER
        stored = self._call("PUT", resource.path(namespace, name), what, body=body, query=query)
        return _typed(resource, stored)

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
        path = resource.path(namespace, name) + (f"/{subresource}" if subresource else "")
        target = f"{resource.kind} {_where(namespace, name)}"
        what = f"patch {subresource + ' of ' if subresource else ''}{target}"
        patched = self._call(
            "PATCH", path, what, body=patch, content_type=content_type, query=_MANAGER
        )
        return _typed(resource, patched)

    def service_proxy_post(
        self, namespace: str, service: str, path: str, body: Mapping[str, object]
    ) -> tuple[int, JSON]:
        """POST ``body`` to ``path`` of a Service through the API server's service proxy.

        ``service`` is the proxy's ``[scheme:]name[:port]``.  RBAC decides who
        may call it (``create`` on ``services/proxy`` for that name).  Returns
        the status and the JSON answer (the Service's own, or the API server's
        Status); callers read the answer, so errors are not translated here.
        Only an unreachable API server raises (``TransientClusterError``).
        """
        from urllib3.exceptions import HTTPError

        target = f"/api/v1/namespaces/{namespace}/services/{service}/proxy{path}"
        try:
            response = self._transport.request("POST", target, body=body, timeout=self._timeout)
        except (HTTPError, OSError) as exc:
            raise TransientClusterError(
                f"POST to service {namespace}/{service}: cannot reach the API server"
            ) from exc
        try:
            answer = json.loads(response.data) if response.data else {}
        except ValueError:
            answer = {}
        return response.status, answer if isinstance(answer, dict) else {}

    def delete(self, resource: Resource[P], namespace: str | None, name: str) -> None:
        what = f"delete {resource.kind} {_where(namespace, name)}"
        try:
            self._call("DELETE", resource.path(namespace, name), what)
        except NotFoundError:
            return


def _where(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def _typed(resource: Resource[P], obj: JSON) -> P:
    """The one place wire JSON becomes a payload type: a claim, not a check.

    The API server stored the object under this resource's schema, so it has
    the shape the ``payloads`` type names (every field optional; readers use
    ``.get`` with a default, as they must at run time).
    """
    del resource  # carries the type only
    return cast(P, obj)


def as_payload(resource: Resource[P], obj: Mapping[str, Any]) -> P:
    """An object that reached kstrata outside this module (a kopf handler's body), typed.

    The same claim as every answer of :class:`KubeApi`: kopf delivers what
    the API server stored under ``resource``.  ``obj`` itself, not a copy:
    handlers pass a plain copy of kopf's read-only body.
    """
    del resource  # carries the type only
    return cast(P, obj)


def payload_copy(resource: Resource[P], obj: Mapping[str, Any]) -> P:
    """A plain deep copy of a kopf handler's body (a read-only view of kopf's cache), typed.

    For the reconcilers, which get an object of their own to read, keep and
    pass on, detached from what kopf holds; ``as_payload`` types without copying.
    """
    return as_payload(resource, copy.deepcopy(dict(obj)))


def _name(body: Mapping[str, object]) -> str:
    meta = body.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    return name if isinstance(name, str) else ""


def object_reference(obj: KubeObject) -> ObjectReference:
    meta = obj.get("metadata") or {}
    return {
        "apiVersion": obj.get("apiVersion", ""),
        "kind": obj.get("kind", ""),
        "name": meta.get("name", ""),
        "namespace": meta.get("namespace", ""),
        "uid": meta.get("uid", ""),
    }


def owner_reference(owner: KubeObject) -> OwnerReference:
    """An ownerReference making ``owner`` the controller (garbage collection deletes with it)."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def post_event(
    api: KubeClient,
    regarding: KubeObject,
    *,
    type_: Literal["Normal", "Warning"],
    reason: str,
    message: str,
    now: str,
    component: str = MANAGER,
) -> None:
    """Post a core/v1 Event about ``regarding``.  Best effort: an event is never worth a retry.

    ``message`` must already be safe (no values); it is cut to the API's limit.
    """
    reference = object_reference(regarding)
    namespace = reference["namespace"] or "default"
    body: Event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "generateName": f"{reference['name']}.",
            "namespace": namespace,
        },
        "involvedObject": reference,
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": component,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        api.create(EVENTS, namespace, body)
    except ClusterError as error:
        # Best effort, but never silent.  The event's message is left out: it is
        # written to be safe, yet the log does not need it to find the object.
        logger.warning(
            "event %s about %s %s/%s not posted: %s",
            reason,
            reference["kind"],
            namespace,
            reference["name"],
            error.reason,
        )
