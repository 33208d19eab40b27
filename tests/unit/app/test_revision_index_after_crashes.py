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

from kstrata.app.revisions import RevisionStore
from kstrata.domain.revisions import (
    Snapshot,
    decode_history,
    encode_history,
    history_entry,
)
from kstrata.kube.api import CONFIG_PROFILES, CONTROLLER_REVISIONS
from kstrata.payloads import ConfigProfile
from kstrata.wellknown import HISTORY_ANNOTATION, OWNER_UID_LABEL, REVISION_ANNOTATION
from support.fake_api import FakeApi


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
    store = RevisionStore(api)
    owner: ConfigProfile = {
        "apiVersion": CONFIG_PROFILES.api_version,
        "kind": "ConfigProfile",
        "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "resourceVersion": "5"},
    }
    for number in range(1, 10):
        store.record(owner, snapshot(number))
    revisions = api.list(CONTROLLER_REVISIONS, "shop")
    assert len(revisions) == 9
    assert all(OWNER_UID_LABEL in r["metadata"]["labels"] for r in revisions)
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
