"""kopf's essence of a ConfigProfile or SealedSecret: the same dict, metadata not copied."""

from __future__ import annotations

import copy
from typing import Any, cast

import kopf
import pytest

from kstrata.controller.runner import SpecEssenceStorage, essence_storage


class NotCopied:
    """Stands for metadata kopf would deep-copy and then throw away."""

    def __deepcopy__(self, memo: dict[int, Any]) -> NotCopied:
        raise AssertionError("metadata was deep-copied")


def profile(**extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kstrata.dev/v1alpha1",
        "kind": "ConfigProfile",
        "metadata": {
            "name": "app",
            "namespace": "ns",
            "generation": 3,
            "labels": {"team": "a"},
            "annotations": {
                "kstrata.dev/revision": "2",
                "kopf.zalando.org/last-handled-configuration": '{"spec": {}}',
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
            },
            "ownerReferences": [{"kind": "Deployment", "name": "x"}],
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"base": {"a": [1, {"b": None}]}, "environments": {"prod": {"a": 2}}},
        "status": {"revision": 2, "conditions": [{"type": "Ready", "status": "True"}]},
        **extra,
    }


BODIES = [
    profile(),
    profile(data={"k": "v"}),
    {k: v for k, v in profile().items() if k != "status"},
    {k: v for k, v in profile().items() if k != "spec"},
    {"apiVersion": "v1", "kind": "ReplicaSet", **{k: profile()[k] for k in ("metadata", "spec")}},
    {"metadata": {}, "spec": {}},
]
EXTRA_FIELDS: list[Any] = [
    None,
    [],
    {("spec",)},
    ["spec.environments"],
    {("status", "revision")},
    ["status.conditions", ("spec",)],
    [["metadata", "labels"]],
]


@pytest.mark.parametrize("extra_fields", EXTRA_FIELDS)
@pytest.mark.parametrize("raw", BODIES)
def test_the_same_essence_as_kopf_builds(raw: dict[str, Any], extra_fields: Any) -> None:
    kopfs = kopf.AnnotationsDiffBaseStorage(ignored_fields=["metadata"])
    before = copy.deepcopy(raw)
    body = kopf.Body(cast(kopf.RawBody, raw))
    expected = kopfs.build(body=body, extra_fields=copy.deepcopy(extra_fields))
    assert essence_storage().build(body=body, extra_fields=extra_fields) == expected
    assert raw == before  # the watch's body itself untouched


def test_metadata_is_not_copied_and_spec_is() -> None:
    raw = profile()
    raw["metadata"]["managedFields"].append(NotCopied())
    essence = SpecEssenceStorage(ignored_fields=["metadata"]).build(
        body=kopf.Body(cast(kopf.RawBody, raw)), extra_fields={("spec",)}
    )
    assert essence == {"spec": profile()["spec"]}
    # A copy: kopf keeps the essence while the watch's body moves on.
    assert cast(dict[str, Any], essence)["spec"] is not raw["spec"]
    with pytest.raises(AssertionError, match="deep-copied"):
        kopf.AnnotationsDiffBaseStorage(ignored_fields=["metadata"]).build(
            body=kopf.Body(cast(kopf.RawBody, raw)), extra_fields={("spec",)}
        )
