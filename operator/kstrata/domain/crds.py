"""The kstrata CustomResourceDefinitions, as Python data: the single source of truth.

``crds/*.yaml`` is generated from this module by ``tools/gen_crds.py`` (and a
unit test fails when the committed files drift), so the schema the apiserver
enforces, the schema ``validate_structure`` checks offline and the constants
the parsers use cannot disagree: limits and enums are imported from the domain
modules that own them rather than retyped, and the names (group, version,
kinds, plurals, short names) from ``kstrata.wellknown``.

Boundary: this module is pure data plus one offline check.  It knows nothing
of the cluster (no kopf, no Kubernetes client) and does not decide what a spec
*means*; ``kstrata.domain.profile`` parses ConfigProfile specs, the app layer
interprets ``reload`` and sealed data.  What lives here is what the apiserver
itself can enforce before any operator runs:

* a structural OpenAPI schema with a description on every field, so
  ``kubectl explain`` documents the API;
* CEL rules (``x-kubernetes-validations``) for mistakes that a schema keyword
  cannot express (a profile extending itself, environment names as map keys,
  exactly one of ``name``/``selector``, an immutable sealing scope).  Every
  rule's estimated cost is bounded by ``maxLength``/``maxItems``/
  ``maxProperties`` on what it iterates, or the apiserver refuses the CRD.

``validate_structure`` checks a manifest against the same openAPIV3Schema with
jsonschema, offline, without quoting any value.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from importlib import import_module
from typing import TYPE_CHECKING, Final, get_args

from kstrata.domain.environments import EnvironmentSource
from kstrata.domain.extends import MAX_EXTENDS_DEPTH
from kstrata.domain.jsonvalue import JSONObject, JSONValue, PathPart, json_path
from kstrata.domain.profile import (
    DEFAULT_REVISION_HISTORY_LIMIT,
    MAX_REVISION_HISTORY_LIMIT,
    MIN_REVISION_HISTORY_LIMIT,
)
from kstrata.domain.render import FORMATS, MAX_CONFIGMAP_KEY_LENGTH
from kstrata.domain.secret_template import MAX_TEMPLATE_CHARS, MAX_TEMPLATES
from kstrata.errors import DocumentError, Violation
from kstrata.wellknown import (
    API_VERSION,
    CATEGORY,
    CONFIG_PROFILE_KIND,
    CONFIG_PROFILE_PLURAL,
    CONFIG_PROFILE_SHORT_NAME,
    GROUP,
    MANAGER,
    PART_OF_LABEL,
    READY_CONDITION,
    SEALED_SECRET_KIND,
    SEALED_SECRET_PLURAL,
    SEALED_SECRET_SHORT_NAME,
    VERSION,
)

if TYPE_CHECKING:
    from kstrata.domain.schema_keywords import SchemaError, SchemaValidator

#: One node of a CRD or of its OpenAPI schema: plain JSON, built here.
Schema = JSONObject
#: One entry of ``x-kubernetes-validations`` or ``additionalPrinterColumns``: a JSON
#: object, typed as a JSONValue so that a list of them is a JSON list (``list`` is
#: invariant: a ``list[Schema]`` is not a ``list[JSONValue]``).
Entry = JSONValue


#: ``spec.revisionHistoryLimit`` bounds.  The API keeps at least one old
#: revision (rollback needs something to roll back to) and at most 100: each
#: revision is a ConfigMap or Secret in the namespace, and an unbounded
#: history would be a quiet way to fill etcd.

#: Map sizes.  Besides being generous bounds for real use, they cap the
#: estimated cost of the CEL rules that iterate over the maps' keys.
MAX_ENVIRONMENTS: Final = 64
MAX_SEALED_ITEMS: Final = 256
MAX_RELOAD_TARGETS: Final = 32
MAX_SELECTOR_LABELS: Final = 16
MAX_TEMPLATE_LABELS: Final = 64

#: Longest sealed token text (docs/crypto.md §5).  Restated rather than
#: imported because ``domain`` must not depend on ``crypto``; a unit test pins
#: it to ``kstrata.crypto.MAX_TOKEN_CHARS``.
MAX_TOKEN_CHARS: Final = 1_399_644

SCOPES: Final = ("strict", "namespace", "cluster")
#: Workload kinds a reload target may name; a unit test pins them to
#: ``kstrata.app.reloads.RELOADABLE`` (Rollout: Argo Rollouts, argoproj.io).
RELOAD_KINDS: Final = ("Deployment", "StatefulSet", "DaemonSet", "CronJob", "Rollout")
FORBIDDEN_SECRET_TYPES: Final = (
    "kubernetes.io/service-account-token",
    "bootstrap.kubernetes.io/token",
)

# Regular expressions shared by the OpenAPI ``pattern``s (RE2 on the
# apiserver) and the CEL ``matches`` calls.  Anchored with ``^...$``: in RE2
# ``$`` only matches at the very end; the offline validator translates it.
DNS_LABEL: Final = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
DNS_SUBDOMAIN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DATA_KEY: Final = r"^[-._a-zA-Z0-9]+$"
TOKEN: Final = r"^kss[0-9]+:[A-Za-z0-9_-]+$"  # noqa: S105 (a pattern, not a token)
LABEL_VALUE: Final = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
# A qualified name (label and annotation keys): optional DNS-subdomain prefix
# and '/', then a name part of at most 63 characters.  size() bounds the whole
# key; the prefix's own 253 limit is left to the apiserver's checks on the
# objects the operator writes.
QUALIFIED_NAME: Final = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
MAX_QUALIFIED_NAME: Final = 253 + 1 + 63
FINGERPRINT: Final = r"^hmac-sha256:[A-Za-z0-9_-]+$"
KEY_ID: Final = r"^[0-9a-f]{32}$"

_ENVIRONMENT_NAME_TEXT: Final = (
    "lower-case letters, digits and '-', starting and ending with a letter or digit, "
    "at most 63 characters"
)


# --- building blocks -----------------------------------------------------


def _cel(rule: str, message: str, **extra: str) -> Entry:
    return {"rule": rule, "message": message, **extra}


def _string(description: str, **keywords: JSONValue) -> Schema:
    return {"description": description, "type": "string", **keywords}


def _integer(description: str, **keywords: JSONValue) -> Schema:
    return {"description": description, "type": "integer", "format": "int64", **keywords}


def _object(
    description: str,
    properties: Mapping[str, Schema],
    *,
    required: tuple[str, ...] = (),
    **keywords: JSONValue,
) -> Schema:
    node: Schema = {"description": description, "type": "object"}
    if required:
        node["required"] = list(required)
    node["properties"] = dict(properties)
    node.update(keywords)
    return node


def _open_object(description: str, **keywords: JSONValue) -> Schema:
    """Any JSON object, kept as given (the apiserver prunes nothing inside)."""
    return {
        "description": description,
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        **keywords,
    }


def _string_map(description: str, values: Schema, **keywords: JSONValue) -> Schema:
    return {
        "description": description,
        "type": "object",
        "additionalProperties": values,
        **keywords,
    }


def _cel_string(text: str) -> str:
    """``text`` as a CEL string literal (backslashes in patterns must be escaped)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _keys_rule(pattern: str, message: str, *, max_length: int | None = None) -> Entry:
    # Map keys have no schema of their own (structural schemas have no
    # propertyNames), so key syntax is a CEL rule on the map.
    check = f"k.matches({_cel_string(pattern)})"
    if max_length is not None:
        check = f"size(k) <= {max_length} && {check}"
    return _cel(f"self.all(k, {check})", message, reason="FieldValueInvalid")


def _environment_name(description: str) -> Schema:
    return _string(description, maxLength=63, pattern=DNS_LABEL)


def _object_name(description: str) -> Schema:
    return _string(description, maxLength=253, pattern=DNS_SUBDOMAIN)


def _revision_history_limit(what: str) -> Schema:
    return _integer(
        f"How many old revisions of the {what} to keep for history and rollback "
        f"(default {DEFAULT_REVISION_HISTORY_LIMIT}, {MIN_REVISION_HISTORY_LIMIT} to "
        f"{MAX_REVISION_HISTORY_LIMIT}).",
        default=DEFAULT_REVISION_HISTORY_LIMIT,
        minimum=MIN_REVISION_HISTORY_LIMIT,
        maximum=MAX_REVISION_HISTORY_LIMIT,
    )


def _label_map(description: str, *, what: str, max_properties: int, values: Schema) -> Schema:
    return _string_map(
        description,
        values,
        maxProperties=max_properties,
        **{
            "x-kubernetes-validations": [
                _keys_rule(
                    QUALIFIED_NAME,
                    f"{what} keys must be qualified names: an optional DNS subdomain prefix "
                    "and '/', then at most 63 letters, digits, '-', '_' or '.', starting and "
                    "ending with a letter or digit",
                    max_length=MAX_QUALIFIED_NAME,
                )
            ]
        },
    )


def _label_value(description: str) -> Schema:
    return _string(description, maxLength=63, pattern=LABEL_VALUE)


def _reload(what: str) -> Schema:
    target = _object(
        "One workload to restart. Set exactly one of name and selector.",
        {
            "kind": _string(
                "Kind of the workload, in the same namespace: Deployment, StatefulSet, "
                "DaemonSet (apps/v1), CronJob (batch/v1: its job template) or Rollout "
                "(argoproj.io/v1alpha1).",
                enum=list(RELOAD_KINDS),
            ),
            "name": _object_name("Name of the workload."),
            "selector": _object(
                "Restart every workload of this kind whose labels match.",
                {
                    "matchLabels": _string_map(
                        "Labels a workload must carry, all of them, with these values.",
                        _label_value("The label's value."),
                        minProperties=1,
                        maxProperties=MAX_SELECTOR_LABELS,
                        **{
                            "x-kubernetes-validations": [
                                _keys_rule(
                                    QUALIFIED_NAME,
                                    "label keys must be qualified names: an optional DNS "
                                    "subdomain prefix and '/', then at most 63 letters, "
                                    "digits, '-', '_' or '.', starting and ending with a "
                                    "letter or digit",
                                    max_length=MAX_QUALIFIED_NAME,
                                )
                            ]
                        },
                    )
                },
                required=("matchLabels",),
            ),
        },
        required=("kind",),
        **{
            "x-kubernetes-validations": [
                _cel(
                    "has(self.name) != has(self.selector)",
                    "set exactly one of name and selector",
                    reason="FieldValueInvalid",
                )
            ]
        },
    )
    return _object(
        f"Workloads to restart (by a rolling update of their pod template) when the "
        f"{what} changes.",
        {
            "targets": {
                "description": "The workloads to restart, in order.",
                "type": "array",
                "maxItems": MAX_RELOAD_TARGETS,
                "items": target,
                "x-kubernetes-list-type": "atomic",
            }
        },
    )


def _conditions() -> Schema:
    """A list of metav1.Condition, with the apiserver's own constraints."""
    condition = _object(
        "One aspect of the object's current state (metav1.Condition).",
        {
            "type": _string(
                "Type of condition in CamelCase, e.g. Ready.",
                maxLength=316,
                pattern=(
                    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
                ),
            ),
            "status": _string(
                "Status of the condition: True, False or Unknown.",
                enum=["True", "False", "Unknown"],
            ),
            "observedGeneration": _integer(
                "metadata.generation the condition was set for.", minimum=0
            ),
            "lastTransitionTime": _string(
                "When the condition last changed from one status to another.",
                format="date-time",
            ),
            "reason": _string(
                "Programmatic identifier of the condition's last transition, in CamelCase.",
                minLength=1,
                maxLength=1024,
                pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
            ),
            "message": _string(
                "Human-readable details. Never carries configuration values or secret data.",
                maxLength=32768,
            ),
        },
        required=("type", "status", "lastTransitionTime", "reason", "message"),
    )
    return {
        "description": "The latest observations of the object's state; Ready is the summary.",
        "type": "array",
        "items": condition,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
    }


def _workloads() -> Schema:
    workload = _object(
        "A workload in this namespace that rolls when this object changes.",
        {
            "kind": _string("Kind of the workload.", enum=list(RELOAD_KINDS)),
            "name": _string("Name of the workload."),
            "revision": _integer(
                "This object's revision the workload records (its pods run it, unless the "
                "workload is paused); absent while the workload records none.",
                minimum=0,
            ),
        },
        required=("kind", "name"),
    )
    return {
        "description": (
            "Workloads with the rolling reload strategy that use this object (named in their "
            "kstrata.dev/reload annotation or in spec.reload.targets), and the revision each "
            "one records. Written by the operator; hot and none strategies are not listed."
        ),
        "type": "array",
        "items": workload,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["kind", "name"],
    }


def _printer_columns(*, scope: bool) -> list[Entry]:
    columns: list[Entry] = []
    if scope:
        columns.append(
            {
                "name": "Scope",
                "type": "string",
                "description": "What sealed values are bound to.",
                "jsonPath": ".spec.scope",
            }
        )
    columns += [
        {
            "name": "Environment",
            "type": "string",
            "description": "The environment rendered for.",
            "jsonPath": ".status.environment",
        },
        {
            "name": "Revision",
            "type": "integer",
            "description": "The current revision.",
            "jsonPath": ".status.revision",
        },
        {
            "name": READY_CONDITION,
            "type": "string",
            "description": "Whether the last reconcile succeeded.",
            "jsonPath": f'.status.conditions[?(@.type=="{READY_CONDITION}")].status',
        },
        {
            "name": "Reason",
            "type": "string",
            "description": "The Ready condition's reason: why it is or is not Ready.",
            "jsonPath": f'.status.conditions[?(@.type=="{READY_CONDITION}")].reason',
        },
        # Side by side, these two show a stale status: while Observed lags
        # Generation, Ready describes an older spec (the operator is stopped or
        # busy).  JSONPath cannot compare them, so both are shown.
        {
            "name": "Generation",
            "type": "integer",
            "description": "The spec's generation.",
            "jsonPath": ".metadata.generation",
        },
        {
            "name": "Observed",
            "type": "integer",
            "description": "The generation the status describes; behind Generation = stale.",
            "jsonPath": ".status.observedGeneration",
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return columns


def _crd(
    *,
    kind: str,
    plural: str,
    short_name: str,
    description: str,
    spec: Schema,
    status: Schema,
    root_rules: list[Entry],
    scope_column: bool,
) -> Schema:
    root: Schema = {
        "description": description,
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": _string(
                f"Versioned schema of this representation of an object: {GROUP}/{VERSION}."
            ),
            "kind": _string(f"The REST resource this object represents: {kind}."),
            # The apiserver allows nothing but restrictions on name and
            # generateName here; ObjectMeta documents itself in kubectl explain.
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    if root_rules:
        root["x-kubernetes-validations"] = root_rules
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {PART_OF_LABEL: MANAGER},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short_name],
                "categories": [CATEGORY],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": _printer_columns(scope=scope_column),
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


# --- ConfigProfile -------------------------------------------------------


def configprofile_crd() -> Schema:
    """The ConfigProfile CRD (``configprofiles.kstrata.dev``), freshly built."""
    output = _object(
        "Where and how the merged configuration is written.",
        {
            "configMapName": _object_name(
                "Name of the ConfigMap to write (default: the profile's name)."
            ),
            "format": _string(
                "File format of the rendered configuration (default yaml).",
                enum=list(FORMATS),
                default="yaml",
            ),
            "key": _string(
                "ConfigMap key holding the rendered file (default config.yaml, config.json, "
                "config.env or config.properties, by format): letters, digits, '-', '_' and "
                "'.', not '.' and not starting with '..'.",
                maxLength=MAX_CONFIGMAP_KEY_LENGTH,
                pattern=DATA_KEY,
                **{
                    "x-kubernetes-validations": [
                        _cel(
                            "self != '.' && !self.startsWith('..')",
                            "a ConfigMap key must not be '.' or start with '..'",
                            reason="FieldValueInvalid",
                        )
                    ]
                },
            ),
            "flattenKeys": {
                "description": (
                    "Also write every leaf as its own ConfigMap entry under its env-style "
                    "key (A_B_C), so pods can use envFrom (default false)."
                ),
                "type": "boolean",
            },
        },
    )
    spec = _object(
        "Desired configuration: layers merged (RFC 7386) in the order extends, base, "
        "environments[<environment>], checked against schema, rendered into a ConfigMap.",
        {
            "base": _open_object("Configuration shared by every environment: any JSON object."),
            "environments": _string_map(
                "Per-environment overlays, merged over base as JSON Merge Patches (RFC 7386: "
                "null deletes a key). Keys are environment names: "
                f"{_ENVIRONMENT_NAME_TEXT}.",
                _open_object(
                    "Overlay for one environment: any JSON object; null (or empty) declares "
                    "the environment without changes.",
                    nullable=True,
                ),
                maxProperties=MAX_ENVIRONMENTS,
                **{
                    "x-kubernetes-validations": [
                        _keys_rule(
                            DNS_LABEL,
                            f"environment names must be DNS labels: {_ENVIRONMENT_NAME_TEXT}",
                        )
                    ]
                },
            ),
            "extends": {
                "description": (
                    "ConfigProfiles in the same namespace whose effective configuration is "
                    "merged first, in this order (at most "
                    f"{MAX_EXTENDS_DEPTH}, no duplicates, not this profile)."
                ),
                "type": "array",
                "maxItems": MAX_EXTENDS_DEPTH,
                "items": _object_name("Name of a ConfigProfile in the same namespace."),
                "x-kubernetes-list-type": "set",
            },
            "environment": _environment_name(
                "Pin the environment to render. Default: the namespace label "
                "kstrata.dev/environment, else the operator's default environment."
            ),
            "schema": _open_object(
                "JSON Schema (draft 2020-12; only local $refs) the merged configuration must "
                "satisfy in every environment."
            ),
            "output": output,
            "revisionHistoryLimit": _revision_history_limit("ConfigMap"),
            "reload": _reload("rendered ConfigMap"),
        },
    )
    sources = list(get_args(EnvironmentSource))
    status = _object(
        "Observed state, written by the operator.",
        {
            "observedGeneration": _integer(
                "The metadata.generation this status describes.", minimum=0
            ),
            "environment": _string("The environment last rendered for."),
            "environmentSource": _string(
                "Which rule chose the environment: spec (spec.environment), namespace-label "
                "(kstrata.dev/environment on the namespace) or default (the operator's).",
                enum=sources,
            ),
            "revision": _integer(
                "Revision of the rendered ConfigMap; grows by one with each content change.",
                minimum=0,
            ),
            "configMapName": _string("Name of the ConfigMap written."),
            "renderedDigest": _string(
                "SHA-256 (hex) of the rendered ConfigMap data: the revision's content hash."
            ),
            "dependsOn": {
                "description": "ConfigProfiles read through spec.extends, directly or not.",
                "type": "array",
                "items": _string("Name of a ConfigProfile."),
                "x-kubernetes-list-type": "atomic",
            },
            "workloads": _workloads(),
            "conditions": _conditions(),
        },
    )
    return _crd(
        kind=CONFIG_PROFILE_KIND,
        plural=CONFIG_PROFILE_PLURAL,
        short_name=CONFIG_PROFILE_SHORT_NAME,
        description=(
            "ConfigProfile: layered, per-environment configuration rendered by kstrata "
            "into a ConfigMap, with revision history."
        ),
        spec=spec,
        status=status,
        root_rules=[
            # Only a root rule sees metadata.name; spec is required, so
            # self.spec is always present here.
            _cel(
                "!has(self.spec.extends) || !(self.metadata.name in self.spec.extends)",
                "a ConfigProfile must not extend itself",
                fieldPath=".spec.extends",
                reason="FieldValueInvalid",
            )
        ],
        scope_column=False,
    )


# --- SealedSecret --------------------------------------------------------


def _encrypted_data(description: str) -> Schema:
    return _string_map(
        description,
        _string(
            "A sealed token, made by kstrata seal for this item key, scope and location: "
            "kss1:... (one recipient) or kss2:... (several clusters or keys, each opening "
            "its own copy).",
            maxLength=MAX_TOKEN_CHARS,
            pattern=TOKEN,
        ),
        maxProperties=MAX_SEALED_ITEMS,
        **{"x-kubernetes-validations": [_secret_keys_rule()]},
    )


def _secret_keys_rule() -> Entry:
    return _cel(
        f"self.all(k, size(k) <= 253 && k.matches({_cel_string(DATA_KEY)}) "
        "&& k != '.' && !k.startsWith('..'))",
        "item keys must be valid Secret keys: letters, digits, '-', '_' and '.', "
        "at most 253 characters, not '.' and not starting with '..'",
        reason="FieldValueInvalid",
    )


def sealedsecret_crd() -> Schema:
    """The SealedSecret CRD (``sealedsecrets.kstrata.dev``), freshly built."""
    template = _object(
        "Shape of the Secret the operator writes.",
        {
            "type": _string(
                "Secret type (default Opaque). Service-account and bootstrap token types are "
                "refused: they would hand out cluster credentials.",
                maxLength=253,
                **{
                    "x-kubernetes-validations": [
                        _cel(
                            "!(self in " + repr(list(FORBIDDEN_SECRET_TYPES)) + ")",
                            "service-account and bootstrap token Secrets cannot be sealed",
                            reason="FieldValueForbidden",
                        )
                    ]
                },
            ),
            "labels": _label_map(
                "Labels to put on the Secret.",
                what="label",
                max_properties=MAX_TEMPLATE_LABELS,
                values=_label_value("The label's value."),
            ),
            "annotations": _label_map(
                "Annotations to put on the Secret.",
                what="annotation",
                max_properties=MAX_TEMPLATE_LABELS,
                values=_string("The annotation's value.", maxLength=65536),
            ),
            "immutable": {
                "description": "Write the Secret as immutable (each revision a new Secret).",
                "type": "boolean",
            },
            "data": _string_map(
                "Secret items rendered from the opened items, by Secret item key: literal text "
                'with {{ .key }} or {{ index . "key" }} for an item\'s value (no functions, '
                "conditions or loops; docs/config-management-guide.md). A key here replaces the "
                "item of the same key; null leaves that item out of the Secret. The text is "
                "public: never put a secret value in it.",
                _string(
                    "A template, or null to leave the item of this key out.",
                    maxLength=MAX_TEMPLATE_CHARS,
                    nullable=True,
                ),
                maxProperties=MAX_TEMPLATES,
                **{"x-kubernetes-validations": [_secret_keys_rule()]},
            ),
        },
    )
    spec = _object(
        "Sealed values and how to unseal them into a Secret.",
        {
            "encryptedData": _encrypted_data(
                "Sealed values by Secret item key. Each token opens only for its item key "
                "(and, depending on scope, this namespace and name)."
            ),
            "environments": _string_map(
                "Per-environment sealed values, replacing encryptedData items of the same key. "
                f"Keys are environment names: {_ENVIRONMENT_NAME_TEXT}.",
                _object(
                    "Sealed values for one environment.",
                    {
                        "encryptedData": _encrypted_data(
                            "Sealed values by Secret item key, for this environment."
                        )
                    },
                ),
                maxProperties=MAX_ENVIRONMENTS,
                **{
                    "x-kubernetes-validations": [
                        _keys_rule(
                            DNS_LABEL,
                            f"environment names must be DNS labels: {_ENVIRONMENT_NAME_TEXT}",
                        )
                    ]
                },
            ),
            "environment": _environment_name(
                "Pin the environment to unseal for. Default: the namespace label "
                "kstrata.dev/environment, else the operator's default environment."
            ),
            "scope": _string(
                "What every token is bound to: strict (namespace, name and item key), "
                "namespace (namespace and item key) or cluster (item key only). "
                "Default strict; cannot change after creation.",
                enum=list(SCOPES),
                default="strict",
                **{
                    "x-kubernetes-validations": [
                        _cel(
                            "self == oldSelf",
                            "scope is immutable: tokens are sealed for one scope; "
                            "re-seal into a new SealedSecret instead",
                            reason="FieldValueForbidden",
                        )
                    ]
                },
            ),
            "template": template,
            "revisionHistoryLimit": _revision_history_limit("Secret"),
            "reload": _reload("unsealed Secret"),
        },
    )
    item = _object(
        "Public facts about one item of the Secret.",
        {
            "key": _string("The Secret item key."),
            "fingerprint": _string(
                "Keyed fingerprint of the value (hmac-sha256:...): shows that a value "
                "changed without revealing it.",
                pattern=FINGERPRINT,
            ),
            "keyId": _string("Id of the sealing key the token was sealed to.", pattern=KEY_ID),
        },
        required=("key",),
    )
    status = _object(
        "Observed state, written by the operator. Holds no secret material.",
        {
            "observedGeneration": _integer(
                "The metadata.generation this status describes.", minimum=0
            ),
            "environment": _string("The environment last unsealed for."),
            "environmentSource": _string(
                "Which rule chose the environment: spec (spec.environment), namespace-label "
                "(kstrata.dev/environment on the namespace) or default (the operator's).",
                enum=list(get_args(EnvironmentSource)),
            ),
            "revision": _integer(
                "Revision of the Secret; grows by one with each content change.", minimum=0
            ),
            "secretName": _string("Name of the Secret written."),
            "keyIds": {
                "description": "Ids of the sealing keys the current tokens are sealed to.",
                "type": "array",
                "items": _string("A sealing key id (32 hex characters).", pattern=KEY_ID),
                "x-kubernetes-list-type": "atomic",
            },
            "items": {
                "description": "Per-item fingerprints and key ids of the current Secret.",
                "type": "array",
                "items": item,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["key"],
            },
            "workloads": _workloads(),
            "conditions": _conditions(),
        },
    )
    return _crd(
        kind=SEALED_SECRET_KIND,
        plural=SEALED_SECRET_PLURAL,
        short_name=SEALED_SECRET_SHORT_NAME,
        description=(
            "SealedSecret: values sealed to the kstrata operator's public key, safe to commit; "
            "the operator unseals them into a Secret in this namespace."
        ),
        spec=spec,
        status=status,
        root_rules=[],
        scope_column=True,
    )


def all_crds() -> list[Schema]:
    """Every kstrata CRD, in a fixed order (the order they are written and applied)."""
    return [configprofile_crd(), sealedsecret_crd()]


# --- offline validation --------------------------------------------------

_KINDS: Final = (CONFIG_PROFILE_KIND, SEALED_SECRET_KIND)


def _to_json_schema(node: JSONValue, *, root: bool = False) -> JSONValue:
    """Translate one structural-schema node into JSON Schema (draft 2020-12).

    * ``x-kubernetes-*`` keywords are dropped; a node with
      ``x-kubernetes-preserve-unknown-fields`` stays open, and ``list-type:
      set`` becomes ``uniqueItems`` (the apiserver refuses duplicates too).
    * Every other object with ``properties`` is closed
      (``additionalProperties: false``): kubectl's default strict field
      validation refuses unknown fields, so offline must as well.
    * ``nullable: true`` becomes a ``null`` alternative in ``type``.
    * A final ``$`` in a pattern becomes ``\\Z``: in RE2 ``$`` is the end of the
      text, in Python's ``re`` it also matches before a trailing newline.
    """
    if not isinstance(node, dict):
        return node
    out: Schema = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "description", "format"):
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: _to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = _to_json_schema(value)
        elif key == "pattern" and isinstance(value, str) and value.endswith("$"):
            out[key] = value[:-1] + r"\Z"
        else:
            out[key] = value
    if node.get("nullable") is True and "type" in out:
        out["type"] = [out["type"], "null"]
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if root:
        # Offline manifests are complete documents: apiVersion, kind and a name.
        out["required"] = ["apiVersion", "kind", "metadata", *_list(out.get("required"))]
        properties = _node(out["properties"])
        properties["apiVersion"] = {"const": API_VERSION}
        properties["metadata"] = {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": _to_json_schema(_object_name("")),
                "namespace": _to_json_schema(_string("", maxLength=63, pattern=DNS_LABEL)),
            },
        }
    return out


def _node(value: JSONValue) -> Schema:
    """``value``, a schema node this module built as an object (a bug otherwise)."""
    if not isinstance(value, dict):
        raise TypeError("a CRD schema node that kstrata builds as an object is not one")
    return value


def _list(value: JSONValue) -> list[JSONValue]:
    return value if isinstance(value, list) else []


@functools.cache
def _validator(kind: str) -> SchemaValidator:
    crd = configprofile_crd() if kind == CONFIG_PROFILE_KIND else sealedsecret_crd()
    version = _node(_list(_node(crd["spec"])["versions"])[0])
    root = _node(version["schema"])["openAPIV3Schema"]
    schema = _node(_to_json_schema(root, root=True))
    _node(schema["properties"])["kind"] = {"const": kind}
    # Imported lazily: jsonschema is the most expensive import of the domain,
    # and the offline CLI must start fast (see kstrata.domain.schema).
    validator_class = import_module("jsonschema").Draft202012Validator
    validator_class.check_schema(schema)
    validator: SchemaValidator = validator_class(schema)
    return validator


def _field_path(parts: tuple[PathPart, ...]) -> str:
    # kubectl's notation (spec.output.format), built by json_path so odd keys
    # are quoted the same way as everywhere else in kstrata.
    if not parts:
        return "(document)"
    return json_path(parts).removeprefix("$").removeprefix(".")


def _message(rule: str, expected: JSONValue) -> str:
    """A message from the schema's side of the rule only (never the instance)."""
    simple: dict[str, Callable[[], str]] = {
        "enum": lambda: "must be one of: " + ", ".join(str(item) for item in _list(expected)),
        "const": lambda: f"must be {expected}",
        "type": lambda: (
            "must be of type "
            + (" or ".join(map(str, expected)) if isinstance(expected, list) else str(expected))
        ),
        # Shown as written in the CRD (see _to_json_schema for the \\Z).
        "pattern": lambda: "must match the pattern " + re.sub(r"\\Z$", "$", str(expected)),
        "maxLength": lambda: f"must be at most {expected} characters long",
        "minLength": lambda: f"must be at least {expected} characters long",
        "minimum": lambda: f"must be >= {expected}",
        "maximum": lambda: f"must be <= {expected}",
        "maxItems": lambda: f"must have at most {expected} items",
        "minItems": lambda: f"must have at least {expected} items",
        "maxProperties": lambda: f"must have at most {expected} entries",
        "minProperties": lambda: f"must have at least {expected} entries",
        "uniqueItems": lambda: "must not contain duplicates",
    }
    build = simple.get(rule)
    return build() if build is not None else f"violates the '{rule}' rule"


def _violations(error: SchemaError) -> list[tuple[tuple[PathPart, ...], str, str]]:
    path = tuple(error.absolute_path)
    rule = str(error.validator)
    instance = error.instance
    if rule == "required" and isinstance(instance, dict):
        return [
            ((*path, name), rule, "required field is missing")
            for name in _list(error.validator_value)
            if isinstance(name, str) and name not in instance
        ]
    if rule == "additionalProperties" and isinstance(instance, dict):
        node = error.schema if isinstance(error.schema, dict) else {}
        declared = node.get("properties")
        known = declared if isinstance(declared, dict) else {}
        # Only keys are read from the instance; they are part of the path anyway.
        return [((*path, key), rule, "unknown field") for key in instance if key not in known]
    return [(path, rule, _message(rule, error.validator_value))]


def validate_structure(manifest: object, *, source: str) -> list[Violation]:
    """Check a ConfigProfile or SealedSecret manifest against its CRD schema, offline.

    Covers what the openAPIV3Schema says (types, enums, patterns, bounds,
    required and unknown fields) plus the presence of apiVersion, kind and
    metadata.name.  It cannot cover what only the apiserver evaluates: the CEL
    rules (a profile extending itself, environment names as map keys, exactly
    one of name/selector, scope immutability), ``list-type: map`` key
    uniqueness, and defaults (absent fields are not filled in).  Those are
    enforced when the manifest is applied.

    Violations are sorted by path and name the field path, the rule and the
    schema's side of it, never a value from ``manifest``.  ``source`` names
    the document in the ``DocumentError`` raised when ``manifest`` is not an
    object at all.
    """
    if not isinstance(manifest, Mapping):
        raise DocumentError(f"{source}: a manifest must be an object")
    kind = manifest.get("kind")
    if kind not in _KINDS:
        return [
            Violation(
                environment=None,
                path="kind",
                rule="enum",
                message=_message("enum", list(_KINDS)),
            )
        ]
    found: set[tuple[tuple[PathPart, ...], str, str]] = set()
    for error in _validator(kind).iter_errors(dict(manifest)):
        found.update(_violations(error))
    ordered = sorted(
        found,
        key=lambda item: (
            tuple((0, part, "") if isinstance(part, int) else (1, 0, part) for part in item[0]),
            item[1],
            item[2],
        ),
    )
    return [
        Violation(environment=None, path=_field_path(parts), rule=rule, message=message)
        for parts, rule, message in ordered
    ]


__all__ = [
    # Re-exported: tests and tools/gen_crd_docs.py read them here beside the CRDs.
    "GROUP",
    "MAX_REVISION_HISTORY_LIMIT",
    "MIN_REVISION_HISTORY_LIMIT",
    "VERSION",
    "all_crds",
    "configprofile_crd",
    "sealedsecret_crd",
    "validate_structure",
]
