"""Environments: which one a profile renders for, and what names are allowed.

A profile renders for exactly one environment.  The choice is made here, in
one pure function, so the operator, admission and the CLI agree on the
precedence: ``spec.environment`` pins it, else the namespace label
``kstrata.dev/environment`` decides (one namespace per environment is the
common layout), else the operator's configured default.

Environment names appear in ConfigMap metadata, labels, status and messages,
so they are restricted to DNS labels (lower-case alphanumerics and ``-``, at
most 63 characters); that also keeps them safe to print.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from kstrata.errors import InvalidInputError
from kstrata.wellknown import ENVIRONMENT_LABEL

EnvironmentSource: TypeAlias = Literal["spec", "namespace-label", "default"]

#: The environment rendered when neither --env nor spec.environment names one
#: (the operator's own default, so offline output matches a fresh cluster).
DEFAULT_ENVIRONMENT: Final = "dev"

_DNS_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?\Z")


def is_environment_name(name: object) -> bool:
    """True for a valid environment name (a DNS label)."""
    return isinstance(name, str) and _DNS_LABEL.match(name) is not None


def check_environment_name(name: object, *, where: str) -> str:
    """Return ``name`` if valid, else raise ``InvalidInputError`` naming ``where``.

    The rejected text is not echoed: it failed validation, so it is not known
    to be a name rather than something pasted by mistake.
    """
    if not is_environment_name(name):
        raise InvalidInputError(
            f"{where}: not a valid environment name "
            "(lower-case letters, digits and '-', at most 63 characters)"
        )
    assert isinstance(name, str)
    return name


@dataclass(frozen=True)
class EnvironmentChoice:
    """The environment a profile renders for, and which rule picked it."""

    name: str
    source: EnvironmentSource


def select_environment(
    spec_environment: str | None,
    namespace_labels: Mapping[str, str] | None,
    default: str,
) -> EnvironmentChoice:
    """Pick the environment: ``spec.environment``, else the namespace label, else ``default``.

    An empty label value counts as no label (``kubectl label ns x key=`` is a
    common way to "unset" it).  Whichever source wins must hold a valid name;
    a broken label is an error rather than a silent fall-through to the
    default, which could render production with another environment's values.
    """
    if spec_environment is not None:
        name = check_environment_name(spec_environment, where="spec.environment")
        return EnvironmentChoice(name, "spec")
    label = (namespace_labels or {}).get(ENVIRONMENT_LABEL)
    if label:
        name = check_environment_name(label, where=f"namespace label {ENVIRONMENT_LABEL}")
        return EnvironmentChoice(name, "namespace-label")
    name = check_environment_name(default, where="default environment")
    return EnvironmentChoice(name, "default")
