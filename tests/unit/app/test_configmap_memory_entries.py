"""What the profile reconciler remembers of its ConfigMaps, and the PUT it builds from that.

``kstrata.app.profiles`` writes a changed render over the ConfigMap it last
wrote or read without reading it again (issue 18 item 2).  Pinned here: what
is kept (no data; the metadata others put there), when nothing is kept, the
bound and the order of eviction, the bytes per entry at 10,000 profiles, and
that the PUT from memory carries the same body as the PUT after a GET.  The
409/404 fallbacks against a real API server are in
``tests/cluster/test_profile_configmap_memory.py``.
"""

from __future__ import annotations

import copy
import gc
import hashlib
import json
import tracemalloc
import uuid
from typing import Any

from kstrata.app.profiles import (
    ConfigMapMemory,
    KnownConfigMap,
    ProfileReconciler,
    known_config_map,
)
from kstrata.kube.api import CONFIG_MAPS, CONFIG_PROFILES, P, Resource, as_payload
from kstrata.payloads import ConfigMap, ConfigProfile
from kstrata.settings import Settings
from support.fake_api import FakeApi

OWNER = "0b5e8f0e-4d1a-4c59-9a52-2f1d3c1e7a10"
DIGEST = "ab" * 32


def config_map(name: str = "web", owner: str = OWNER, **meta: Any) -> ConfigMap:
    body: ConfigMap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "uid": "cm-uid",
            "resourceVersion": "41",
            "creationTimestamp": "2026-12-03T10:00:00Z",
            "managedFields": [{"manager": "kstrata"}],
            "labels": {
                "app.kubernetes.io/managed-by": "kstrata",
                "kstrata.dev/profile": name,
                "kstrata.dev/revision": "3",
            },
            "ownerReferences": [
                {
                    "apiVersion": "kstrata.dev/v1alpha1",
                    "kind": "ConfigProfile",
                    "name": name,
                    "uid": owner,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "data": {"config.yaml": "v: 1\n"},
    }
    body["metadata"].update(meta)  # type: ignore[typeddict-item]
    return body


def test_only_what_the_next_put_needs_is_kept() -> None:
    known = known_config_map(config_map(), OWNER, DIGEST)
    assert known == KnownConfigMap(name="web", resource_version="41", revision=3, digest=DIGEST)


def test_metadata_others_put_there_is_kept_and_ours_is_not() -> None:
    other_owner = {"apiVersion": "v1", "kind": "Namespace", "name": "shop", "uid": "n-1"}
    body = config_map(annotations={"team": "payments"}, finalizers=["example.com/keep"])
    body["metadata"]["labels"]["tier"] = "gold"
    body["metadata"]["ownerReferences"].append(other_owner)  # type: ignore[arg-type]
    known = known_config_map(body, OWNER, DIGEST)
    assert known is not None
    assert known.extra == {
        "labels": {"tier": "gold"},
        "annotations": {"team": "payments"},
        "finalizers": ["example.com/keep"],
        "ownerReferences": [other_owner],
    }


def test_nothing_is_kept_of_what_a_put_from_memory_cannot_reproduce() -> None:
    assert known_config_map(config_map(), "someone-else", DIGEST) is None
    binary = config_map()
    binary["binaryData"] = {"blob": "AA=="}
    assert known_config_map(binary, OWNER, DIGEST) is None
    immutable = config_map()
    immutable["immutable"] = True
    assert known_config_map(immutable, OWNER, DIGEST) is None
    deleting = config_map(deletionTimestamp="2026-12-03T10:01:00Z")
    assert known_config_map(deleting, OWNER, DIGEST) is None
    unversioned = config_map()
    del unversioned["metadata"]["resourceVersion"]
    assert known_config_map(unversioned, OWNER, DIGEST) is None


def test_the_memory_is_bounded_and_drops_the_least_recently_stored() -> None:
    memory = ConfigMapMemory(limit=3)
    entries = {
        uid: KnownConfigMap(name=uid, resource_version="1", revision=1, digest=DIGEST)
        for uid in "abcd"
    }
    for uid in "abc":
        memory.remember(uid, entries[uid])
    memory.remember("a", entries["a"])  # stored again: now the most recent
    memory.remember("d", entries["d"])
    assert (len(memory), memory.get("b")) == (3, None)
    assert memory.get("a") == entries["a"]
    memory.remember("c", None)  # nothing to keep: the old entry goes too
    memory.forget("d")
    assert (len(memory), memory.get("c"), memory.get("d")) == (1, None, None)


def test_ten_thousand_profiles_cost_under_half_a_kilobyte_each() -> None:
    """Each entry as a reconcile leaves it: its strings are its own, not shared."""
    template = json.dumps(config_map())
    memory = ConfigMapMemory()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(10_000):
            uid = str(uuid.uuid4())
            answer = json.loads(template.replace(OWNER, uid).replace('"41"', f'"{10**7 + i}"'))
            answer["metadata"]["name"] = f"payments-{i}"
            digest = hashlib.sha256(str(i).encode()).hexdigest()
            memory.remember(uid, known_config_map(answer, uid, digest))
            del answer
        gc.collect()
        per_entry = (tracemalloc.get_traced_memory()[0] - before) / 10_000
    finally:
        tracemalloc.stop()
    assert len(memory) == 10_000
    assert per_entry < 512, per_entry


class RecordingApi(FakeApi):
    """The in-memory API, counting ConfigMap reads and keeping the body of every ConfigMap PUT."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.puts: list[dict[str, Any]] = []

    def get_or_none(self, resource: Resource[P], namespace: str | None, name: str) -> P | None:
        self.reads += resource is CONFIG_MAPS
        return super().get_or_none(resource, namespace, name)

    def replace(
        self, resource: Resource[P], namespace: str | None, body: P, *, dry_run: bool = False
    ) -> P:
        if resource is CONFIG_MAPS:
            self.puts.append(copy.deepcopy(dict(body)))
        return super().replace(resource, namespace, body, dry_run=dry_run)


def changed(api: FakeApi, value: int) -> ConfigProfile:
    """The stored profile with ``spec.base.v`` set to ``value``."""
    body = api.get(CONFIG_PROFILES, "shop", "web")
    body["spec"] = {"base": {"v": value}}
    return api.replace(CONFIG_PROFILES, "shop", body)


def test_the_put_from_memory_is_the_put_after_a_read() -> None:
    """The same ConfigMap (others' labels, annotations, owners, finalizers), the same change."""
    bodies = []
    for use_memory in (False, True):
        api = RecordingApi()
        api.create(
            CONFIG_PROFILES,
            "shop",
            {
                "apiVersion": "kstrata.dev/v1alpha1",
                "kind": "ConfigProfile",
                "metadata": {"name": "web", "namespace": "shop", "uid": OWNER},
                "spec": {"base": {"v": 1}},
            },
        )
        reconciler = ProfileReconciler(api, Settings())
        reconciler.reconcile(api.get(CONFIG_PROFILES, "shop", "web"))
        stored = api.stored(CONFIG_MAPS, "shop", "web")
        stored["metadata"]["labels"]["tier"] = "gold"
        stored["metadata"]["annotations"] = {"team": "payments"}
        stored["metadata"]["finalizers"] = ["example.com/keep"]
        stored["metadata"]["ownerReferences"].insert(
            0, {"apiVersion": "v1", "kind": "Namespace", "name": "shop", "uid": "n-1"}
        )
        # Remembered as it is now, as a reconcile that read it and wrote nothing leaves it.
        first = reconciler.memory.get(OWNER)
        assert first is not None
        known = known_config_map(
            as_payload(CONFIG_MAPS, copy.deepcopy(stored)), OWNER, first.digest
        )
        reconciler.memory.remember(OWNER, known if use_memory else None)
        api.reads = 0
        reconciler.reconcile(changed(api, 2))
        assert (api.reads, len(api.puts)) == (0 if use_memory else 1, 1)
        bodies.append(api.puts[0])
        assert api.stored(CONFIG_MAPS, "shop", "web")["data"] == {"config.yaml": "v: 2\n"}
    after_read, from_memory = bodies
    # What the API server keeps on a PUT that leaves it out.
    for server_kept in ("uid", "creationTimestamp"):
        after_read["metadata"].pop(server_kept, None)
    assert from_memory == after_read
