"""A SealedSecret's spec, parsed and checked: the pure half of unsealing.

Why here and not next to the reconcile: admission, the reconcile and
``kstrata diff``/``rollback`` all read a SealedSecret's spec the same way
(which items apply in an environment, whether a template names an item that
is not there, which Secret types are refused), and none of that needs the
cluster or a key.  Keeping it pure lets the use cases in ``kstrata.app``
share it without importing each other, and lets it be tested without a
cluster.

The scope is a name here (``ScopeName``); ``kstrata.crypto.Scope`` has the
same three values and is what the opening code takes (domain and crypto are
independent layers, so neither imports the other; a unit test holds the two
lists equal).  No message quotes a value: a mistyped field may hold anything.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

from kstrata.domain.crds import FORBIDDEN_SECRET_TYPES
from kstrata.domain.environments import check_environment_name
from kstrata.domain.jsonvalue import string_map
from kstrata.domain.secret_template import TemplateData, check_references, parse_template_data
from kstrata.domain.secret_template import canonical as canonical_templates
from kstrata.errors import InvalidInputError
from kstrata.wellknown import FORBIDDEN_SECRET_TYPE_REASON

#: ``spec.scope``: how much of its location a sealed value is bound to.
ScopeName = Literal["strict", "namespace", "cluster"]
SCOPE_NAMES: Final[tuple[str, ...]] = get_args(ScopeName)
DEFAULT_SECRET_TYPE: Final = "Opaque"  # noqa: S105 (a Secret type name)


@dataclass(frozen=True)
class SecretShape:
    """``spec.template``: the shape of the Secret written."""

    type: str = DEFAULT_SECRET_TYPE
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    immutable: bool = False
    #: ``spec.template.data``: values rendered from the opened items
    #: (``kstrata.domain.secret_template``); a key there replaces an item.
    data: TemplateData = field(default_factory=lambda: TemplateData({}))


@dataclass(frozen=True)
class SealedSpec:
    """The parts of a SealedSecret's spec that unsealing needs."""

    scope: ScopeName
    encrypted_data: Mapping[str, str]
    environments: Mapping[str, Mapping[str, str]]
    environment: str | None
    template: SecretShape


def _invalid(message: str) -> InvalidInputError:
    return InvalidInputError(message)


def parse_sealed_spec(spec: object) -> SealedSpec:
    """Check the spec's shape (the CRD schema normally has already); no value is quoted."""
    if not isinstance(spec, dict):
        raise _invalid("spec must be an object")
    scope = spec.get("scope", "strict")
    if scope not in SCOPE_NAMES:
        raise _invalid("spec.scope must be one of strict, namespace, cluster")
    encrypted = string_map(spec.get("encryptedData"), "spec.encryptedData")
    environments_raw = spec.get("environments") or {}
    if not isinstance(environments_raw, dict):
        raise _invalid("spec.environments must be an object")
    environments: dict[str, dict[str, str]] = {}
    for env_name, overlay in environments_raw.items():
        check_environment_name(env_name, where="spec.environments")
        if overlay is not None and not isinstance(overlay, dict):
            raise _invalid(f"spec.environments.{env_name} must be an object")
        environments[env_name] = string_map(
            (overlay or {}).get("encryptedData"), f"spec.environments.{env_name}.encryptedData"
        )
    environment = spec.get("environment")
    if environment is not None and not isinstance(environment, str):
        raise _invalid("spec.environment must be a string")
    template_raw = spec.get("template") or {}
    if not isinstance(template_raw, dict):
        raise _invalid("spec.template must be an object")
    secret_type = template_raw.get("type") or DEFAULT_SECRET_TYPE
    if not isinstance(secret_type, str):
        raise _invalid("spec.template.type must be a string")
    immutable = template_raw.get("immutable", False)
    if not isinstance(immutable, bool):
        raise _invalid("spec.template.immutable must be a boolean")
    template = SecretShape(
        type=secret_type,
        labels=string_map(template_raw.get("labels"), "spec.template.labels"),
        annotations=string_map(template_raw.get("annotations"), "spec.template.annotations"),
        immutable=immutable,
        data=parse_template_data(template_raw.get("data")),
    )
    return SealedSpec(scope, encrypted, environments, environment, template)


def check_secret_type(secret_type: str, *, where: str) -> None:
    """Refuse Secret types that would hand out cluster credentials."""
    if secret_type in FORBIDDEN_SECRET_TYPES:
        raise InvalidInputError(
            f"{where} is {secret_type}: kstrata never writes service-account or "
            "bootstrap token Secrets",
            reason=FORBIDDEN_SECRET_TYPE_REASON,
        )


def effective_tokens(spec: SealedSpec, environment: str) -> dict[str, str]:
    """Base items, with the chosen environment's items replacing those of the same key."""
    tokens = dict(spec.encrypted_data)
    tokens.update(spec.environments.get(environment, {}))
    return dict(sorted(tokens.items()))


def checked_tokens(spec: SealedSpec, environment: str) -> dict[str, str]:
    """``effective_tokens``, and every template's references found among them.

    Checked before any key work: a template naming an item that is not there
    can never render.  Admission refuses it at apply time; this is for a
    spec that bypassed the webhook, or a namespace label that changed since.
    """
    tokens = effective_tokens(spec, environment)
    check_references(spec.template.data, tokens.keys(), environment=environment)
    return tokens


def tokens_digest(tokens: Mapping[str, str], templates: object = None) -> str:
    """Digest of the token set in effect: changes when a token is added, removed or re-sealed.

    ``templates`` (``spec.template.data``, public text) count too when there
    are any, so a changed template is a new revision; without templates the
    digest is what it always was (no new revision, no rollout on upgrade).
    """
    canonical: object = sorted(tokens.items())
    if templates:
        canonical = {"tokens": canonical, "templates": canonical_templates(templates)}
    text = json.dumps(canonical, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(text.encode("ascii")).hexdigest()
