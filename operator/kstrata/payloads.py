"""Typed shapes of the Kubernetes objects kstrata reads and writes.

Why this module exists: kstrata talks to the API in plain JSON (see
:mod:`kstrata.kube.api`), and a ``dict[str, Any]`` says nothing about what a
function expects or may rely on.  These ``TypedDict`` s name the fields
kstrata actually reads or writes (metadata, owner references, conditions,
the status of its own resources, the pod template of a workload, an
Event), so a reader sees the shape and mypy checks every access.

Where the boundary is: the API answers with whatever the server stored, so
the types here are claims about the parts kstrata uses, not validation.
Every key is optional (``total=False``) because the API omits empty fields;
code reads with ``.get`` and a default, exactly as it must at run time.  The
one place an untyped answer becomes one of these types is
:mod:`kstrata.kube` (``Any`` stays there).  User-written configuration
(a profile's ``base`` and overlays, a schema) is a
:data:`kstrata.domain.jsonvalue.JSONValue`, not a type of this module: its
shape is the user's.

Field names follow the API (camelCase), as the wire does.  This module sits
at the bottom layer beside :mod:`kstrata.wellknown` and imports nothing of
kstrata, so every layer (and the offline CLI) may use it.
"""

from __future__ import annotations

from typing import Literal, TypeAlias, TypedDict

#: A JSON value whose shape kstrata does not rely on (a user's data, a
#: field passed through untouched).  Same definition as
#: :data:`kstrata.domain.jsonvalue.JSONValue`, restated so this module
#: stays at the bottom layer.
Opaque: TypeAlias = "bool | int | float | str | list[Opaque] | dict[str, Opaque] | None"

StringMap: TypeAlias = dict[str, str]


class OwnerReference(TypedDict, total=False):
    apiVersion: str
    kind: str
    name: str
    uid: str
    controller: bool
    blockOwnerDeletion: bool


class ObjectMeta(TypedDict, total=False):
    name: str
    generateName: str
    namespace: str
    uid: str
    resourceVersion: str
    generation: int
    creationTimestamp: str
    deletionTimestamp: str
    labels: StringMap
    annotations: StringMap
    ownerReferences: list[OwnerReference]
    finalizers: list[str]
    managedFields: list[dict[str, Opaque]]
    #: Gone from the API since 1.20; older servers still send it.
    selfLink: str


# The functional form: ``continue`` is a Python keyword.
ListMeta = TypedDict("ListMeta", {"resourceVersion": str, "continue": str}, total=False)

ConditionStatus: TypeAlias = Literal["True", "False", "Unknown"]


class Condition(TypedDict, total=False):
    type: str
    status: ConditionStatus
    reason: str
    message: str
    observedGeneration: int
    lastTransitionTime: str


class KubeObject(TypedDict, total=False):
    """Any object: what every kind below has in common."""

    apiVersion: str
    kind: str
    metadata: ObjectMeta


class ObjectReference(TypedDict, total=False):
    apiVersion: str
    kind: str
    name: str
    namespace: str
    uid: str
    resourceVersion: str


# --- core kinds ---------------------------------------------------------------


class ConfigMap(KubeObject, total=False):
    data: StringMap
    binaryData: StringMap
    immutable: bool


class Secret(KubeObject, total=False):
    type: str
    #: base64, as the API carries it; never logged or put in a message.
    data: StringMap
    stringData: StringMap
    immutable: bool


class Namespace(KubeObject, total=False):
    pass


class EventSource(TypedDict, total=False):
    component: str


class Event(KubeObject, total=False):
    """A core/v1 Event, as :func:`kstrata.kube.api.post_event` writes it."""

    involvedObject: ObjectReference
    type: Literal["Normal", "Warning"]
    reason: str
    message: str
    source: EventSource
    firstTimestamp: str
    lastTimestamp: str
    count: int
    reportingComponent: str
    reportingInstance: str


class Pod(KubeObject, total=False):
    """Read only to find a workload's pods; the rest stays opaque."""

    spec: dict[str, Opaque]
    status: dict[str, Opaque]


class ControllerRevision(KubeObject, total=False):
    """An apps/v1 ControllerRevision: where kstrata keeps a rendered revision."""

    revision: int
    data: dict[str, Opaque]


class WebhookClientConfig(TypedDict, total=False):
    url: str
    service: dict[str, Opaque]
    caBundle: str


class RuleWithOperations(TypedDict, total=False):
    apiGroups: list[str]
    apiVersions: list[str]
    operations: list[str]
    resources: list[str]
    scope: str


class ValidatingWebhook(TypedDict, total=False):
    name: str
    clientConfig: WebhookClientConfig
    rules: list[RuleWithOperations]
    admissionReviewVersions: list[str]
    sideEffects: str
    failurePolicy: str
    matchPolicy: str
    timeoutSeconds: int
    namespaceSelector: dict[str, Opaque]
    objectSelector: dict[str, Opaque]
    matchConditions: list[StringMap]


class ValidatingWebhookConfiguration(KubeObject, total=False):
    """kstrata's admission webhook registration."""

    webhooks: list[ValidatingWebhook]


# --- workloads (what a reload patches) ----------------------------------------


class PodTemplateMeta(TypedDict, total=False):
    labels: StringMap
    annotations: StringMap


class PodTemplate(TypedDict, total=False):
    metadata: PodTemplateMeta
    #: Containers, volumes and the rest: read by the reference scan, never
    #: written by kstrata, so left as opaque JSON.
    spec: dict[str, Opaque]


class JobTemplateSpec(TypedDict, total=False):
    template: PodTemplate


class JobTemplate(TypedDict, total=False):
    metadata: PodTemplateMeta
    spec: JobTemplateSpec


class WorkloadSpec(TypedDict, total=False):
    template: PodTemplate
    jobTemplate: JobTemplate
    paused: bool
    replicas: int
    selector: dict[str, Opaque]
    #: An Argo Rollout that runs another workload's template names it here and
    #: is restarted through ``restartAt`` (RFC 3339) instead of a template patch.
    workloadRef: dict[str, Opaque]
    restartAt: str


class Workload(KubeObject, total=False):
    """A Deployment, StatefulSet, DaemonSet, CronJob or Argo Rollout."""

    spec: WorkloadSpec
    status: dict[str, Opaque]


# --- kstrata's own resources ---------------------------------------------------


#: The kinds of workload kstrata reloads (what a ``status.workloads`` entry names).
WorkloadKind: TypeAlias = Literal["Deployment", "StatefulSet", "DaemonSet", "CronJob", "Rollout"]


class WorkloadStatusEntry(TypedDict, total=False):
    """A workload that uses the resource, in its status (``workloads``)."""

    kind: WorkloadKind
    name: str
    #: Absent while the workload's record does not name the source yet (paused).
    revision: int


class SourceStatus(TypedDict, total=False):
    """What the status of both of kstrata's resources says (they are reconciled alike)."""

    observedGeneration: int
    environment: str
    environmentSource: str
    revision: int
    workloads: list[WorkloadStatusEntry]
    conditions: list[Condition]


class ProfileStatus(SourceStatus, total=False):
    configMapName: str
    renderedDigest: str
    dependsOn: list[str]


class ConfigProfile(KubeObject, total=False):
    #: The user's spec: parsed and checked by :mod:`kstrata.domain.profile`.
    spec: dict[str, Opaque]
    status: ProfileStatus


class SealedItemStatus(TypedDict, total=False):
    key: str
    #: A keyed fingerprint (``hmac-sha256:...``), never a plain hash.
    fingerprint: str
    keyId: str


class SealedSecretStatus(SourceStatus, total=False):
    secretName: str
    keyIds: list[str]
    items: list[SealedItemStatus]


class SealedSecret(KubeObject, total=False):
    #: The user's spec: parsed and checked by :mod:`kstrata.domain.sealed_spec`.
    spec: dict[str, Opaque]
    status: SealedSecretStatus


#: kstrata's own resources (what has a Ready condition and a revision history).
OwnObject: TypeAlias = ConfigProfile | SealedSecret
