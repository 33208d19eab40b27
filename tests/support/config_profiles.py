"""ConfigProfiles on the real control plane: the helpers the cluster tests share.

Building and applying a ConfigProfile, reading it back, its ``Ready``
condition, and waiting until the operator serves a given revision (or has
refused the profile with a reason).  The SealedSecret twins are in
:mod:`support.sealed_secrets`.
"""

from __future__ import annotations

from typing import Any, cast

import yaml

from kstrata.domain.crds import GROUP, VERSION
from kstrata.payloads import Condition, ConfigProfile
from support.cluster import TestCluster
from support.waiting import wait_for

PLURAL = "configprofiles"


def profile(name: str, spec: dict[str, Any]) -> ConfigProfile:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ConfigProfile",
        "metadata": {"name": name},
        "spec": spec,
    }


def apply(cluster: TestCluster, namespace: str, body: ConfigProfile | str) -> None:
    """``kubectl apply`` of one object, or of YAML text as a user would write it."""
    text = body if isinstance(body, str) else yaml.safe_dump(body)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=text)


def get_profile(cluster: TestCluster, namespace: str, name: str) -> ConfigProfile:
    # The API's answer, claimed to be a ConfigProfile as kstrata.kube.api claims it.
    return cast(ConfigProfile, cluster.kstrata_object(PLURAL, namespace, name))


def condition(body: ConfigProfile, kind: str = "Ready") -> Condition | None:
    for item in (body.get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return item.copy()
    return None


def wait_ready(cluster: TestCluster, namespace: str, name: str, *, revision: int) -> ConfigProfile:
    """The profile once Ready at ``revision`` for its current generation."""

    def ready() -> ConfigProfile | None:
        body = get_profile(cluster, namespace, name)
        ready_condition = condition(body)
        if (
            ready_condition
            and ready_condition["status"] == "True"
            and body["status"].get("revision") == revision
            and body["status"].get("observedGeneration") == body["metadata"]["generation"]
        ):
            return body
        return None

    return wait_for(ready, timeout=30, what=f"{name} Ready at revision {revision}")


def wait_not_ready(cluster: TestCluster, namespace: str, name: str, reason: str) -> ConfigProfile:
    def failed() -> ConfigProfile | None:
        body = get_profile(cluster, namespace, name)
        ready_condition = condition(body)
        if ready_condition and (ready_condition["status"], ready_condition["reason"]) == (
            "False",
            reason,
        ):
            return body
        return None

    return wait_for(failed, timeout=30, what=f"{name} Ready=False ({reason})")
