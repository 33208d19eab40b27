"""The revision index after the operator died twice in a row between the status and the index.

Found by the fault suite (tests/faults/test_fault_operator_killed.py, the
operator SIGKILLed at random moments): a reconcile writes the
ControllerRevision, the ConfigMap, the status, then the index annotation.
Killed after the status of revision 8, and again after the status of
revision 9, the resource kept the index of revision 7; the next reconcile
found the content unchanged at 9 and indexed only 9, so revision 8 was left
out of ``kstrata.dev/revision-history`` for good (and, beyond the history
limit, never pruned: pruning goes by the index).
"""

from __future__ import annotations

import copy
from typing import Any, cast

from kstrata.app.revisions import RevisionStore
from kstrata.domain.revisions import (
    Snapshot,
    decode_history,
    encode_history,
    history_entry,
)
from kstrata.errors import ConflictError
from kstrata.kube.api import CONFIG_PROFILES, CONTROLLER_REVISIONS, KubeApi, Resource
from kstrata.wellknown import HISTORY_ANNOTATION, OWNER_UID_LABEL, REVISION_ANNOTATION


class FakeApi:
    """ControllerRevisions by name: create (409 when taken), get, list by the owner label."""

    def __init__(self) -> None:
        self.revisions: dict[str, dict[str, Any]] = {}

    def create(self, resource: Resource, namespace: str | None, body: dict[str, Any]) -> Any:
        assert resource == CONTROLLER_REVISIONS
        name = body["metadata"]["name"]
        if name in self.revisions:
            raise ConflictError("exists")
        self.revisions[name] = copy.deepcopy(body)
        return copy.deepcopy(body)

    def get_or_none(self, resource: Resource, namespace: str | None, name: str) -> Any:
        assert resource == CONTROLLER_REVISIONS
        return copy.deepcopy(self.revisions.get(name))

    def list(
        self, resource: Resource, namespace: str | None = None, *, label_selector: str = ""
    ) -> list[Any]:
        key, _, value = label_selector.partition("=")
        return [
            copy.deepcopy(r)
            for r in self.revisions.values()
            if (r["metadata"].get("labels") or {}).get(key) == value
        ]


def snapshot(number: int) -> Snapshot:
    return Snapshot(
        kind="ConfigProfile",
        number=number,
        spec={"base": {"value": number}},
        environment="dev",
        rendered={"config.yaml": f"value: {number}\n"},
        fingerprints={},
        digest=f"sha256:{number:064x}",
        change_cause="",
        created="2026-12-02T12:00:00Z",
    )


def test_an_index_two_revisions_behind_is_completed_with_every_stored_revision() -> None:
    api = FakeApi()
    store = RevisionStore(cast(KubeApi, api))
    owner: dict[str, Any] = {
        "apiVersion": CONFIG_PROFILES.api_version,
        "kind": "ConfigProfile",
        "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "resourceVersion": "5"},
    }
    for number in range(1, 10):
        store.record(owner, snapshot(number))
    assert all(OWNER_UID_LABEL in r["metadata"]["labels"] for r in api.revisions.values())
    # The index still says 7; the status (a hint) says 9, with the content at hand.
    owner["metadata"]["annotations"] = {
        REVISION_ANNOTATION: "7",
        HISTORY_ANNOTATION: encode_history([history_entry(snapshot(n)) for n in range(1, 8)]),
    }
    current = snapshot(9).digest

    settled = store.settle(
        owner,
        current,
        lambda number, cause: snapshot(number),
        limit=10,
        hints=[(9, current)],
    )

    assert (settled.number, settled.new) == (9, False)
    assert settled.annotations is not None
    assert settled.annotations[REVISION_ANNOTATION] == "9"
    index = decode_history(settled.annotations[HISTORY_ANNOTATION])
    assert [entry.number for entry in index] == list(range(1, 10))
