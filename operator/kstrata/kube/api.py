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

import json
import logging
from dataclasses import dataclass
from typing import Any, Final, Protocol

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

JSON = dict[str, Any]

#: Every write is attributed to this field manager (visible in managedFields).
_MANAGER: Final = [("fieldManager", FIELD_MANAGER)]

MERGE_PATCH: Final = "application/merge-patch+json"
JSON_PATCH: Final = "application/json-patch+json"


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the REST API."""

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


CONFIG_MAPS: Final = Resource("", "v1", "configmaps", "ConfigMap")
SECRETS: Final = Resource("", "v1", "secrets", "Secret")
NAMESPACES: Final = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
EVENTS: Final = Resource("", "v1", "events", "Event")
CONFIG_PROFILES: Final = Resource(GROUP, VERSION, CONFIG_PROFILE_PLURAL, CONFIG_PROFILE_KIND)
SEALED_SECRETS: Final = Resource(GROUP, VERSION, SEALED_SECRET_PLURAL, SEALED_SECRET_KIND)
CONTROLLER_REVISIONS: Final = Resource("apps", "v1", "controllerrevisions", "ControllerRevision")
DEPLOYMENTS: Final = Resource("apps", "v1", "deployments", "Deployment")
STATEFUL_SETS: Final = Resource("apps", "v1", "statefulsets", "StatefulSet")
DAEMON_SETS: Final = Resource("apps", "v1", "daemonsets", "DaemonSet")
PODS: Final = Resource("", "v1", "pods", "Pod")
#: Workloads whose pod template is ``spec.template``.
WORKLOADS: Final = (DEPLOYMENTS, STATEFUL_SETS, DAEMON_SETS)
#: CronJobs: the pod template is ``spec.jobTemplate.spec.template``; rolling it
#: makes the next Job run with the new configuration (running Jobs finish as
#: they started).
CRON_JOBS: Final = Resource("batch", "v1", "cronjobs", "CronJob")
#: Argo Rollouts (a CRD that may be absent: listing it then finds none).  The
#: pod template is ``spec.template``, as a Deployment's; rolling it starts the
#: Rollout's own canary or blue-green update.  A Rollout that takes its
#: template from a Deployment (``spec.workloadRef``) has none to patch: kstrata
#: sets ``spec.restartAt`` instead, Argo Rollouts' own restart (it replaces
#: the pods one at a time, without the canary steps).  ``auto`` finds nothing
#: to follow on such a Rollout (its references are in the Deployment's
#: template): annotate the referenced Deployment instead, whose template
#: change Argo Rollouts then rolls out as a new version.
ROLLOUTS: Final = Resource(ARGO_ROLLOUTS_GROUP, ARGO_ROLLOUTS_VERSION, "rollouts", "Rollout")
#: Everything a reload pass may roll (``kstrata.domain.reload_decision.WORKLOAD_KINDS``).
RELOADABLE: Final = (*WORKLOADS, CRON_JOBS, ROLLOUTS)
VALIDATING_WEBHOOKS: Final = Resource(
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

    def get(self, resource: Resource, namespace: str | None, name: str) -> JSON: ...

    def get_or_none(self, resource: Resource, namespace: str | None, name: str) -> JSON | None: ...

    def list(
        self, resource: Resource, namespace: str | None = None, *, label_selector: str | None = None
    ) -> list[JSON]: ...

    def create(self, resource: Resource, namespace: str | None, body: JSON) -> JSON: ...

    def replace(
        self, resource: Resource, namespace: str | None, body: JSON, *, dry_run: bool = False
    ) -> JSON: ...

    def patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        subresource: str | None = None,
        content_type: str = MERGE_PATCH,
    ) -> JSON: ...

    def delete(self, resource: Resource, namespace: str | None, name: str) -> None: ...


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
        body: Any = None,
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

    def get(self, resource: Resource, namespace: str | None, name: str) -> JSON:
        what = f"get {resource.kind} {_where(namespace, name)}"
        return self._call("GET", resource.path(namespace, name), what)

    def get_or_none(self, resource: Resource, namespace: str | None, name: str) -> JSON | None:
        try:
            return self.get(resource, namespace, name)
        except NotFoundError:
            return None

    def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
    ) -> list[JSON]:
        query = [("labelSelector", label_selector)] if label_selector else []
        what = f"list {resource.plural}" + (f" in {namespace}" if namespace else "")
        items: list[JSON] = []
        continue_token = ""
        while True:
            page = [*query, ("limit", "500")]
            if continue_token:
                page.append(("continue", continue_token))
            result = self._call("GET", resource.path(namespace), what, query=page)
            items.extend(result.get("items") or [])
            continue_token = (result.get("metadata") or {}).get("continue") or ""
            if not continue_token:
                return items

    def create(self, resource: Resource, namespace: str | None, body: JSON) -> JSON:
        name = (body.get("metadata") or {}).get("name", "")
        what = f"create {resource.kind} {_where(namespace, name)}"
        return self._call("POST", resource.path(namespace), what, body=body, query=_MANAGER)

    def replace(
        self, resource: Resource, namespace: str | None, body: JSON, *, dry_run: bool = False
    ) -> JSON:
        """PUT with the body's ``resourceVersion``: a stale one raises ``ConflictError``.

        ``dry_run``: the API server validates and admits the write (webhooks
        included) and answers with the object it would store, storing nothing.
        """
        name = body["metadata"]["name"]
        what = f"update {resource.kind} {_where(namespace, name)}"
        query = [*_MANAGER, ("dryRun", "All")] if dry_run else _MANAGER
        return self._call("PUT", resource.path(namespace, name), what, body=body, query=query)

    def patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        subresource: str | None = None,
        content_type: str = MERGE_PATCH,
    ) -> JSON:
        path = resource.path(namespace, name) + (f"/{subresource}" if subresource else "")
        target = f"{resource.kind} {_where(namespace, name)}"
        what = f"patch {subresource + ' of ' if subresource else ''}{target}"
        return self._call(
            "PATCH", path, what, body=patch, content_type=content_type, query=_MANAGER
        )

    def service_proxy_post(
        self, namespace: str, service: str, path: str, body: Any
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

    def delete(self, resource: Resource, namespace: str | None, name: str) -> None:
        what = f"delete {resource.kind} {_where(namespace, name)}"
        try:
            self._call("DELETE", resource.path(namespace, name), what)
        except NotFoundError:
            return


def _where(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def object_reference(obj: JSON) -> JSON:
    meta = obj.get("metadata") or {}
    return {
        "apiVersion": obj.get("apiVersion", ""),
        "kind": obj.get("kind", ""),
        "name": meta.get("name", ""),
        "namespace": meta.get("namespace", ""),
        "uid": meta.get("uid", ""),
    }


def owner_reference(owner: JSON) -> JSON:
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
    api: KubeApi,
    regarding: JSON,
    *,
    type_: str,
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
    body: JSON = {
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
