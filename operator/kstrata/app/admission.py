"""Admission: refuse a ConfigProfile whose merged config fails its schema, at apply time.

The webhook asks this module; the answer is the same check the reconcile
runs, applied to every environment the profile could be rendered for: every
declared environment, its pinned ``spec.environment``, the namespace's label
and the operator's default.  The message names the environment and the JSON
path, never a value.

SealedSecrets with ``spec.template.data`` are reviewed too: every template
must parse and name only items the SealedSecret has, for the same set of
environments.  Only the spec is read (the templates and the item keys), so
admission never opens a token; a SealedSecret without templates is not sent
to the webhook at all (a match condition), so sealing keeps working while no
operator replica is ready.

This module also keeps the ValidatingWebhookConfiguration current: scoped to
kstrata.dev only, ``failurePolicy: Fail``, ``timeoutSeconds`` 5,
``sideEffects: None``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Final

from kstrata.domain.budget import time_budget
from kstrata.domain.environments import select_environment
from kstrata.domain.profile import (
    ProfileSpec,
    parse_profile_spec,
    validate_all_environments,
)
from kstrata.domain.sealed_spec import check_secret_type, checked_tokens, parse_sealed_spec
from kstrata.errors import ExtendsError, NotFoundError, SchemaViolationError, Violation
from kstrata.kube.api import CONFIG_PROFILES, NAMESPACES, VALIDATING_WEBHOOKS, KubeClient
from kstrata.payloads import (
    ConfigProfile,
    Opaque,
    SealedSecret,
    ValidatingWebhookConfiguration,
    WebhookClientConfig,
)
from kstrata.settings import Settings
from kstrata.wellknown import (
    CONFIG_PROFILE_PLURAL,
    ENVIRONMENT_LABEL,
    GROUP,
    MANAGED_BY_LABEL,
    MANAGER,
    SEALED_SECRET_PLURAL,
    VERSION,
)

PROFILE_WEBHOOK_ID: Final = "validate-configprofile"
SEALED_SECRET_WEBHOOK_ID: Final = "validate-sealedsecret"  # noqa: S105 (a path, not a secret)
#: The apiserver waits at most this long; a slow webhook must not stall applies.
WEBHOOK_TIMEOUT_SECONDS: Final = 5
#: On a webhook configuration a foreground operator (``--webhook-url``) created:
#: it is that operator's to remove when it stops.
FOREGROUND_OPERATOR: Final = "foreground-operator"
#: One review's validation, at most: below the timeout, with room for the reads.
REVIEW_BUDGET_SECONDS: Final = 2.0


#: CEL: review creates, and updates that change the spec (a missing spec is reviewed too).
SPEC_CHANGED: Final = (
    "request.operation != 'UPDATE' || !has(object.spec) || !has(oldObject.spec)"
    " || object.spec != oldObject.spec"
)
#: CEL: only SealedSecrets with templates need the webhook (the CRD checks the rest).
HAS_TEMPLATE_DATA: Final = (
    "has(object.spec) && has(object.spec.template) && has(object.spec.template.data)"
)


def _namespace_labels(
    api: KubeClient,
    namespace: str,
    namespace_labels: Callable[[str], Mapping[str, str] | None] | None,
) -> Mapping[str, str]:
    labels = namespace_labels(namespace) if namespace_labels is not None else None
    if labels is None:
        try:
            found = api.get(NAMESPACES, None, namespace)
            labels = (found.get("metadata") or {}).get("labels") or {}
        except NotFoundError:
            labels = {}
    return labels


def review_sealed_secret(
    api: KubeClient,
    settings: Settings,
    sealed: SealedSecret,
    namespace_labels: Callable[[str], Mapping[str, str] | None] | None = None,
) -> None:
    """Raise ``InvalidInputError`` (``TemplateError`` for templates) if not admissible.

    Checks what the spec alone decides: the Secret type and that every
    template parses and names items the SealedSecret has, in each declared
    environment and the one it would unseal for now.  No token is opened.
    """
    meta = sealed.get("metadata") or {}
    namespace = meta.get("namespace") or "default"
    spec = parse_sealed_spec(sealed.get("spec"))
    check_secret_type(spec.template.type, where="spec.template.type")
    labels = _namespace_labels(api, namespace, namespace_labels)
    chosen = select_environment(spec.environment, labels, settings.default_environment).name
    for environment in sorted({chosen, *spec.environments}):
        checked_tokens(spec, environment)


def review_profile(
    api: KubeClient,
    settings: Settings,
    profile: ConfigProfile,
    namespace_labels: Callable[[str], Mapping[str, str] | None] | None = None,
) -> None:
    """Raise ``InvalidInputError`` (``SchemaViolationError`` for schemas) if not admissible.

    ``namespace_labels``: the operator's in-memory copy (None: not known
    there), which spares every apply a read of the namespace; the namespace
    is read when it is not given or does not know the namespace.
    """
    meta = profile.get("metadata") or {}
    namespace, name = meta.get("namespace") or "default", meta.get("name") or ""
    spec = parse_profile_spec(profile.get("spec"))

    def lookup(base: str) -> ProfileSpec | None:
        found = api.get_or_none(CONFIG_PROFILES, namespace, base)
        return parse_profile_spec(found.get("spec")) if found else None

    extra = [settings.default_environment]
    labels = _namespace_labels(api, namespace, namespace_labels)
    label = labels.get(ENVIRONMENT_LABEL)
    if label:
        extra.append(label)
    try:
        # Below the webhook's timeout, so a review never outlives the API
        # server's wait (which failurePolicy: Fail turns into a refusal anyway).
        with time_budget(REVIEW_BUDGET_SECONDS, f"reviewing ConfigProfile {namespace}/{name}"):
            by_environment = validate_all_environments(spec, name, lookup, extra_environments=extra)
    except ExtendsError:
        # A base that does not exist yet is normal mid-apply (kubectl apply -f dir/,
        # GitOps syncs in any order): admit, and let the reconcile report
        # InvalidExtends until the base arrives.
        return
    violations: list[Violation] = [v for env in sorted(by_environment) for v in by_environment[env]]
    if violations:
        raise SchemaViolationError(violations)


def webhook_configuration(
    name: str, client_config: WebhookClientConfig, namespaces: tuple[str, ...] = ()
) -> ValidatingWebhookConfiguration:
    """The ValidatingWebhookConfiguration kstrata keeps for its own resources only.

    An operator that watches listed namespaces reviews only those.
    """
    selector: dict[str, Opaque] = {}
    if namespaces:
        values: list[Opaque] = [*sorted(namespaces)]
        selector = {
            "matchExpressions": [
                {
                    "key": "kubernetes.io/metadata.name",
                    "operator": "In",
                    "values": values,
                }
            ]
        }
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name, "labels": {MANAGED_BY_LABEL: MANAGER}},
        "webhooks": [
            {
                "name": f"{CONFIG_PROFILE_PLURAL}.{GROUP}",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "matchPolicy": "Equivalent",
                "timeoutSeconds": WEBHOOK_TIMEOUT_SECONDS,
                # Metadata-only updates (kopf's bookkeeping, kstrata's revision
                # annotations) change nothing the webhook checks.  Reviewing them
                # anyway queued each review behind the reconciles in the operator's
                # thread pool: on a burst of 1,000 new profiles every review timed
                # out, kopf retried, and the operator grew to ~800 MiB.
                "matchConditions": [{"name": "spec-changed", "expression": SPEC_CHANGED}],
                "rules": [
                    {
                        "apiGroups": [GROUP],
                        "apiVersions": [VERSION],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": [CONFIG_PROFILE_PLURAL],
                        "scope": "Namespaced",
                    }
                ],
                "namespaceSelector": selector,
                "clientConfig": client_config,
            },
            {
                "name": f"{SEALED_SECRET_PLURAL}.{GROUP}",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "matchPolicy": "Equivalent",
                "timeoutSeconds": WEBHOOK_TIMEOUT_SECONDS,
                "matchConditions": [
                    {"name": "spec-changed", "expression": SPEC_CHANGED},
                    {"name": "has-template-data", "expression": HAS_TEMPLATE_DATA},
                ],
                "rules": [
                    {
                        "apiGroups": [GROUP],
                        "apiVersions": [VERSION],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": [SEALED_SECRET_PLURAL],
                        "scope": "Namespaced",
                    }
                ],
                "namespaceSelector": selector,
                "clientConfig": for_webhook(client_config, SEALED_SECRET_WEBHOOK_ID),
            },
        ],
    }


def for_webhook(client_config: WebhookClientConfig, webhook_id: str) -> WebhookClientConfig:
    """``client_config`` (the ConfigProfile webhook's) pointed at another of our webhooks."""
    config = client_config.copy()
    if "url" in config:
        base, _, _ = config["url"].rpartition("/")
        config["url"] = f"{base}/{webhook_id}"
    if "service" in config:
        config["service"] = {**config["service"], "path": f"/{webhook_id}"}
    return config


def client_config(settings: Settings, ca_pem: bytes, port: int) -> WebhookClientConfig:
    """URL config for local runs (``webhook_url``), else the in-cluster Service."""
    config: WebhookClientConfig = {"caBundle": base64.b64encode(ca_pem).decode()}
    if settings.webhook_url:
        config["url"] = f"{settings.webhook_url.rstrip('/')}/{PROFILE_WEBHOOK_ID}"
    else:
        config["service"] = {
            "name": settings.webhook_service,
            "namespace": settings.operator_namespace,
            "path": f"/{PROFILE_WEBHOOK_ID}",
            "port": 443,
        }
    return config


def ensure_webhook_configuration(
    api: KubeClient, name: str, desired: ValidatingWebhookConfiguration
) -> bool:
    """Create or update our own configuration object; True if anything was written."""
    existing = api.get_or_none(VALIDATING_WEBHOOKS, None, name)
    if existing is None:
        api.create(VALIDATING_WEBHOOKS, None, desired)
        return True
    if existing.get("webhooks") == desired.get("webhooks"):
        return False
    updated: ValidatingWebhookConfiguration = {**existing, "webhooks": desired.get("webhooks", [])}
    api.replace(VALIDATING_WEBHOOKS, None, updated)
    return True
